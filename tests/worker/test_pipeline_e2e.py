"""The worker end to end, on both brokers: jobs from the queue to recalls in the emulator and results."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import make_client
from tests.keyword_rules import StaticRules
from tests.worker.harness import ThreadWorker, job, wait_results, worker_settings
from worker.config import Settings
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.queues import Queues

T0 = int(time.time()) - 3600
WINDOW = (T0, T0 + 600)


@pytest.fixture
def settings(broker_url: str, emulator: EmulatorThread) -> Iterator[Settings]:
    settings = worker_settings(broker_url, emulator.url)
    yield settings
    Queues(settings).delete_all(
        extra=[f"{settings.queue_prefix}.retry.{ms}ms" for ms in (200, 400, 800, 1000)]
    )


async def seed_conversation(url: str) -> dict[str, str]:
    """user1 (the suspect) and user2 (the reporter), with offending and clean messages around the window."""
    async with make_client(url) as client:
        await import_accounts(client, ["user1", "user2"])
        specs = {
            "spam_1": ("user1", "user2", T0 + 10, [text("Buy SPAM now, cheap!")]),
            "spam_2": ("user1", "user2", T0 + 20, [text("hello"), text("more spam here")]),
            "clean": ("user1", "user2", T0 + 30, [text("see you tomorrow")]),
            "quoted_by_reporter": ("user2", "user1", T0 + 40, [text("why do you send me spam?")]),
            "before_window": ("user1", "user2", T0 - 100, [text("old spam")]),
            "after_window": ("user1", "user2", T0 + 700, [text("later spam")]),
        }
        keys = {}
        for seq, (name, (sender, receiver, at, body)) in enumerate(specs.items(), start=1):
            keys[name] = await import_c2c(
                client, sender=sender, receiver=receiver, timestamp=at, seq=seq, random=seq * 7, body=body
            )
    return keys


def recalled_keys(url: str) -> set[str]:
    messages = httpx.get(f"{url}/_emulator/c2c", params={"a": "user1", "b": "user2"}).json()["messages"]
    return {m["MsgKey"] for m in messages if m["MsgFlagBits"] == 8}


async def test_suspect_messages_in_the_window_are_recalled_and_nothing_else(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    queues = Queues(settings)
    queues.submit([job("r-1", since=WINDOW[0], until=WINDOW[1])])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
    assert result["job_id"] == "r-1"
    assert result["status"] == "done"
    assert sorted(result["recalled"]) == sorted([keys["spam_1"], keys["spam_2"]])
    assert {"msg_key": keys["quoted_by_reporter"], "reason": "not_sent_by_suspect"} in result["skipped"]
    assert keys["before_window"] not in str(result) and keys["after_window"] not in str(result)
    spam_2 = next(m for m in result["matches"] if m["msg_key"] == keys["spam_2"])
    assert spam_2["element_path"] == "MsgBody[1].MsgContent.Text"
    assert spam_2["evidence"] == "spam"
    assert spam_2["sender"] == "user1"
    assert result["messages_scanned"] == 4
    assert result["pages_fetched"] >= 1
    assert result["api_calls"]["admin_msgwithdraw"] == 2


async def test_dry_run_recalls_nothing(settings: Settings, emulator: EmulatorThread) -> None:
    keys = await seed_conversation(emulator.url)
    queues = Queues(settings)
    queues.submit([job("r-dry", since=WINDOW[0], until=WINDOW[1], mode="dry_run")])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert result["status"] == "dry_run"
    assert sorted(result["planned"]) == sorted([keys["spam_1"], keys["spam_2"]])
    assert result["recalled"] == []
    assert recalled_keys(emulator.url) == set()
    assert "admin_msgwithdraw" not in result["api_calls"]
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["calls"].get("admin_msgwithdraw") is None


async def test_over_the_cap_the_job_is_escalated_and_nothing_recalled(
    broker_url: str, emulator: EmulatorThread
) -> None:
    settings = worker_settings(broker_url, emulator.url, max_recalls_per_job=1)
    try:
        await seed_conversation(emulator.url)
        queues = Queues(settings)
        queues.submit([job("r-cap", since=WINDOW[0], until=WINDOW[1])])
        with ThreadWorker(settings, StaticRules()):
            [result] = wait_results(queues, 1)
        assert result["status"] == "escalated"
        assert len(result["planned"]) == 2
        assert recalled_keys(emulator.url) == set()
        [escalation] = queues.read(queues.names.escalations, take=True, wait_s=5)
        assert orjson.loads(escalation.body)["job_id"] == "r-cap"
    finally:
        Queues(settings).delete_all()


async def test_invalid_and_undecodable_jobs_are_dead_lettered_and_the_worker_goes_on(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    queues = Queues(settings)
    bad = {
        "version": 1,
        "job_id": "r-bad",
        "conversation": {"type": "c2c", "operator": "user2", "peer": "user1"},
        "suspect": "user1",
        "window": {"since": 10, "until": 5},
        "mode": "delete",
    }
    queues.publish_raw(queues.names.jobs, orjson.dumps(bad), headers={"x-job-id": "r-bad"})
    queues.publish_raw(queues.names.jobs, b"\xff\xfe not json at all")
    queues.submit([job("r-good", since=WINDOW[0], until=WINDOW[1])])
    with ThreadWorker(settings, StaticRules()):
        results = {r["job_id"]: r for r in wait_results(queues, 3)}
    assert results["r-good"]["status"] == "done"
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
    assert results["r-bad"]["status"] == "invalid"
    assert "window: since is after until" in results["r-bad"]["error"]
    assert "mode: Input should be 'recall' or 'dry_run'" in results["r-bad"]["error"]
    assert results[None]["status"] == "invalid"
    assert "not valid JSON" in results[None]["error"]
    dead = queues.read(queues.names.dead, take=True, wait_s=5)
    assert len(dead) == 2
    by_body = {d.body: d.headers for d in dead}
    assert by_body[b"\xff\xfe not json at all"]["x-dead-reason"] == "invalid_job"
    assert "since is after until" in by_body[orjson.dumps(bad)]["x-dead-error"]


async def test_unknown_rule_set_is_dead_lettered_with_the_reason(
    settings: Settings, emulator: EmulatorThread
) -> None:
    await seed_conversation(emulator.url)
    queues = Queues(settings)
    queues.submit([job("r-rules", since=WINDOW[0], until=WINDOW[1], ruleset="nope")])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert result["status"] == "invalid"
    assert "unknown rule set 'nope'" in result["error"]
    [dead] = queues.read(queues.names.dead, take=True, wait_s=5)
    assert dead.headers["x-dead-reason"] == "unknown_ruleset"


async def test_jobs_complete_through_injected_10002_91000_and_502(
    settings: Settings, emulator: EmulatorThread
) -> None:
    await import_accounts_for(emulator.url, [f"u{i}" for i in range(12)])
    spam_keys = []
    async with make_client(emulator.url) as client:
        for i in range(0, 12, 2):
            for n in range(3):
                spam_keys.append(
                    await import_c2c(
                        client,
                        sender=f"u{i}",
                        receiver=f"u{i + 1}",
                        timestamp=T0 + 10 + n,
                        seq=n + 1,
                        random=i,
                        body=[text(f"spam {n}")],
                    )
                )
    faults = {
        "commands": {"*": {"error_rates": {"91000": 0.2, "10002": 0.1}, "http_502_rate": 0.1}},
        "seed": 3,
    }
    httpx.post(f"{emulator.url}/_emulator/faults", json=faults).raise_for_status()
    queues = Queues(settings)
    queues.submit(
        [
            job(
                f"r-f{i}",
                operator=f"u{i + 1}",
                peer=f"u{i}",
                suspect=f"u{i}",
                since=WINDOW[0],
                until=WINDOW[1],
            )
            for i in range(0, 12, 2)
        ]
    )
    with ThreadWorker(settings, StaticRules()):
        results = wait_results(queues, 6, timeout_s=90)
    assert sorted(r["status"] for r in results) == ["done"] * 6
    calls = httpx.get(f"{emulator.url}/_emulator/stats").json()["calls"]
    injected = sum(calls["admin_getroammsg"].get(code, 0) for code in ("91000", "10002", "http_502"))
    assert injected > 0, "the faults should have been hit"
    assert calls["admin_msgwithdraw"]["0"] == len(spam_keys), "each message recalled exactly once"
    for i in range(0, 12, 2):
        messages = httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": f"u{i}", "b": f"u{i + 1}"}).json()[
            "messages"
        ]
        assert all(m["MsgFlagBits"] == 8 for m in messages)


async def import_accounts_for(url: str, users: list[str]) -> None:
    async with make_client(url) as client:
        await import_accounts(client, users)
