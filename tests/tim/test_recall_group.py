"""Group recall (group_msg_recall) and wiping a sender (delete_group_msg_by_sender): request shapes, batching,
per-seq results, and whole-call errors raised rather than spread over the messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import make_client
from worker.tim.errors import TimApiError, TimProtocolError
from worker.tim.recall import (
    GROUP_RECALL_BATCH,
    GROUP_RECALL_PATH,
    GROUP_RECALL_REFUSALS,
    GROUP_WIPE_PATH,
    RecallOutcome,
    RecallResult,
    parse_group_recall_ret_list,
    recall_group,
    utf8_prefix,
    wipe_group_sender,
)

GROUP = "@TGS#2ABCDEF"
TOPIC = "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic"
OK: dict[str, Any] = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}


class RecallService:
    """Answers every requested seq with ``codes.get(seq, 0)``, except seqs in ``omit``."""

    def __init__(self, codes: dict[int, int] | None = None, omit: frozenset[int] = frozenset()) -> None:
        self.codes = codes or {}
        self.omit = omit
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, path: str, body: Any) -> dict[str, Any]:
        self.calls.append((path, dict(body)))
        if path == GROUP_WIPE_PATH:
            return dict(OK)
        seqs = [entry["MsgSeq"] for entry in body["MsgSeqList"]]
        items = [{"MsgSeq": s, "RetCode": self.codes.get(s, 0)} for s in seqs if s not in self.omit]
        return {**OK, "RecallRetList": items}


async def test_23_seqs_go_out_as_10_10_3_and_come_back_one_result_each_in_order() -> None:
    service = RecallService()
    seqs = list(range(100, 123))
    results = await recall_group(service, group_id=GROUP, seqs=seqs)
    assert [path for path, _ in service.calls] == [GROUP_RECALL_PATH] * 3
    assert GROUP_RECALL_PATH == "group_open_http_svc/group_msg_recall"
    sent = [[entry["MsgSeq"] for entry in body["MsgSeqList"]] for _, body in service.calls]
    assert sent == [seqs[:10], seqs[10:20], seqs[20:]]
    assert [len(batch) for batch in sent] == [GROUP_RECALL_BATCH, GROUP_RECALL_BATCH, 3]
    assert service.calls[0][1] == {"GroupId": GROUP, "MsgSeqList": [{"MsgSeq": s} for s in seqs[:10]]}
    assert results == [RecallResult(str(s), RecallOutcome.RECALLED) for s in seqs]


async def test_ret_codes_map_to_outcomes_with_the_refusal_in_words() -> None:
    codes = {1: 0, 2: 20023, 3: 10030, 4: 10031, 5: 10032, 6: 10033, 7: 10041, 8: 99999}
    results = await recall_group(RecallService(codes, omit=frozenset({9})), group_id=GROUP, seqs=range(1, 10))
    assert [(r.msg_key, r.outcome, r.code) for r in results] == [
        ("1", RecallOutcome.RECALLED, 0),
        ("2", RecallOutcome.ALREADY_RECALLED, 20023),
        ("3", RecallOutcome.NOT_FOUND, 10030),
        ("4", RecallOutcome.FAILED, 10031),
        ("5", RecallOutcome.FAILED, 10032),
        ("6", RecallOutcome.FAILED, 10033),
        ("7", RecallOutcome.FAILED, 10041),
        ("8", RecallOutcome.FAILED, 99999),
        ("9", RecallOutcome.FAILED, -1),
    ]
    info = {r.msg_key: r.info for r in results}
    assert info["4"] == "past the recall time limit"
    assert info["5"] == "this message cannot be recalled"
    assert info["6"] == "this group type does not support recall"
    assert info["7"] == "the app refuses group recall"
    assert info["8"] == "not recalled (RetCode 99999)"
    assert info["9"] == "not in RecallRetList"
    assert set(GROUP_RECALL_REFUSALS) == {10031, 10032, 10033, 10041}
    assert [r.outcome.is_done for r in results[:3]] == [True, True, False]


async def test_topic_and_reason_are_sent_and_left_out_when_not_given() -> None:
    service = RecallService()
    await recall_group(service, group_id=GROUP, seqs=[5], topic_id=TOPIC, reason="spam")
    await recall_group(service, group_id=GROUP, seqs=[5])
    await recall_group(service, group_id=GROUP, seqs=[5], reason="")
    bodies = [body for _, body in service.calls]
    assert (bodies[0]["TopicId"], bodies[0]["Reason"]) == (TOPIC, "spam")
    for body in bodies[1:]:
        assert "TopicId" not in body
        assert "Reason" not in body


@pytest.mark.parametrize(
    ("reason", "sent"),
    [
        ("a" * 150, "a" * 100),
        ("a" * 98 + "é", "a" * 98 + "é"),  # exactly 100 bytes
        ("a" * 99 + "é", "a" * 99),  # é would straddle byte 100
        ("违规" * 20, "违规" * 16 + "违"),  # 3-byte characters: 33 fit in 99 bytes
        ("😀" * 30, "😀" * 25),
        ("a" * 97 + "😀", "a" * 97),
    ],
)
async def test_reason_is_cut_to_100_bytes_without_splitting_a_character(reason: str, sent: str) -> None:
    service = RecallService()
    await recall_group(service, group_id=GROUP, seqs=[1], reason=reason)
    assert service.calls[0][1]["Reason"] == sent
    assert len(sent.encode()) <= 100


@given(st.text(max_size=120), st.integers(0, 120))
def test_utf8_prefix_is_the_longest_prefix_that_fits(text: str, limit: int) -> None:
    cut = utf8_prefix(text, limit)
    assert text.startswith(cut)
    assert len(cut.encode()) <= limit
    if cut != text:
        assert len(text[: len(cut) + 1].encode()) > limit, "one more character would not fit"


async def test_a_seq_listed_twice_is_sent_once_and_reported_at_each_place() -> None:
    service = RecallService({7: 20023})
    results = await recall_group(service, group_id=GROUP, seqs=[7, 8, 7])
    assert [e["MsgSeq"] for e in service.calls[0][1]["MsgSeqList"]] == [7, 8]
    assert [(r.msg_key, r.outcome) for r in results] == [
        ("7", RecallOutcome.ALREADY_RECALLED),
        ("8", RecallOutcome.RECALLED),
        ("7", RecallOutcome.ALREADY_RECALLED),
    ]


async def test_no_seqs_make_no_call_and_bad_seqs_are_refused_before_any_call() -> None:
    service = RecallService()
    assert await recall_group(service, group_id=GROUP, seqs=[]) == []
    for bad in ([1, 0], [-3], [True], ["5"]):
        with pytest.raises(ValueError, match="positive integer"):
            await recall_group(service, group_id=GROUP, seqs=bad)  # type: ignore[arg-type]
    assert service.calls == []


async def test_wipe_request_shape() -> None:
    service = RecallService()
    assert await wipe_group_sender(service, group_id=GROUP, sender="spammer") is None
    await wipe_group_sender(service, group_id=GROUP, sender="spammer", topic_id=TOPIC)
    assert GROUP_WIPE_PATH == "group_open_http_svc/delete_group_msg_by_sender"
    assert service.calls == [
        (GROUP_WIPE_PATH, {"GroupId": GROUP, "Sender_Account": "spammer"}),
        (GROUP_WIPE_PATH, {"GroupId": GROUP, "Sender_Account": "spammer", "TopicId": TOPIC}),
    ]


# Parsing RecallRetList.


def test_a_seq_missing_from_the_reply_is_a_failure_not_a_success() -> None:
    results = parse_group_recall_ret_list({"RecallRetList": [{"MsgSeq": 1, "RetCode": 0}]}, [1, 2])
    assert results == [
        RecallResult("1", RecallOutcome.RECALLED),
        RecallResult("2", RecallOutcome.FAILED, -1, "not in RecallRetList"),
    ]
    assert [r.outcome for r in parse_group_recall_ret_list(dict(OK), [3])] == [RecallOutcome.FAILED]


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ({"MsgSeq": 1}, "RecallRetList is not a list"),
        ([5], r"RecallRetList\[0\] is not an object"),
        ([{"RetCode": 0}], r"RecallRetList\[0\].MsgSeq is missing or not an integer"),
        ([{"MsgSeq": "1", "RetCode": 0}], r"RecallRetList\[0\].MsgSeq is missing or not an integer"),
        ([{"MsgSeq": 1}], r"RecallRetList\[0\].RetCode is missing or not an integer"),
        ([{"MsgSeq": 1, "RetCode": False}], r"RecallRetList\[0\].RetCode is missing or not an integer"),
        ([{"MsgSeq": 9, "RetCode": 0}], r"RecallRetList\[0\].MsgSeq 9 was not requested"),
        (
            [{"MsgSeq": 1, "RetCode": 0}, {"MsgSeq": 1, "RetCode": 10030}],
            r"MsgSeq 1 is listed with RetCodes 0 and 10030",
        ),
    ],
)
def test_malformed_ret_lists_are_protocol_errors(items: Any, problem: str) -> None:
    with pytest.raises(TimProtocolError, match=problem) as caught:
        parse_group_recall_ret_list({"RecallRetList": items}, [1, 2])
    assert caught.value.command == "group_msg_recall"


def test_a_repeated_item_with_the_same_code_is_accepted() -> None:
    items = [{"MsgSeq": 1, "RetCode": 20023}, {"MsgSeq": 1, "RetCode": 20023}]
    results = parse_group_recall_ret_list({"RecallRetList": items}, [1])
    assert [r.outcome for r in results] == [RecallOutcome.ALREADY_RECALLED]


# Whole-call errors, through the real client.


def answering(reply: Callable[[str, dict[str, Any]], dict[str, Any]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        return httpx.Response(200, content=orjson.dumps(reply(request.url.path, body)))

    return httpx.MockTransport(handler)


def error(code: int) -> dict[str, Any]:
    return {"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": f"error {code}"}


@pytest.mark.parametrize("code", [10010, 10007, 10004])
async def test_a_non_retryable_whole_call_error_is_raised_not_spread_over_the_messages(code: int) -> None:
    async with make_client(
        "https://console.tim.qq.com", transport=answering(lambda *_: error(code))
    ) as client:
        with pytest.raises(TimApiError) as caught:
            await recall_group(client, group_id=GROUP, seqs=[1, 2, 3])
        assert (caught.value.code, caught.value.retryable) == (code, False)
        assert client.stats.calls("group_msg_recall") == 1
        with pytest.raises(TimApiError, match=str(code)):
            await wipe_group_sender(client, group_id=GROUP, sender="spammer")


async def test_a_retryable_error_is_raised_once_the_client_gives_up() -> None:
    async with make_client(
        "https://console.tim.qq.com", transport=answering(lambda *_: error(10002))
    ) as client:
        with pytest.raises(TimApiError) as caught:
            await recall_group(client, group_id=GROUP, seqs=[1])
        assert caught.value.retryable
        assert client.stats.calls("group_msg_recall") == client.retry.max_attempts


async def test_an_error_in_a_later_batch_is_raised_after_the_earlier_batch_was_sent() -> None:
    sent: list[list[int]] = []

    def reply(path: str, body: dict[str, Any]) -> dict[str, Any]:
        seqs = [entry["MsgSeq"] for entry in body["MsgSeqList"]]
        sent.append(seqs)
        if len(sent) == 2:
            return error(10010)
        return {**OK, "RecallRetList": [{"MsgSeq": s, "RetCode": 0} for s in seqs]}

    async with make_client("https://console.tim.qq.com", transport=answering(reply)) as client:
        with pytest.raises(TimApiError, match="10010"):
            await recall_group(client, group_id=GROUP, seqs=range(1, 16))
    assert sent == [list(range(1, 11)), list(range(11, 16))]


async def test_the_real_client_posts_to_the_group_paths() -> None:
    paths: list[str] = []
    bodies: list[dict[str, Any]] = []

    def reply(path: str, body: dict[str, Any]) -> dict[str, Any]:
        paths.append(path)
        bodies.append(body)
        if "MsgSeqList" in body:
            return {
                **OK,
                "RecallRetList": [{"MsgSeq": e["MsgSeq"], "RetCode": 0} for e in body["MsgSeqList"]],
            }
        return dict(OK)

    async with make_client("https://console.tim.qq.com", transport=answering(reply)) as client:
        results = await recall_group(client, group_id=GROUP, seqs=[4], reason="违规" * 60)
        await wipe_group_sender(client, group_id=GROUP, sender="spammer")
    assert paths == [f"/v4/{GROUP_RECALL_PATH}", f"/v4/{GROUP_WIPE_PATH}"]
    assert results == [RecallResult("4", RecallOutcome.RECALLED)]
    assert bodies[0]["Reason"] == "违规" * 16 + "违", "the cut survives JSON encoding as 99 bytes"
