"""Traditional Chinese is folded to Simplified wherever rules compare words: every rule type that does."""

from __future__ import annotations

import json

from tests.rules.helpers import elem, msg, only, rule, ruleset, scan, text

T0 = 1_700_000_000


def test_custom_keywords_match_either_script() -> None:
    rs = ruleset(rule("custom", "cards", path="card.text", keywords=["代开发票"]))
    cards = [
        msg(elem("TIMCustomElem", Data=json.dumps({"card": {"text": value}}, ensure_ascii=False)), key=value)
        for value in ("专业代開發票", "專業代开发票", "开发票据")
    ]
    assert [(m.msg_key, m.evidence, m.normalized) for m in scan(rs, *cards)] == [
        ("专业代開發票", "代開發票", "代开发票"),
        ("專業代开发票", "代开发票", "代开发票"),
    ]


def test_location_keywords_match_either_script() -> None:
    rs = ruleset(rule("element", location_keywords=["賭場"]))
    found = only(scan(rs, msg(elem("TIMLocationElem", Desc="澳门赌场", Latitude=1.0, Longitude=2.0))))
    assert (found.evidence, found.normalized) == ("赌场", "赌场")


def test_the_same_message_in_either_script_counts_towards_a_flood() -> None:
    rs = ruleset(rule("flood", count=3, seconds=60))
    values = ["网络赌场注册送彩金", "網絡賭場註冊送彩金", "网络賭場注冊送彩金"]
    messages = [msg(text(v), key=f"m{n}", ts=T0 + n) for n, v in enumerate(values)]
    assert sorted(m.msg_key for m in scan(rs, *messages)) == ["m0", "m1", "m2"]


def test_regexes_see_the_script_as_written() -> None:
    rs = ruleset(rule("regex", pattern="赌场"))
    assert [m.evidence for m in scan(rs, msg(text("网络赌场")), msg(text("網絡賭場")))] == ["赌场"]
