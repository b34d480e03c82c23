"""Poison deliveries: whatever arrives on the jobs queue, the worker dead-letters what it cannot read, with a
reason and an ``invalid`` result, and keeps working; the dead-letter tools list and replay any dead letter."""

from __future__ import annotations

import base64
import time
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.keyword_rules import StaticRules
from tests.worker.broker import publish
from tests.worker.harness import ThreadWorker, job, wait_results, worker_settings
from tests.worker.test_pipeline_e2e import WINDOW, recalled_keys, seed_conversation
from worker import cli
from worker.config import Settings
from worker.emulator.server import EmulatorThread
from worker.queues import Queues
from worker.runner import REDELIVERY_LIMIT


@pytest.fixture
def settings(broker_url: str, emulator: EmulatorThread) -> Iterator[Settings]:
    settings = worker_settings(broker_url, emulator.url)
    yield settings
    Queues(settings).delete_all()


def dead_letters(queues: Queues, count: int, timeout_s: float = 15) -> list[Any]:
    found: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count and time.monotonic() < deadline:
        found += queues.read(queues.names.dead, take=True, wait_s=0.5)
    assert len(found) == count, f"{len(found)} dead letters, expected {count}"
    return found


async def test_poison_deliveries_are_dead_lettered_with_a_reason_and_the_worker_goes_on(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    queues = Queues(settings)
    good = job("r-good", since=WINDOW[0], until=WINDOW[1]).model_dump_json(exclude_none=True).encode()
    nested = b"[" * 5000 + b"]" * 5000
    publish(settings, good, headers={"compression": "application/x-gzip"})  # not gzip at all
    publish(settings, good, content_type="application/x-python-serialize")
    publish(settings, b"\xff\xfe\x00 not UTF-8", content_encoding=None)
    publish(settings, nested)
    huge_id = orjson.dumps({"version": 1, "job_id": "x" * 200_000, "suspect": "user1"})
    publish(settings, huge_id, headers={"x-job-id": "y" * 100_000, "x-attempt": "three"})
    publish(settings, zlib.compress(good), headers={"compression": "application/x-gzip"})  # kombu: zlib
    with ThreadWorker(settings, StaticRules()) as worker:
        results = wait_results(queues, 6, timeout_s=60)
        assert worker.exit_code is None, "the worker must still be running"
    by_status: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_status.setdefault(result["status"], []).append(result)
    assert [r["job_id"] for r in by_status["done"]] == ["r-good"]
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
    invalid = by_status["invalid"]
    assert len(invalid) == 5
    assert sorted(r["reason"] for r in invalid) == ["invalid_job"] * 3 + ["undecodable"] * 2
    assert all(r["job_id"] is None for r in invalid), "no job id from an unreadable or unbounded body"
    dead = dead_letters(queues, 5)
    reasons = {d.headers["x-dead-reason"] for d in dead}
    assert reasons == {"undecodable", "invalid_job"}
    for letter in dead:
        assert "x-job-id" not in letter.headers
        assert sum(len(str(v)) for v in letter.headers.values()) < 5000, "headers stay bounded"
    errors = " | ".join(d.headers["x-dead-error"] for d in dead)
    assert "compressed as 'application/x-gzip'" in errors
    assert "content type 'application/x-python-serialize' is not JSON" in errors
    assert "not valid JSON" in errors
    compressed = next(d for d in dead if d.headers.get("x-original-compression"))
    assert compressed.body == good, "the dead letter keeps the bytes as they arrived"


def run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("RECALL_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("RECALL_QUEUE_PREFIX", settings.queue_prefix)
    return cli.main(list(argv))


def test_dlq_list_and_replay_handle_any_dead_letter(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dead letters the broker itself put there keep their producer's headers: the tools must cope."""
    queues = Queues(settings)
    dead = queues.names.dead
    publish(
        settings, b"not gzip", headers={"compression": "application/x-gzip", "x-job-id": "j-1"}, queue=dead
    )
    publish(settings, b"[" * 300 + b"]" * 300, headers={"x-job-id": "j-2"}, queue=dead)
    publish(settings, b"\xff\xfe\xfd", content_type="application/octet-stream", queue=dead)
    assert run_cli(monkeypatch, settings, "dlq", "list") == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    assert lines[0]["body_text"] == "not gzip"
    assert lines[0]["headers"]["compression"] == "application/x-gzip"
    assert lines[1]["body_text"].startswith("[[[")  # valid JSON, deeper than a serializer allows
    assert base64.b64decode(lines[2]["body_base64"]) == b"\xff\xfe\xfd"
    assert lines[2]["content_type"] == "application/octet-stream"
    assert run_cli(monkeypatch, settings, "dlq", "replay", "--job-id", "j-1") == 0
    assert "replayed 1" in capsys.readouterr().out
    [replayed] = queues.read(queues.names.jobs, take=True, wait_s=5)
    assert replayed.body == b"not gzip"
    assert "compression" not in replayed.headers, "a replay carries only the worker's own headers"
    assert replayed.headers["x-job-id"] == "j-1"
    assert run_cli(monkeypatch, settings, "dlq", "replay", "--all") == 0
    assert "replayed 2" in capsys.readouterr().out
    assert len(queues.read(queues.names.jobs, take=True, wait_s=5)) == 2
    assert queues.read(dead, wait_s=0) == []


async def test_a_job_redelivered_without_end_is_ended_with_a_result_before_the_broker_drops_it(
    settings: Settings, emulator: EmulatorThread
) -> None:
    """A job that keeps taking its worker down is redelivered with a growing ``x-delivery-count``; near
    the broker's own limit (which dead-letters without a result) the worker ends it itself."""
    keys = await seed_conversation(emulator.url)
    queues = Queues(settings)
    body = job("r-doomed", since=WINDOW[0], until=WINDOW[1]).model_dump_json().encode()
    publish(settings, body, headers={"x-delivery-count": REDELIVERY_LIMIT})
    with ThreadWorker(settings, StaticRules()):
        [ended] = wait_results(queues, 1)
    assert ended["status"] == "failed"
    assert ended["reason"] == "redelivered_too_often"
    assert f"delivered {REDELIVERY_LIMIT + 1} times without finishing" in ended["error"]
    assert recalled_keys(emulator.url) == set()
    [dead] = dead_letters(queues, 1)
    assert dead.headers["x-dead-reason"] == "redelivered_too_often"
    body = job("r-survivor", since=WINDOW[0], until=WINDOW[1]).model_dump_json().encode()
    publish(settings, body, headers={"x-delivery-count": REDELIVERY_LIMIT - 1})
    with ThreadWorker(settings, StaticRules()):
        [survived] = wait_results(queues, 1)
    assert survived["status"] == "done"
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
