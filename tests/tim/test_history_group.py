"""Group history (group_msg_get_simple): the reply parser and the paging iterator, on scripted replies."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.tim.scripted import ScriptedCaller
from worker.tim.errors import TimApiError, TimProtocolError
from worker.tim.history import GROUP_HISTORY_PATH, GROUP_MAX_PAGE, HistoryStats, iter_group_history
from worker.tim.models import ConversationKind, Message, MessageState
from worker.tim.replies import GROUP_HISTORY_COMMAND, parse_group_page

GROUP = "@TGS#2ABCDEF"
T0 = 1_700_000_000


def item(
    seq: int,
    timestamp: int | None = None,
    *,
    place: int = 0,
    system: int = 0,
    sender: str = "alice",
    text: str | None = None,
) -> dict[str, Any]:
    """One RspMsgList item; by default sent at ``T0 + seq`` seconds. ``timestamp=0`` leaves the time out."""
    body = [] if place == 1 else [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text or f"m{seq}"}}]
    entry: dict[str, Any] = {
        "From_Account": sender,
        "IsPlaceMsg": place,
        "IsSystemMsg": system,
        "MsgBody": body,
        "MsgPriority": 2,
        "MsgRandom": 1000 + seq,
        "MsgSeq": seq,
    }
    when = T0 + seq if timestamp is None else timestamp
    if when:
        entry["MsgTimeStamp"] = when
    return entry


def page(items: list[dict[str, Any]], finished: int = 1) -> dict[str, Any]:
    """A reply listing ``items`` oldest first, as the documented sample does."""
    return {
        "ActionStatus": "OK",
        "ErrorCode": 0,
        "ErrorInfo": "",
        "GroupId": GROUP,
        "IsFinished": finished,
        "RspMsgList": sorted(items, key=lambda i: i["MsgSeq"]),
    }


def seqs_page(high: int, low: int, finished: int = 1, **kwargs: Any) -> dict[str, Any]:
    return page([item(s, **kwargs) for s in range(low, high + 1)], finished)


def alone(reply: dict[str, Any]) -> ScriptedCaller:
    """A caller answering ``reply``, then an empty page (the history below it is gone)."""
    return ScriptedCaller([reply, page([])])


class PathCaller(ScriptedCaller):
    """A scripted caller that also records the path of every call."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        super().__init__(replies)
        self.paths: list[str] = []

    async def call(self, path: str, body: Any) -> dict[str, Any]:
        self.paths.append(path)
        return await super().call(path, body)


async def walk(caller: ScriptedCaller, since: int = 0, until: int = 2**32, **kwargs: Any) -> list[Message]:
    return [m async for m in iter_group_history(caller, group_id=GROUP, since=since, until=until, **kwargs)]


async def test_first_request_is_the_newest_page_and_the_next_continues_below_its_smallest_seq() -> None:
    caller = PathCaller([seqs_page(45, 26), seqs_page(25, 6), seqs_page(5, 1)])
    got = await walk(caller)
    assert [m.seq for m in got] == list(range(45, 0, -1)), "newest first, each message once"
    assert caller.paths == [GROUP_HISTORY_PATH] * 3
    assert GROUP_HISTORY_PATH == "group_open_http_svc/group_msg_get_simple"
    assert caller.requests[0] == {"GroupId": GROUP, "ReqMsgNumber": 20, "WithRecalledMsg": 1}
    assert [r.get("ReqMsgSeq") for r in caller.requests] == [None, 25, 5]
    assert not caller.replies


async def test_is_finished_1_is_not_the_end_of_the_history() -> None:
    # Each range came back whole (IsFinished 1), yet older messages remain: the walk must go on.
    caller = ScriptedCaller([seqs_page(60, 41), seqs_page(40, 21), seqs_page(20, 1)])
    stats = HistoryStats()
    got = await walk(caller, stats=stats)
    assert len(got) == 60
    assert stats.pages == 3
    assert [r.get("ReqMsgSeq") for r in caller.requests] == [None, 40, 20]


async def test_the_walk_stops_at_seq_1_without_asking_for_seq_0() -> None:
    caller = ScriptedCaller([seqs_page(20, 1), seqs_page(1, 1)])
    got = await walk(caller)
    assert len(got) == 20
    assert len(caller.requests) == 1, "the next ReqMsgSeq would be 0: nothing is left"


async def test_a_page_cut_short_continues_from_its_smallest_seq() -> None:
    # IsFinished 0: the 1 MB cap let only 40..35 through; 34 is where the next page starts.
    caller = ScriptedCaller([seqs_page(40, 35, finished=0), seqs_page(34, 15), seqs_page(14, 1)])
    got = await walk(caller)
    assert [m.seq for m in got] == list(range(40, 0, -1))
    assert [r.get("ReqMsgSeq") for r in caller.requests] == [None, 34, 14]


async def test_a_one_message_page_at_the_requested_seq_is_progress() -> None:
    caller = ScriptedCaller([seqs_page(30, 11), seqs_page(10, 10, finished=0), seqs_page(9, 1)])
    got = await walk(caller)
    assert [m.seq for m in got] == list(range(30, 0, -1))
    assert [r.get("ReqMsgSeq") for r in caller.requests] == [None, 10, 9]


async def test_is_finished_2_ends_the_walk_above_seq_1() -> None:
    # Everything below seq 31 has expired: no request for it is made.
    caller = ScriptedCaller([seqs_page(50, 31, finished=2), seqs_page(30, 11)])
    got = await walk(caller)
    assert [m.seq for m in got] == list(range(50, 30, -1))
    assert len(caller.requests) == 1


async def test_an_empty_page_ends_the_walk() -> None:
    caller = ScriptedCaller([page([], finished=1), seqs_page(5, 1)])
    stats = HistoryStats()
    assert await walk(caller, stats=stats) == []
    assert stats.pages == 1
    caller = ScriptedCaller([seqs_page(40, 21), page([], finished=0), seqs_page(5, 1)])
    assert len(await walk(caller)) == 20
    assert len(caller.requests) == 2


async def test_the_walk_stops_after_the_first_page_wholly_older_than_since() -> None:
    # Seq n is sent at T0 + n; the window starts at seq 75's time.
    replies = [seqs_page(100, 81), seqs_page(80, 61), seqs_page(60, 41), seqs_page(40, 21)]
    caller = ScriptedCaller(replies)
    stats = HistoryStats()
    got = await walk(caller, since=T0 + 75, stats=stats)
    assert [m.seq for m in got] == list(range(100, 74, -1))
    # 80..61 still reached into the window; 60..41 is wholly older, so the walk ends there.
    assert len(caller.requests) == 3
    assert stats == HistoryStats(pages=3, messages=26, duplicates=0, outside_window=34)


async def test_a_page_of_undated_holes_does_not_end_the_walk() -> None:
    holes = page([item(s, 0, place=1) for s in range(40, 20, -1)])
    caller = ScriptedCaller([seqs_page(60, 41), holes, seqs_page(20, 1)])
    got = await walk(caller, since=T0 + 10)
    assert len(caller.requests) == 3
    assert [m.seq for m in got] == list(range(60, 9, -1))
    assert {m.state for m in got if 21 <= m.seq <= 40} == {MessageState.HOLE}


async def test_messages_newer_than_until_are_skipped() -> None:
    caller = ScriptedCaller([seqs_page(40, 21), seqs_page(20, 1)])
    stats = HistoryStats()
    got = await walk(caller, since=T0 + 5, until=T0 + 30, stats=stats)
    assert [m.seq for m in got] == list(range(30, 4, -1))
    assert stats.outside_window == 10 + 4


async def test_holes_recalled_and_system_messages_come_with_their_state() -> None:
    reply = page(
        [
            item(7, sender="bob", text="spam"),
            item(6, place=2),
            item(5, 0, place=1, sender=""),
            item(4, system=1, sender="@TIM#SYSTEM"),
            {**item(3), "CloudCustomData": "cc"},
        ]
    )
    got = await walk(alone(reply))
    by_seq = {m.seq: m for m in got}
    assert [m.seq for m in got] == [7, 6, 5, 4, 3]
    first = by_seq[7]
    assert first == Message(
        kind=ConversationKind.GROUP,
        msg_key="7",
        from_account="bob",
        timestamp=T0 + 7,
        seq=7,
        random=1007,
        state=MessageState.NORMAL,
        body=({"MsgType": "TIMTextElem", "MsgContent": {"Text": "spam"}},),
    )
    assert by_seq[6].state is MessageState.RECALLED
    assert not by_seq[6].is_actionable
    assert (by_seq[5].state, by_seq[5].timestamp, tuple(by_seq[5].body)) == (MessageState.HOLE, 0, ())
    assert by_seq[4].system
    assert not by_seq[7].system
    assert by_seq[3].cloud_custom_data == "cc"


async def test_with_recalled_false_leaves_the_flag_out_and_topic_id_is_passed_through() -> None:
    caller = ScriptedCaller([seqs_page(30, 11), seqs_page(10, 1)])
    await walk(caller, with_recalled=False, topic_id="@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic")
    for request in caller.requests:
        assert "WithRecalledMsg" not in request
        assert request["TopicId"] == "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic"
        assert request["GroupId"] == GROUP
    caller = ScriptedCaller([seqs_page(3, 1)])
    await walk(caller)
    assert "TopicId" not in caller.requests[0]


@pytest.mark.parametrize(("page_size", "sent"), [(5, 5), (20, 20), (50, GROUP_MAX_PAGE), (0, 1)])
async def test_req_msg_number_is_bounded_by_the_documented_20(page_size: int, sent: int) -> None:
    caller = ScriptedCaller([seqs_page(3, 1)])
    await walk(caller, page_size=page_size)
    assert caller.requests[0]["ReqMsgNumber"] == sent


async def test_a_seq_repeated_within_a_page_is_yielded_once() -> None:
    reply = page([item(5), item(4), item(4), item(3)])
    stats = HistoryStats()
    got = await walk(alone(reply), stats=stats)
    assert [m.seq for m in got] == [5, 4, 3]
    assert (stats.messages, stats.duplicates) == (3, 1)


# Undated messages: yielded unless the dated messages around them (by seq) put them outside the window.


async def test_a_hole_between_two_messages_of_the_window_is_yielded() -> None:
    reply = page([item(12), item(11, 0, place=1), item(10)])
    got = await walk(alone(reply), since=T0 + 10, until=T0 + 12)
    assert [(m.seq, m.state) for m in got] == [
        (12, MessageState.NORMAL),
        (11, MessageState.HOLE),
        (10, MessageState.NORMAL),
    ]


async def test_a_hole_below_a_message_older_than_since_is_not_yielded() -> None:
    reply = page([item(12), item(11), item(10, 0, place=1), item(9)])
    stats = HistoryStats()
    got = await walk(alone(reply), since=T0 + 12, stats=stats)
    assert [m.seq for m in got] == [12]
    assert stats.outside_window == 3


async def test_a_hole_above_a_message_newer_than_until_is_not_yielded() -> None:
    reply = page([item(12, 0, place=1), item(11), item(10), item(9)])
    stats = HistoryStats()
    got = await walk(alone(reply), until=T0 + 9, stats=stats)
    assert [m.seq for m in got] == [9]
    assert stats.outside_window == 3


async def test_a_hole_straddling_a_window_edge_is_yielded() -> None:
    # 11 is in the window, 9 is not: the hole at 10 may have been sent at either time, so it is reported.
    reply = page([item(11), item(10, 0, place=1), item(9)])
    got = await walk(alone(reply), since=T0 + 11)
    assert [m.seq for m in got] == [11, 10]
    # Likewise at the window end: 11 is after ``until``, 9 is not.
    got = await walk(alone(reply), until=T0 + 9)
    assert [m.seq for m in got] == [10, 9]


async def test_a_hole_at_a_page_edge_waits_for_the_next_page() -> None:
    first = page([item(22), item(21, 0, place=1)])
    caller = ScriptedCaller([first, page([item(20, T0 + 1000)]), page([item(19, T0 + 1)]), page([])])
    got = await walk(caller, since=T0, until=T0 + 100)
    # 20 was sent after ``until``, so the hole at 21 (sent after 20) is outside too.
    assert [m.seq for m in got] == [22, 19]
    caller = ScriptedCaller([first, page([item(20)]), page([item(19)]), page([])])
    got = await walk(caller, since=T0, until=T0 + 100)
    assert [m.seq for m in got] == [22, 21, 20, 19]


async def test_undated_messages_at_the_end_of_the_history_are_yielded() -> None:
    reply = page([item(3), item(2, 0, place=1), item(1, 0, place=1)])
    got = await walk(ScriptedCaller([reply]), since=T0 + 3)
    assert [m.seq for m in got] == [3, 2, 1]
    got = await walk(ScriptedCaller([page([item(40), item(39, 0, place=1)], finished=2)]), since=T0 + 40)
    assert [m.seq for m in got] == [40, 39], "nothing below bounds the hole when the rest has expired"


# Replies that would make the walk loop or misread messages.


async def test_a_reply_that_makes_no_progress_is_a_protocol_error() -> None:
    caller = ScriptedCaller([seqs_page(40, 21), seqs_page(40, 21)])
    with pytest.raises(TimProtocolError, match=re.escape("no progress: asked for seqs up to 20, got 21..40")):
        await walk(caller)


async def test_a_seq_above_the_requested_one_is_a_protocol_error() -> None:
    caller = ScriptedCaller([seqs_page(40, 21), seqs_page(21, 2)])
    with pytest.raises(TimProtocolError, match="MsgSeq 21 is above the requested ReqMsgSeq 20"):
        await walk(caller)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"IsPlaceMsg": 7}, r"RspMsgList\[0\].IsPlaceMsg is 7, expected 0, 1 or 2"),
        ({"MsgSeq": None}, r"RspMsgList\[0\].MsgSeq is a NoneType"),
        ({"MsgSeq": "5"}, r"RspMsgList\[0\].MsgSeq is a str, expected int"),
        ({"MsgSeq": 0}, r"RspMsgList\[0\].MsgSeq is 0, expected a positive integer"),
        ({"MsgSeq": True}, r"RspMsgList\[0\].MsgSeq is a bool"),
        ({"IsSystemMsg": 2}, r"RspMsgList\[0\].IsSystemMsg is 2, expected 0 or 1"),
        ({"MsgTimeStamp": "now"}, r"RspMsgList\[0\].MsgTimeStamp is a str"),
        ({"MsgTimeStamp": -1}, r"RspMsgList\[0\].MsgTimeStamp is -1"),
        ({"MsgBody": "hi"}, r"RspMsgList\[0\].MsgBody is not a list of objects"),
        ({"From_Account": 5}, r"RspMsgList\[0\].From_Account is a int"),
        ({"MsgRandom": 1.5}, r"RspMsgList\[0\].MsgRandom is a float"),
    ],
)
def test_malformed_items_are_protocol_errors_naming_the_field(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(TimProtocolError, match=problem) as caught:
        parse_group_page(page([{**item(5), **change}]))
    assert caught.value.command == GROUP_HISTORY_COMMAND


def test_a_missing_msg_seq_or_live_message_time_is_a_protocol_error() -> None:
    no_seq = item(5)
    del no_seq["MsgSeq"]
    with pytest.raises(TimProtocolError, match=r"MsgSeq is missing"):
        parse_group_page(page([item(6)]) | {"RspMsgList": [no_seq]})
    with pytest.raises(TimProtocolError, match=r"MsgTimeStamp is missing"):
        parse_group_page(page([item(5, 0)]))
    # A placeholder may have no time.
    assert parse_group_page(page([item(5, 0, place=2)])).messages[0].timestamp == 0


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"RspMsgList": []}, "IsFinished is missing"),
        ({"IsFinished": 3, "RspMsgList": []}, "IsFinished is 3, expected 0, 1 or 2"),
        ({"IsFinished": 1, "RspMsgList": {}}, "RspMsgList is a dict, expected list"),
        ({"IsFinished": 1, "RspMsgList": [5]}, r"RspMsgList\[0\] is not an object"),
    ],
)
def test_malformed_pages_are_protocol_errors(reply: dict[str, Any], problem: str) -> None:
    with pytest.raises(TimProtocolError, match=problem):
        parse_group_page(reply)


def test_a_page_without_rsp_msg_list_is_empty() -> None:
    assert parse_group_page({"IsFinished": 1}).messages == ()


async def test_a_malformed_page_mid_walk_fails_the_walk_after_the_good_pages() -> None:
    caller = ScriptedCaller([seqs_page(40, 21), page([{**item(20), "IsPlaceMsg": 9}])])
    got: list[int] = []

    async def collect() -> None:
        async for message in iter_group_history(caller, group_id=GROUP, since=0, until=2**32):
            got.append(message.seq)

    with pytest.raises(TimProtocolError, match="IsPlaceMsg is 9"):
        await collect()
    assert got == list(range(40, 20, -1))


async def test_api_errors_from_the_caller_are_raised() -> None:
    class GoneCaller:
        async def call(self, path: str, body: Any) -> dict[str, Any]:
            raise TimApiError("group_msg_get_simple", 10010, "group dismissed")

    with pytest.raises(TimApiError) as caught:
        await walk(GoneCaller())  # type: ignore[arg-type]
    assert caught.value.code == 10010


async def test_a_walk_can_start_at_a_given_seq() -> None:
    caller = ScriptedCaller([seqs_page(30, 11), seqs_page(10, 1)])
    messages = await walk(caller, since=T0 + 15, until=T0 + 28, start_seq=30)
    assert [m.seq for m in messages] == list(range(28, 14, -1))
    assert [r.get("ReqMsgSeq") for r in caller.requests] == [30, 10], "ends after a page wholly before since"
    with pytest.raises(TimProtocolError, match="above the requested ReqMsgSeq 25"):
        await walk(ScriptedCaller([seqs_page(30, 11)]), start_seq=25)
