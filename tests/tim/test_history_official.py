"""Official-account history (official_account_msg_get_simple): emulator paging and the client's iterator."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.tim.scripted import ScriptedCaller
from worker.emulator.seed import create_official_account, import_accounts, send_official_account, text
from worker.emulator.server import EmulatorThread
from worker.tim.client import TimClient
from worker.tim.errors import TimProtocolError
from worker.tim.history import HistoryStats, iter_official_account_history
from worker.tim.models import MessageState
from worker.tim.replies import parse_official_account_page

GET = "official_account_open_http_svc/official_account_msg_get_simple"
START = int(time.time()) - 5 * 86400
STEP = 60


async def seed(
    emulator: EmulatorThread, client: TimClient, count: int, *, start: int = START, size: int = 20
) -> tuple[str, list[str]]:
    """An official account with ``count`` messages sent ``STEP`` seconds apart from ``start``."""
    await import_accounts(client, ["owner", "reader"])
    account = await create_official_account(client, owner="owner", name="News")
    keys = []
    clock = emulator.emulator.clock
    clock.set(start)
    for i in range(count):
        keys.append(
            await send_official_account(
                client, account=account, random=i, body=[text(f"post {i} " + "y" * size)]
            )
        )
        clock.advance(STEP)
    clock.reset()
    return account, keys


async def test_pages_are_newest_first_at_most_20_and_continue_by_last_msg_key(
    emulator: EmulatorThread, client: TimClient
) -> None:
    account, keys = await seed(emulator, client, 45)
    first = await client.call(GET, {"Official_Account": account, "ReqMsgNumber": 50})
    assert first["IsFinished"] == 0
    got = [m["MsgKey"] for m in first["RspMsgList"]]
    assert got == keys[-20:], "the newest 20, listed oldest first as in the documented sample"
    assert first["LastMsgKey"] == keys[-20]
    assert keys[0].endswith(f"_1_{START}") and keys[0].startswith("1_1_"), "MsgKey is Seq_1_ServerTime"
    second = await client.call(
        GET, {"Official_Account": account, "ReqMsgNumber": 20, "LastMsgKey": first["LastMsgKey"]}
    )
    assert [m["MsgKey"] for m in second["RspMsgList"]] == keys[5:25]
    third = await client.call(
        GET, {"Official_Account": account, "ReqMsgNumber": 20, "LastMsgKey": second["LastMsgKey"]}
    )
    assert [m["MsgKey"] for m in third["RspMsgList"]] == keys[:5]
    assert third["IsFinished"] == 1


async def test_large_messages_cut_pages_by_size(emulator: EmulatorThread, client: TimClient) -> None:
    account, keys = await seed(emulator, client, 30, size=2000)
    reply = await client.call(GET, {"Official_Account": account, "ReqMsgNumber": 20})
    assert 0 < len(reply["RspMsgList"]) < 20
    assert reply["IsFinished"] == 0
    got = [
        m.msg_key async for m in iter_official_account_history(client, account=account, since=0, until=2**32)
    ]
    assert sorted(got, key=keys.index) == keys


async def test_is_finished_2_when_the_rest_has_expired(emulator: EmulatorThread, client: TimClient) -> None:
    # Messages 0-10 fall just outside the 7-day roaming period, 11-24 inside it.
    account, keys = await seed(emulator, client, 25, start=int(time.time()) - 7 * 86400 - 10 * STEP - 30)
    reply = await client.call(GET, {"Official_Account": account, "ReqMsgNumber": 20})
    assert [m["MsgKey"] for m in reply["RspMsgList"]] == keys[11:]
    assert reply["IsFinished"] == 2
    reply = await client.call(GET, {"Official_Account": account, "ReqMsgNumber": 5})
    assert reply["IsFinished"] == 0
    got = [
        m.msg_key async for m in iter_official_account_history(client, account=account, since=0, until=2**32)
    ]
    assert got == keys[11:]


async def test_holes_and_recalled_messages(emulator: EmulatorThread, client: TimClient) -> None:
    account, keys = await seed(emulator, client, 6)
    httpx.post(
        f"{emulator.url}/_emulator/official_account/holes",
        json={"Official_Account": account, "MsgKeyList": [keys[1]]},
    ).raise_for_status()
    await client.call(
        "official_account_open_http_svc/official_account_msg_recall",
        {"Official_Account": account, "MsgKeyList": [keys[3]]},
    )
    plain = await client.call(GET, {"Official_Account": account})
    by_key = {m["MsgKey"]: m for m in plain["RspMsgList"]}
    assert keys[3] not in by_key, "recalled messages are left out unless asked for"
    assert by_key[keys[1]]["IsPlaceMsg"] == 1
    assert by_key[keys[1]]["MsgBody"] == []
    with_recalled = await client.call(GET, {"Official_Account": account, "WithRecalledMsg": 1})
    by_key = {m["MsgKey"]: m for m in with_recalled["RspMsgList"]}
    assert by_key[keys[3]]["IsPlaceMsg"] == 2
    states = {
        m.msg_key: m.state
        async for m in iter_official_account_history(client, account=account, since=0, until=2**32)
    }
    assert states[keys[1]] is MessageState.HOLE
    assert states[keys[3]] is MessageState.RECALLED
    assert states[keys[0]] is MessageState.NORMAL


async def test_iterator_stops_at_the_window_start(emulator: EmulatorThread, client: TimClient) -> None:
    account, keys = await seed(emulator, client, 100)
    since = START + 95 * STEP
    stats = HistoryStats()
    got = [
        m.msg_key
        async for m in iter_official_account_history(
            client, account=account, since=since, until=2**32, stats=stats
        )
    ]
    assert got == keys[95:]
    assert stats.pages == 1, "one page of 20 already reaches before the window"


async def test_unknown_account_codes(client: TimClient) -> None:
    with pytest.raises(Exception, match="10015"):
        await client.call(GET, {"Official_Account": "not-an-oa"})
    with pytest.raises(Exception, match="10010"):
        await client.call(GET, {"Official_Account": "@TOA#_NOPE"})


async def test_iterator_refuses_an_empty_unfinished_page() -> None:
    caller = ScriptedCaller([{"ActionStatus": "OK", "ErrorCode": 0, "IsFinished": 0, "RspMsgList": []}])
    with pytest.raises(TimProtocolError, match="no progress"):
        [m async for m in iter_official_account_history(caller, account="@TOA#_X", since=0, until=10)]


def test_page_without_last_msg_key_continues_from_its_lowest_seq() -> None:
    item = {"From_Account": "a", "IsPlaceMsg": 0, "MsgBody": [], "MsgTimeStamp": 5}
    reply = {
        "IsFinished": 0,
        "RspMsgList": [{**item, "MsgSeq": 9, "MsgKey": "9_1_5"}, {**item, "MsgSeq": 8, "MsgKey": "8_1_5"}],
    }
    assert parse_official_account_page(reply).last_msg_key == "8_1_5"


def test_bad_is_place_msg_is_a_protocol_error() -> None:
    reply = {"IsFinished": 1, "RspMsgList": [{"MsgSeq": 1, "MsgKey": "1_1_1", "IsPlaceMsg": 7}]}
    with pytest.raises(TimProtocolError, match="IsPlaceMsg is 7"):
        parse_official_account_page(reply)
