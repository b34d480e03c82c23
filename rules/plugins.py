"""Rule types, built-in and third-party, found through the ``recall_worker.rules`` entry-point group.

A plugin package declares, in its own ``pyproject.toml``::

    [project.entry-points."recall_worker.rules"]
    profanity_api = "my_package.rules:ProfanityApiType"

The entry point's name is what rule files write as ``type:``; its object is a :class:`rules.api.RuleType`,
or a class or factory that returns one when called without arguments. The built-in types are loaded through
the very same path, from entry points declared here; a plugin cannot replace one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Final

import structlog

from rules.api import RuleType

ENTRY_POINT_GROUP: Final = "recall_worker.rules"

_BUILTIN: Final = {
    "keywords": "rules.types.keywords:KeywordsType",
    "regex": "rules.types.regex:RegexType",
    "links": "rules.types.links:LinksType",
    "custom": "rules.types.custom:CustomType",
    "element": "rules.types.element:ElementType",
    "flood": "rules.types.flood:FloodType",
    "qr": "rules.types.qr:QrType",
    "image_hash": "rules.types.image_hash:ImageHashType",
}

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Registry:
    """The rule types available, by name, and the plugins that could not be loaded (name -> why)."""

    types: Mapping[str, RuleType]
    failures: Mapping[str, str] = field(default_factory=dict)
    plugins: frozenset[str] = frozenset()  # names that came from third-party entry points

    def unknown(self, name: str) -> str:
        """Why there is no rule type called ``name``."""
        if name in self.failures:
            return f"rule type {name!r} is a plugin that failed to load: {self.failures[name]}"
        known = ", ".join(sorted(self.types))
        return f"unknown rule type {name!r} (known: {known})"


def builtin_entry_points() -> list[EntryPoint]:
    """The entry points of the built-in rule types."""
    return [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in _BUILTIN.items()]


def load_registry(extra: Iterable[EntryPoint] = ()) -> Registry:
    """Load the built-in rule types, then every installed plugin (and ``extra`` entry points)."""
    types: dict[str, RuleType] = {}
    failures: dict[str, str] = {}
    plugins: set[str] = set()
    for ep in builtin_entry_points():
        types[ep.name] = load_rule_type(ep)  # a broken built-in is a bug: let it raise
    for ep in (*entry_points(group=ENTRY_POINT_GROUP), *extra):
        if ep.name in _BUILTIN:
            if ep.value != _BUILTIN[ep.name]:
                failures[ep.name] = f"{ep.value} would replace the built-in type"
                _log.warning(
                    "rules.plugin_rejected", plugin=ep.name, value=ep.value, reason="shadows a built-in"
                )
            continue
        try:
            types[ep.name] = load_rule_type(ep)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the worker down
            failures[ep.name] = f"{type(exc).__name__}: {exc}"
            _log.warning("rules.plugin_failed", plugin=ep.name, value=ep.value, error=failures[ep.name])
            continue
        plugins.add(ep.name)
    return Registry(types, failures, frozenset(plugins))


def load_rule_type(ep: EntryPoint) -> RuleType:
    """Load one entry point as a rule type (instantiating it if it is a class or a factory)."""
    obj = ep.load()
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, RuleType)):
        obj = obj()
    if not isinstance(obj, RuleType):
        raise TypeError(f"{ep.value} is not a rule type (needs name, params and compile)")
    return obj
