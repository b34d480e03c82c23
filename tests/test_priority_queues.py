"""Priorities in the queues, without services: the lanes and queue arguments of the RabbitMQ topology, the
embedded SQLite queue's order (higher priority first, FIFO within one) and its upgrade of a queue file from
before priorities, the ``submit --priority`` option."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Producer

from tests.cli import cli_env, run_cli
from worker import priority
from worker.broker.sqlite import NEXT_MESSAGE
from worker.broker.topology import QueueNames, Topology, connect
from worker.config import load_settings
from worker.queues import Queues


def rabbit(prefix: str = "recall") -> Topology:
    return Topology(QueueNames(prefix), embedded=False)


def embedded(prefix: str = "recall") -> Topology:
    return Topology(QueueNames(prefix), embedded=True)


#: How the jobs queue was declared before priorities: an existing deployment has exactly this, and RabbitMQ
#: refuses to redeclare a queue with other arguments (PRECONDITION_FAILED closes the channel).
JOBS_ARGUMENTS_BEFORE_PRIORITIES = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": "recall.dead",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
    "x-delivery-limit": 20,
}


# --- topology -----------------------------------------------------------------------------------------------


def test_the_jobs_queue_keeps_the_arguments_existing_deployments_declared() -> None:
    assert rabbit().queue("recall.jobs").queue_arguments == JOBS_ARGUMENTS_BEFORE_PRIORITIES


def test_the_urgent_lane_is_a_quorum_queue_like_the_jobs_queue() -> None:
    assert rabbit().queue("recall.jobs.urgent").queue_arguments == JOBS_ARGUMENTS_BEFORE_PRIORITIES
    assert "x-max-priority" not in str(rabbit().queue("recall.jobs.urgent").queue_arguments)


def test_jobs_take_the_lane_of_their_priority_on_rabbitmq_and_one_queue_embedded() -> None:
    topology = rabbit("moderation.eu")
    assert topology.lanes() == ("moderation.eu.jobs.urgent", "moderation.eu.jobs")
    lanes = [topology.lane(p) for p in range(10)]
    assert lanes == ["moderation.eu.jobs"] * 5 + ["moderation.eu.jobs.urgent"] * 5
    assert embedded().lanes() == ("recall.jobs",)
    assert {embedded().lane(p) for p in range(10)} == {"recall.jobs"}


def test_the_fixed_queues_include_the_urgent_lane_on_rabbitmq_only() -> None:
    assert rabbit().fixed() == (
        "recall.jobs.urgent",
        "recall.jobs",
        "recall.results",
        "recall.dead",
        "recall.escalations",
    )
    assert "recall.jobs.urgent" not in embedded().fixed()


def test_each_lane_has_its_retry_queues_that_expire_back_into_it() -> None:
    topology = rabbit()
    normal = topology.queue(topology.names.retry(2000)).queue_arguments
    urgent = topology.queue(topology.names.retry(2000, urgent=True)).queue_arguments
    assert topology.names.retry(2000, urgent=True) == "recall.retry.urgent.2000ms"
    assert normal["x-dead-letter-routing-key"] == "recall.jobs"
    assert urgent["x-dead-letter-routing-key"] == "recall.jobs.urgent"
    assert normal["x-message-ttl"] == urgent["x-message-ttl"] == 2000
    assert urgent["x-dead-letter-strategy"] == "at-least-once"


def test_a_delivery_keeps_a_priority_within_its_lane() -> None:
    topology = rabbit()
    # a producer published priority 9 to the jobs queue, or none to the urgent lane: its retries stay put
    assert topology.priority_in("recall.jobs", 9) == priority.URGENT - 1
    assert topology.priority_in("recall.jobs.urgent", 0) == priority.URGENT
    assert topology.priority_in("recall.jobs.urgent", 8) == 8
    assert topology.priority_in("recall.jobs", 2) == 2
    assert embedded().priority_in("recall.jobs", 9) == 9


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 0), (0, 0), (7, 7), (9, 9), (10, 9), (255, 9), (-1, 0), (True, 0), ("9", 0), (2.5, 0)],
)
def test_a_priority_property_is_read_safely(value: Any, expected: int) -> None:
    assert priority.of_property(value) == expected


# --- the embedded queue -------------------------------------------------------------------------------------


def publish(conn: Connection, queue: str, body: str, priority: int | None = None, **headers: Any) -> None:
    channel = conn.channel()
    embedded().declare(channel, queue)
    Producer(channel).publish(
        body, routing_key=queue, exchange="", priority=priority, headers=headers, content_type="text/plain"
    )


def drain(conn: Connection, queue: str) -> list[str]:
    """Take every visible message off ``queue``, in the order delivered."""
    channel = conn.channel()
    taken = []
    while (message := channel.basic_get(queue=queue, no_ack=False)) is not None:
        taken.append(message.body.decode() if isinstance(message.body, bytes) else message.body)
        channel.basic_ack(message.delivery_tag)
    return taken


def test_the_embedded_queue_delivers_higher_priorities_first_and_fifo_within_one(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path}/queue.db") as conn:
        for body, level in [("a1", 1), ("none", None), ("b4", 4), ("a2", 1), ("c9", 9), ("b5", 4), ("c8", 8)]:
            publish(conn, "recall.jobs", body, level)
        assert drain(conn, "recall.jobs") == ["c9", "c8", "b4", "b5", "a1", "a2", "none"]


def test_a_delayed_message_keeps_its_priority_once_visible(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path}/queue.db") as conn:
        publish(conn, "recall.jobs", "late-9", 9, **{"x-delay-ms": 300})
        publish(conn, "recall.jobs", "low-1", 1)
        publish(conn, "recall.jobs", "low-2", 1)
        assert drain(conn, "recall.jobs") == ["low-1", "low-2"]  # the delayed one is not visible yet
        publish(conn, "recall.jobs", "low-3", 1)
        time.sleep(0.35)
        assert drain(conn, "recall.jobs") == ["late-9", "low-3"]


def queue_file_before_priorities(path: Path, *payloads: bytes) -> None:
    """A queue file as the version before priorities left it: its schema and, waiting on ``recall.jobs``,
    ``payloads`` (kombu's message dicts, as its transport stored them)."""
    with contextlib.closing(sqlite3.connect(path)) as old, old:
        old.executescript(
            """
            CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,
                                   payload BLOB NOT NULL, visible_at REAL NOT NULL, lessee TEXT);
            CREATE INDEX messages_ready ON messages (queue, lessee, visible_at, id);
            CREATE TABLE queues (name TEXT PRIMARY KEY);
            INSERT INTO queues VALUES ('recall.jobs');
            """
        )
        old.executemany(
            "INSERT INTO messages (queue, payload, visible_at) VALUES ('recall.jobs', ?, ?)",
            [(payload, time.time() - 1) for payload in payloads],
        )


def test_a_queue_file_from_before_priorities_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue_file_before_priorities(path)
    with connect(f"sqlite:///{path}") as conn:
        embedded().declare(conn.channel(), "recall.jobs")
    with sqlite3.connect(path) as check:
        columns = {row[1] for row in check.execute("PRAGMA table_info(messages)")}
        indexes = {row[1] for row in check.execute("PRAGMA index_list(messages)")}
    assert "priority" in columns and "messages_next" in indexes
    assert "messages_ready" not in indexes  # covered by messages_next: one index fewer to write


def test_messages_queued_by_the_version_before_priorities_are_still_delivered_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    with connect(f"sqlite:///{tmp_path}/scratch.db") as scratch:  # kombu's own payloads, as the old one
        publish(scratch, "recall.jobs", "old-1")
        publish(scratch, "recall.jobs", "old-2")
        rows = scratch.channel()._db.execute("SELECT payload FROM messages ORDER BY id").fetchall()
    queue_file_before_priorities(path, *(payload for (payload,) in rows))
    with connect(f"sqlite:///{path}") as conn:
        publish(conn, "recall.jobs", "new-0", 0)
        publish(conn, "recall.jobs", "new-7", 7)
        assert drain(conn, "recall.jobs") == ["new-7", "old-1", "old-2", "new-0"]


def test_the_next_message_is_found_by_index(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path}/queue.db") as conn:
        channel = conn.channel()
        embedded().declare(channel, "recall.jobs")
        plan = channel._db.execute(
            f"EXPLAIN QUERY PLAN {NEXT_MESSAGE}", ("recall.jobs", time.time())
        ).fetchall()  # the query the transport runs, not a copy of it
    detail = " ".join(str(row[-1]) for row in plan)
    assert "messages_next" in detail and "TEMP B-TREE" not in detail, detail


# --- submit --priority ------------------------------------------------------------------------------------


def test_submit_publishes_at_the_default_priority_or_the_one_given(tmp_path: Path) -> None:
    job = (
        '{"version": 1, "job_id": "JOB", "conversation": {"type": "c2c", "operator": "u2", "peer": "u1"},'
        ' "suspect": "u1", "window": {"since": 1, "until": 2}}'
    )
    url = f"sqlite:///{tmp_path}/queue.db"
    env = cli_env({"RECALL_BROKER_URL": url, "RECALL_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db"})
    for job_id, extra in (
        ("j-default", []),
        ("j-urgent", ["--priority", "9"]),
        ("j-low", ["--priority", "0"]),
    ):
        source = tmp_path / f"{job_id}.json"
        source.write_text(job.replace("JOB", job_id))
        done = run_cli("submit", *extra, str(source), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"job(s) at priority {extra[-1] if extra else priority.SUBMIT_DEFAULT}" in done.stdout
    queues = Queues(load_settings(broker_url=url))
    found = [(e.headers["x-job-id"], e.priority) for e in queues.read(queues.names.jobs)]
    assert found == [("j-urgent", 9), ("j-default", priority.SUBMIT_DEFAULT), ("j-low", 0)]


@pytest.mark.parametrize("value", ["10", "-1", "high", "4.5", ""])
def test_submit_refuses_a_priority_outside_0_to_9_in_one_line(tmp_path: Path, value: str) -> None:
    done = run_cli("submit", "--priority", value, "-", env=cli_env(), cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--priority" in done.stderr and "0 (lowest) to 9 (highest)" in done.stderr
