"""One-to-one history (admin_getroammsg): the emulator's paging and the client's iterator."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.tim.scripted import ScriptedCaller, roam_page
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.tim.client import TimClient
from worker.tim.errors import TimProtocolError
from worker.tim.history import HistoryStats, iter_c2c_history
from worker.tim.models import MessageState
from worker.tim.replies import parse_roam_page

NOW = int(time.time())
BASE = NOW - 3600
PAGE_CAP = 13 * 1024


async def seed(client: TimClient, count: int, *, size: int = 40, per_second: int = 1) -> list[str]:
    """``count`` messages alternating between user1 and user2, ``per_second`` in each second."""
    await import_accounts(client, ["user1", "user2"])
    keys = []
    for i in range(count):
        sender, receiver = ("user1", "user2") if i % 2 else ("user2", "user1")
        keys.append(
            await import_c2c(
                client,
                sender=sender,
                receiver=receiver,
                timestamp=BASE + i // per_second,
                seq=1000 + i,
                random=i,
                body=[text(f"message {i} " + "x" * size)],
            )
        )
    return keys


def roam_request(operator: str = "user2", peer: str = "user1", **extra: object) -> dict[str, object]:
    return {
        "Operator_Account": operator,
        "Peer_Account": peer,
        "MaxCnt": 100,
        "MinTime": 0,
        "MaxTime": NOW,
        **extra,
    }


async def test_pages_follow_the_documented_sample(client: TimClient) -> None:
    keys = await seed(client, 60, size=600)
    first = await client.call("openim/admin_getroammsg", roam_request())
    page = parse_roam_page(first)
    assert first["Complete"] == 0
    assert first["MsgCnt"] == len(first["MsgList"]) > 1
    assert len(orjson.dumps(first)) <= PAGE_CAP, "a page must stay under the 13 KB response cap"
    # The first page holds the newest messages, listed oldest first; LastMsg* name its oldest.
    assert [m.msg_key for m in page.messages] == keys[-len(page.messages) :]
    assert (first["LastMsgTime"], first["LastMsgKey"]) == (
        page.messages[0].timestamp,
        page.messages[0].msg_key,
    )
    seen = [m.msg_key for m in page.messages]
    request = roam_request(MaxTime=first["LastMsgTime"], LastMsgKey=first["LastMsgKey"])
    while True:
        reply = await client.call("openim/admin_getroammsg", request)
        assert len(orjson.dumps(reply)) <= PAGE_CAP
        batch = [m["MsgKey"] for m in reply["MsgList"]]
        assert batch == sorted(batch, key=lambda k: int(k.split("_")[2]) * 10**6 + int(k.split("_")[0]))
        seen = batch + seen
        if reply["Complete"] == 1:
            break
        request = roam_request(MaxTime=reply["LastMsgTime"], LastMsgKey=reply["LastMsgKey"])
    assert seen == keys


async def test_max_cnt_caps_a_page(client: TimClient) -> None:
    await seed(client, 10)
    reply = await client.call("openim/admin_getroammsg", roam_request(MaxCnt=3))
    assert reply["MsgCnt"] == 3
    assert reply["Complete"] == 0


async def test_many_messages_in_one_second_page_exactly_once(client: TimClient) -> None:
    keys = await seed(client, 90, size=500, per_second=45)
    stats = HistoryStats()
    got = [
        m.msg_key
        async for m in iter_c2c_history(
            client, operator="user1", peer="user2", since=0, until=NOW, stats=stats
        )
    ]
    assert sorted(got) == sorted(keys)
    assert len(got) == len(set(got))
    assert stats.pages > 3
    assert stats.duplicates == 0


async def test_window_bounds_are_inclusive_and_respected(client: TimClient) -> None:
    keys = await seed(client, 20)
    got = [
        m.msg_key
        async for m in iter_c2c_history(
            client, operator="user1", peer="user2", since=BASE + 5, until=BASE + 9
        )
    ]
    assert sorted(got, key=keys.index) == keys[5:10]


async def test_roaming_period_hides_old_messages(emulator: EmulatorThread, client: TimClient) -> None:
    await import_accounts(client, ["user1", "user2"])
    old = await import_c2c(
        client,
        sender="user1",
        receiver="user2",
        timestamp=NOW - 8 * 86400,
        seq=1,
        random=1,
        body=[text("old")],
    )
    new = await import_c2c(
        client,
        sender="user1",
        receiver="user2",
        timestamp=NOW - 6 * 86400,
        seq=2,
        random=2,
        body=[text("new")],
    )
    got = [
        m.msg_key async for m in iter_c2c_history(client, operator="user2", peer="user1", since=0, until=NOW)
    ]
    assert got == [new]
    httpx.post(f"{emulator.url}/_emulator/settings", json={"roaming_days": 30}).raise_for_status()
    got = [
        m.msg_key async for m in iter_c2c_history(client, operator="user2", peer="user1", since=0, until=NOW)
    ]
    assert got == [old, new]


async def test_recalled_messages_are_flagged_8(client: TimClient) -> None:
    keys = await seed(client, 3)
    await client.call(
        "openim/admin_msgwithdraw", {"From_Account": "user1", "To_Account": "user2", "MsgKey": keys[1]}
    )
    for operator, peer in (("user1", "user2"), ("user2", "user1")):
        got = {
            m.msg_key: m
            async for m in iter_c2c_history(client, operator=operator, peer=peer, since=0, until=NOW)
        }
        assert got[keys[1]].flag_bits == 8
        assert got[keys[1]].state is MessageState.RECALLED
        assert got[keys[0]].state is MessageState.NORMAL


async def test_older_field_names_are_accepted(client: TimClient) -> None:
    keys = await seed(client, 2)
    reply = await client.call(
        "openim/admin_getroammsg",
        {"From_Account": "user2", "To_Account": "user1", "MaxCnt": 10, "MinTime": 0, "MaxTime": NOW},
    )
    assert [m["MsgKey"] for m in reply["MsgList"]] == keys


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"Peer_Account": "user1", "MaxCnt": 1, "MinTime": 0, "MaxTime": 1}, 90008),
        (
            {"Operator_Account": "ghost", "Peer_Account": "user1", "MaxCnt": 1, "MinTime": 0, "MaxTime": 1},
            90008,
        ),
        ({"Operator_Account": "user2", "MaxCnt": 1, "MinTime": 0, "MaxTime": 1}, 90003),
        ({"Operator_Account": "user2", "Peer_Account": "user1", "MinTime": 0, "MaxTime": 1}, 90001),
        (
            {
                "Operator_Account": "user2",
                "Peer_Account": "user1",
                "MaxCnt": 1,
                "MinTime": 0,
                "MaxTime": 1,
                "LastMsgKey": "x",
            },
            90001,
        ),
    ],
)
async def test_bad_requests_get_documented_codes(
    client: TimClient, body: dict[str, object], code: int
) -> None:
    await seed(client, 1)
    with pytest.raises(Exception, match=str(code)):
        await client.call("openim/admin_getroammsg", body)


# The iterator's own rules, against scripted replies -----------------------------------------------


async def test_iterator_drops_a_message_repeated_at_a_page_edge() -> None:
    caller = ScriptedCaller(
        [roam_page(["3_3_103", "4_4_104"], 0), roam_page(["1_1_101", "2_2_102", "3_3_103"], 1)]
    )
    stats = HistoryStats()
    got = [
        m.msg_key
        async for m in iter_c2c_history(caller, operator="u2", peer="u1", since=0, until=200, stats=stats)
    ]
    assert got == ["3_3_103", "4_4_104", "1_1_101", "2_2_102"]
    assert stats.duplicates == 1
    assert caller.requests[1]["MaxTime"] == 103
    assert caller.requests[1]["LastMsgKey"] == "3_3_103"


async def test_iterator_refuses_a_reply_that_makes_no_progress() -> None:
    caller = ScriptedCaller([roam_page(["3_3_103"], 0), roam_page(["3_3_103"], 0)])
    with pytest.raises(TimProtocolError, match="no progress"):
        [m async for m in iter_c2c_history(caller, operator="u2", peer="u1", since=0, until=200)]


async def test_iterator_refuses_an_empty_incomplete_page() -> None:
    caller = ScriptedCaller([roam_page([], 0)])
    with pytest.raises(TimProtocolError, match="no progress"):
        [m async for m in iter_c2c_history(caller, operator="u2", peer="u1", since=0, until=200)]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r.pop("Complete"), "Complete is missing"),
        (lambda r: r.update(Complete=3), "Complete is 3"),
        (lambda r: r.update(MsgList={}), "MsgList is a dict"),
        (lambda r: r["MsgList"][0].pop("MsgKey"), r"MsgList\[0\].MsgKey is missing"),
        (lambda r: r["MsgList"][0].update(MsgTimeStamp="1"), r"MsgList\[0\].MsgTimeStamp is a str"),
        (lambda r: r["MsgList"][0].update(MsgBody="text"), r"MsgList\[0\].MsgBody is not a list"),
        (lambda r: r["MsgList"][0].update(MsgFlagBits=True), "MsgFlagBits is a bool"),
    ],
)
def test_malformed_pages_name_the_bad_field(mutate: object, problem: str) -> None:
    reply = roam_page(["1_1_101"], 1)
    mutate(reply)  # type: ignore[operator]
    with pytest.raises(TimProtocolError, match=problem):
        parse_roam_page(reply)
