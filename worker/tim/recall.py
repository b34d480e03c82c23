"""Recall calls (one-to-one, official account, group). "Already recalled" is reported as done: recalls are
idempotent from the worker's view."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.tim.errors import TimApiError, TimProtocolError
from worker.tim.history import ApiCaller

C2C_RECALL_PATH = "openim/admin_msgwithdraw"
OA_RECALL_PATH = "official_account_open_http_svc/official_account_msg_recall"
OA_RECALL_BATCH = 10
GROUP_RECALL_PATH = "group_open_http_svc/group_msg_recall"
GROUP_WIPE_PATH = "group_open_http_svc/delete_group_msg_by_sender"
GROUP_RECALL_BATCH = 10
GROUP_RECALL_COMMAND = "group_msg_recall"
#: ``Reason`` of group_msg_recall is bounded in bytes, not characters.
GROUP_REASON_MAX_BYTES = 100

#: admin_msgwithdraw codes.
C2C_ALREADY_RECALLED = 20023
C2C_NOT_FOUND = 20022
#: Per-item RetCodes of official_account_msg_recall. 10030 is documented (message does not exist); the
#: docs name no per-item "already recalled" code, so the one-to-one code is taken to mean the same.
OA_NOT_FOUND = 10030
OA_ALREADY_RECALLED = 20023
#: Per-item RetCodes of group_msg_recall. As for official accounts, 20023 is taken to mean already recalled.
GROUP_NOT_FOUND = 10030
GROUP_ALREADY_RECALLED = 20023
#: Per-item RetCodes that mean the service will not recall the message, and why.
GROUP_RECALL_REFUSALS: dict[int, str] = {
    10031: "past the recall time limit",
    10032: "this message cannot be recalled",
    10033: "this group type does not support recall",
    10041: "the app refuses group recall",
}


class RecallOutcome(enum.StrEnum):
    """What happened to one message."""

    RECALLED = "recalled"
    ALREADY_RECALLED = "already_recalled"
    NOT_FOUND = "not_found"
    FAILED = "failed"

    @property
    def is_done(self) -> bool:
        """True when the message is, after the call, no longer visible."""
        return self in (RecallOutcome.RECALLED, RecallOutcome.ALREADY_RECALLED)


@dataclass(frozen=True, slots=True)
class RecallResult:
    """The result of recalling one message."""

    msg_key: str
    outcome: RecallOutcome
    code: int = 0
    info: str = ""


def _outcome_of_code(code: int, already: int, not_found: int) -> RecallOutcome:
    if code == 0:
        return RecallOutcome.RECALLED
    if code == already:
        return RecallOutcome.ALREADY_RECALLED
    if code == not_found:
        return RecallOutcome.NOT_FOUND
    return RecallOutcome.FAILED


async def recall_c2c(client: ApiCaller, *, sender: str, receiver: str, msg_key: str) -> RecallResult:
    """Recall one one-to-one message (``admin_msgwithdraw``).

    Retryable failures that outlast the client's retries are raised; every other API error is returned
    as a :class:`RecallResult` with its code.
    """
    body = {"From_Account": sender, "To_Account": receiver, "MsgKey": msg_key}
    try:
        await client.call(C2C_RECALL_PATH, body)
    except TimApiError as error:
        if error.retryable:
            raise
        outcome = _outcome_of_code(error.code, C2C_ALREADY_RECALLED, C2C_NOT_FOUND)
        return RecallResult(msg_key, outcome, error.code, error.info)
    return RecallResult(msg_key, RecallOutcome.RECALLED)


async def recall_official_account(
    client: ApiCaller, *, account: str, msg_keys: Sequence[str], reason: str | None = None
) -> list[RecallResult]:
    """Recall official-account messages (``official_account_msg_recall``), ten keys per call."""
    results: list[RecallResult] = []
    for start in range(0, len(msg_keys), OA_RECALL_BATCH):
        batch = list(msg_keys[start : start + OA_RECALL_BATCH])
        body: dict[str, Any] = {"Official_Account": account, "MsgKeyList": batch}
        if reason:
            body["Reason"] = reason[:100]
        reply = await client.call(OA_RECALL_PATH, body)
        results.extend(parse_recall_ret_list(reply, batch))
    return results


def parse_recall_ret_list(reply: dict[str, Any], requested: Sequence[str]) -> list[RecallResult]:
    """Match ``RecallRetList`` items to the requested keys. Pure.

    A key the reply does not mention is reported as failed rather than assumed recalled.
    """
    items = reply.get("RecallRetList", [])
    if not isinstance(items, list):
        raise TimProtocolError("official_account_msg_recall", "RecallRetList is not a list")
    codes: dict[str, int] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("MsgKey"), str):
            raise TimProtocolError("official_account_msg_recall", "RecallRetList item without a MsgKey")
        code = item.get("RetCode", 0)
        if type(code) is not int:
            raise TimProtocolError("official_account_msg_recall", "RetCode is not an integer")
        codes[item["MsgKey"]] = code
    results = []
    for key in requested:
        if key not in codes:
            results.append(RecallResult(key, RecallOutcome.FAILED, -1, "not in RecallRetList"))
        else:
            outcome = _outcome_of_code(codes[key], OA_ALREADY_RECALLED, OA_NOT_FOUND)
            results.append(RecallResult(key, outcome, codes[key]))
    return results


def utf8_prefix(text: str, max_bytes: int = GROUP_REASON_MAX_BYTES) -> str:
    """The longest prefix of ``text`` that fits in ``max_bytes`` of UTF-8 (never half a character)."""
    encoded = text.encode("utf-8", "replace")
    # A cut inside a multi-byte character leaves an incomplete tail, which "ignore" drops whole.
    return encoded[:max_bytes].decode("utf-8", "ignore")


async def recall_group(
    client: ApiCaller,
    *,
    group_id: str,
    seqs: Sequence[int],
    topic_id: str | None = None,
    reason: str | None = None,
) -> list[RecallResult]:
    """Recall group (or community topic) messages by seq (``group_msg_recall``), ten seqs per call.

    Returns one result per entry of ``seqs``, in order, with ``msg_key`` the seq as a string; a seq listed
    twice is sent once. Any API error of a whole call (retryable ones once the client's retries are spent,
    or e.g. 10010 group gone, 10007 no permission) is raised, not spread over the messages; batches sent
    before it stay recalled, and a later retry reports them as already recalled.
    """
    for seq in seqs:
        if type(seq) is not int or seq < 1:
            raise ValueError(f"a group message seq is a positive integer, not {seq!r}")
    distinct = list(dict.fromkeys(seqs))
    base: dict[str, Any] = {"GroupId": group_id}
    if topic_id is not None:
        base["TopicId"] = topic_id
    if reason:
        base["Reason"] = utf8_prefix(reason)
    by_seq: dict[int, RecallResult] = {}
    for start in range(0, len(distinct), GROUP_RECALL_BATCH):
        batch = distinct[start : start + GROUP_RECALL_BATCH]
        reply = await client.call(GROUP_RECALL_PATH, {**base, "MsgSeqList": [{"MsgSeq": s} for s in batch]})
        by_seq.update(zip(batch, parse_group_recall_ret_list(reply, batch), strict=True))
    return [by_seq[seq] for seq in seqs]


def _group_outcome(seq: int, code: int) -> RecallResult:
    if code == 0:
        return RecallResult(str(seq), RecallOutcome.RECALLED)
    if code == GROUP_ALREADY_RECALLED:
        return RecallResult(str(seq), RecallOutcome.ALREADY_RECALLED, code)
    if code == GROUP_NOT_FOUND:
        return RecallResult(str(seq), RecallOutcome.NOT_FOUND, code, "no such message")
    info = GROUP_RECALL_REFUSALS.get(code, f"not recalled (RetCode {code})")
    return RecallResult(str(seq), RecallOutcome.FAILED, code, info)


def parse_group_recall_ret_list(reply: Mapping[str, Any], requested: Sequence[int]) -> list[RecallResult]:
    """Match ``RecallRetList`` items to the requested seqs, one result per requested seq, in order. Pure.

    A seq the reply does not mention is reported as failed rather than assumed recalled. An item without
    an integer ``MsgSeq`` or ``RetCode``, an item for a seq that was not requested, or two items for one
    seq with different codes make the reply malformed (:class:`TimProtocolError`).
    """
    cmd = GROUP_RECALL_COMMAND
    items = reply.get("RecallRetList", [])
    if not isinstance(items, list):
        raise TimProtocolError(cmd, "RecallRetList is not a list")
    wanted = set(requested)
    codes: dict[int, int] = {}
    for index, item in enumerate(items):
        where = f"RecallRetList[{index}]"
        if not isinstance(item, dict):
            raise TimProtocolError(cmd, f"{where} is not an object")
        seq, code = item.get("MsgSeq"), item.get("RetCode")
        if type(seq) is not int:
            raise TimProtocolError(cmd, f"{where}.MsgSeq is missing or not an integer")
        if type(code) is not int:
            raise TimProtocolError(cmd, f"{where}.RetCode is missing or not an integer")
        if seq not in wanted:
            raise TimProtocolError(cmd, f"{where}.MsgSeq {seq} was not requested")
        if codes.setdefault(seq, code) != code:
            raise TimProtocolError(
                cmd, f"{where}: MsgSeq {seq} is listed with RetCodes {codes[seq]} and {code}"
            )
    return [
        _group_outcome(seq, codes[seq])
        if seq in codes
        else RecallResult(str(seq), RecallOutcome.FAILED, -1, "not in RecallRetList")
        for seq in requested
    ]


async def wipe_group_sender(
    client: ApiCaller, *, group_id: str, sender: str, topic_id: str | None = None
) -> None:
    """Silently recall what ``sender`` sent among the group's (or topic's) last 1000 messages
    (``delete_group_msg_by_sender``).

    The reply names no messages, so there is nothing to return; an API error is raised.
    """
    body: dict[str, Any] = {"GroupId": group_id, "Sender_Account": sender}
    if topic_id is not None:
        body["TopicId"] = topic_id
    await client.call(GROUP_WIPE_PATH, body)
