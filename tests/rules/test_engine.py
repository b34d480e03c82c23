"""Scanners, matches, and the public API."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rules
from rules import EVIDENCE_LIMIT, Match
from rules.messages import parse_messages
from rules.page import walk
from tests.rules.helpers import elem, forward, msg, only, rule, ruleset, scan, text
from worker.tim.models import Message

RULES = ruleset(
    rule("keywords", "spam", words=["free crypto", "赌博"]),
    rule("regex", "handles", action="flag", pattern=r"wx:\s*\w{5,}"),
    rule("links", "links", block=["bad.example"]),
    rule("custom", "cards", path="card.text", keywords=["free crypto"]),
    rule("element", "exe", file_extensions=["exe"]),
    rule("flood", "flood", action="flag", count=3, seconds=60),
)


def _page() -> list[Message]:
    return [
        msg(text("free crypto"), key="a", ts=1),
        msg(text("hello"), key="b", ts=2),
        msg(
            text("wx: abcdef"), elem("TIMCustomElem", Data='{"card": {"text": "FREE crypto"}}'), key="c", ts=3
        ),
        msg(forward([text("赌 博")], [forward([elem("TIMFileElem", FileName="x.exe")])]), key="d", ts=4),
        msg(text("see bad.example"), key="e", ts=5),
        msg(text("hello"), key="f", ts=6),
        msg(text("hello"), key="g", ts=7),
    ]


def test_feed_many_finds_what_feed_finds() -> None:
    page = _page()
    one = RULES.scanner()
    by_one = [m for message in page for m in one.feed(message)] + one.finish()
    assert sorted(scan(RULES, *page), key=repr) == sorted(by_one, key=repr)
    expected = ["a:spam", "b:flood", "c:cards", "c:handles", "c:spam", "d:exe", "d:spam", "e:links"]
    assert sorted(f"{m.msg_key}:{m.rule_id}" for m in by_one) == [*expected, "f:flood", "g:flood"]


def test_scan_feeds_pages_then_finishes() -> None:
    page = _page()
    assert sorted(RULES.scanner().scan(page, page=2), key=repr) == sorted(scan(RULES, *page), key=repr)


def test_match_to_dict_is_json_ready() -> None:
    found = only(scan(RULES, msg(text("free crypto"), key="k")))
    assert found.to_dict() == {
        "msg_key": "k",
        "rule_id": "spam",
        "rule_type": "keywords",
        "action": "recall",
        "element_path": "MsgBody[0].MsgContent.Text",
        "evidence": "free crypto",
        "normalized": "free crypto",
    }


def test_evidence_is_bounded() -> None:
    long_domain = "a" * 300 + ".bad.example/" + "p" * 500
    found = only(scan(RULES, msg(text(f"x https://{long_domain} y"))))
    assert len(found.evidence) == EVIDENCE_LIMIT
    assert len(found.normalized) <= EVIDENCE_LIMIT
    flood = scan(RULES, *(msg(text("spam " * 200), ts=n) for n in range(3)))
    assert [(len(m.evidence), m.evidence[-1], len(m.normalized)) for m in flood] == [
        (EVIDENCE_LIMIT, "…", EVIDENCE_LIMIT)
    ] * 3
    match = Match("k", "r", "t", "flag", "p", "e" * 1000, "n")
    assert len(match.evidence) == 1000  # Match itself does not cut: rules build matches with rule.match()


def test_one_rule_set_scanned_from_several_threads() -> None:
    page = _page()
    expected = sorted(scan(RULES, *page), key=repr)
    results: list[list[Match]] = []

    def work() -> None:
        for _ in range(20):
            results.append(sorted(scan(RULES, *page), key=repr))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    assert all(r == expected for r in results)


def test_empty_pages_and_messages() -> None:
    scanner = RULES.scanner()
    assert scanner.feed_many([]) == []
    assert scanner.feed(msg()) == []
    assert scanner.finish() == []


def test_public_api_names() -> None:
    names = (
        "DEFAULT_RULES_PATH Match RuleBook RuleSet Scanner RuleStore RulesError load_file load_text RuleType"
    )
    assert set(rules.__all__) >= set(names.split())
    assert rules.DEFAULT_RULES_PATH.is_file()


def test_messages_in_the_apis_shapes() -> None:
    oa_reply = {
        "IsFinished": 1,
        "RspMsgList": [{"MsgKey": "o1", "MsgSeq": 3, "IsPlaceMsg": 2, "MsgBody": []}],
    }
    item = {"MsgKey": "r1", "From_Account": "a", "To_Account": "b", "MsgTimeStamp": 5, "MsgFlagBits": 8}
    roam = {"Complete": 1, "MsgList": [{**item, "CloudCustomData": "x", "MsgBody": [{"MsgType": "T"}]}]}
    (oa,) = parse_messages(json.dumps(oa_reply))
    assert (oa.msg_key, oa.seq, oa.state.value, oa.kind.value) == ("o1", 3, "recalled", "official_account")
    (r,) = parse_messages(json.dumps(roam))
    assert (r.msg_key, r.from_account, r.to_account, r.timestamp, r.state.value, r.cloud_custom_data) == (
        ("r1", "a", "b", 5, "recalled", "x")
    )


def test_rule_sets_say_whether_they_have_window_rules() -> None:
    assert RULES.has_window_rules
    assert not ruleset(rule("keywords", words=["x"])).has_window_rules


MEDIA = [
    (elem("TIMImageElem", UUID="u", ImageInfoArray=[{"Type": 1, "URL": "https://bad.example/i.png"}]), "URL"),
    (elem("TIMSoundElem", Url="https://bad.example/s.amr", UUID="u", Second=1), "Url"),
    (elem("TIMVideoFileElem", VideoUrl="https://bad.example/v.mp4", VideoUUID="u"), "VideoUrl"),
    (elem("TIMVideoFileElem", VideoUrl="x", ThumbUrl="https://bad.example/t.jpg"), "ThumbUrl"),
    (elem("TIMFileElem", Url="https://bad.example/f.zip", FileName="f.zip"), "Url"),
]


@pytest.mark.parametrize("kind", ["keywords", "regex", "links"])
@pytest.mark.parametrize(("element", "field"), MEDIA)
def test_text_rule_types_read_media_fields_when_named(
    kind: str, element: dict[str, object], field: str
) -> None:
    params: dict[str, dict[str, Any]] = {
        "keywords": {"words": ["bad"]},
        "regex": {"pattern": r"bad\.example"},
        "links": {"block": ["bad.example"]},
    }
    rs = ruleset(rule(kind, **params[kind]), rule(kind, "named", **params[kind], fields=[field]))
    found = scan(rs, msg(element))
    # links rules read media URLs by default too (rules/types/links.py, URL_FIELDS); the others only by name.
    expected = [(f"{kind}-rule", field), ("named", field)] if kind == "links" else [("named", field)]
    assert [(m.rule_id, m.element_path.rsplit(".", 1)[-1]) for m in found] == expected


@pytest.mark.parametrize(
    "element",
    [
        text("hi"),
        elem("TIMCustomElem", Data="{}"),
        elem("TIMFaceElem", Index=1),
        elem("TIMLocationElem", Desc="x", Latitude=1.0, Longitude=2.0),
        elem("TIMImageElem", UUID="u", ImageInfoArray=[]),
        elem("TIMSoundElem", Url="u", UUID="u"),
        elem("TIMVideoFileElem", VideoUrl="u", VideoUUID="u"),
        elem("TIMFileElem", Url="u", FileName="a"),
        forward([text("hi")]),
    ],
    ids=lambda e: e["MsgType"],
)
def test_element_rules_match_every_element_type_by_type(element: dict[str, object]) -> None:
    kind = str(element["MsgType"])
    rs = ruleset(rule("element", elements=[kind]))
    found = scan(rs, msg(text("before"), element))
    assert [m.element_path for m in found] == (
        ["MsgBody[0]", "MsgBody[1]"] if kind == "TIMTextElem" else ["MsgBody[1]"]
    )
    assert {m.evidence for m in found} == {kind}


_CHARS = st.sampled_from(
    list("abcdefrxyz .-_[]()/:@#!?\n")
    + list("赌博代开发票。，！")
    + list("ＦＲＥＥ．\u200b\u202eеоá🔥")
    + [
        "free crypto",
        "bad.example",
        "wx: seller",
        "buy followers",
        "scam-example[.]com",
        "xn--bd-7kc.example",
    ]
)
_TEXTS = st.lists(_CHARS, max_size=12).map("".join)
_ELEMENTS = st.one_of(
    _TEXTS.map(text),
    _TEXTS.map(lambda t: elem("TIMCustomElem", Data=t, Desc=t)),
    _TEXTS.map(lambda t: elem("TIMCustomElem", Data=json.dumps({"card": {"text": t}}))),
    _TEXTS.map(lambda t: elem("TIMFileElem", FileName=t + ".exe", Url="u")),
    _TEXTS.map(lambda t: elem("TIMLocationElem", Desc=t)),
    _TEXTS.map(lambda t: forward([text(t)], [forward([text(t)])], title=t)),
)
DEMO = rules.load_file(rules.DEFAULT_RULES_PATH).get("default")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(_ELEMENTS, min_size=1, max_size=3), _TEXTS), max_size=6))
def test_any_page_scans_the_same_in_pages_and_one_by_one(
    page: list[tuple[list[dict[str, Any]], str]],
) -> None:
    messages = [msg(*body, key=f"m{n}", ts=n, ccd=ccd) for n, (body, ccd) in enumerate(page)]
    one = DEMO.scanner()
    by_one = [m for message in messages for m in one.feed(message)] + one.finish()
    assert sorted(scan(DEMO, *messages), key=repr) == sorted(by_one, key=repr)
    fields = {(m.msg_key, f.path): f.text for m in messages for f in walk(m).fields}
    for match in by_one:
        if match.rule_type in ("keywords", "regex", "links"):
            # Evidence is what the user wrote, found in the field the match names.
            assert match.evidence in fields[(match.msg_key, match.element_path)], match
