"""Rule files: their format (pydantic models, from which the JSON Schema is generated), loading, checking.

A rule file (YAML or TOML) holds named rule sets::

    version: 1
    rulesets:
      default:
        description: what this set is for
        include: [other-set]        # its rules first (optional)
        rules:
          - id: spam-phrases        # unique within the set
            type: keywords          # a built-in type or a plugin's
            action: flag            # recall, flag (report for human review only), or wipe
            description: why this rule exists
            enabled: true           # false keeps a rule in the file without running it
            elements: [TIMTextElem] # element types looked at (default: all)
            fields: [Text]          # field names looked at (default: every text-bearing field)
            words: [free crypto]    # ... and the type's own parameters

Every problem is reported with its file and line, all at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from rules.api import COMMON_KEYS, CompileContext
from rules.engine import RuleBook, RuleSet, compile_ruleset
from rules.errors import Problem, RulesError
from rules.model import TEXT, Loc, RuleSpec, Selector
from rules.plugins import Registry, load_registry
from rules.source import Document, format_of, parse

#: Largest rule file accepted, in bytes.
MAX_FILE_BYTES: Final = 64 * 1024 * 1024

_SELECTORS: dict[Selector, Selector] = {TEXT: TEXT}

RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
RuleSetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ElementTypeName = Annotated[str, StringConstraints(pattern=r"^(TIM[A-Za-z]+Elem|CloudCustomData)$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]


class RuleCommon(BaseModel):
    """The keys every rule has; the others are the parameters of its type."""

    model_config = ConfigDict(extra="allow")

    id: RuleId = Field(description="Unique within the rule set; reported with every match.")
    type: str = Field(
        min_length=1, description="Rule type: keywords, regex, links, custom, element, flood, or a plugin's."
    )
    action: Literal["recall", "flag", "wipe"] = Field(
        description=(
            "recall the message; flag it for human review only; or wipe: recall it and, in a group, propose "
            "recalling everything its sender sent recently (a plan a moderator approves)."
        )
    )
    description: str = Field(default="", description="Why the rule exists.")
    enabled: bool = Field(default=True, description="false keeps the rule in the file without running it.")
    elements: list[ElementTypeName] | None = Field(
        default=None,
        min_length=1,
        description="Element types looked at (MsgType, or CloudCustomData); default all.",
    )
    fields: list[FieldName] | None = Field(
        default=None,
        min_length=1,
        description="Field names looked at (Text, Desc, URL, ...); default the text-bearing ones.",
    )


class RuleSetModel(BaseModel):
    """One named rule set."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", description="What the rule set is for.")
    include: list[RuleSetName] = Field(default_factory=list, description="Rule sets whose rules come first.")
    rules: list[dict[str, Any]] = Field(default_factory=list, description="The rules, in order.")


class RuleFileModel(BaseModel):
    """A rule file."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(default=1, description="Format version.")
    rulesets: dict[RuleSetName, RuleSetModel] = Field(
        min_length=1, description="Rule sets by name (default, ...)."
    )


def load_file(path: str | Path, *, registry: Registry | None = None) -> RuleBook:
    """Load, validate and compile a rule file; raises :class:`RulesError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RulesError.single(source, f"larger than {MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise RulesError.single(source, f"cannot read: {exc.strerror or exc}") from exc
    return _load(data, source, format_of(path.name), base_dir=path.parent, path=path, registry=registry)


def load_text(
    text: str,
    source: str = "<string>",
    *,
    fmt: Literal["yaml", "toml"] | None = None,
    base_dir: str | Path | None = None,
    registry: Registry | None = None,
) -> RuleBook:
    """Load rules from a string (format from ``fmt``, else from ``source``'s suffix, else YAML)."""
    base = Path(base_dir) if base_dir is not None else None
    return _load(text.encode(), source, fmt or format_of(source), base_dir=base, path=None, registry=registry)


def _load(
    data: bytes,
    source: str,
    fmt: str,
    *,
    base_dir: Path | None,
    path: Path | None,
    registry: Registry | None,
) -> RuleBook:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RulesError.single(source, f"not UTF-8: {exc}") from exc
    document = parse(text, source, fmt)
    registry = registry or load_registry()
    context = CompileContext(source, base_dir)
    rulesets = _build(document, registry, context)
    sources = ((path,) if path is not None else ()) + tuple(sorted(context.files))
    return RuleBook(path, version_of(data, context.files), rulesets, sources)


def version_of(data: bytes, lists: Mapping[Path, bytes]) -> str:
    """A rule book's version: sha256 of the rule file's bytes, then of each list file's (by path)."""
    digest = hashlib.sha256(data)
    for list_path in sorted(lists):
        digest.update(b"\0" + str(list_path).encode() + b"\0" + lists[list_path])
    return digest.hexdigest()


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _build(document: Document, registry: Registry, context: CompileContext) -> dict[str, RuleSet]:
    source = document.source
    if not isinstance(document.data, dict):
        raise RulesError.single(source, "expected a mapping with 'rulesets'", document.line(()))
    try:
        model = RuleFileModel.model_validate(document.data)
    except ValidationError as exc:
        raise RulesError(
            Problem(source, document.line(tuple(e["loc"])), f"{_dotted(e['loc'])}: {_message(e)}")
            for e in exc.errors()
        ) from exc
    problems: list[Problem] = []
    lines_by_rule = _lines_by_rule(document)
    specs: dict[str, list[RuleSpec]] = {}
    for name, ruleset in model.rulesets.items():
        specs[name] = []
        for i, raw in enumerate(ruleset.rules):
            spec = _rule(
                raw,
                i,
                ("rulesets", name, "rules", i),
                document=document,
                lines_by_rule=lines_by_rule,
                registry=registry,
                problems=problems,
            )
            if spec is not None:
                specs[name].append(spec)
    resolved = {
        name: _resolve(name, model, specs=specs, document=document, problems=problems, stack=())
        for name in model.rulesets
    }
    for name, rules in resolved.items():
        seen: dict[str, RuleSpec] = {}
        for rule in rules:
            if rule.id in seen and seen[rule.id] is not rule:
                problems.append(
                    Problem(source, rule.line, f"rule set {name!r}: duplicate rule id {rule.id!r}")
                )
            seen[rule.id] = rule
    if problems:
        raise RulesError(_unique(problems))
    compiled = {
        name: compile_ruleset(name, rules, registry, context, model.rulesets[name].description)
        for name, rules in resolved.items()
    }
    if context.problems:
        raise RulesError(_unique(context.problems))
    return compiled


def _unique(problems: Sequence[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _lines_by_rule(document: Document) -> dict[Loc, dict[Loc, int]]:
    """The line map split per rule (``("rulesets", name, "rules", i)``), with paths relative to the rule."""
    out: dict[Loc, dict[Loc, int]] = {}
    for loc, line in document.lines.items():
        if len(loc) > 4 and loc[0] == "rulesets" and loc[2] == "rules":
            out.setdefault(loc[:4], {})[loc[4:]] = line
    return out


def _rule(
    raw: dict[str, Any],
    index: int,
    loc: Loc,
    *,
    document: Document,
    lines_by_rule: dict[Loc, dict[Loc, int]],
    registry: Registry,
    problems: list[Problem],
) -> RuleSpec | None:
    """Validate one rule (common keys, then the type's parameters); None if invalid (see problems) or off."""
    source = document.source
    label = f"rule {raw['id']!r}" if isinstance(raw.get("id"), str) else f"rule #{index + 1}"
    lines = lines_by_rule.get(loc, {})

    def line_of(sub: Sequence[str | int]) -> int | None:
        for end in range(len(sub), 0, -1):
            if (found := lines.get(tuple(sub[:end]))) is not None:
                return found
        return document.line(loc)

    try:
        common = RuleCommon.model_validate(raw)
    except ValidationError as exc:
        problems.extend(
            Problem(source, line_of(e["loc"]), f"{label}: {_dotted(e['loc'])}: {_message(e)}")
            for e in exc.errors()
        )
        return None
    kind = registry.types.get(common.type)
    if kind is None:
        problems.append(Problem(source, line_of(("type",)), f"{label}: {registry.unknown(common.type)}"))
        return None
    try:
        params = kind.params.model_validate({k: v for k, v in raw.items() if k not in COMMON_KEYS})
    except ValidationError as exc:
        problems.extend(
            Problem(source, line_of(e["loc"]), f"{label}: {_dotted(e['loc']) or common.type}: {_message(e)}")
            for e in exc.errors()
        )
        return None
    if not common.enabled:
        return None  # checked, but not run
    selector = Selector(
        frozenset(common.elements) if common.elements is not None else None,
        frozenset(common.fields) if common.fields is not None else None,
    )
    # One object per distinct selector, so that the per-batch caches keyed by them hit by identity.
    selector = _SELECTORS.setdefault(selector, selector)
    return RuleSpec(
        id=common.id,
        type=common.type,
        action=common.action,
        params=params,
        selector=selector,
        description=common.description,
        source=source,
        line=document.line(loc),
        lines=lines,
    )


def _resolve(
    name: str,
    model: RuleFileModel,
    *,
    specs: dict[str, list[RuleSpec]],
    document: Document,
    problems: list[Problem],
    stack: tuple[str, ...],
) -> list[RuleSpec]:
    """The rules of a rule set, its includes' first."""
    out: list[RuleSpec] = []
    for k, included in enumerate(model.rulesets[name].include):
        line = document.line(("rulesets", name, "include", k))
        if included not in model.rulesets:
            problems.append(
                Problem(document.source, line, f"rule set {name!r} includes unknown rule set {included!r}")
            )
        elif included in (*stack, name):
            problems.append(
                Problem(document.source, line, f"rule set {name!r}: include cycle through {included!r}")
            )
        else:
            out.extend(
                _resolve(
                    included, model, specs=specs, document=document, problems=problems, stack=(*stack, name)
                )
            )
    out.extend(specs[name])
    return out
