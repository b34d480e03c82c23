"""Builders of messages in the Chat API's shape, and a one-call way to run rules over them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import strategies as st

from rules import Match, RuleSet, load_text
from worker.tim.models import ConversationKind, Message

_keys = itertools.count(1)

# Text that exercises every branch: ASCII with controls, CJK, full-width, invisibles, marks, astral, Cherokee.
_TRICKY_CHARACTERS = st.sampled_from(
    list("aZ09 .,-_!\t\n\x00\x01\x7f")
    + list("赌博代开发票六合彩。，！？、～《》")
    + list("ＡＢｆｒｅｅ．：")
    + list("\u200b\u200d\u2060\ufeff\u00ad\u202e\u3164\ufe0f")
    + list("éÉёЁаеорсΑΣσςİßﬁǅ\u0301\u0308")
    + list("𝐟𝐫🔥😀\U000e0041\U0010fffd")
    + list("ᏣꭰᎠ⼤\uf9d1㎏①")
)
#: Hypothesis text for normalization properties.
TRICKY_TEXT = st.text(_TRICKY_CHARACTERS, max_size=40) | st.text(max_size=40)


def elem(kind: str, **content: Any) -> dict[str, Any]:
    """One ``MsgBody`` element."""
    return {"MsgType": kind, "MsgContent": content}


def text(value: str) -> dict[str, Any]:
    """A ``TIMTextElem``."""
    return elem("TIMTextElem", Text=value)


def msg(*body: dict[str, Any], key: str | None = None, sender: str = "suspect", ts: int = 1_700_000_000,
        ccd: str = "") -> Message:  # fmt: skip
    """A message holding these elements."""
    return Message(
        kind=ConversationKind.C2C,
        msg_key=key or f"key-{next(_keys)}",
        from_account=sender,
        timestamp=ts,
        seq=1,
        body=tuple(body),
        cloud_custom_data=ccd,
    )


def forward(*items: list[dict[str, Any]], title: str = "Chat history", **extra: Any) -> dict[str, Any]:
    """A ``TIMRelayElem`` forwarding messages with these bodies."""
    msg_list = [{"From_Account": "someone", "MsgSeq": n, "MsgBody": body} for n, body in enumerate(items)]
    return elem("TIMRelayElem", Title=title, MsgNum=len(items), MsgList=msg_list, **extra)


def rule(kind: str, rule_id: str | None = None, action: str = "recall", **params: Any) -> dict[str, Any]:
    """One rule, as a rule file would hold it."""
    return {"id": rule_id or f"{kind}-rule", "type": kind, "action": action, **params}


def ruleset(*rules: dict[str, Any], name: str = "default") -> RuleSet:
    """A compiled rule set of these rules (written out as JSON, which YAML reads)."""
    return load_text(json.dumps({"rulesets": {name: {"rules": list(rules)}}}, ensure_ascii=False)).get(name)


def scan(rules: RuleSet | dict[str, Any], *messages: Message) -> list[Match]:
    """All matches of ``rules`` (a rule set, or one rule) over ``messages`` (one batch, then finish)."""
    rs = ruleset(rules) if isinstance(rules, dict) else rules
    scanner = rs.scanner()
    return [*scanner.feed_many(messages), *scanner.finish()]


def only(matches: Iterable[Match]) -> Match:
    """The single match; fails listing them otherwise."""
    found = list(matches)
    assert len(found) == 1, found
    return found[0]


MakeMessage = Callable[[str], Message]


def text_field_cases() -> list[tuple[str, MakeMessage]]:
    """``(element_path, make(text) -> Message)`` for every text-bearing field of every element type."""
    cases: list[tuple[str, MakeMessage]] = [
        ("MsgBody[0].MsgContent.Text", lambda t: msg(text(t))),
        ("MsgBody[1].MsgContent.Text", lambda t: msg(text("hello"), text(t))),
        (
            "MsgBody[0].MsgContent.Desc",
            lambda t: msg(elem("TIMLocationElem", Desc=t, Latitude=1.0, Longitude=2.0)),
        ),
        ("MsgBody[0].MsgContent.Data", lambda t: msg(elem("TIMFaceElem", Index=1, Data=t))),
        ("MsgBody[0].MsgContent.Data", lambda t: msg(elem("TIMCustomElem", Data=t, Desc="d", Ext="e"))),
        ("MsgBody[0].MsgContent.Desc", lambda t: msg(elem("TIMCustomElem", Data="{}", Desc=t))),
        ("MsgBody[0].MsgContent.Ext", lambda t: msg(elem("TIMCustomElem", Data="{}", Ext=t))),
        (
            "MsgBody[1].MsgContent.FileName",
            lambda t: msg(text("see file"), elem("TIMFileElem", FileName=t, Url="u")),
        ),
        ("MsgBody[0].MsgContent.Title", lambda t: msg(forward([text("hi")], title=t))),
        (
            "MsgBody[0].MsgContent.AbstractList[1]",
            lambda t: msg(forward([text("hi")], AbstractList=["a: hi", t])),
        ),
        ("MsgBody[0].MsgContent.CompatibleText", lambda t: msg(forward([text("hi")], CompatibleText=t))),
        ("MsgBody[0].MsgContent.MsgList[0].MsgBody[0].MsgContent.Text", lambda t: msg(forward([text(t)]))),
        (
            "MsgBody[0].MsgContent.MsgList[1].MsgBody[0].MsgContent.MsgList[0].MsgBody[1].MsgContent.Text",
            lambda t: msg(forward([text("first")], [forward([text("inner"), text(t)])])),
        ),
        ("CloudCustomData", lambda t: msg(text("hello"), ccd=t)),
        (
            "MsgBody[0].MsgContent.MsgList[0].CloudCustomData",
            lambda t: msg(
                elem("TIMRelayElem", Title="x", MsgList=[{"MsgBody": [text("hi")], "CloudCustomData": t}])
            ),
        ),
    ]
    return cases
