"""The outbox relay against the real services: jobs published to RabbitMQ with confirms, kept through a
broker outage and a crash between publishing and marking, and through a SIGKILL of the intake right after
its 202; outcome webhooks retried and dead-ended against a local receiver; reporter notices in the Chat
emulator's history."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import orjson
import pytest

from tests.cli import cli_env, run_cli
from tests.conftest import ADMIN
from tests.intake.receiver import SECRET as WEBHOOK_SECRET
from tests.intake.receiver import Receiver
from tests.intake.reports import KEY_ID, QUIET_S, SECRET, Clock, incoming, report_body, settle, signed
from tests.services import RABBITMQ, free_port, require
from worker.config import Settings, load_settings
from worker.emulator.seed import import_accounts
from worker.intake.notices import load_templates, render
from worker.intake.relay import JobMaking, Notices, Relay, Webhook
from worker.intake.store import IntakeStore, Stored
from worker.intake.trust import Policy
from worker.queues import BrokerUnreachable, Queues
from worker.tim.client import TimClient
from worker.tim.history import iter_c2c_history

AMQP = "amqp://guest:guest@127.0.0.1:5672//"
MAKING = JobMaking(Policy(), lookback_s=3600)


@pytest.fixture
def rabbit() -> Iterator[Settings]:
    """Settings of a fresh queue prefix on the real RabbitMQ; its queues are deleted afterwards."""
    require(RABBITMQ)
    settings = load_settings(broker_url=AMQP, queue_prefix=f"intake-{uuid.uuid4().hex[:10]}")
    yield settings
    Queues(settings).delete_all()


def jobs_on_the_queue(settings: Settings, wait_s: float = 5.0) -> list[dict]:
    queues = Queues(settings)
    return [orjson.loads(e.body) for e in queues.read(queues.names.jobs, wait_s=wait_s)]


def one_due_case(store: IntakeStore, clock: Clock, *reporters: str) -> list[Stored]:
    stored = store.write_batch([incoming(reporter=r, msg_seqs=[n + 1]) for n, r in enumerate(reporters)])
    clock.now += QUIET_S + 1
    return [s for s in stored if isinstance(s, Stored)]


async def test_the_relay_makes_the_job_and_publishes_it_with_confirms(
    store: IntakeStore, clock: Clock, rabbit: Settings
) -> None:
    stored = one_due_case(store, clock, "a", "b")
    relay = Relay(store, Queues(rabbit).publish_jobs, MAKING)
    await relay.run_once()
    assert store.unpublished() == []
    [job] = jobs_on_the_queue(rabbit)
    assert sorted(job["report"]["reports"]) == sorted(s.report_id for s in stored)


async def test_a_broker_outage_keeps_the_job_in_the_outbox_until_the_broker_is_back(
    store: IntakeStore, clock: Clock, rabbit: Settings
) -> None:
    one_due_case(store, clock, "a")
    down = load_settings(broker_url="amqp://guest:guest@127.0.0.1:9//", queue_prefix=rabbit.queue_prefix)
    relay = Relay(store, Queues(down).publish_jobs, MAKING)
    with pytest.raises(BrokerUnreachable):
        await relay.run_once()
    assert len(store.unpublished()) == 1
    assert jobs_on_the_queue(rabbit, wait_s=0) == []
    relay.publish = Queues(rabbit).publish_jobs
    await relay.run_once()
    assert store.unpublished() == [] and len(jobs_on_the_queue(rabbit)) == 1


async def test_a_crash_between_publishing_and_marking_publishes_the_same_job_again(
    store: IntakeStore, clock: Clock, rabbit: Settings
) -> None:
    one_due_case(store, clock, "a")
    publish = Queues(rabbit).publish_jobs

    def publish_then_crash(jobs: Sequence[tuple[str, bytes]]) -> None:
        publish(jobs)
        raise RuntimeError("the process died before marking the outbox")

    relay = Relay(store, publish_then_crash, MAKING)
    with pytest.raises(RuntimeError):
        await relay.run_once()
    relay.publish = publish
    await relay.run_once()
    first, again = jobs_on_the_queue(rabbit)
    assert first == again  # the same job id and body: the worker runs it once (its ledger settles it once)


def test_the_intake_sigkilled_right_after_its_202_still_publishes_the_job(
    database_url: str, tmp_path: Path, rabbit: Settings
) -> None:
    port = free_port()
    env = cli_env(
        {
            "RECALL_DATABASE_URL": database_url,
            "RECALL_BROKER_URL": AMQP,
            "RECALL_QUEUE_PREFIX": rabbit.queue_prefix,
            "RECALL_INTAKE_KEYS": f"{KEY_ID}:{SECRET}",
            "RECALL_INTAKE_HOST": "127.0.0.1",
            "RECALL_INTAKE_PORT": str(port),
            "RECALL_INTAKE_QUIET_S": "2",
        }
    )
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "intake"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the intake did not start"
            time.sleep(0.1)

    first = start()
    try:
        raw, headers = signed(report_body(reported_at=int(time.time())))
        answer = httpx.post(f"{url}/v1/reports", content=raw, headers=headers)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    assert answer.status_code == 202
    assert jobs_on_the_queue(rabbit, wait_s=0) == []  # killed before its job was made
    second = start()
    try:
        [job] = jobs_on_the_queue(rabbit, wait_s=15)
    finally:
        second.terminate()
        second.wait(20)
    assert job["report"]["reports"] == [answer.json()["report_id"]]


def _webhook_relay(store: IntakeStore, receiver: Receiver, behaviour: str, attempts: int) -> Relay:
    hook = Webhook(f"{receiver.url}/hooks/{behaviour}", WEBHOOK_SECRET, timeout_s=5)
    return Relay(store, lambda jobs: None, MAKING, webhook=hook, max_attempts=attempts)


async def test_a_failing_webhook_is_retried_with_backoff_then_dead_and_listed(
    store: IntakeStore, ledger: object, clock: Clock, receiver: Receiver, database_url: str
) -> None:
    receiver.received.clear()
    [stored] = one_due_case(store, clock, "a")
    relay = _webhook_relay(store, receiver, "fail", attempts=3)
    try:
        await _fail_three_times_then_recover(store, ledger, clock, receiver, database_url, relay, stored)
    finally:
        await relay.aclose()


async def _fail_three_times_then_recover(
    store: IntakeStore,
    ledger: object,
    clock: Clock,
    receiver: Receiver,
    database_url: str,
    relay: Relay,
    stored: Stored,
) -> None:
    await relay.run_once()  # makes the job
    settle(ledger, store, f"intake-{stored.case_id}", recalled=["1_1_1"])  # type: ignore[arg-type]
    await relay.run_once()  # settles the case: first delivery, refused
    [delivery] = store.deliveries()
    assert delivery["state"] == "pending" and delivery["attempts"] == 1
    assert "HTTP 500" in delivery["last_error"] and WEBHOOK_SECRET not in delivery["last_error"]
    assert await relay.deliver_due() == 0  # waiting out its backoff
    clock.now += 700
    assert await relay.deliver_due() == 1
    clock.now += 700
    assert await relay.deliver_due() == 1
    [delivery] = store.deliveries()
    assert delivery["state"] == "dead" and delivery["attempts"] == 3
    assert [r.verified for r in receiver.received] == [True] * 3
    assert {r.headers["x-recall-delivery"] for r in receiver.received} == {f"{stored.report_id}.webhook"}
    payload = orjson.loads(receiver.received[0].body)
    assert payload["report_id"] == stored.report_id and payload["status"] == "done"
    assert payload["counts"]["recalled"] == 1

    if database_url.startswith("sqlite"):
        listed = run_cli(
            "intake", "deliveries", "--state", "dead", env=cli_env({"RECALL_DATABASE_URL": database_url})
        )
        assert listed.returncode == 0, listed.stderr
        assert orjson.loads(listed.stdout.splitlines()[0])["report_id"] == stored.report_id
        again = run_cli(
            "intake", "redeliver", str(delivery["id"]), env=cli_env({"RECALL_DATABASE_URL": database_url})
        )
        assert again.returncode == 0 and "1 dead delivery put back" in again.stdout
        relay.webhook = Webhook(f"{receiver.url}/hooks/ok", WEBHOOK_SECRET, timeout_s=5)
        assert await relay.deliver_due() == 1
        assert store.deliveries()[0]["state"] == "delivered"


async def test_a_webhook_refused_for_good_is_dead_after_one_attempt(
    store: IntakeStore, ledger: object, clock: Clock, receiver: Receiver
) -> None:
    [stored] = one_due_case(store, clock, "a")
    relay = _webhook_relay(store, receiver, "refuse", attempts=5)
    try:
        await relay.run_once()
        settle(ledger, store, f"intake-{stored.case_id}")  # type: ignore[arg-type]
        await relay.run_once()
    finally:
        await relay.aclose()
    [delivery] = store.deliveries()
    assert delivery["state"] == "dead" and delivery["attempts"] == 1  # a 400 will not change its mind
    assert "HTTP 400" in delivery["last_error"]


async def test_reporters_find_the_outcome_notice_in_their_chat_history(
    store: IntakeStore, ledger: object, clock: Clock, client: TimClient
) -> None:
    await import_accounts(client, ["notice-r1", "notice-r2"])
    stored = store.write_batch(
        [
            incoming(reporter="notice-r1", msg_seqs=[1]),
            incoming(reporter="notice-r2", msg_seqs=[2], language="zh-CN"),
        ]
    )
    clock.now += QUIET_S + 1
    templates = load_templates(None)
    relay = Relay(store, lambda jobs: None, MAKING, notices=Notices(client, ADMIN, templates))
    await relay.run_once()
    settle(ledger, store, f"intake-{stored[0].case_id}", recalled=["1"])  # type: ignore[arg-type,union-attr]
    started = int(time.time())
    await relay.run_once()
    assert {d["state"] for d in store.deliveries()} == {"delivered"}
    for report, reporter, language in ((stored[0], "notice-r1", None), (stored[1], "notice-r2", "zh-CN")):
        history = [
            m
            async for m in iter_c2c_history(
                client, operator=reporter, peer=ADMIN, since=started - 5, until=int(time.time()) + 5
            )
        ]
        expected = render(
            templates, language, "actioned", {"report_id": report.report_id, "category": "spam"}
        )  # type: ignore[union-attr]
        assert [m.body[0]["MsgContent"]["Text"] for m in history] == [expected]
        assert history[0].from_account == ADMIN
