"""Recall calls. "Already recalled" is reported as done: recalls are idempotent from the worker's view."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.tim.errors import TimApiError, TimProtocolError
from worker.tim.history import ApiCaller

C2C_RECALL_PATH = "openim/admin_msgwithdraw"
OA_RECALL_PATH = "official_account_open_http_svc/official_account_msg_recall"
OA_RECALL_BATCH = 10

#: admin_msgwithdraw codes.
C2C_ALREADY_RECALLED = 20023
C2C_NOT_FOUND = 20022
#: Per-item RetCodes of official_account_msg_recall. 10030 is documented (message does not exist); the
#: docs name no per-item "already recalled" code, so the one-to-one code is taken to mean the same.
OA_NOT_FOUND = 10030
OA_ALREADY_RECALLED = 20023


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
