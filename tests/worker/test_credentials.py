"""Wrong credentials are the deployment's fault: the worker says which settings to check, stays unready,
consumes nothing, and a job that meets a credential error goes back on the queue (never dead-lettered)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from tests.conftest import KEY
from tests.keyword_rules import StaticRules
from tests.services import RABBITMQ, free_port, require
from tests.worker.conftest import AMQP_URL
from tests.worker.harness import ProcessWorker, ThreadWorker, job, wait_results, wait_until, worker_settings
from tests.worker.test_pipeline_e2e import WINDOW, recalled_keys, seed_conversation
from worker.config import Settings
from worker.emulator.server import EmulatorThread
from worker.observability import Metrics
from worker.queues import Queues

WRONG_KEY = "0" * 64


@pytest.fixture
def settings(broker_url: str, emulator: EmulatorThread) -> Iterator[Settings]:
    settings = worker_settings(broker_url, emulator.url, credential_recheck_s=0.5)
    yield settings
    Queues(settings).delete_all()


async def test_a_credential_error_mid_job_holds_the_job_and_it_runs_once_the_check_passes(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = await seed_conversation(emulator.url)
    faults = {"fail_next": {"admin_getroammsg": [70009]}}
    httpx.post(f"{emulator.url}/_emulator/faults", json=faults).raise_for_status()
    queues = Queues(settings)
    queues.submit([job("r-cred", since=WINDOW[0], until=WINDOW[1])])
    metrics = Metrics()
    with ThreadWorker(settings, StaticRules(), observer=metrics) as worker:
        [result] = wait_results(queues, 1, timeout_s=30)
        counts = dict(worker.worker.state.counts)
    assert result["status"] == "done"
    assert result["attempts"] == 1, "a held job keeps its attempt number"
    assert recalled_keys(emulator.url) == {keys["spam_1"], keys["spam_2"]}
    assert counts.get("held") == 1
    assert queues.read(queues.names.dead, wait_s=0.5) == []
    assert metrics.credential_errors.labels("70009")._value.get() == 1
    assert metrics.credentials_ok._value.get() == 1
    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()["calls"]
    assert stats["account_check"]["0"] >= 2, "checked at start, and again before consuming resumed"


def test_a_worker_with_a_wrong_key_is_unready_names_the_setting_and_consumes_nothing(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    require(RABBITMQ)
    port = free_port()
    settings = worker_settings(
        AMQP_URL,
        emulator.url,
        tim_key=WRONG_KEY,
        http_port=port,
        http_host="127.0.0.1",
        credential_recheck_s=1,
    )
    queues = Queues(settings)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(seed_conversation(emulator.url))
        queues.submit([job("r-wrong-key", since=WINDOW[0], until=WINDOW[1])])
        worker = ProcessWorker(settings, tmp_path / "worker.log").start()
        try:
            wait_until(lambda: "worker.credentials_rejected" in worker.log(), 30, "the rejection log line")
            ready = httpx.get(f"{base}/readyz", timeout=2)
            assert ready.status_code == 503
            assert ready.json()["credentials_accepted"] is False
            assert ready.json()["broker_connected"] is True
            metrics = httpx.get(f"{base}/metrics", timeout=2).text
            assert "recall_credentials_ok 0.0" in metrics
            assert 'recall_credential_errors_total{code="70009"}' in metrics
            time.sleep(2.5)  # a couple of rechecks
            assert queues.read(queues.names.results, wait_s=0) == []
            assert queues.read(queues.names.dead, wait_s=0) == []
            worker.signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            worker.stop()
        log = worker.log()
        assert "RECALL_TIM_KEY" in log
        assert WRONG_KEY not in log, "the key itself is never logged"
        [waiting] = queues.read(queues.names.jobs, wait_s=2)
        assert b"r-wrong-key" in waiting.body, "the job is still on the queue, untouched"
        right_key = settings.model_copy(update={"tim_key": SecretStr(KEY)})
        fixed = ProcessWorker(right_key, tmp_path / "fixed.log").start()
        try:
            [result] = wait_results(queues, 1, timeout_s=60)
        finally:
            fixed.stop()
        assert result["job_id"] == "r-wrong-key"
        assert result["status"] == "done"
    finally:
        queues.delete_all()
