"""The JSON Schema of rule files, generated from the pydantic models (``rules.config``, each built-in type).

``ruleset.schema.json`` next to this module is the generated file (editors use it to check rule files as you
type); a test fails if it drifts from the models. Regenerate it with ``python -m rules.schema --write``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from rules.api import COMMON_KEYS
from rules.config import RuleCommon, RuleFileModel
from rules.plugins import builtin_entry_points, load_rule_type

SCHEMA_PATH: Final = Path(__file__).parent / "ruleset.schema.json"
SCHEMA_ID: Final = "https://recall-worker.invalid/schema/ruleset.schema.json"


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of rule files with the built-in rule types."""
    schema = RuleFileModel.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})
    common = RuleCommon.model_json_schema()
    defs.update(common.pop("$defs", {}))
    common_properties: dict[str, Any] = common["properties"]
    branches: list[dict[str, Any]] = []
    for ep in builtin_entry_points():
        kind = load_rule_type(ep)
        params = kind.params.model_json_schema()
        defs.update(params.pop("$defs", {}))
        name = f"{kind.params.__name__}Rule"
        properties = dict.fromkeys(sorted(COMMON_KEYS), True) | params.get("properties", {})
        defs[name] = {
            "title": f"{ep.name} rule",
            "description": (kind.params.__doc__ or "").strip(),
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        branches.append(
            {
                "if": {"properties": {"type": {"const": ep.name}}, "required": ["type"]},
                "then": {"$ref": f"#/$defs/{name}"},
            }
        )
    defs["Rule"] = {
        "title": "Rule",
        "description": (RuleCommon.__doc__ or "").strip(),
        "type": "object",
        "properties": common_properties,
        "required": common.get("required", []),
        "allOf": branches,
    }
    defs["RuleSetModel"]["properties"]["rules"]["items"] = {"$ref": "#/$defs/Rule"}
    schema["properties"]["rulesets"]["additionalProperties"] = False  # names must match the pattern
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    """The schema as the text of ``ruleset.schema.json``."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
