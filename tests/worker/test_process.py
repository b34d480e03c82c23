"""The worker as a process on RabbitMQ: SIGKILL and restart, SIGTERM with jobs in flight, a broker restart,
health and metrics over HTTP."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import make_client
from tests.services import RABBITMQ, free_port, reachable, require
from tests.worker.broker import restart_rabbitmq
from tests.worker.conftest import AMQP_URL
from tests.worker.harness import ProcessWorker, job, wait_results, wait_until, worker_settings
from worker.config import Settings
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.jobs import Job
from worker.queues import Queues

T0 = int(time.time()) - 3600
pytestmark = pytest.mark.slow


@pytest.fixture
def amqp_settings(emulator: EmulatorThread) -> Iterator[Settings]:
    require(RABBITMQ)
    settings = worker_settings(AMQP_URL, emulator.url, concurrency=2, shutdown_budget_s=15)
    yield settings
    Queues(settings).delete_all(
        extra=[f"{settings.queue_prefix}.retry.{ms}ms" for ms in (200, 400, 800, 1000)]
    )


async def seed(url: str, conversations: int, spam_each: int) -> list[str]:
    """``conversations`` pairs s{i} -> r{i}; each suspect s{i} sent ``spam_each`` offending messages."""
    keys = []
    async with make_client(url) as client:
        await import_accounts(client, [f"{p}{i}" for i in range(conversations) for p in ("s", "r")])
        for i in range(conversations):
            for n in range(spam_each):
                keys.append(
                    await import_c2c(
                        client,
                        sender=f"s{i}",
                        receiver=f"r{i}",
                        timestamp=T0 + n,
                        seq=n + 1,
                        random=i,
                        body=[text(f"FREE CRYPTO giveaway #{n}")],
                    )
                )
                await import_c2c(
                    client,
                    sender=f"r{i}",
                    receiver=f"s{i}",
                    timestamp=T0 + n,
                    seq=100 + n,
                    random=i,
                    body=[text("no thanks")],
                )
    return keys


def jobs(conversations: int) -> list[Job]:
    return [
        job(f"j-{i}", operator=f"r{i}", peer=f"s{i}", suspect=f"s{i}", since=T0 - 10, until=T0 + 100)
        for i in range(conversations)
    ]


def successful_recalls(url: str) -> int:
    calls = httpx.get(f"{url}/_emulator/stats").json()["calls"]
    return int(calls.get("admin_msgwithdraw", {}).get("0", 0))


def recalled_everywhere(url: str, conversations: int) -> bool:
    for i in range(conversations):
        messages = httpx.get(f"{url}/_emulator/c2c", params={"a": f"s{i}", "b": f"r{i}"}).json()["messages"]
        if any(m["MsgFlagBits"] != 8 for m in messages if m["From_Account"] == f"s{i}"):
            return False
    return True


def test_sigkill_mid_job_then_restart_recalls_each_message_once_and_reports_each_job_once(
    amqp_settings: Settings, emulator: EmulatorThread, tmp_path: Path
) -> None:
    keys = asyncio.run(seed(emulator.url, 6, 5))
    httpx.post(
        f"{emulator.url}/_emulator/faults", json={"commands": {"admin_msgwithdraw": {"latency_ms": 150}}}
    ).raise_for_status()
    queues = Queues(amqp_settings)
    queues.submit(jobs(6))
    first = ProcessWorker(amqp_settings, tmp_path / "first.log").start()
    try:
        wait_until(lambda: successful_recalls(emulator.url) >= 3, 60, "the first recalls")
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        first.stop()
    second = ProcessWorker(amqp_settings, tmp_path / "second.log").start()
    try:
        results = wait_results(queues, 6, timeout_s=90)
        time.sleep(1.0)  # a duplicate result would have arrived by now
        results += take_results(queues)
    finally:
        second.stop()
    per_job = Counter((r["job_id"], r["status"]) for r in results)
    assert per_job == {(f"j-{i}", "done"): 1 for i in range(6)}, second.log()[-3000:]
    assert recalled_everywhere(emulator.url, 6)
    assert successful_recalls(emulator.url) == len(keys), "each offending message recalled exactly once"


def take_results(queues: Queues) -> list[dict[str, Any]]:
    """Whatever results are on the queue now."""
    return [orjson.loads(e.body) for e in queues.read(queues.names.results, take=True)]


def test_sigterm_with_jobs_in_flight_finishes_them_and_loses_none(
    amqp_settings: Settings, emulator: EmulatorThread, tmp_path: Path
) -> None:
    asyncio.run(seed(emulator.url, 6, 4))
    httpx.post(
        f"{emulator.url}/_emulator/faults", json={"commands": {"admin_msgwithdraw": {"latency_ms": 200}}}
    ).raise_for_status()
    queues = Queues(amqp_settings)
    queues.submit(jobs(6))
    worker = ProcessWorker(amqp_settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: successful_recalls(emulator.url) >= 1, 60, "jobs in flight")
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(amqp_settings.shutdown_budget_s + 10) == 0, worker.log()[-3000:]
        assert time.monotonic() - signalled < amqp_settings.shutdown_budget_s + 5
    finally:
        worker.stop()
    finished_first = take_results(queues)
    assert len(finished_first) >= 2, "the jobs in flight at SIGTERM should have finished"
    assert all(r["status"] == "done" for r in finished_first)
    assert '"event": "worker.stopping"' in worker.log() or '"event":"worker.stopping"' in worker.log()
    rest = ProcessWorker(amqp_settings, tmp_path / "rest.log").start()
    try:
        remaining = wait_results(queues, 6 - len(finished_first), timeout_s=90)
    finally:
        rest.stop()
    assert sorted(r["job_id"] for r in finished_first + remaining) == [f"j-{i}" for i in range(6)]
    assert recalled_everywhere(emulator.url, 6)


def test_sigterm_past_the_budget_requeues_what_is_left(emulator: EmulatorThread, tmp_path: Path) -> None:
    require(RABBITMQ)
    settings = worker_settings(AMQP_URL, emulator.url, concurrency=2, shutdown_budget_s=1)
    try:
        asyncio.run(seed(emulator.url, 2, 10))
        httpx.post(
            f"{emulator.url}/_emulator/faults", json={"commands": {"admin_msgwithdraw": {"latency_ms": 500}}}
        ).raise_for_status()
        queues = Queues(settings)
        queues.submit(jobs(2))
        worker = ProcessWorker(settings, tmp_path / "worker.log").start()
        try:
            wait_until(lambda: successful_recalls(emulator.url) >= 1, 60, "jobs in flight")
            worker.signal(signal.SIGTERM)
            assert worker.wait(15) == 0
        finally:
            worker.stop()
        assert take_results(queues) == []
        assert "shutdown budget spent" in worker.log()
        httpx.delete(f"{emulator.url}/_emulator/faults").raise_for_status()
        again = ProcessWorker(settings, tmp_path / "again.log").start()
        try:
            results = wait_results(queues, 2, timeout_s=60)
        finally:
            again.stop()
        assert sorted(r["status"] for r in results) == ["done", "done"]
        assert recalled_everywhere(emulator.url, 2)
    finally:
        Queues(settings).delete_all()


def test_a_rabbitmq_restart_mid_run_loses_no_job(
    amqp_settings: Settings, emulator: EmulatorThread, tmp_path: Path
) -> None:
    asyncio.run(seed(emulator.url, 8, 3))
    httpx.post(
        f"{emulator.url}/_emulator/faults", json={"commands": {"*": {"latency_ms": 100}}}
    ).raise_for_status()
    queues = Queues(amqp_settings)
    queues.submit(jobs(8))
    worker = ProcessWorker(amqp_settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: successful_recalls(emulator.url) >= 2, 60, "the first recalls")
        restart_rabbitmq(down_s=0)
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while len(seen) < 8 and time.monotonic() < deadline:
            try:
                for result in take_results(queues):
                    seen[result["job_id"]] = result["status"]
            except OSError as exc:  # the broker may still be starting
                print(f"results not readable yet: {exc}")
            time.sleep(0.5)
    finally:
        worker.stop()
        wait_until(lambda: reachable("127.0.0.1", 5672), 60, "RabbitMQ up after the test")
    assert seen == {f"j-{i}": "done" for i in range(8)}, worker.log()[-3000:]
    assert recalled_everywhere(emulator.url, 8)


def test_health_readiness_and_metrics_over_http(
    amqp_settings: Settings, emulator: EmulatorThread, tmp_path: Path
) -> None:
    asyncio.run(seed(emulator.url, 2, 2))
    port = free_port()
    settings = amqp_settings.model_copy(update={"http_port": port, "http_host": "127.0.0.1"})
    worker = ProcessWorker(settings, tmp_path / "worker.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{base}/readyz") == 200, 30, "readiness")
        assert httpx.get(f"{base}/healthz").json()["ok"] is True
        before = httpx.get(f"{base}/metrics").text
        assert 'recall_jobs_total{status="done"}' not in before
        queues = Queues(settings)
        queues.submit(jobs(2))
        wait_results(queues, 2)
        wait_until(
            lambda: 'recall_jobs_total{status="done"} 2.0' in httpx.get(f"{base}/metrics").text,
            10,
            "counters",
        )
        metrics = httpx.get(f"{base}/metrics").text
        assert 'recall_recalls_total{conversation="c2c",result="recalled"} 4.0' in metrics
        assert 'recall_tim_calls_total{code="0",command="admin_msgwithdraw"} 4.0' in metrics
        assert "recall_tim_call_duration_seconds_bucket" in metrics
        assert "recall_rule_matches_total{rule_id=" in metrics
        assert "recall_jobs_in_flight 0.0" in metrics
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        worker.stop()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_sigterm_while_the_worker_is_starting_exits_cleanly(emulator: EmulatorThread, tmp_path: Path) -> None:
    """A rollout may stop a pod that is still starting (imports, ledger, rules, credential check): from the
    moment the process handles SIGTERM at all, the stop is kept and the worker exits 0 without consuming."""
    settings = worker_settings(f"sqlite:///{tmp_path}/queue.db", emulator.url)
    worker = ProcessWorker(settings, tmp_path / "worker.log").start()
    try:
        assert worker.proc is not None
        wait_until(lambda: handles_sigterm(worker.proc.pid), 30, "a SIGTERM handler")
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()[-2000:]
    finally:
        worker.stop()
    assert "worker.stopped" in worker.log()
    assert "worker.consuming" not in worker.log()


def handles_sigterm(pid: int) -> bool:
    """Whether process ``pid`` catches SIGTERM (its ``SigCgt`` mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
