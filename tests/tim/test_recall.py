"""Recalls: state visible to both history APIs, idempotency, per-item results."""

from __future__ import annotations

import time

import httpx

from worker.emulator.seed import (
    create_official_account,
    import_accounts,
    import_c2c,
    send_official_account,
    text,
)
from worker.emulator.server import EmulatorThread
from worker.tim.client import TimClient
from worker.tim.history import iter_official_account_history
from worker.tim.models import MessageState
from worker.tim.recall import RecallOutcome, parse_recall_ret_list, recall_c2c, recall_official_account

NOW = int(time.time())


async def test_c2c_recall_is_idempotent_and_reported_as_done(
    emulator: EmulatorThread, client: TimClient
) -> None:
    await import_accounts(client, ["user1", "user2"])
    key = await import_c2c(
        client, sender="user1", receiver="user2", timestamp=NOW - 60, seq=5, random=6, body=[text("spam")]
    )
    first = await recall_c2c(client, sender="user1", receiver="user2", msg_key=key)
    second = await recall_c2c(client, sender="user1", receiver="user2", msg_key=key)
    assert (first.outcome, second.outcome) == (RecallOutcome.RECALLED, RecallOutcome.ALREADY_RECALLED)
    assert second.code == 20023
    assert first.outcome.is_done and second.outcome.is_done
    stored = httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": "user1", "b": "user2"}).json()[
        "messages"
    ]
    assert stored[0]["MsgFlagBits"] == 8


async def test_c2c_recall_of_a_missing_or_foreign_message(client: TimClient) -> None:
    await import_accounts(client, ["user1", "user2"])
    key = await import_c2c(
        client, sender="user1", receiver="user2", timestamp=NOW - 60, seq=5, random=6, body=[text("hi")]
    )
    missing = await recall_c2c(client, sender="user1", receiver="user2", msg_key="1_2_3")
    wrong_sender = await recall_c2c(client, sender="user2", receiver="user1", msg_key=key)
    malformed = await recall_c2c(client, sender="user1", receiver="user2", msg_key="garbage")
    assert (missing.outcome, missing.code) == (RecallOutcome.NOT_FOUND, 20022)
    assert (wrong_sender.outcome, wrong_sender.code) == (RecallOutcome.NOT_FOUND, 20022)
    assert (malformed.outcome, malformed.code) == (RecallOutcome.FAILED, 90054)


async def test_official_account_recall_batches_by_ten_and_reports_each_key(
    emulator: EmulatorThread, client: TimClient
) -> None:
    await import_accounts(client, ["owner"])
    account = await create_official_account(client, owner="owner", name="News")
    keys = [
        await send_official_account(client, account=account, random=i, body=[text(f"post {i}")])
        for i in range(23)
    ]
    results = await recall_official_account(client, account=account, msg_keys=[*keys[:12], "999_1_1"])
    assert [r.outcome for r in results] == [RecallOutcome.RECALLED] * 12 + [RecallOutcome.NOT_FOUND]
    calls = httpx.get(f"{emulator.url}/_emulator/stats").json()["calls"]["official_account_msg_recall"]
    assert calls == {"0": 2}, "13 keys go out as 10 + 3"
    again = await recall_official_account(client, account=account, msg_keys=keys[10:14])
    assert [r.outcome for r in again] == [RecallOutcome.ALREADY_RECALLED] * 2 + [RecallOutcome.RECALLED] * 2
    states = {
        m.msg_key: m.state
        async for m in iter_official_account_history(client, account=account, since=0, until=2**32)
    }
    assert [states[k] for k in keys[:14]] == [MessageState.RECALLED] * 14
    assert states[keys[14]] is MessageState.NORMAL


def test_a_key_missing_from_the_reply_is_a_failure_not_a_success() -> None:
    results = parse_recall_ret_list(
        {"RecallRetList": [{"MsgKey": "1_1_1", "RetCode": 0}]}, ["1_1_1", "2_1_1"]
    )
    assert [r.outcome for r in results] == [RecallOutcome.RECALLED, RecallOutcome.FAILED]
