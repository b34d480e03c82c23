"""``custom``: TIMCustomElem Data / Desc / Ext, as JSON picked by a path or as raw text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rules import RulesError
from rules.types.custom import extract, parse_path
from tests.rules.helpers import elem, forward, msg, only, rule, ruleset, scan, text


def custom(data: object = None, **fields: str) -> dict[str, object]:
    """A TIMCustomElem; ``data`` is JSON-encoded unless it is a string."""
    if data is not None:
        fields["Data"] = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return elem("TIMCustomElem", **fields)


def test_path_picks_a_value_out_of_json() -> None:
    rs = ruleset(rule("custom", "gift", path="gift.name", equals=["rocket"]))
    found = only(scan(rs, msg(custom({"gift": {"name": "ROCKET", "count": 3}}))))
    assert (found.rule_id, found.rule_type) == ("gift", "custom")
    assert (found.element_path, found.evidence, found.normalized) == (
        "MsgBody[0].MsgContent.Data#/gift/name",
        "ROCKET",
        "rocket",
    )


@pytest.mark.parametrize(
    ("path", "tokens"),
    [("a", ["a"]), ("a.b", ["a", "b"]), ("a[2].b", ["a", 2, "b"]), ("items[*].text", ["items", None, "text"]),
     ("*.title", [None, "title"]), ("[0]", [0])],
)  # fmt: skip
def test_paths_parse(path: str, tokens: list[object]) -> None:
    assert parse_path(path) == tokens


@pytest.mark.parametrize("path", ["", ".a", "a..b", "a[x]", "a[", "a]"])
def test_bad_paths_are_rejected(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        parse_path(path)


def test_wildcards_reach_every_item() -> None:
    doc = {"items": [{"text": "a"}, {"text": "b"}, {"other": "c"}], "x": {"title": "t"}}
    assert list(extract(doc, parse_path("items[*].text"))) == [("/items/0/text", "a"), ("/items/1/text", "b")]
    assert list(extract(doc, parse_path("*.title"))) == [("/x/title", "t")]
    assert list(extract(doc, parse_path("items[5].text"))) == []


def test_equals_compares_numbers_and_booleans_by_their_json_text() -> None:
    rs = ruleset(
        rule("custom", path="level", equals=[99, True]), rule("custom", "flagged", path="vip", equals=[True])
    )
    found = scan(rs, msg(custom({"level": 99, "vip": True})))
    assert sorted((m.rule_id, m.normalized) for m in found) == [("custom-rule", "99"), ("flagged", "true")]


def test_keywords_in_a_json_value_with_normalization() -> None:
    rs = ruleset(rule("custom", path="card.text", keywords=["free crypto", "代开发票"]))
    found = scan(
        rs,
        msg(custom({"card": {"text": "ＦＲＥＥ crypto!", "title": "free crypto"}})),
        msg(custom({"card": {"text": "代.开发票"}})),
    )
    assert [(m.element_path, m.evidence) for m in found] == [
        ("MsgBody[0].MsgContent.Data#/card/text", "ＦＲＥＥ crypto"),
        ("MsgBody[0].MsgContent.Data#/card/text", "代.开发票"),
    ]


def test_pattern_in_a_json_value() -> None:
    rs = ruleset(rule("custom", path="contact", pattern=r"qq\s*\d{5,}"))
    assert only(scan(rs, msg(custom({"contact": "加ＱＱ 123456"})))).evidence == "ＱＱ 123456"


def test_without_path_the_raw_text_of_data_desc_and_ext_is_matched() -> None:
    rs = ruleset(rule("custom", keywords=["赌博"]))
    found = scan(rs, msg(custom("赌博", Desc="去赌博", Ext="x"), custom(Ext="网上赌博")))
    assert [m.element_path for m in found] == [
        "MsgBody[0].MsgContent.Data",
        "MsgBody[0].MsgContent.Desc",
        "MsgBody[1].MsgContent.Ext",
    ]


def test_fields_narrow_the_custom_fields() -> None:
    rs = ruleset(rule("custom", keywords=["赌博"], fields=["Ext"]))
    assert [m.element_path for m in scan(rs, msg(custom("赌博", Ext="赌博")))] == [
        "MsgBody[0].MsgContent.Ext"
    ]


def test_a_path_on_text_that_is_not_json_matches_nothing() -> None:
    rs = ruleset(rule("custom", path="a", equals=["x"]))
    assert scan(rs, msg(custom("a=x"), custom("[1, 2"), custom('{"a": "y"}'))) == []


def test_custom_elements_inside_forwarded_messages() -> None:
    rs = ruleset(rule("custom", path="type", equals=["red_packet"]))
    message = msg(forward([text("hi")], [forward([custom({"type": "red_packet"})])]))
    assert only(scan(rs, message)).element_path == (
        "MsgBody[0].MsgContent.MsgList[1].MsgBody[0].MsgContent.MsgList[0].MsgBody[0].MsgContent.Data#/type"
    )


def test_custom_rules_ignore_other_elements() -> None:
    rs = ruleset(rule("custom", keywords=["赌博"]))
    assert scan(rs, msg(text("赌博"), elem("TIMFaceElem", Index=1, Data="赌博"))) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"path": "a"}, "give equals, keywords or pattern"),
        ({"path": "a..b", "equals": ["x"]}, "cannot read path"),
        ({"pattern": "(a)\\1"}, "RE2 cannot run pattern"),
        ({"keywords": ["x"], "elements": ["TIMTextElem"]}, "custom rules only look at TIMCustomElem"),
        ({"keywords": ["x"], "fields": ["Text"]}, "TIMCustomElem has no field Text"),
    ],
)
def test_invalid_custom_rules_are_rejected(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesError, match=message):
        ruleset(rule("custom", **params))


def test_hostile_payloads_do_not_break_the_scan() -> None:
    rs = ruleset(rule("custom", path="*", equals=["x"]), rule("keywords", words=["x"]))
    deep = "[" * 100_000 + "]" * 100_000
    escaped = '{"a": "' + "\\u0078" * 10_000 + '"}'
    huge = '{"a": 1e999999}'
    assert scan(rs, msg(custom(deep), custom(escaped), custom(huge))) == []
