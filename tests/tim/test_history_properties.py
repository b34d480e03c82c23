"""Property: for random conversations, message sizes and windows, both iterators yield every message of
the window exactly once and nothing outside it (walking the emulator over HTTP)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_client
from worker.emulator.c2c import C2CMessage
from worker.emulator.official import OAMessage, OAState, OfficialAccount
from worker.emulator.server import EmulatorThread
from worker.tim.history import iter_c2c_history, iter_official_account_history
from worker.tim.models import MessageState

NOW = int(time.time())
BASE = NOW - 86400
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Spec:
    second: int
    seq: int
    random: int
    from_a: bool
    size: int
    hidden_for: int  # 0 none, 1 a, 2 b, 3 both


c2c_messages = st.lists(
    st.builds(
        Spec,
        second=st.integers(0, 40),
        seq=st.integers(1, 5),
        random=st.integers(0, 3),
        from_a=st.booleans(),
        size=st.integers(1, 2500),
        hidden_for=st.sampled_from([0, 0, 0, 1, 2, 3]),
    ),
    max_size=80,
    unique_by=lambda s: (s.second, s.seq, s.random),
)


@PROPERTY_SETTINGS
@given(
    specs=c2c_messages,
    window=st.tuples(st.integers(-2, 42), st.integers(-2, 42)),
    operator_is_a=st.booleans(),
    max_cnt=st.integers(1, 30),
    page_bytes=st.sampled_from([1024, 4096, 13 * 1024]),
)
def test_c2c_iterator_yields_the_window_exactly_once(
    emulator: EmulatorThread,
    specs: list[Spec],
    window: tuple[int, int],
    operator_is_a: bool,
    max_cnt: int,
    page_bytes: int,
) -> None:
    emulator.emulator.reset()
    service = emulator.emulator.service
    service.settings.roam_page_bytes = page_bytes
    service.accounts.update({"a": {}, "b": {}})
    conversation = service.c2c.conversation("a", "b")
    for s in specs:
        sender, receiver = ("a", "b") if s.from_a else ("b", "a")
        hidden = {1: {"a"}, 2: {"b"}, 3: {"a", "b"}}.get(s.hidden_for, set())
        body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "z" * s.size}}]
        conversation.add(
            C2CMessage(sender, receiver, s.seq, s.random, BASE + s.second, body, hidden_for=hidden)
        )
    operator, peer = ("a", "b") if operator_is_a else ("b", "a")
    since, until = BASE + min(window), BASE + max(window)
    expected = sorted(
        f"{s.seq}_{s.random}_{BASE + s.second}"
        for s in specs
        if since <= BASE + s.second <= until
        and operator not in {1: {"a"}, 2: {"b"}, 3: {"a", "b"}}.get(s.hidden_for, set())
    )

    async def run() -> list[str]:
        async with make_client(emulator.url) as client:
            return [
                m.msg_key
                async for m in iter_c2c_history(
                    client, operator=operator, peer=peer, since=since, until=until, max_cnt=max_cnt
                )
            ]

    got = asyncio.run(run())
    assert sorted(got) == expected
    assert len(got) == len(set(got))


oa_messages = st.lists(
    st.tuples(
        st.integers(0, 90),
        st.sampled_from([OAState.NORMAL] * 6 + [OAState.HOLE, OAState.RECALLED]),
        st.integers(1, 3000),
    ),
    max_size=70,
)


@PROPERTY_SETTINGS
@given(
    specs=oa_messages,
    window=st.tuples(st.integers(-5, 3000), st.integers(-5, 3000)),
    with_recalled=st.booleans(),
    page_size=st.integers(1, 20),
    page_bytes=st.sampled_from([1024, 4096, 13 * 1024]),
)
def test_official_account_iterator_yields_the_window_exactly_once(
    emulator: EmulatorThread,
    specs: list[tuple[int, OAState, int]],
    window: tuple[int, int],
    with_recalled: bool,
    page_size: int,
    page_bytes: int,
) -> None:
    emulator.emulator.reset()
    service = emulator.emulator.service
    service.settings.oa_page_bytes = page_bytes
    account = OfficialAccount("@TOA#_PROP", "owner", "Prop")
    service.official.accounts[account.user_id] = account
    timestamp = BASE
    expected = []
    since, until = BASE + min(window), BASE + max(window)
    for seq, (gap, state, size) in enumerate(specs, start=1):
        timestamp += gap
        body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "q" * size}}]
        account.messages.append(OAMessage(account.user_id, seq, timestamp, seq, body, state=state))
        if since <= timestamp <= until and (state is not OAState.RECALLED or with_recalled):
            expected.append((f"{seq}_1_{timestamp}", state.name))

    async def run() -> list[tuple[str, str]]:
        async with make_client(emulator.url) as client:
            return [
                (
                    m.msg_key,
                    {
                        MessageState.NORMAL: "NORMAL",
                        MessageState.HOLE: "HOLE",
                        MessageState.RECALLED: "RECALLED",
                    }[m.state],
                )
                async for m in iter_official_account_history(
                    client,
                    account=account.user_id,
                    since=since,
                    until=until,
                    page_size=page_size,
                    with_recalled=with_recalled,
                )
            ]

    got = asyncio.run(run())
    assert sorted(got) == sorted(expected)
    assert len(got) == len(set(got))
