"""Property: against an in-memory model of group_msg_get_simple, the group iterator yields every message of
the window exactly once, nothing outside it, newest first, in as many calls as the model's pages imply.

The model keeps one log per community topic (seqs 1..N each); messages have random sizes so that a byte cap
cuts pages short (IsFinished 0), placeholders (holes, recalled) with or without a time, system messages, an
expired prefix (IsFinished 2 once a page reaches it), and new messages appended after any call.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.tim.history import GROUP_HISTORY_PATH, GROUP_MAX_PAGE, HistoryStats, iter_group_history
from worker.tim.models import MessageState

GROUP = "@TGS#_PROP"
TOPIC = "@TGS#_PROP@TOPIC#_t1"
BASE = 1_700_000_000
STATES = {0: MessageState.NORMAL, 1: MessageState.HOLE, 2: MessageState.RECALLED}


@dataclass(frozen=True)
class Stored:
    seq: int
    timestamp: int
    size: int
    place: int  # IsPlaceMsg
    system: bool
    dated: bool  # whether the reply carries MsgTimeStamp (only placeholders may lack it)
    topic: str | None

    @property
    def text(self) -> str:
        return f"{self.topic}:{self.seq}"

    def reply_item(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "From_Account": "" if self.system else f"user{self.seq % 3}",
            "IsPlaceMsg": self.place,
            "IsSystemMsg": int(self.system),
            "MsgBody": []
            if self.place == 1
            else [{"MsgType": "TIMTextElem", "MsgContent": {"Text": self.text}}],
            "MsgPriority": 2,
            "MsgRandom": self.seq * 7,
            "MsgSeq": self.seq,
        }
        if self.dated:
            entry["MsgTimeStamp"] = self.timestamp
        return entry


@dataclass
class Call:
    req_msg_seq: int | None
    seqs: list[int]
    is_finished: int


@dataclass
class GroupModel:
    """group_msg_get_simple over per-topic logs. ``page_bytes`` None: no reply is ever cut by size."""

    logs: dict[str | None, list[Stored]]
    expired: dict[str | None, int]  # seqs at or below this have expired
    page_bytes: int | None
    arrivals: list[int]  # messages appended to every log after call i
    newest_first: bool
    calls: list[Call] = field(default_factory=list)

    async def call(self, path: str, body: Any) -> dict[str, Any]:
        assert path == GROUP_HISTORY_PATH
        assert body["GroupId"] == GROUP
        assert body["WithRecalledMsg"] == 1
        topic = body.get("TopicId")
        log, expired = self.logs[topic], self.expired[topic]
        number = body["ReqMsgNumber"]
        assert 1 <= number <= GROUP_MAX_PAGE
        top = body.get("ReqMsgSeq", len(log))
        assert top <= len(log)
        items: list[Stored] = []
        used, finished = 0, 1
        for seq in range(top, max(1, top - number + 1) - 1, -1):
            if seq <= expired:
                finished = 2
                break
            message = log[seq - 1]
            if self.page_bytes is not None and items and used + message.size > self.page_bytes:
                finished = 0
                break
            items.append(message)
            used += message.size
        self.calls.append(Call(body.get("ReqMsgSeq"), [m.seq for m in items], finished))
        for _ in range(self.arrivals[len(self.calls) - 1] if len(self.calls) <= len(self.arrivals) else 0):
            for name, other in self.logs.items():
                last = other[-1].timestamp if other else BASE
                other.append(Stored(len(other) + 1, last + 1, 10, 0, False, True, name))
        listed = items if self.newest_first else items[::-1]
        return {
            "ActionStatus": "OK",
            "ErrorCode": 0,
            "ErrorInfo": "",
            "GroupId": GROUP,
            "IsFinished": finished,
            "RspMsgList": [m.reply_item() for m in listed],
        }


def expected_messages(log: list[Stored], expired: int, since: int, until: int) -> list[Stored]:
    """The window as the iterator documents it, over what the service can return (not expired)."""
    live = [m for m in log if m.seq > expired]
    dated = [m for m in live if m.dated]
    chosen = []
    for m in live:
        if m.dated:
            if since <= m.timestamp <= until:
                chosen.append(m)
            continue
        above = [d.timestamp for d in dated if d.seq > m.seq]
        below = [d.timestamp for d in dated if d.seq < m.seq]
        # Sent no later than the nearest dated message above it, no earlier than the nearest one below.
        if above and min(above) < since:
            continue
        if below and max(below) > until:
            continue
        chosen.append(m)
    return chosen


def ranges_calls(log: list[Stored], expired: int, since: int, page: int) -> int:
    """Calls implied when no reply is cut by size: ``page``-seq ranges from the newest seq down, up to and
    including the first that reaches the expired prefix or seq 1, or whose dated messages are all older
    than ``since``."""
    newest = len(log)
    k = 0
    while True:
        high, low = newest - page * k, max(1, newest - page * (k + 1) + 1)
        times = [m.timestamp for m in log[low - 1 : high] if m.seq > expired and m.dated]
        if low <= max(expired, 1) or (times and max(times) < since):
            return k + 1
        k += 1


def cut_calls(log: list[Stored], expired: int, since: int, page: int, page_bytes: int) -> int:
    """Calls implied when the byte cap may cut replies: each page takes seqs from its top while they fit
    (at least one), and the next page starts right below the last seq taken."""
    top, calls = len(log), 0
    while True:
        calls += 1
        taken: list[Stored] = []
        for seq in range(top, max(1, top - page + 1) - 1, -1):
            if seq <= expired:
                return calls
            if taken and sum(m.size for m in taken) + log[seq - 1].size > page_bytes:
                break
            taken.append(log[seq - 1])
        times = [m.timestamp for m in taken if m.dated]
        if not taken or (times and max(times) < since):
            return calls
        top = taken[-1].seq - 1
        if top < 1:
            return calls


@dataclass(frozen=True)
class LogSpec:
    """The shape of one log; its messages are drawn from ``seed`` (drawing each one through hypothesis
    makes an example cost ~100 ms and the suite slow)."""

    length: int
    seed: int
    max_gap: int  # seconds between consecutive messages, at most
    placeholders: float  # share of holes and recalled messages
    undated: float  # share of placeholders without a time
    systems: float  # share of system messages
    max_size: int  # bytes of a message body, at most


log_specs = st.builds(
    LogSpec,
    length=st.integers(0, 120),
    seed=st.integers(0, 2**32),
    max_gap=st.sampled_from([0, 1, 5, 40]),
    placeholders=st.sampled_from([0.0, 0.15, 0.5, 1.0]),
    undated=st.sampled_from([0.0, 0.5, 1.0]),
    systems=st.sampled_from([0.0, 0.2]),
    max_size=st.sampled_from([50, 3000]),
)


def build_log(spec: LogSpec, topic: str | None) -> list[Stored]:
    rng = random.Random(spec.seed)
    log, timestamp = [], BASE
    for seq in range(1, spec.length + 1):
        timestamp += rng.randint(0, spec.max_gap)
        place = rng.choice([1, 2]) if rng.random() < spec.placeholders else 0
        dated = place == 0 or rng.random() >= spec.undated
        system = rng.random() < spec.systems
        log.append(Stored(seq, timestamp, rng.randint(1, spec.max_size), place, system, dated, topic))
    return log


@settings(max_examples=100, deadline=None)
@given(
    main=log_specs,
    topic_log=log_specs,
    walk_topic=st.booleans(),
    expired=st.one_of(st.just(0), st.integers(0, 130)),
    window=st.tuples(st.integers(-5, 2500), st.integers(-5, 2500)),
    page_size=st.one_of(st.just(GROUP_MAX_PAGE), st.integers(1, GROUP_MAX_PAGE)),
    page_bytes=st.sampled_from([None, None, 1024, 4096, 13 * 1024]),
    arrivals=st.lists(st.integers(0, 3), max_size=8),
    newest_first=st.booleans(),
)
def test_group_iterator_yields_the_window_exactly_once(
    main: LogSpec,
    topic_log: LogSpec,
    walk_topic: bool,
    expired: int,
    window: tuple[int, int],
    page_size: int,
    page_bytes: int | None,
    arrivals: list[int],
    newest_first: bool,
) -> None:
    topic = TOPIC if walk_topic else None
    model = GroupModel(
        logs={None: build_log(main, None), TOPIC: build_log(topic_log, TOPIC)},
        expired={None: expired, TOPIC: 0} if topic is None else {None: 0, TOPIC: expired},
        page_bytes=page_bytes,
        arrivals=arrivals,
        newest_first=newest_first,
    )
    log = list(model.logs[topic])  # as it stands at the first call
    since, until = BASE + min(window), BASE + max(window)
    stats = HistoryStats()

    async def run() -> list[tuple[int, MessageState, bool, str, int]]:
        return [
            (m.seq, m.state, m.system, m.body[0]["MsgContent"]["Text"] if m.body else "", m.timestamp)
            async for m in iter_group_history(
                model,
                group_id=GROUP,
                since=since,
                until=until,
                topic_id=topic,
                page_size=page_size,
                stats=stats,
            )
        ]

    got = asyncio.run(run())
    want = [
        (m.seq, STATES[m.place], m.system, "" if m.place == 1 else m.text, m.timestamp if m.dated else 0)
        for m in reversed(expected_messages(log, expired, since, until))
    ]
    assert got == want, "the window, each message once, newest first, from the walked topic only"

    page = min(page_size, GROUP_MAX_PAGE)
    if page_bytes is None:
        assert len(model.calls) == ranges_calls(log, expired, since, page)
    else:
        assert len(model.calls) == cut_calls(log, expired, since, page, page_bytes)
    assert model.calls[0].req_msg_seq is None
    for before, after in zip(model.calls, model.calls[1:], strict=False):
        assert after.req_msg_seq == min(before.seqs) - 1, "pages tile the history downward, no gap or overlap"
    returned = sum(len(c.seqs) for c in model.calls)
    assert (stats.pages, stats.messages) == (len(model.calls), len(got))
    assert stats.messages + stats.outside_window + stats.duplicates == returned
    assert stats.duplicates == 0
