"""Secrets and message text in the worker's logs: the key and UserSigs never appear; text is bounded."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import structlog

from tests.conftest import KEY, make_client
from tests.keyword_rules import StaticRules
from tests.worker.harness import ThreadWorker, job, wait_results, worker_settings
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.logs import configure_logging
from worker.queues import Queues

# A UserSig is URL-safe base64 of a zlib stream, which starts with 0x78: "eJ" once encoded.
USERSIG_SHAPE = re.compile(r"eJ[A-Za-z0-9*\-_]{40,}")
T0 = int(time.time()) - 600


@pytest.fixture
def json_logs() -> object:
    configure_logging("json", "debug")
    yield
    structlog.reset_defaults()


async def test_a_job_through_retries_logs_neither_key_nor_usersig(
    emulator: EmulatorThread, tmp_path: object, capfd: pytest.CaptureFixture[str], json_logs: object
) -> None:
    settings = worker_settings(f"sqlite:///{tmp_path}/q.db", emulator.url, log_text_limit=50)
    long_spam = "spam " + "x" * 5000
    async with make_client(emulator.url) as client:
        await import_accounts(client, ["user1", "user2"])
        for n in range(3):
            await import_c2c(
                client,
                sender="user1",
                receiver="user2",
                timestamp=T0 + n,
                seq=n + 1,
                random=n,
                body=[text(long_spam)],
            )
    httpx.post(
        f"{emulator.url}/_emulator/faults",
        json={"fail_next": {"admin_getroammsg": [91000, "http_502"], "admin_msgwithdraw": [10002]}},
    ).raise_for_status()
    queues = Queues(settings)
    queues.submit([job("r-secret", since=T0 - 1, until=T0 + 10)])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert result["status"] == "done"
    output = capfd.readouterr()
    logged = output.out + output.err
    assert '"event": "tim.retry"' in logged, "the retries should have been logged"
    retries = [json.loads(line) for line in logged.splitlines() if '"event": "tim.retry"' in line]
    assert {(r["job_id"], r["conversation"], r["attempt"]) for r in retries} == {("r-secret", "c2c", 1)}
    assert '"event": "job.result"' in logged
    assert KEY not in logged
    assert not USERSIG_SHAPE.search(logged), USERSIG_SHAPE.search(logged)
    assert "x" * 100 not in logged, "message text in a log line must be bounded"
    assert len(result["matches"][0]["evidence"]) <= 220


async def test_message_text_can_be_logged_as_a_hash_only(
    emulator: EmulatorThread, tmp_path: object, capfd: pytest.CaptureFixture[str], json_logs: object
) -> None:
    settings = worker_settings(f"sqlite:///{tmp_path}/q.db", emulator.url, log_text_hash=True)
    async with make_client(emulator.url) as client:
        await import_accounts(client, ["user1", "user2"])
        await import_c2c(
            client,
            sender="user1",
            receiver="user2",
            timestamp=T0,
            seq=1,
            random=1,
            body=[text("private words and spam")],
        )
    queues = Queues(settings)
    queues.submit([job("r-private", since=T0 - 1, until=T0 + 1)])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert result["matches"][0]["evidence"] == "spam", "the result record keeps the evidence"
    logged = capfd.readouterr().err
    [line] = [json.loads(x) for x in logged.splitlines() if '"event": "job.result"' in x]
    assert line["matches"][0]["evidence"].startswith("sha256:")
    assert '"spam"' not in logged
