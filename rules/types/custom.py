"""``custom``: the ``Data``, ``Desc`` and ``Ext`` of ``TIMCustomElem``, as JSON or as raw text.

Parameters: ``path`` (optional) picks values out of a JSON payload: ``gift.name``, ``items[0].text``,
``items[*].text``, ``*.title`` (``*`` is any key or index). Without ``path`` the whole field is the value; a
field that is not JSON has no values under a ``path``. Then any of:

* ``equals``: the value equals one of these (compared in the light normalized form; numbers and booleans by
  their JSON text);
* ``keywords`` (with ``whole_word``, default true): the value contains one of these phrases, normalized as
  keyword rules do;
* ``pattern`` (with ``ignore_case``, default true): an RE2 pattern found in the light form of the value.

The rule's ``fields`` default to ``[Data, Desc, Ext]``. Matches name the field and, under a ``path``, the
JSON pointer of the value: ``MsgBody[0].MsgContent.Data#/gift/name``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules import normalize
from rules.api import CompileContext, Matcher, MessageMatcher
from rules.model import Match, RuleSpec
from rules.phrases import Phrase, PhraseIndex
from rules.types.regex import compile_pattern
from rules.view import Batch, fields_at
from rules.walk import escape_pointer

CUSTOM = "TIMCustomElem"
DEFAULT_FIELDS = ("Data", "Desc", "Ext")
CUSTOM_FIELDS = frozenset((*DEFAULT_FIELDS, "Sound"))

_PATH_TOKEN = re.compile(r"\.?(?:([^.\[\]]+)|\[(\d+|\*)\])")

Token = str | int | None  # key, index, or None for "any"

#: What :func:`parse_json` returns for text that is not JSON.
NOT_JSON: Any = object()
_UNPARSED: Any = object()


def parse_path(path: str) -> list[Token]:
    """``a.b[0].*`` -> ``["a", "b", 0, None]``; raises ValueError on anything else."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(path):
        m = _PATH_TOKEN.match(path, pos)
        if m is None or (pos == 0 and path.startswith(".")):
            raise ValueError(f"cannot read path {path!r} at character {pos + 1}")
        key, index = m.groups()
        if key is not None:
            tokens.append(None if key == "*" else key)
        else:
            tokens.append(None if index == "*" else int(index))
        pos = m.end()
    if not tokens:
        raise ValueError("path is empty")
    return tokens


def extract(document: Any, tokens: Sequence[Token]) -> Iterator[tuple[str, Any]]:
    """``(JSON pointer, value)`` of each value ``tokens`` reach in ``document``."""
    level: list[tuple[str, Any]] = [("", document)]
    for token in tokens:
        following: list[tuple[str, Any]] = []
        for pointer, value in level:
            if isinstance(value, dict):
                keys = (
                    value.keys()
                    if token is None
                    else [token]
                    if isinstance(token, str) and token in value
                    else []
                )
                following.extend((f"{pointer}/{escape_pointer(k)}", value[k]) for k in keys)
            elif isinstance(value, list):
                if token is None:
                    following.extend((f"{pointer}/{k}", v) for k, v in enumerate(value))
                elif isinstance(token, int) and token < len(value):
                    following.append((f"{pointer}/{token}", value[token]))
        level = following
    yield from level


def parse_json(text: str) -> Any:
    """The decoded JSON object or array, or ``NOT_JSON``."""
    if not text.lstrip().startswith(("{", "[")):
        return NOT_JSON  # a path only ever reaches into objects and arrays
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses but the json module reads (integers beyond 64 bits, NaN)
        return json.loads(text)
    except (ValueError, RecursionError):
        return NOT_JSON


def as_text(value: Any) -> str:
    """A JSON value as the text rules compare: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class CustomParams(BaseModel):
    """Parameters of a ``custom`` rule."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None, description="Where to look in a JSON payload: a.b[0].c, items[*].text, *."
    )
    equals: list[str | int | float | bool] = Field(default_factory=list, description="Values that match.")
    keywords: list[str] = Field(default_factory=list, description="Phrases to look for in the value.")
    whole_word: bool = Field(default=True, description="Latin-script keywords only match as whole words.")
    pattern: str | None = Field(default=None, description="An RE2 pattern to look for in the value.")
    ignore_case: bool = Field(default=True, description="The pattern matches regardless of case.")

    @field_validator("path")
    @classmethod
    def _valid_path(cls, path: str | None) -> str | None:
        if path is not None:
            parse_path(path)
        return path

    @model_validator(mode="after")
    def _has_condition(self) -> CustomParams:
        if not self.equals and not self.keywords and self.pattern is None:
            raise ValueError("give equals, keywords or pattern")
        return self


class _Compiled:
    """One custom rule, ready to run."""

    def __init__(self, rule: RuleSpec, params: CustomParams, regex: Any) -> None:
        self.rule = rule
        self.path = parse_path(params.path) if params.path is not None else None
        self.fields = tuple(sorted(rule.selector.fields)) if rule.selector.fields else DEFAULT_FIELDS
        self.equals = {normalize.light(as_text(v)).strip(): v for v in params.equals}
        self.keywords = (
            PhraseIndex([Phrase(k, 0, params.whole_word) for k in params.keywords])
            if params.keywords
            else None
        )
        self.regex = regex
        # A path of keys only (the commonest) reaches at most one value, at a pointer known now.
        keys = self.path is not None and all(isinstance(t, str) for t in self.path)
        self.pointer = "".join(f"/{escape_pointer(str(t))}" for t in self.path or ()) if keys else None

    def values(self, raw: str, documents: dict[str, Any], key: str) -> list[tuple[str, str]]:
        """``(JSON pointer, text)`` of each value the rule looks at in field ``key`` (``raw``)."""
        if self.path is None:
            return [("", raw)]
        document = documents.get(key, _UNPARSED)
        if document is _UNPARSED:
            document = documents[key] = parse_json(raw)
        if document is NOT_JSON:
            return []
        if self.pointer is None:
            return [(pointer, as_text(value)) for pointer, value in extract(document, self.path)]
        for token in self.path:
            if not isinstance(document, dict) or token not in document:
                return []
            document = document[token]
        return [(self.pointer, as_text(document))]

    def check_all(self, texts: Sequence[str]) -> list[tuple[int, tuple[str, str]]]:
        """``(index, (evidence, normalized))`` of the texts that match.

        A rule of keywords only runs the prefilter once over all the texts (the light form of the batch's
        values joined, as for keyword rules) and checks only the texts it points at.
        """
        indexes: Iterable[int] = range(len(texts))
        if self.keywords is not None and not self.equals and self.regex is None and len(texts) > 1:
            _, compact = normalize.light_and_compact(normalize.join_fields(texts))
            indexes = fields_at(compact, self.keywords.prefilter(compact))
        out = []
        for i in indexes:
            found = self.check(texts[i])
            if found is not None:
                out.append((i, found))
        return out

    def check(self, text: str) -> tuple[str, str] | None:
        """``(evidence, normalized)`` when ``text`` matches."""
        if self.equals:
            light = normalize.light(text).strip()
            if light in self.equals:
                return text, light
        if self.keywords is not None:
            hits = self.keywords.find(text, limit=1)
            if hits:
                return hits[0].evidence, hits[0].normalized
        if self.regex is not None:
            light = normalize.light(text)
            found = self.regex.search(light)
            if found is not None:
                start, end = found.span()
                mapped = normalize.light_mapped(text)
                evidence = mapped.original_text(start, end) if mapped.text == light else light[start:end]
                return evidence, light[start:end]
        return None


class CustomType:
    """The ``custom`` rule type."""

    name = "custom"
    params = CustomParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """Check each rule's fields, keywords and pattern."""
        compiled: list[_Compiled] = []
        for rule in rules:
            params = rule.params_as(CustomParams)
            ok = True
            if rule.selector.elements is not None and rule.selector.elements != {CUSTOM}:
                context.report(rule, f"custom rules only look at {CUSTOM}", "elements")
                ok = False
            if rule.selector.fields is not None and not rule.selector.fields <= CUSTOM_FIELDS:
                wrong = ", ".join(sorted(rule.selector.fields - CUSTOM_FIELDS))
                context.report(rule, f"{CUSTOM} has no field {wrong}", "fields")
                ok = False
            for k, word in enumerate(params.keywords):
                if not normalize.full(word):
                    context.report(rule, f"{word!r} has no letters or digits to match", "keywords", k)
                    ok = False
            regex = None
            if params.pattern is not None:
                regex, problem = compile_pattern(params.pattern, params.ignore_case)
                if problem is not None:
                    context.report(rule, problem, "pattern")
                    ok = False
            if ok:
                compiled.append(_Compiled(rule, params, regex))
        return CustomMatcher(compiled)


class CustomMatcher(MessageMatcher):
    """Every custom rule of a rule set."""

    def __init__(self, compiled: Sequence[_Compiled]) -> None:
        self.compiled = tuple(compiled)

    def scan(self, batch: Batch) -> Iterable[Match]:
        """Look at every custom element, at any depth: each rule over all the batch's values at once."""
        if not self.compiled:
            return ()
        page = batch.page
        # Per rule, the values it looks at: (element index, field, JSON pointer) and text.
        places: list[list[tuple[int, str, str]]] = [[] for _ in self.compiled]
        texts: list[list[str]] = [[] for _ in self.compiled]
        for k in batch.elements_of((CUSTOM,)):
            content = page.elements[k][2]
            documents: dict[str, Any] = {}
            for r, rule in enumerate(self.compiled):
                for name in rule.fields:
                    raw = content.get(name)
                    if isinstance(raw, str) and raw:
                        for pointer, text in rule.values(raw, documents, name):
                            places[r].append((k, name, pointer))
                            texts[r].append(text)
        found: list[tuple[tuple[int, int, int], Match]] = []
        for r, rule in enumerate(self.compiled):
            for i, (evidence, normalized) in rule.check_all(texts[r]):
                k, name, pointer = places[r][i]
                path = f"{page.elements[k][0]}.MsgContent.{name}"
                if rule.path is not None:
                    path = f"{path}#{pointer}"
                match = rule.rule.match(batch.msg_key(page.element_owners[k]), path, evidence, normalized)
                found.append(((k, r, i), match))
        found.sort(key=lambda item: item[0])  # per element, then rule, then value: as they were found
        return [match for _, match in found]
