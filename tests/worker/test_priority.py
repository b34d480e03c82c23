"""Priorities end to end, on the embedded queue and on the real RabbitMQ: a job of higher priority published
behind a backlog runs first; retries, dead letters and their replay keep a job's priority (and, on
RabbitMQ, its lane); a deployment whose jobs queue was declared before priorities upgrades as it is."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import amqp
import httpx
import orjson
import pytest

from tests.keyword_rules import StaticRules
from tests.services import RABBITMQ, require
from tests.worker.conftest import AMQP_URL
from tests.worker.harness import ThreadWorker, job, wait_results, worker_settings
from tests.worker.test_pipeline_e2e import WINDOW, seed_conversation
from worker.broker.topology import Topology, is_embedded
from worker.config import Settings
from worker.emulator.server import EmulatorThread
from worker.jobs import Job
from worker.queues import Queues


@pytest.fixture
def settings(broker_url: str, emulator: EmulatorThread) -> Iterator[Settings]:
    """One job at a time (per lane), so results come in the order jobs were taken."""
    settings = worker_settings(broker_url, emulator.url, concurrency=1)
    yield settings
    Queues(settings).delete_all()


def dry(job_id: str) -> Job:
    """A dry-run job on the seeded conversation: quick, and as often as wanted."""
    return job(job_id, since=WINDOW[0], until=WINDOW[1], mode="dry_run")


def order(results: list[dict[str, Any]]) -> list[str]:
    return [r["job_id"] for r in results]


async def test_a_high_priority_job_published_behind_a_backlog_runs_first(
    settings: Settings, emulator: EmulatorThread
) -> None:
    await seed_conversation(emulator.url)
    queues = Queues(settings)
    backlog = [dry(f"r-low-{n}") for n in range(6)]
    queues.submit(backlog, priority=1)
    queues.submit([dry("r-high")], priority=8)  # published last, with nobody consuming yet
    with ThreadWorker(settings, StaticRules()):
        results = wait_results(queues, 7)
    assert order(results) == ["r-high", *(j.job_id for j in backlog)]


async def test_jobs_run_by_priority_and_in_order_within_one(
    settings: Settings, emulator: EmulatorThread
) -> None:
    await seed_conversation(emulator.url)
    queues = Queues(settings)
    for job_id, level in [("low-a", 1), ("mid", 4), ("low-b", 1), ("high-a", 6), ("top", 9), ("high-b", 6)]:
        queues.submit([dry(job_id)], priority=level)
    with ThreadWorker(settings, StaticRules()):
        results = wait_results(queues, 6)
    if is_embedded(settings.broker_url):  # one queue, ordered by priority
        assert order(results) == ["top", "high-a", "high-b", "mid", "low-a", "low-b"]
    else:  # two lanes, each in order: the urgent lane (5 and up) first
        assert order(results) == ["high-a", "top", "high-b", "low-a", "mid", "low-b"]


async def test_an_urgent_job_arriving_while_a_backlog_runs_does_not_wait_behind_it(
    settings: Settings, emulator: EmulatorThread
) -> None:
    await seed_conversation(emulator.url)
    slow = {"commands": {"admin_getroammsg": {"latency_ms": 150}}}
    httpx.post(f"{emulator.url}/_emulator/faults", json=slow).raise_for_status()
    queues = Queues(settings)
    backlog = [dry(f"r-low-{n}") for n in range(10)]
    queues.submit(backlog, priority=0)
    with ThreadWorker(settings, StaticRules()):
        results = wait_results(queues, 1)
        queues.submit([dry("r-urgent")], priority=9)
        results += wait_results(queues, 10)
    # at most the job running when it came, and the next one already taken, finish before it
    assert order(results).index("r-urgent") <= 3, order(results)
    assert [j for j in order(results) if j != "r-urgent"] == [j.job_id for j in backlog]


async def test_retries_dead_letters_and_replays_keep_the_priority(
    broker_url: str, emulator: EmulatorThread
) -> None:
    await seed_conversation(emulator.url)
    settings = worker_settings(broker_url, emulator.url, concurrency=1, max_attempts=2, tim_max_attempts=1)
    queues = Queues(settings)
    topology = Topology(queues.names, embedded=is_embedded(broker_url))
    failing = {"commands": {"admin_getroammsg": {"error_rates": {"91000": 1.0}}}}
    httpx.post(f"{emulator.url}/_emulator/faults", json=failing).raise_for_status()
    try:
        queues.submit([dry("r-doomed")], priority=8)
        with ThreadWorker(settings, StaticRules()):
            [result] = wait_results(queues, 1)
        assert (result["status"], result["reason"], result["attempts"]) == ("failed", "attempts_exhausted", 2)
        # the second attempt came through the retry queue of the urgent lane, still at priority 8
        [dead] = queues.read(queues.names.dead, wait_s=5)
        assert dead.headers["x-job-id"] == "r-doomed" and dead.priority == 8
        if not topology.embedded:
            assert queue_exists(queues.names.retry(200, urgent=True))
            assert not queue_exists(queues.names.retry(200))
        assert queues.replay_dead(job_ids={"r-doomed"}) == 1
        [replayed] = queues.read(topology.lane(8), wait_s=5)
        assert replayed.headers["x-job-id"] == "r-doomed" and replayed.priority == 8
        assert orjson.loads(replayed.body)["job_id"] == "r-doomed"
    finally:
        httpx.delete(f"{emulator.url}/_emulator/faults")
        queues.delete_all()


def queue_exists(name: str) -> bool:
    with amqp.Connection("127.0.0.1:5672") as conn:
        try:
            conn.channel().queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return False
        return True


# --- upgrading a RabbitMQ deployment from before priorities -------------------------------------------------


@pytest.fixture
def old_deployment(emulator: EmulatorThread) -> Iterator[Settings]:
    """A queue prefix whose queues the version before priorities declared, with two of its jobs waiting."""
    require(RABBITMQ)
    settings = worker_settings(AMQP_URL, emulator.url, queue_prefix=f"up{uuid.uuid4().hex[:10]}")
    prefix = settings.queue_prefix
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        dead_letter = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        channel.queue_declare(
            f"{prefix}.jobs",
            durable=True,
            auto_delete=False,
            arguments={**dead_letter, "x-dead-letter-routing-key": f"{prefix}.dead", "x-delivery-limit": 20},
        )
        channel.queue_declare(
            f"{prefix}.retry.200ms",
            durable=True,
            auto_delete=False,
            arguments={**dead_letter, "x-dead-letter-routing-key": f"{prefix}.jobs", "x-message-ttl": 200},
        )
        for job_id in ("r-old-1", "r-old-2"):  # as the old version published them: no priority at all
            body = dry(job_id).model_dump_json(exclude_none=True).encode()
            message = amqp.Message(
                body,
                content_type="application/json",
                delivery_mode=2,
                application_headers={"x-job-id": job_id},
            )
            channel.basic_publish(message, exchange="", routing_key=f"{prefix}.jobs")
    yield settings
    Queues(settings).delete_all()


def test_the_jobs_queue_cannot_become_a_priority_queue_so_priorities_take_two_lanes(
    old_deployment: Settings,
) -> None:
    """Why the lanes. A quorum queue is never a priority queue on RabbitMQ 3: declared anew with
    ``x-max-priority`` it is refused, and the existing jobs queue redeclared with it is accepted but goes on
    delivering in order, whatever the priority (silently: no priorities at all). Turning it into a classic
    queue, which takes ``x-max-priority``, is refused (``PRECONDITION_FAILED``, which closes the channel)."""
    name = f"{old_deployment.queue_prefix}.jobs"
    arguments = Topology(Queues(old_deployment).names, embedded=False).queue(name).queue_arguments
    refused = pytest.raises(amqp.exceptions.PreconditionFailed, match="invalid arg 'x-max-priority'")
    with amqp.Connection("127.0.0.1:5672") as conn, refused:
        conn.channel().queue_declare(
            f"{name}.probe", durable=True, auto_delete=False, arguments={**arguments, "x-max-priority": 10}
        )
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        channel.queue_declare(
            name, durable=True, auto_delete=False, arguments={**arguments, "x-max-priority": 10}
        )
        channel.basic_publish(amqp.Message(b"high", priority=9), exchange="", routing_key=name)
        taken = []
        while (message := channel.basic_get(name, no_ack=True)) is not None:
            taken.append(message.body)
        assert len(taken) == 3 and taken[-1] == b"high", "the jobs waiting come first: no priorities"
    classic = {**arguments, "x-queue-type": "classic", "x-max-priority": 10}
    refused = pytest.raises(amqp.exceptions.PreconditionFailed, match="inequivalent arg 'x-queue-type'")
    with amqp.Connection("127.0.0.1:5672") as conn, refused:
        conn.channel().queue_declare(name, durable=True, auto_delete=False, arguments=classic)


async def test_a_deployment_from_before_priorities_upgrades_without_redeclaring_its_queues(
    old_deployment: Settings, emulator: EmulatorThread
) -> None:
    await seed_conversation(emulator.url)
    queues = Queues(old_deployment)
    with ThreadWorker(old_deployment, StaticRules()):  # declares its topology over the old queues
        old = wait_results(queues, 2)
        queues.submit([dry("r-new-urgent")], priority=9)
        queues.submit([dry("r-new")])
        new = wait_results(queues, 2)
    assert sorted(order(old)) == ["r-old-1", "r-old-2"]
    assert sorted(order(new)) == ["r-new", "r-new-urgent"]
    assert {r["status"] for r in old + new} == {"dry_run"}
    assert queue_exists(queues.names.urgent)
