"""Rule files: YAML and TOML, validation with file and line, includes, list files, version, schema."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import DEFAULT_RULES_PATH, RulesError, load_file, load_text
from rules.schema import SCHEMA_PATH, render
from tests.rules.helpers import msg, scan, text

YAML = """\
version: 1
rulesets:
  default:
    description: test rules
    rules:
      - id: spam
        type: keywords
        action: recall
        words: [free crypto, 赌博]
      - id: handles
        type: regex
        action: flag
        pattern: 'wx:\\s*\\w+'
  strict:
    include: [default]
    rules:
      - id: links
        type: links
        action: recall
        block: [bad.example]
"""

TOML = """\
version = 1

[rulesets.default]
description = "test rules"

[[rulesets.default.rules]]
id = "spam"
type = "keywords"
action = "recall"
words = ["free crypto", "赌博"]

[[rulesets.default.rules]]
id = "handles"
type = "regex"
action = "flag"
pattern = 'wx:\\s*\\w+'

[rulesets.strict]
include = ["default"]

[[rulesets.strict.rules]]
id = "links"
type = "links"
action = "recall"
block = ["bad.example"]
"""


def _problems(source: str, name: str = "rules.yaml") -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_text(source, name)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("source", "name"), [(YAML, "rules.yaml"), (TOML, "rules.toml")])
def test_yaml_and_toml_load_the_same_rules(source: str, name: str) -> None:
    book = load_text(source, name)
    assert sorted(book.rulesets) == ["default", "strict"]
    assert [r.id for r in book.get("default").rules] == ["spam", "handles"]
    assert [r.id for r in book.get("strict").rules] == ["spam", "handles", "links"]
    assert book.get("default").description == "test rules"
    found = scan(book.get("strict"), msg(text("free crypto at bad.example, wx: seller")))
    assert sorted(m.rule_id for m in found) == ["handles", "links", "spam"]


def test_load_file_records_path_version_and_sources(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(YAML, encoding="utf-8")
    book = load_file(path)
    assert book.path == path
    assert book.version == hashlib.sha256(path.read_bytes()).hexdigest()
    assert book.sources == (path,)


def test_unknown_rule_set_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(RulesError, match=r"no rule set named 'nope' \(have: default, strict\)"):
        load_text(YAML).get("nope")


PROBLEMS = [
    (("type: regex", "type: regexp"), "11: rule 'handles': unknown rule type 'regexp' (known: "),
    (("        action: flag\n", ""), "10: rule 'handles': action: Field required"),
    (
        ("action: flag", "action: delete"),
        "12: rule 'handles': action: Input should be 'recall', 'flag' or 'wipe'",
    ),
    (("pattern: 'wx", "patern: 'wx"), "13: rule 'handles': patern: Extra inputs are not permitted"),
    (("words: [free crypto, 赌博]", "words: free"), "9: rule 'spam': words: Input should be a valid list"),
    (("id: handles", "id: spam"), "10: rule set 'default': duplicate rule id 'spam'"),
    (("id: handles", "id: 'has space'"), "10: rule 'has space': id: String should match pattern"),
    (("include: [default]", "include: [nope]"), "15: rule set 'strict' includes unknown rule set 'nope'"),
    (("pattern: 'wx:\\s*\\w+'", "pattern: '(?<=wx)'"), "13: rule 'handles': RE2 cannot run pattern"),
    (
        ("    description: test rules\n", "    description: test rules\n    description: again\n"),
        "5: duplicate key",
    ),
    (("version: 1", "version: 2"), "1: version: Input should be 1"),
    (("        words: [free crypto, 赌博]\n", ""), "6: rule 'spam': keywords: give words or words_file"),
    (("words: [free crypto, 赌博]", "words: [free crypto, 赌博"), "10: invalid YAML"),
]


@pytest.mark.parametrize(("change", "expected"), PROBLEMS)
def test_problems_name_file_and_line(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in YAML
    problems = _problems(YAML.replace(old, new, 1))
    assert any(p.startswith(f"rules.yaml:{expected}") for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    source = YAML.replace("type: regex", "type: nope").replace("block: [bad.example]", "block: [localhost]")
    problems = _problems(source)
    assert len(problems) == 1  # rule-level problems stop before compiling
    source = YAML.replace("pattern: 'wx", "pattern: '(a)\\1 wx").replace(
        "block: [bad.example]", "block: [localhost]"
    )
    problems = _problems(source)
    assert [p.split(":")[1] for p in problems] == ["13", "20"]


def test_toml_problems_have_lines_too() -> None:
    problems = _problems(TOML.replace("pattern = 'wx", "pattern = '(a)\\1 wx"), "rules.toml")
    assert problems[0].startswith("rules.toml:16: rule 'handles': RE2 cannot run pattern")
    problems = _problems(TOML.replace('action = "flag"', 'action = "nuke"'), "rules.toml")
    assert problems[0].startswith("rules.toml:15: rule 'handles': action: Input should be")
    assert _problems("[rulesets\n", "rules.toml")[0].startswith("rules.toml:1: invalid TOML")


def test_include_cycles_are_reported() -> None:
    source = YAML.replace("  default:\n    description", "  default:\n    include: [strict]\n    description")
    assert any("include cycle" in p for p in _problems(source))


def test_disabled_rules_are_checked_but_not_run() -> None:
    source = YAML.replace("        action: flag\n", "        action: flag\n        enabled: false\n")
    assert [r.id for r in load_text(source).get("default").rules] == ["spam"]
    bad = source.replace("pattern: 'wx", "patern: 'wx")
    assert _problems(bad)


def test_word_and_domain_lists_are_read_relative_to_the_rule_file(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "words.txt").write_text(
        "# spam words\nbuy followers\n\n代开发票\n", encoding="utf-8"
    )
    (tmp_path / "lists" / "domains.txt").write_text("bad.example\n", encoding="utf-8")
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rulesets:\n  default:\n    rules:\n"
        "      - {id: w, type: keywords, action: recall, words_file: lists/words.txt}\n"
        "      - {id: d, type: links, action: recall, block_file: [lists/domains.txt]}\n",
        encoding="utf-8",
    )
    book = load_file(path)
    found = scan(book.get("default"), msg(text("buy followers 代开发票 bad.example")))
    assert sorted(m.normalized for m in found) == ["bad.example", "buy followers", "代开发票"]
    assert book.sources == (path, tmp_path / "lists" / "domains.txt", tmp_path / "lists" / "words.txt")
    before = book.version
    (tmp_path / "lists" / "words.txt").write_text("other\n", encoding="utf-8")
    assert load_file(path).version != before


def test_a_missing_list_file_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    rule = "      - id: w\n        type: keywords\n        action: recall\n        words_file: missing.txt\n"
    path.write_text("rulesets:\n  default:\n    rules:\n" + rule, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_file(path)
    assert str(caught.value).startswith(f"{path}:7: rule 'w': cannot read list file 'missing.txt'")


def test_unreadable_or_empty_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_file(tmp_path / "nope.yaml")
    with pytest.raises(RulesError, match="expected a mapping with 'rulesets'"):
        load_text("")
    (tmp_path / "latin1.yaml").write_bytes(b"rulesets: {\xe9: 1}")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_file(tmp_path / "latin1.yaml")


def test_yaml_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 8)}]" for n in range(1, 9)]
    with pytest.raises(RulesError, match="too large"):
        load_text("\n".join(lines))


def test_the_schema_file_is_generated_from_the_models() -> None:
    # If this fails, run: python -m rules.schema --write
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render()


def test_the_schema_describes_every_builtin_rule_type() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    branches = schema["$defs"]["Rule"]["allOf"]
    types = {b["if"]["properties"]["type"]["const"] for b in branches}
    assert types == {"keywords", "regex", "links", "custom", "element", "flood", "qr", "image_hash"}
    assert schema["$defs"]["Rule"]["required"] == ["id", "type", "action"]
    assert set(schema["$defs"]["KeywordsParamsRule"]["properties"]) >= {"words", "allow", "whole_word", "id"}


def test_the_example_rule_file_validates_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def test_the_example_rule_file_loads_and_catches_the_demo_spam() -> None:
    book = load_file(DEFAULT_RULES_PATH)
    assert {"default", "strict"} <= set(book.rulesets)
    default = book.get("default")
    assert {r.type for r in default.rules} == {
        "keywords",
        "regex",
        "links",
        "qr",
        "image_hash",
        "custom",
        "element",
        "flood",
    }
    assert {r.action for r in default.rules} == {"recall", "flag", "wipe"}
    found = scan(
        default,
        msg(text("ＦＲＥＥ crypto! buy followers 赌 博 代开发票 see scam-example[.]com, bad.example")),
    )
    expected = {"free crypto", "buy followers", "赌博", "代开发票", "scam-example.com", "bad.example"}
    assert {m.normalized for m in found} >= expected


_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "bad.example", "^"])
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)
_PARAMS = st.sampled_from(
    [
        "words",
        "pattern",
        "patterns",
        "block",
        "allow",
        "path",
        "equals",
        "keywords",
        "count",
        "seconds",
        "elements",
        "fields",
        "file_extensions",
        "urls",
        "uuids",
        "face_indexes",
        "location_keywords",
        "similarity",
        "min_length",
        "whole_word",
        "normalize",
        "x",
    ]
)
_TYPES = st.sampled_from(["keywords", "regex", "links", "custom", "element", "flood", "nope"])


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(_TYPES, st.dictionaries(_PARAMS, _VALUES, max_size=4)), max_size=3))
def test_any_malformed_rule_file_is_a_rules_error_never_a_crash(
    rules: list[tuple[str, dict[str, object]]],
) -> None:
    items = [{"id": f"r{n}", "type": t, "action": "flag", **params} for n, (t, params) in enumerate(rules)]
    source = json.dumps({"rulesets": {"default": {"rules": items}}})
    try:
        book = load_text(source)
    except RulesError as exc:
        problems = exc.problems
    else:
        problems = ()
        scan(book.get("default"), msg(text("bad.example x a.b")))
    assert all(str(p).startswith("<string>") for p in problems)
