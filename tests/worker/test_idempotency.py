"""The ledger keeps its word through the queue: a job id is an idempotency key, a settled job's repeats get
its stored result byte for byte, and a moderator's rejection holds against later jobs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import make_client
from tests.keyword_rules import StaticRules
from tests.worker.harness import ThreadWorker, job, wait_results, worker_settings
from tests.worker.test_pipeline_e2e import WINDOW, recalled_keys, seed_conversation
from worker import plans
from worker.config import Settings
from worker.emulator.seed import import_accounts
from worker.emulator.server import EmulatorThread
from worker.ledger import open_ledger
from worker.queues import Queues


@pytest.fixture
def settings(broker_url: str, emulator: EmulatorThread) -> Iterator[Settings]:
    settings = worker_settings(broker_url, emulator.url)
    yield settings
    Queues(settings).delete_all()


def take_raw_results(queues: Queues, count: int) -> list[bytes]:
    """Results exactly as published (``wait_results`` parses them)."""
    bodies: list[bytes] = []
    while len(bodies) < count:
        envelopes = queues.read(queues.names.results, take=True, wait_s=30)
        assert envelopes, f"only {len(bodies)} of {count} results arrived"
        bodies += [e.body for e in envelopes]
    return bodies


async def test_a_reused_job_id_with_another_payload_is_refused_and_the_first_record_stands(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    async with make_client(emulator.url) as client:
        await import_accounts(client, ["user3"])
    queues = Queues(settings)
    queues.submit([job("r-same", since=WINDOW[0], until=WINDOW[1], mode="dry_run")])
    other = job("r-same", operator="user3", peer="user1", since=WINDOW[0], until=WINDOW[1])
    with ThreadWorker(settings, StaticRules()):
        [first] = wait_results(queues, 1)
        queues.submit([other])
        [second] = wait_results(queues, 1)
    assert first["status"] == "dry_run"
    assert second["status"] == "invalid"
    assert second["reason"] == "job_id_conflict"
    assert "r-same" in second["error"] and "already used for another job" in second["error"]
    assert second["messages_scanned"] == 0
    assert recalled_keys(emulator.url) == set()
    [dead] = queues.read(queues.names.dead, take=True, wait_s=5)
    assert dead.headers["x-dead-reason"] == "job_id_conflict"
    ledger = open_ledger(settings.database_url)
    try:
        audit = ledger.audit("r-same")
    finally:
        ledger.dispose()
    assert audit["conversation"] == {"type": "c2c", "operator": "user2", "peer": "user1"}
    assert audit["status"] == "dry_run"
    assert {m["msg_key"] for m in audit["messages"]} >= {keys["spam_1"], keys["spam_2"]}


async def test_a_settled_job_delivered_again_gets_its_stored_result_byte_for_byte(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    queues = Queues(settings)
    again = job("r-twice", since=WINDOW[0], until=WINDOW[1])
    queues.submit([again])
    with ThreadWorker(settings, StaticRules()) as worker:
        [first] = take_raw_results(queues, 1)
        queues.submit([again])  # a producer's resubmission, or a redelivery after publish and before ack
        [second] = take_raw_results(queues, 1)
        counts = dict(worker.worker.state.counts)
    assert second == first
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
    assert counts == {"done": 1}, "the repeat is published, not run or counted again"


async def test_a_rejected_plan_holds_its_messages_back_from_later_jobs_until_reopened(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    spam = {keys["spam_1"], keys["spam_2"]}
    queues = Queues(settings)
    ledger = open_ledger(settings.database_url)
    try:
        with ThreadWorker(settings, StaticRules()):
            queues.submit([job("r-look", since=WINDOW[0], until=WINDOW[1], mode="dry_run")])
            [looked] = wait_results(queues, 1)
            plans.reject(ledger, looked["plan_ids"]["dry_run"], by="alice", note="banter between friends")
            queues.submit([job("r-recall", since=WINDOW[0], until=WINDOW[1])])
            [held] = wait_results(queues, 1)
            assert recalled_keys(emulator.url) == set()
            plans.reopen(ledger, looked["plan_ids"]["dry_run"], by="bob")
            queues.submit([job("r-recall-again", since=WINDOW[0], until=WINDOW[1])])
            [after] = wait_results(queues, 1)
        audit = ledger.audit("r-recall")
    finally:
        ledger.dispose()
    assert held["status"] == "done"
    assert held["recalled"] == []
    assert {s["msg_key"] for s in held["skipped"] if s["reason"] == "rejected_by_moderator"} == spam
    audited = {m["msg_key"]: m for m in audit["messages"]}
    for key in spam:
        assert audited[key]["decisions"], "the audit shows the moderator's decision"
    assert sorted(after["recalled"]) == sorted(spam)
    assert recalled_keys(emulator.url) == spam


async def test_a_failed_job_runs_again_only_when_an_operator_replays_it(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    httpx.post(
        f"{emulator.url}/_emulator/faults", json={"fail_next": {"admin_getroammsg": [90001]}}
    ).raise_for_status()
    queues = Queues(settings)
    failing = job("r-fails", since=WINDOW[0], until=WINDOW[1])
    queues.submit([failing])
    with ThreadWorker(settings, StaticRules()):
        [failed] = take_raw_results(queues, 1)
        queues.submit([failing])  # the same job sent again: its stored failure, not a new run
        [repeated] = take_raw_results(queues, 1)
        assert repeated == failed
        assert recalled_keys(emulator.url) == set()
        # Two dead letters: the failure's, and its repeat's (a repeat cannot know the first was published).
        assert Queues(settings).replay_dead(job_ids={"r-fails"}) == 2
        after = take_raw_results(queues, 2)
    assert orjson.loads(failed)["status"] == "failed"
    assert orjson.loads(failed)["reason"] == "permanent_error"
    assert after[0] == after[1], "the first replay runs the job; the second gets its new result"
    assert orjson.loads(after[0])["status"] == "done"
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
