"""The emulator's groups over HTTP: the documented requests and replies, history paging, recall codes,
wipes by sender, topics, system messages, errors, and the gateway's faults and limits on group commands."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ADMIN, KEY, SDKAPPID
from worker.emulator.seed import (
    add_group_members,
    create_group,
    create_topic,
    import_accounts,
    import_group_messages,
    send_group,
    text,
)
from worker.emulator.server import EmulatorThread
from worker.tim.client import TimClient
from worker.tim.errors import TimApiError
from worker.tim.usersig import UserSigProvider

G = "group_open_http_svc"
SIG = UserSigProvider(SDKAPPID, KEY, ADMIN)
ENVELOPE = {"ActionStatus", "ErrorInfo", "ErrorCode"}
ITEM_FIELDS = [
    "From_Account",
    "IsPlaceMsg",
    "IsSystemMsg",
    "MsgBody",
    "MsgPriority",
    "MsgRandom",
    "MsgSeq",
    "MsgTimeStamp",
]
USERS = ["leckie", "peter", "bob", "tommy", "jared", "bad", "good"]


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """One raw REST call, without the client's retries."""
    params: dict[str, str | int] = {
        "sdkappid": SDKAPPID,
        "identifier": ADMIN,
        "usersig": SIG.get(),
        "random": 1,
        "contenttype": "json",
    }
    return httpx.post(f"{url}/v4/{path}", params=params, json=body)


def call(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = post(url, path, body).json()
    return reply


def control(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET ``/_emulator/{path}``, or POST ``body`` to it."""
    if body is None:
        response = httpx.get(f"{url}/_emulator/{path}")
    else:
        response = httpx.post(f"{url}/_emulator/{path}", json=body)
    response.raise_for_status()
    return response.json()


def state(url: str, group_id: str, topic_id: str = "") -> dict[str, Any]:
    params = {"id": group_id, **({"topic": topic_id} if topic_id else {})}
    response = httpx.get(f"{url}/_emulator/group", params=params)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def code_of(client: TimClient, path: str, body: dict[str, Any]) -> int:
    with pytest.raises(TimApiError) as caught:
        await client.call(path, body)
    return caught.value.code


async def history(client: TimClient, group_id: str, **fields: Any) -> dict[str, Any]:
    return await client.call(f"{G}/group_msg_get_simple", {"GroupId": group_id, **fields})


@pytest.fixture
def clock(emulator: EmulatorThread) -> Iterator[Any]:
    """Set the emulated clock: ``clock(epoch)``; wall time again afterwards."""

    def set_clock(epoch: float) -> None:
        control(emulator.url, "clock", {"set": epoch})

    yield set_clock
    emulator.emulator.clock.reset()


@pytest.fixture
async def users(client: TimClient) -> list[str]:
    await import_accounts(client, USERS)
    return USERS


# create_group ------------------------------------------------------------------------------------


DOCUMENTED_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"Owner_Account": "leckie", "Type": "Public", "Name": "TestGroup"}, r"@TGS#[123][A-Z0-9]{8}"),
    (
        {
            "Owner_Account": "leckie",
            "Type": "Public",
            "Name": "TestGroup",
            "Introduction": "This is group Introduction",
            "Notification": "This is group Notification",
            "FaceUrl": "http://this.is.face.url",
            "MaxMemberCount": 500,
            "ApplyJoinOption": "FreeAccess",
        },
        r"@TGS#[123][A-Z0-9]{8}",
    ),
    (
        {
            "Owner_Account": "leckie",
            "Type": "Public",
            "Name": "TestGroup",
            "MemberList": [{"Member_Account": "bob", "Role": "Admin"}, {"Member_Account": "peter"}],
        },
        r"@TGS#[123][A-Z0-9]{8}",
    ),
    (
        {"Owner_Account": "leckie", "Type": "Public", "GroupId": "MyFirstGroup", "Name": "TestGroup"},
        "MyFirstGroup",
    ),
    (
        {"Owner_Account": "leckie", "Type": "Community", "Name": "TestCommunity", "SupportTopic": 1},
        r"@TGS#_@TGS#c[A-Z0-9]{11}",
    ),
    ({"Owner_Account": "leckie", "Type": "AVChatRoom", "Name": "Live"}, r"@TGS#a[A-Z0-9]{8}"),
    ({"Type": "Work", "Name": "No owner"}, r"@TGS#[123][A-Z0-9]{8}"),
]


async def test_documented_create_group_requests_are_accepted(client: TimClient, users: list[str]) -> None:
    for request_body, id_pattern in DOCUMENTED_CREATES:
        reply = await client.call(f"{G}/create_group", request_body)
        assert set(reply) == ENVELOPE | {"GroupId"}
        assert re.fullmatch(id_pattern, reply["GroupId"]), (request_body, reply["GroupId"])


CREATE_PROBLEMS: list[tuple[dict[str, Any], int]] = [
    ({"Type": "Public", "Name": "x", "GroupId": "@TGS#mine"}, 10004),
    ({"Type": "Public", "Name": "x", "GroupId": "g" * 49}, 10004),
    ({"Type": "Community", "Name": "x", "GroupId": "community"}, 10004),
    ({"Type": "Guild", "Name": "x"}, 10004),
    ({"Type": "Public", "Name": "x" * 31}, 10004),
    ({"Type": "Public"}, 10004),
    ({"Type": "Public", "Name": "x", "Owner_Account": "stranger"}, 10019),
    ({"Type": "Public", "Name": "x", "MemberList": [{"Member_Account": "stranger"}]}, 10019),
    ({"Type": "Public", "Name": "x", "MemberList": [{"Member_Account": "bob"}] * 101}, 10004),
    ({"Type": "AVChatRoom", "Name": "x", "MemberList": [{"Member_Account": "bob"}]}, 10007),
    ({"Type": "Public", "Name": "x", "GroupId": "taken", "Owner_Account": "peter"}, 10021),
    ({"Type": "Public", "Name": "x", "GroupId": "taken", "Owner_Account": "leckie"}, 10025),
]


async def test_create_group_problems_get_documented_codes(client: TimClient, users: list[str]) -> None:
    await create_group(client, owner="leckie", group_type="Public", group_id="taken")
    for request_body, code in CREATE_PROBLEMS:
        assert await code_of(client, f"{G}/create_group", request_body) == code, request_body


async def test_a_destroyed_group_is_gone_and_its_id_free_again(client: TimClient, users: list[str]) -> None:
    group = await create_group(client, owner="leckie", group_type="Public", group_id="again")
    assert set(await client.call(f"{G}/destroy_group", {"GroupId": group})) == ENVELOPE
    assert await code_of(client, f"{G}/group_msg_get_simple", {"GroupId": group, "ReqMsgNumber": 1}) == 10010
    assert (
        await code_of(
            client, f"{G}/send_group_msg", {"GroupId": "never", "Random": 1, "MsgBody": [text("x")]}
        )
        == 10015
    )
    assert await create_group(client, owner="peter", group_type="Public", group_id="again") == "again"


# members and system messages ---------------------------------------------------------------------


async def test_member_adds_are_recorded_as_system_messages(
    emulator: EmulatorThread, client: TimClient, users: list[str]
) -> None:
    group = await create_group(client, owner="leckie", group_type="Private", members=["bob"])
    reply = await client.call(
        f"{G}/add_group_member",
        {"GroupId": group, "MemberList": [{"Member_Account": "tommy"}, {"Member_Account": "jared"}]},
    )
    assert set(reply) == ENVELOPE | {"MemberList"}
    assert reply["MemberList"] == [
        {"Member_Account": "tommy", "Result": 1},
        {"Member_Account": "jared", "Result": 1},
    ]
    again = await client.call(
        f"{G}/add_group_member",
        {"GroupId": group, "MemberList": [{"Member_Account": "tommy"}, {"Member_Account": "ghost"}]},
    )
    assert [m["Result"] for m in again["MemberList"]] == [2, 0]
    await client.call(
        f"{G}/add_group_member", {"GroupId": group, "Silence": 1, "MemberList": [{"Member_Account": "peter"}]}
    )
    page = await history(client, group, ReqMsgNumber=20)
    tips = page["RspMsgList"]
    assert [m["MsgSeq"] for m in tips] == [2, 1]
    assert all(m["IsSystemMsg"] == 1 and m["From_Account"] == "@TIM#SYSTEM" for m in tips)
    assert [[u["Member_Account"] for u in m["MsgBody"][0]["MsgContent"]["NewMemberList"]] for m in tips] == [
        ["tommy", "jared"],
        ["bob"],
    ]
    assert tips[0]["MsgBody"][0]["MsgType"] == "TIMGroupTipElem"
    assert state(emulator.url, group)["Members"] == ["leckie", "bob", "tommy", "jared", "peter"]
    live = await create_group(client, owner="leckie", group_type="AVChatRoom")
    body = {"GroupId": live, "MemberList": [{"Member_Account": "bob"}]}
    assert await code_of(client, f"{G}/add_group_member", body) == 10007
    assert state(emulator.url, live)["messages"] == []


# send_group_msg ----------------------------------------------------------------------------------


async def test_documented_send_group_msg_request(client: TimClient, users: list[str]) -> None:
    group = await create_group(client, owner="leckie", group_type="Public")
    documented = {
        "GroupId": group,
        "From_Account": "leckie",
        "Random": 8912345,
        "MsgBody": [
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}},
            {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 6, "Data": "abc\u0000\u0001"}},
        ],
        "CloudCustomData": "your cloud custom data",
        "SupportMessageExtension": 0,
        "OfflinePushInfo": {"PushFlag": 0, "Desc": "offline push content", "Ext": "passthrough"},
    }
    reply = await client.call(f"{G}/send_group_msg", documented)
    assert set(reply) == ENVELOPE | {"MsgTime", "MsgSeq"}
    assert reply["MsgSeq"] == 1 and abs(reply["MsgTime"] - time.time()) < 5
    assert (await client.call(f"{G}/send_group_msg", documented))["MsgSeq"] == 1, "a duplicate is dropped"
    admin_seq = (
        await client.call(f"{G}/send_group_msg", {**documented, "From_Account": ADMIN, "Random": 2})
    )["MsgSeq"]
    default = {k: v for k, v in documented.items() if k != "From_Account"}
    implicit = await client.call(f"{G}/send_group_msg", {**default, "Random": 3, "MsgPriority": "Low"})
    assert (admin_seq, implicit["MsgSeq"]) == (2, 3)
    items = (await history(client, group, ReqMsgNumber=3))["RspMsgList"]
    assert [(m["From_Account"], m["MsgPriority"]) for m in items] == [(ADMIN, 3), (ADMIN, 2), ("leckie", 2)]


SEND_PROBLEMS: list[tuple[dict[str, Any], int]] = [
    ({"From_Account": "peter"}, 10007),
    ({"From_Account": "stranger"}, 10019),
    ({"MsgPriority": "Urgent"}, 10004),
    ({"Random": -1}, 10004),
    ({"MsgBody": "hi"}, 10004),
    ({"MsgBody": [text("x" * 13000)]}, 80002),
    ({"TopicId": "whatever"}, 10007),
]


async def test_send_group_msg_problems_get_documented_codes(client: TimClient, users: list[str]) -> None:
    group = await create_group(client, owner="leckie", group_type="Public", members=["bob"])
    for fields, code in SEND_PROBLEMS:
        body = {"GroupId": group, "From_Account": "bob", "Random": 1, "MsgBody": [text("hi")], **fields}
        assert await code_of(client, f"{G}/send_group_msg", body) == code, fields


# import_group_msg --------------------------------------------------------------------------------


async def test_documented_import_group_msg_request(clock: Any, client: TimClient, users: list[str]) -> None:
    clock(1620800000)  # the documented SendTimes are from May 2021: the group must be older
    group = await create_group(client, owner="leckie", group_type="Public")
    clock(1620900000)
    documented = {
        "GroupId": group,
        "RecentContactFlag": 1,
        "MsgList": [
            {
                "From_Account": "leckie",
                "SendTime": 1620808101,
                "Random": 8912345,
                "MsgBody": [
                    {"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}},
                    {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 6, "Data": "abc\u0000\u0001"}},
                ],
            },
            {
                "From_Account": "peter",
                "SendTime": 1620892821,
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}],
            },
        ],
    }
    reply = await client.call(f"{G}/import_group_msg", documented)
    assert set(reply) == ENVELOPE | {"ImportMsgResult"}
    assert reply["ImportMsgResult"] == [
        {"MsgSeq": 1, "MsgTime": 1620808101, "Result": 0},
        {"MsgSeq": 2, "MsgTime": 1620892821, "Result": 0},
    ]


async def test_import_rules_per_message_and_per_call(clock: Any, client: TimClient, users: list[str]) -> None:
    now = int(time.time())
    clock(now - 1000)
    group = await create_group(client, owner="leckie", group_type="Public")
    clock(now)

    def item(send_time: int, body: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"From_Account": "bob", "SendTime": send_time, "MsgBody": body or [text("old")]}

    results = (
        await client.call(
            f"{G}/import_group_msg",
            {
                "GroupId": group,
                "MsgList": [
                    item(now - 2000),  # before the group was created
                    item(now - 500),
                    item(now - 600),  # out of order
                    item(now - 400, [text("x" * 8001)]),  # over 8000 bytes
                    item(now + 60),  # in the future
                    item(now - 300),
                ],
            },
        )
    )["ImportMsgResult"]
    assert [(r["Result"], r["MsgSeq"]) for r in results] == [
        (10004, 0),
        (0, 1),
        (10004, 0),
        (80002, 0),
        (10004, 0),
        (0, 2),
    ]
    eight = {"GroupId": group, "MsgList": [item(now - 200 + i) for i in range(8)]}
    assert await code_of(client, f"{G}/import_group_msg", eight) == 10004
    live = await create_group(client, owner="leckie", group_type="AVChatRoom")
    assert (
        await code_of(client, f"{G}/import_group_msg", {"GroupId": live, "MsgList": [item(now - 1)]}) == 10007
    )
    seqs = await import_group_messages(
        client, group_id=group, messages=[("bob", now - 200 + i, i, [text(str(i))]) for i in range(16)]
    )
    assert seqs == list(range(3, 19))
    with pytest.raises(ValueError, match="Result 10004"):
        await import_group_messages(client, group_id=group, messages=[("bob", now - 900, 1, [text("old")])])


# group_msg_get_simple ----------------------------------------------------------------------------


async def seeded(client: TimClient, count: int, *, owner: str = "leckie") -> str:
    group = await create_group(client, owner=owner, group_type="Public", members=["bob"])  # seq 1 is a tip
    for i in range(count):
        await send_group(client, group_id=group, sender="bob", random=i, body=[text(f"message {i}")])
    return group


async def test_documented_history_requests_and_reply_fields(client: TimClient, users: list[str]) -> None:
    group = await seeded(client, 3)
    basic = await history(client, group, ReqMsgNumber=2)
    assert set(basic) == ENVELOPE | {"GroupId", "IsFinished", "RspMsgList"}
    assert (basic["GroupId"], basic["IsFinished"]) == (group, 1)
    assert [list(m) for m in basic["RspMsgList"]] == [ITEM_FIELDS, ITEM_FIELDS]
    assert [m["MsgSeq"] for m in basic["RspMsgList"]] == [4, 3], "newest first, as the sample lists them"
    newest = basic["RspMsgList"][0]
    assert (newest["From_Account"], newest["IsPlaceMsg"], newest["IsSystemMsg"]) == ("bob", 0, 0)
    assert newest["MsgBody"] == [text("message 2")] and newest["MsgRandom"] == 2
    by_seq = await history(client, group, ReqMsgSeq=3, ReqMsgNumber=2)
    assert [m["MsgSeq"] for m in by_seq["RspMsgList"]] == [3, 2]


async def test_paging_follows_req_msg_seq_and_the_twenty_cap(client: TimClient, users: list[str]) -> None:
    group = await seeded(client, 44)  # seqs 1..45
    wide = await history(client, group, ReqMsgNumber=50)
    assert [m["MsgSeq"] for m in wide["RspMsgList"]] == list(range(45, 25, -1))
    assert wide["IsFinished"] == 0, "more than 20 asked for: cut short"
    exact = await history(client, group, ReqMsgNumber=20, ReqMsgSeq=25)
    assert [m["MsgSeq"] for m in exact["RspMsgList"]] == list(range(25, 5, -1)) and exact["IsFinished"] == 1
    tail = await history(client, group, ReqMsgNumber=20, ReqMsgSeq=5)
    assert [m["MsgSeq"] for m in tail["RspMsgList"]] == [5, 4, 3, 2, 1] and tail["IsFinished"] == 1
    above = await history(client, group, ReqMsgNumber=2, ReqMsgSeq=1000)
    assert [m["MsgSeq"] for m in above["RspMsgList"]] == [45, 44]
    assert (await history(client, group, ReqMsgNumber=5, ReqMsgSeq=0))["RspMsgList"] == []
    walked: list[int] = []
    request: dict[str, Any] = {"ReqMsgNumber": 7}
    while True:
        items = (await history(client, group, **request))["RspMsgList"]
        if not items:
            break
        walked += [m["MsgSeq"] for m in items]
        request["ReqMsgSeq"] = items[-1]["MsgSeq"] - 1
    assert walked == list(range(45, 0, -1))
    assert await code_of(client, f"{G}/group_msg_get_simple", {"GroupId": group, "ReqMsgNumber": 0}) == 10004


async def test_reply_size_cap_cuts_pages_short(
    emulator: EmulatorThread, client: TimClient, users: list[str]
) -> None:
    group = await seeded(client, 10)
    item_bytes = len(orjson.dumps((await history(client, group, ReqMsgNumber=1))["RspMsgList"][0]))
    control(emulator.url, "settings", {"group_page_bytes": 256 + 3 * item_bytes + 10})
    page = await history(client, group, ReqMsgNumber=10)
    assert len(page["RspMsgList"]) == 3 and page["IsFinished"] == 0
    assert (await history(client, group, ReqMsgNumber=3))["IsFinished"] == 1


async def test_expired_messages_never_come_back(clock: Any, client: TimClient, users: list[str]) -> None:
    now = int(time.time())
    clock(now - 8 * 86400)  # past the default 7-day roaming period
    group = await seeded(client, 2)  # seqs 1..3, all expired once the clock is back
    clock(now)
    for i in range(3):
        await send_group(client, group_id=group, sender="bob", random=100 + i, body=[text(f"new {i}")])
    fresh = await history(client, group, ReqMsgNumber=3)
    assert [m["MsgSeq"] for m in fresh["RspMsgList"]] == [6, 5, 4] and fresh["IsFinished"] == 1
    reaching = await history(client, group, ReqMsgNumber=10)
    assert [m["MsgSeq"] for m in reaching["RspMsgList"]] == [6, 5, 4] and reaching["IsFinished"] == 2
    below = await history(client, group, ReqMsgNumber=10, ReqMsgSeq=3)
    assert below["RspMsgList"] == [] and below["IsFinished"] == 2
    retcodes = await client.call(f"{G}/group_msg_recall", {"GroupId": group, "MsgSeqList": [{"MsgSeq": 2}]})
    assert retcodes["RecallRetList"] == [{"MsgSeq": 2, "RetCode": 10030}]


async def test_recalled_messages_and_holes_in_history(
    emulator: EmulatorThread, client: TimClient, users: list[str]
) -> None:
    group = await seeded(client, 4)  # seqs 2..5 from bob
    await client.call(f"{G}/group_msg_recall", {"GroupId": group, "MsgSeqList": [{"MsgSeq": 4}]})
    holes = control(emulator.url, "group/holes", {"GroupId": group, "MsgSeqList": [3, 99]})
    assert holes == {"holes": [3]}
    default = await history(client, group, ReqMsgNumber=5)
    assert [(m["MsgSeq"], m["IsPlaceMsg"]) for m in default["RspMsgList"]] == [(5, 0), (3, 1), (2, 0), (1, 0)]
    assert default["IsFinished"] == 1
    assert default["RspMsgList"][1]["MsgBody"] == []
    recalled = await history(client, group, ReqMsgNumber=5, WithRecalledMsg=1)
    assert [(m["MsgSeq"], m["IsPlaceMsg"]) for m in recalled["RspMsgList"]] == [
        (5, 0),
        (4, 2),
        (3, 1),
        (2, 0),
        (1, 0),
    ]
    seen = state(emulator.url, group)["messages"]
    assert [m["IsPlaceMsg"] for m in seen] == [0, 0, 1, 2, 0]


async def test_live_groups_keep_no_history(client: TimClient, users: list[str]) -> None:
    live = await create_group(client, owner="leckie", group_type="AVChatRoom")
    assert await send_group(client, group_id=live, sender="bob", random=1, body=[text("hi")]) == 1
    assert await send_group(client, group_id=live, sender="bob", random=1, body=[text("hi")]) == 2
    assert await code_of(client, f"{G}/group_msg_get_simple", {"GroupId": live, "ReqMsgNumber": 5}) == 10007


# recall ------------------------------------------------------------------------------------------


async def test_recall_retcodes(
    emulator: EmulatorThread, clock: Any, client: TimClient, users: list[str]
) -> None:
    documented = await create_group(client, owner="leckie", group_type="Public", group_id="MyRecallGroup")
    reply = await client.call(
        f"{G}/group_msg_recall",
        {"GroupId": documented, "MsgSeqList": [{"MsgSeq": 100}, {"MsgSeq": 101}], "Reason": "撤回原因"},
    )
    assert set(reply) == ENVELOPE | {"RecallRetList"}
    assert reply["RecallRetList"] == [{"MsgSeq": 100, "RetCode": 10030}, {"MsgSeq": 101, "RetCode": 10030}]

    now = int(time.time())
    clock(now - 600)
    group = await seeded(client, 4)  # 1 tip, 2..5 from bob, sent ten minutes ago
    clock(now)
    control(emulator.url, "group/holes", {"GroupId": group, "MsgSeqList": [5]})

    async def recall(*seqs: int) -> list[int]:
        body = {"GroupId": group, "MsgSeqList": [{"MsgSeq": s} for s in seqs]}
        return [r["RetCode"] for r in (await client.call(f"{G}/group_msg_recall", body))["RecallRetList"]]

    assert await recall(2, 2, 1, 5, 77) == [0, 20023, 10032, 10030, 10030]
    control(emulator.url, "settings", {"group_recall_limit_s": 300})
    assert await recall(3) == [10031]
    control(emulator.url, "settings", {"group_recall_limit_s": 0})
    control(emulator.url, "settings", {"refuse_group_recall": True})
    assert await recall(3, 4) == [10041, 10041]
    control(emulator.url, "settings", {"refuse_group_recall": False})
    assert await recall(3) == [0]
    assert [m["IsPlaceMsg"] for m in state(emulator.url, group)["messages"]] == [0, 2, 2, 0, 1]
    too_many = {"GroupId": group, "MsgSeqList": [{"MsgSeq": s} for s in range(11)]}
    assert await code_of(client, f"{G}/group_msg_recall", too_many) == 10004
    long_reason = {"GroupId": group, "MsgSeqList": [{"MsgSeq": 4}], "Reason": "x" * 101}
    assert await code_of(client, f"{G}/group_msg_recall", long_reason) == 10004


async def test_live_group_recall_lasts_an_hour(clock: Any, client: TimClient, users: list[str]) -> None:
    now = int(time.time())
    live = await create_group(client, owner="leckie", group_type="AVChatRoom")
    clock(now - 3700)
    await send_group(client, group_id=live, sender="bob", random=1, body=[text("old")])
    clock(now)
    await send_group(client, group_id=live, sender="bob", random=2, body=[text("new")])
    body = {"GroupId": live, "MsgSeqList": [{"MsgSeq": 1}, {"MsgSeq": 2}, {"MsgSeq": 2}, {"MsgSeq": 3}]}
    codes = [r["RetCode"] for r in (await client.call(f"{G}/group_msg_recall", body))["RecallRetList"]]
    assert codes == [10031, 0, 20023, 10030]


# wipe by sender ----------------------------------------------------------------------------------


async def test_wipe_by_sender_recalls_only_that_sender_in_the_last_thousand(
    emulator: EmulatorThread, clock: Any, client: TimClient, users: list[str]
) -> None:
    now = int(time.time())
    clock(now - 5000)
    group = await create_group(client, owner="leckie", group_type="Public", members=["bad", "good"])  # seq 1
    clock(now)
    senders = ["bad"] * 5 + ["good", "bad"] * 500  # seqs 2..1006: the last 1,000 are seqs 7..1006
    await import_group_messages(
        client,
        group_id=group,
        messages=[(s, now - 4000 + i, i, [text(str(i))]) for i, s in enumerate(senders)],
    )
    reply = await client.call(f"{G}/delete_group_msg_by_sender", {"GroupId": group, "Sender_Account": "bad"})
    assert set(reply) == ENVELOPE
    messages = state(emulator.url, group)["messages"]
    recalled = {m["MsgSeq"] for m in messages if m["IsPlaceMsg"] == 2}
    assert recalled == {m["MsgSeq"] for m in messages if m["From_Account"] == "bad" and m["MsgSeq"] >= 7}
    assert len(recalled) == 500
    assert all(m["IsPlaceMsg"] == 0 for m in messages if m["MsgSeq"] < 7)


async def test_wipe_by_sender_keeps_topics_apart_and_ignores_live_groups(
    emulator: EmulatorThread, client: TimClient, users: list[str]
) -> None:
    community = await create_group(client, owner="leckie", group_type="Community", support_topic=True)
    await add_group_members(client, community, ["bad"])
    topic = await create_topic(client, group_id=community, name="TestTopic")
    await send_group(client, group_id=community, sender="bad", random=1, body=[text("in the group")])
    await send_group(
        client, group_id=community, sender="bad", random=2, body=[text("in the topic")], topic_id=topic
    )
    await client.call(
        f"{G}/delete_group_msg_by_sender", {"GroupId": community, "Sender_Account": "bad", "TopicId": topic}
    )
    assert [m["IsPlaceMsg"] for m in state(emulator.url, community, topic)["messages"]] == [2]
    assert [m["IsPlaceMsg"] for m in state(emulator.url, community)["messages"]] == [0, 0]
    live = await create_group(client, owner="leckie", group_type="AVChatRoom")
    await send_group(client, group_id=live, sender="bad", random=1, body=[text("live")])
    reply = await client.call(f"{G}/delete_group_msg_by_sender", {"GroupId": live, "Sender_Account": "bad"})
    assert reply["ErrorCode"] == 0
    codes = await client.call(f"{G}/group_msg_recall", {"GroupId": live, "MsgSeqList": [{"MsgSeq": 1}]})
    assert codes["RecallRetList"] == [{"MsgSeq": 1, "RetCode": 0}], "the wipe changed nothing there"


# topics ------------------------------------------------------------------------------------------


async def test_topics_have_their_own_seqs_and_history(
    emulator: EmulatorThread, client: TimClient, users: list[str]
) -> None:
    community = await create_group(
        client, owner="leckie", group_type="Community", members=["bob"], support_topic=True
    )
    basic = await client.call(
        "million_group_open_http_svc/create_topic", {"GroupId": community, "TopicName": "TestTopic"}
    )
    assert set(basic) == ENVELOPE | {"TopicId"}
    assert re.fullmatch(re.escape(community) + r"@TOPIC#_@TOPIC#c[A-Z0-9]{11}", basic["TopicId"])
    custom_id = f"{community}@TOPIC#_TestTopic"
    custom = await client.call(
        "million_group_open_http_svc/create_topic",
        {"GroupId": community, "TopicId": custom_id, "TopicName": "TestTopic"},
    )
    assert custom["TopicId"] == custom_id
    assert await send_group(client, group_id=community, sender="bob", random=1, body=[text("g")]) == 2
    for i in range(3):
        seq = await send_group(
            client, group_id=community, sender="bob", random=i, body=[text(f"t{i}")], topic_id=custom_id
        )
        assert seq == i + 1
    page = await history(client, community, ReqMsgNumber=20, TopicId=custom_id)
    assert [m["MsgBody"][0]["MsgContent"]["Text"] for m in page["RspMsgList"]] == ["t2", "t1", "t0"]
    assert (await history(client, community, ReqMsgNumber=20, TopicId=basic["TopicId"]))["RspMsgList"] == []
    assert [t["TopicId"] for t in state(emulator.url, community)["Topics"]] == [basic["TopicId"], custom_id]
    path = "million_group_open_http_svc/create_topic"
    assert (
        await code_of(client, path, {"GroupId": community, "TopicId": custom_id, "TopicName": "x"}) == 10021
    )
    assert (
        await code_of(client, path, {"GroupId": community, "TopicId": "@TOPIC#_x", "TopicName": "x"}) == 10004
    )
    assert await code_of(client, path, {"GroupId": community, "TopicName": "x" * 31}) == 10004
    plain = await create_group(client, owner="leckie", group_type="Community")
    assert await code_of(client, path, {"GroupId": plain, "TopicName": "x"}) == 10007
    unknown = {"GroupId": community, "ReqMsgNumber": 1, "TopicId": f"{community}@TOPIC#_nope"}
    assert await code_of(client, f"{G}/group_msg_get_simple", unknown) == 10010
    wrong_group = {"GroupId": plain, "ReqMsgNumber": 1, "TopicId": custom_id}
    assert await code_of(client, f"{G}/group_msg_get_simple", wrong_group) == 10007


# the gateway and the control surface ---------------------------------------------------------------


async def test_faults_limits_and_dropped_recalls_apply_to_group_commands(
    emulator: EmulatorThread, client: TimClient, users: list[str]
) -> None:
    url = emulator.url
    group = await seeded(client, 2)
    control(url, "faults", {"fail_next": {"group_msg_get_simple": [10002, "http_502"]}})
    assert call(url, f"{G}/group_msg_get_simple", {"GroupId": group, "ReqMsgNumber": 1})["ErrorCode"] == 10002
    assert post(url, f"{G}/group_msg_get_simple", {"GroupId": group, "ReqMsgNumber": 1}).status_code == 502
    assert call(url, f"{G}/group_msg_get_simple", {"GroupId": group, "ReqMsgNumber": 1})["ErrorCode"] == 0
    control(url, "limits", {"default": 200, "commands": {"send_group_msg": 1}})
    body = {"GroupId": group, "Random": 9, "MsgBody": [text("x")]}
    assert [call(url, f"{G}/send_group_msg", {**body, "Random": r})["ErrorCode"] for r in (7, 8)] == [
        0,
        60007,
    ]
    control(url, "faults", {"commands": {"group_msg_recall": {"drop_recall_rate": 1.0}}})
    reply = call(url, f"{G}/group_msg_recall", {"GroupId": group, "MsgSeqList": [{"MsgSeq": 2}]})
    assert reply["RecallRetList"] == [{"MsgSeq": 2, "RetCode": 0}]
    assert state(url, group)["messages"][1]["IsPlaceMsg"] == 0, "answered OK, changed nothing"
    stats = control(url, "stats")
    assert stats["calls"]["send_group_msg"]["60007"] == 1
    assert stats["state"]["groups"] == 1 and stats["state"]["group_messages"] == 4


def test_control_surface_settings_and_unknown_groups(emulator: EmulatorThread) -> None:
    settings = control(emulator.url, "settings")
    assert (
        settings["group_page_bytes"],
        settings["group_recall_limit_s"],
        settings["refuse_group_recall"],
    ) == (
        1024 * 1024,
        None,
        False,
    )
    changed = control(emulator.url, "settings", {"group_recall_limit_s": 120, "refuse_group_recall": True})
    assert (changed["group_recall_limit_s"], changed["refuse_group_recall"]) == (120, True)
    assert httpx.get(f"{emulator.url}/_emulator/group", params={"id": "nope"}).status_code == 404
    missing = httpx.post(f"{emulator.url}/_emulator/group/holes", json={"GroupId": "nope", "MsgSeqList": [1]})
    assert missing.status_code == 404
