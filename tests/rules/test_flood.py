"""``flood``: the same or near-same content sent N times within T seconds, judged when the scan finishes."""

from __future__ import annotations

import random

from rules.types.flood import bursts, similarity, trigrams
from tests.rules.helpers import elem, msg, rule, ruleset, scan, text

FLOOD = ruleset(rule("flood", "flood", action="flag", count=3, seconds=60))
T0 = 1_700_000_000


def burst(values: list[str], step: int = 10, sender: str = "suspect", prefix: str = "m") -> list:  # type: ignore[type-arg]
    return [msg(text(v), key=f"{prefix}{n}", sender=sender, ts=T0 + n * step) for n, v in enumerate(values)]


def test_n_same_messages_within_t_seconds_are_each_reported() -> None:
    found = scan(FLOOD, *burst(["Buy now!", "buy now", "BUY  NOW!!!"]))
    assert sorted(m.msg_key for m in found) == ["m0", "m1", "m2"]
    assert {(m.rule_id, m.rule_type, m.action, m.normalized) for m in found} == {
        ("flood", "flood", "flag", "buynow")
    }
    assert {m.element_path for m in found} == {"MsgBody[0].MsgContent.Text"}
    assert sorted(m.evidence for m in found) == ["BUY  NOW!!!", "Buy now!", "buy now"]


def test_fewer_messages_or_a_wider_spread_is_not_a_flood() -> None:
    assert scan(FLOOD, *burst(["spam", "spam"])) == []
    assert scan(FLOOD, *burst(["spam", "spam", "spam"], step=31)) == []  # 62 s from first to last
    assert len(scan(FLOOD, *burst(["spam", "spam", "spam"], step=30))) == 3


def test_messages_may_arrive_in_any_order_and_across_pages() -> None:
    messages = burst(["spam"] * 3 + ["hello"] * 2, step=5) + burst(["other"] * 4, step=100, prefix="o")
    random.Random(3).shuffle(messages)
    scanner = FLOOD.scanner()
    assert scanner.feed_many(messages[:4]) == []
    for message in messages[4:]:
        assert scanner.feed(message) == []
    assert sorted(m.msg_key for m in scanner.finish()) == ["m0", "m1", "m2"]


def test_the_same_message_fed_twice_counts_once() -> None:
    messages = burst(["spam", "spam"])
    assert scan(FLOOD, *messages, *messages) == []


def test_counts_are_per_sender() -> None:
    assert (
        scan(FLOOD, *burst(["spam"], sender="a"), *burst(["spam"], sender="b"), *burst(["spam"], sender="c"))
        == []
    )


def test_digits_are_ignored_unless_asked() -> None:
    values = ["win 100 coins", "WIN 250 coins", "win 999 coins!"]
    assert len(scan(FLOOD, *burst(values))) == 3
    strict = ruleset(rule("flood", count=3, seconds=60, ignore_digits=False))
    assert scan(strict, *burst(values)) == []


def test_near_same_messages_with_a_similarity_threshold() -> None:
    values = [
        "cheap followers here visit now",
        "cheap followers here, visit us now",
        "cheap followers HERE visit now!",
    ]
    assert scan(FLOOD, *burst(values)) == []
    near = ruleset(rule("flood", count=3, seconds=60, similarity=0.7))
    assert len(scan(near, *burst(values))) == 3
    assert scan(near, *burst(["cheap followers here", "lunch at noon?", "see you at the gym"])) == []


def test_media_floods_count_by_uuid_and_stickers_by_index() -> None:
    images = [
        msg(elem("TIMImageElem", UUID="same", ImageInfoArray=[]), key=f"i{n}", ts=T0 + n) for n in range(3)
    ]
    stickers = [msg(elem("TIMFaceElem", Index=7), key=f"f{n}", ts=T0 + n) for n in range(3)]
    different = [
        msg(elem("TIMImageElem", UUID=f"u{n}", ImageInfoArray=[]), key=f"d{n}", ts=T0 + n) for n in range(3)
    ]
    found = scan(FLOOD, *images, *stickers, *different)
    assert sorted(m.msg_key for m in found) == ["f0", "f1", "f2", "i0", "i1", "i2"]
    assert {m.evidence for m in found} == {"TIMImageElem", "TIMFaceElem"}


def test_min_length_ignores_short_chatter() -> None:
    rs = ruleset(rule("flood", count=3, seconds=60, min_length=4))
    assert scan(rs, *burst(["ok", "ok", "ok"])) == []
    assert len(scan(rs, *burst(["okay then"] * 3))) == 3


def test_bursts_and_similarity_helpers() -> None:
    assert bursts([0, 10, 20, 100, 105, 110, 115], 3, 15) == {3, 4, 5, 6}
    assert bursts([0, 0, 0], 3, 1) == {0, 1, 2}
    assert similarity(trigrams("abcdef"), trigrams("abcdef")) == 1.0
    assert similarity(trigrams("abcdef"), trigrams("uvwxyz")) == 0.0
