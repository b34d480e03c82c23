"""Delayed retries are at-least-once end to end: jobs parked in the retry queues survive a broker restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.services import RABBITMQ, reachable, require
from tests.worker.broker import queue_depth, restart_rabbitmq
from tests.worker.conftest import AMQP_URL
from tests.worker.harness import ProcessWorker, wait_results, wait_until, worker_settings
from tests.worker.test_process import jobs, recalled_everywhere, seed
from worker.emulator.server import EmulatorThread
from worker.queues import Queues

pytestmark = pytest.mark.slow
DELAY_S = 4.0


def test_jobs_parked_in_the_retry_queues_survive_a_broker_restart(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    require(RABBITMQ)
    settings = worker_settings(
        AMQP_URL,
        emulator.url,
        concurrency=8,
        tim_max_attempts=1,
        retry_base_delay_s=DELAY_S,
        retry_max_delay_s=DELAY_S,
    )
    queues = Queues(settings)
    retry_queue = queues.names.retry(round(DELAY_S * 1000))
    conversations = 8
    try:
        asyncio.run(seed(emulator.url, conversations, 2))
        failing = {"commands": {"admin_getroammsg": {"error_rates": {"91000": 1.0}}}}
        httpx.post(f"{emulator.url}/_emulator/faults", json=failing).raise_for_status()
        queues.submit(jobs(conversations))
        worker = ProcessWorker(settings, tmp_path / "worker.log").start()
        try:
            wait_until(lambda: queue_depth(retry_queue) == conversations, 60, "every job parked for retry")
            worker.stop()  # nobody consumes while the broker is away; the jobs sit in the retry queue
            httpx.delete(f"{emulator.url}/_emulator/faults").raise_for_status()
            restart_rabbitmq(down_s=DELAY_S + 1)  # their delay runs out while the broker is down
            worker = ProcessWorker(settings, tmp_path / "after.log").start()
            results = wait_results(queues, conversations, timeout_s=90)
        finally:
            worker.stop()
        assert sorted(r["job_id"] for r in results) == sorted(j.job_id for j in jobs(conversations))
        assert {r["status"] for r in results} == {"done"}
        assert {r["attempts"] for r in results} == {2}
        assert recalled_everywhere(emulator.url, conversations)
    finally:
        wait_until(lambda: reachable("127.0.0.1", 5672), 60, "RabbitMQ up after the test")
        queues.delete_all()
