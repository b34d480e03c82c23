"""Reading rule files (YAML or TOML) into plain data, remembering the line of every key and item."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from rules.errors import Problem, RulesError
from rules.model import Loc

#: More YAML nodes than this (aliases expanded) is an attack or a mistake, not a rule file.
MAX_NODES: Final = 2_000_000
MAX_DEPTH: Final = 64


@dataclass(frozen=True)
class Document:
    """A parsed rule file: ``data`` and, for each path into it, the 1-based line it starts on."""

    source: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its deepest ancestor that has one."""
        for end in range(len(loc), -1, -1):
            found = self.lines.get(tuple(loc[:end]))
            if found is not None:
                return found
        return None


def parse(text: str, source: str, fmt: str) -> Document:
    """Parse ``text`` as ``fmt`` ("yaml" or "toml")."""
    return parse_toml(text, source) if fmt == "toml" else parse_yaml(text, source)


def format_of(name: str) -> str:
    """The format of a file, by its name: TOML for ``*.toml``, YAML (a superset of JSON) otherwise."""
    return "toml" if name.lower().endswith(".toml") else "yaml"


# ---- YAML --------------------------------------------------------------------------------------------------


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[Loc, int] = {}
        self.problems: list[Problem] = []
        # node -> (value, size with every alias expanded): an alias shares the value instead of copying
        # it, and the sizes bound what anyone walking the data (pydantic, a rule type) would go through.
        self.done: dict[int, tuple[Any, int]] = {}
        self.stack: set[int] = set()

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        return self._convert(node, loc)[0]

    def _convert(self, node: yaml.Node, loc: Loc) -> tuple[Any, int]:
        line = node.start_mark.line + 1
        if len(loc) > MAX_DEPTH:
            raise RulesError.single(self.source, "document nested too deeply", line)
        if id(node) in self.stack:
            raise RulesError.single(self.source, "recursive alias", line)
        self.lines.setdefault(loc, line)
        if id(node) in self.done:
            value, size = self.done[id(node)]
        elif isinstance(node, yaml.ScalarNode):
            value, size = self.loader.construct_object(node, deep=True), 1
        else:
            self.stack.add(id(node))
            try:
                value, size = self._collection(node, loc)
            finally:
                self.stack.discard(id(node))
        self.done[id(node)] = (value, size)
        if size > MAX_NODES:
            raise RulesError.single(self.source, "document too large (with aliases expanded)", line)
        return value, size

    def _collection(self, node: yaml.Node, loc: Loc) -> tuple[Any, int]:
        if isinstance(node, yaml.SequenceNode):
            items = [self._convert(item, (*loc, i)) for i, item in enumerate(node.value)]
            return [v for v, _ in items], 1 + sum(n for _, n in items)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        raise RulesError.single(self.source, f"unexpected YAML node {node.tag}", node.start_mark.line + 1)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> tuple[dict[Any, Any], int]:
        self.loader.flatten_mapping(node)  # resolves "<<" merge keys
        out: dict[Any, Any] = {}
        size = 1
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.source, line, "mapping keys must be plain values"))
                continue
            key = self.loader.construct_object(key_node, deep=True)
            if key in out:
                self.problems.append(Problem(self.source, line, f"duplicate key {key!r}"))
                continue
            self.lines[(*loc, key)] = line
            out[key], n = self._convert(value_node, (*loc, key))
            size += n
        return out, size


def parse_yaml(text: str, source: str = "<string>") -> Document:
    """Parse YAML, keeping the line of every node. Duplicate keys are errors (YAML says so; PyYAML not)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(source, None)
        converter = _Converter(loader, source)
        data = converter.convert(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise RulesError.single(source, f"invalid YAML: {message}", line) from exc
    except yaml.YAMLError as exc:
        raise RulesError.single(source, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if converter.problems:
        raise RulesError(converter.problems)
    return Document(source, data, converter.lines)


# ---- TOML --------------------------------------------------------------------------------------------------

_TOML_LINE = re.compile(r"at line (\d+)")
_TOML_KEY = r'(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)'
_TOML_RULE_HEADER = re.compile(rf"^\s*\[\[\s*rulesets\s*\.\s*({_TOML_KEY})\s*\.\s*rules\s*\]\]")
_TOML_SET_HEADER = re.compile(rf"^\s*\[\s*rulesets\s*\.\s*({_TOML_KEY})\s*\]")
_TOML_ANY_HEADER = re.compile(r"^\s*\[")
_TOML_ASSIGN = re.compile(rf"^\s*({_TOML_KEY})\s*=")


def _unquote(key: str) -> str:
    if key[:1] in "\"'":
        parsed: dict[str, Any] = tomllib.loads(f"{key} = 0")
        return next(iter(parsed))
    return key


def parse_toml(text: str, source: str = "<string>") -> Document:
    """Parse TOML. Lines are found for ``[rulesets.NAME]`` tables, ``[[rulesets.NAME.rules]]`` entries and
    the ``key =`` lines inside them (the usual way of writing rule files in TOML)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        raise RulesError.single(
            source, f"invalid TOML: {exc}", int(found.group(1)) if found else None
        ) from exc
    lines: dict[Loc, int] = {}
    counts: dict[str, int] = {}
    current: Loc | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _TOML_RULE_HEADER.match(line):
            name = _unquote(m.group(1))
            index = counts.get(name, 0)
            counts[name] = index + 1
            current = ("rulesets", name, "rules", index)
            lines.setdefault(("rulesets", name), number)
            lines[current] = number
        elif m := _TOML_SET_HEADER.match(line):
            current = ("rulesets", _unquote(m.group(1)))
            lines[current] = number
        elif _TOML_ANY_HEADER.match(line):
            current = None
        elif current is not None and (m := _TOML_ASSIGN.match(line)):
            lines.setdefault((*current, _unquote(m.group(1))), number)
    return Document(source, data, lines)
