"""The guarantees under faults, as production runs the worker: three worker processes on RabbitMQ with the
PostgreSQL ledger, one-to-one, official-account and group (and community topic) jobs, the Chat API
answering 10002/91000/HTTP 502 and stalling, a worker SIGKILLed every few seconds, the broker stopped and
started while jobs sit in the retry queues, poison deliveries mixed in.

It asserts what the README promises: every job gets a result (repeats byte-identical), nothing is recalled
that should not be and nothing is missed, every poison delivery is dead-lettered with a reason, no worker
exits but the ones killed, and the ledger ends with every job settled.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import psycopg.sql
import pytest

from tests.conftest import make_client
from tests.ledger.conftest import PG_ADMIN, fresh_pg_schema
from tests.services import RABBITMQ, require
from tests.worker.broker import publish, queue_depth, restart_rabbitmq
from tests.worker.conftest import AMQP_URL
from tests.worker.groups import group_job, group_messages, new_group
from tests.worker.harness import ProcessWorker, job, worker_settings
from worker.config import Settings
from worker.emulator.seed import (
    add_subscribers,
    create_official_account,
    import_accounts,
    import_c2c,
    import_group_messages,
    send_official_account,
    text,
)
from worker.emulator.server import EmulatorThread
from worker.jobs import Job
from worker.queues import Queues
from worker.tim.client import TimClient

#: The run's own deadlines (240 s for every result, then the fleet's stop) are past the suite's 120 s
#: default timeout, which a loaded machine reaches before them.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: With the official accounts and the groups: 280 jobs, the load the run is sized for.
C2C_CONVERSATIONS = 210
OFFICIAL_ACCOUNTS = 40
GROUPS = 30
#: Every TOPIC_EVERY-th group is a community whose spam is in a topic (the job names the topic), and every
#: INVITE_EVERY-th suspect also posts a scam-group invite (a wipe rule: recalled, and a wipe proposed).
TOPIC_EVERY, INVITE_EVERY = 5, 3
WORKERS = 3
KILL_EVERY_S = (1.5, 3.5)
FAULTS = {
    "commands": {
        "*": {
            "error_rates": {"10002": 0.05, "91000": 0.05},
            "http_502_rate": 0.02,
            "timeout_rate": 0.01,
            "timeout_s": 5,
            "latency_ms": 40,
        }
    },
    "seed": 11,
}
T0 = int(time.time()) - 3600


#: A message's identity: its conversation and its MsgKey (official-account keys repeat across accounts;
#: a group's are seqs, numbered apart in each topic).
Identity = tuple[str, str]
#: A group's message log: (where, as identities name it; GroupId; TopicId or None for the group's own).
GroupLog = tuple[str, str, str | None]


@dataclass
class Expected:
    """What the jobs must recall, and what they must leave."""

    jobs: list[Job] = field(default_factory=list)
    recall: set[Identity] = field(default_factory=set)
    keep: set[Identity] = field(default_factory=set)
    group_logs: list[GroupLog] = field(default_factory=list)
    wipe_proposed: set[str] = field(default_factory=set)  # job ids


async def seed(url: str) -> Expected:
    """One-to-one conversations, official accounts and groups, each with spam to recall and messages to
    keep."""
    expected = Expected()
    async with make_client(url) as client:
        users = [f"{p}{i}" for i in range(C2C_CONVERSATIONS) for p in ("s", "r")]
        members = [f"{p}{i}" for i in range(GROUPS) for p in ("gs", "gm")]
        await import_accounts(client, [*users, *members, "owner", "reader"])
        for i in range(GROUPS):
            await seed_group(client, url, i, expected)
        for i in range(C2C_CONVERSATIONS):
            suspect, reporter = f"s{i}", f"r{i}"
            messages = [(suspect, reporter, T0 + 10 * n, f"FREE CRYPTO spam #{n}", True) for n in range(3)]
            messages += [
                (suspect, reporter, T0 + 5, "see you tomorrow", False),
                (reporter, suspect, T0 + 6, "stop sending me spam", False),
                (suspect, reporter, T0 - 500, "old spam before the window", False),
            ]
            for seq, (sender, receiver, at, words, spam) in enumerate(messages, start=1):
                key = await import_c2c(
                    client,
                    sender=sender,
                    receiver=receiver,
                    timestamp=at,
                    seq=seq,
                    random=i,
                    body=[text(words)],
                )
                (expected.recall if spam else expected.keep).add((f"c2c:{suspect}", key))
            expected.jobs.append(
                job(
                    f"chaos-c2c-{i}",
                    operator=reporter,
                    peer=suspect,
                    suspect=suspect,
                    since=T0 - 60,
                    until=T0 + 600,
                )
            )
        for i in range(OFFICIAL_ACCOUNTS):
            account = await create_official_account(client, owner="owner", name=f"News {i}")
            await add_subscribers(client, account, ["reader"])
            for n in range(4):
                spam = n % 2 == 0
                key = await send_official_account(
                    client,
                    account=account,
                    random=100 * i + n,
                    body=[text("FREE CRYPTO offer" if spam else "weather")],
                )
                (expected.recall if spam else expected.keep).add((account, key))
            now = int(time.time())
            expected.jobs.append(
                Job.model_validate(
                    {
                        "version": 1,
                        "job_id": f"chaos-oa-{i}",
                        "conversation": {"type": "official_account", "account": account},
                        "suspect": account,
                        "window": {"since": now - 3600, "until": now + 3600},
                    }
                )
            )
    random.Random(5).shuffle(expected.jobs)
    return expected


async def seed_group(client: TimClient, url: str, i: int, expected: Expected) -> None:
    """Group ``i``: its suspect's spam in the window among a member's quote of it, the suspect's clean
    message and spam from before the window, and the join tip. In a community all that is in a topic, and
    the suspect's spam is also in the group's own log, numbered with seqs the topic's spam has too: the
    topic's job must leave it."""
    suspect, member = f"gs{i}", f"gm{i}"
    in_topic = i % TOPIC_EVERY == 0
    group, topics = await new_group(
        client,
        url,
        owner=member,
        members=[suspect],
        created_at=T0 - 300,
        topics=["offers"] if in_topic else (),
    )
    topic = topics[0] if topics else None
    spam = [(suspect, T0 + 10 * n, f"FREE CRYPTO spam #{n}", True) for n in range(1, 4)]
    if i % INVITE_EVERY == 0:
        spam.append((suspect, T0 + 50, "Join my VIP signals group, guaranteed profit", True))
        expected.wipe_proposed.add(f"chaos-group-{i}")
    messages = sorted(
        [
            *spam,
            (suspect, T0 - 100, "FREE CRYPTO from before the window", False),
            (member, T0 + 5, "is this free crypto real?", False),
            (suspect, T0 + 45, "see you tomorrow", False),
        ],
        key=lambda m: m[1],
    )
    logs: list[tuple[str | None, list[tuple[str, int, str, bool]]]] = [(topic, messages)]
    if in_topic:
        logs.append((None, [m for m in messages if m[0] == suspect]))  # kept: no job names the group's log
    for log_topic, log in logs:
        where = f"group:{group}" + (f"|topic:{log_topic}" if log_topic else "")
        sent = await import_group_messages(
            client,
            group_id=group,
            topic_id=log_topic or "",
            messages=[(sender, at, n, [text(words)]) for n, (sender, at, words, _) in enumerate(log)],
        )
        to_recall = {
            str(seq) for seq, (*_, is_spam) in zip(sent, log, strict=True) if is_spam and log_topic == topic
        }
        expected.recall |= {(where, seq) for seq in to_recall}
        stored = group_messages(url, group, log_topic)
        expected.keep |= {(where, str(seq)) for seq in stored if str(seq) not in to_recall}
        expected.group_logs.append((where, group, log_topic))
    expected.jobs.append(
        group_job(f"chaos-group-{i}", group, topic_id=topic, suspect=suspect, window=(T0 - 60, T0 + 600))
    )


def poison(settings: Settings, n: int) -> list[str]:
    """Five kinds of undeliverable jobs, each marked so its dead letter can be found; returns the marks."""
    marks = [f"poison-{kind}-{n}" for kind in ("gzip", "pickle", "headers", "nested", "bytes")]
    publish(settings, marks[0].encode(), headers={"compression": "application/x-gzip"})
    publish(settings, orjson.dumps({"mark": marks[1]}), content_type="application/x-python-serialize")
    publish(settings, orjson.dumps({"mark": marks[2]}), headers={"x-filler": "f" * 100_000})
    publish(settings, b"[" * 3000 + orjson.dumps(marks[3]) + b"]" * 3000)
    publish(settings, b"\xff\xfe" + marks[4].encode(), content_encoding=None)
    return marks


@pytest.fixture
def pg_ledger() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema: the workers migrate it as they start, together."""
    with fresh_pg_schema() as url:
        yield url


class Fleet:
    """The worker processes: killed and replaced on demand; any other exit is a failure."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.started = 0
        self.kills = 0
        self.unexpected: list[str] = []
        self.workers: list[ProcessWorker] = []

    def start(self) -> None:
        self.started += 1
        self.workers.append(ProcessWorker(self.settings, self.logs / f"worker-{self.started}.log").start())

    def check(self) -> None:
        for worker in list(self.workers):
            assert worker.proc is not None
            code = worker.proc.poll()
            if code is not None:
                self.unexpected.append(f"{worker.log_path.name} exited with {code}: {worker.log()[-2000:]}")
                self.workers.remove(worker)
                self.start()

    def kill_one(self, rng: random.Random) -> None:
        victim = rng.choice(self.workers)
        victim.signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        self.kills += 1
        self.workers.remove(victim)
        self.start()

    def stop(self) -> list[int]:
        # A worker replaced a moment ago may still be in the interpreter's own start, before any handler
        # exists; a rollout stops running pods, so wait until each one consumes.
        for worker in self.workers:
            deadline = time.monotonic() + 30
            while "worker.consuming" not in worker.log():
                assert time.monotonic() < deadline, f"{worker.log_path.name} never started consuming"
                time.sleep(0.1)
        codes = []
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                codes.append(worker.wait(60))
            finally:
                worker.stop()
        return codes


class Collector:
    """Takes results and dead letters off their queues, riding out the broker restart."""

    def __init__(self, queues: Queues) -> None:
        self.queues = queues
        self.results: dict[str | None, list[bytes]] = defaultdict(list)
        self.dead: list[Any] = []

    def drain(self) -> None:
        try:
            for envelope in self.queues.read(self.queues.names.results, take=True):
                self.results[orjson.loads(envelope.body)["job_id"]].append(envelope.body)
            self.dead += self.queues.read(self.queues.names.dead, take=True)
        except Exception as exc:  # noqa: BLE001 - the broker may be restarting; read again later
            print(f"queues not readable now: {type(exc).__name__}")

    def done(self, jobs: list[Job]) -> int:
        return sum(1 for j in jobs if j.job_id in self.results)


def recalled(url: str, expected: Expected) -> set[Identity]:
    """Messages the emulator shows recalled, in every conversation the jobs name."""
    found: set[Identity] = set()
    seen: set[Identity] = set()
    for where, group, topic in expected.group_logs:
        for seq, message in group_messages(url, group, topic).items():
            seen.add((where, str(seq)))
            if message["IsPlaceMsg"] == 2:
                found.add((where, str(seq)))
    for item in expected.jobs:
        conversation = item.conversation.model_dump()
        if conversation["type"] == "group":
            continue
        if conversation["type"] == "c2c":
            where = f"c2c:{conversation['peer']}"
            params = {"a": conversation["peer"], "b": conversation["operator"]}
            messages = httpx.get(f"{url}/_emulator/c2c", params=params).json()["messages"]
            gone = [m["MsgFlagBits"] == 8 for m in messages]
        else:
            where = conversation["account"]
            messages = httpx.get(f"{url}/_emulator/official_account", params={"id": where}).json()["messages"]
            gone = [m["IsPlaceMsg"] == 2 for m in messages]
        for message, is_gone in zip(messages, gone, strict=True):
            seen.add((where, message["MsgKey"]))
            if is_gone:
                found.add((where, message["MsgKey"]))
    assert expected.recall | expected.keep <= seen, "the emulator lost seeded messages"
    return found


def test_chaos(emulator: EmulatorThread, pg_ledger: str, tmp_path: Path) -> None:
    require(RABBITMQ)
    started = time.monotonic()
    expected = asyncio.run(seed(emulator.url))
    settings = worker_settings(
        AMQP_URL,
        emulator.url,
        database_url=pg_ledger,
        concurrency=4,
        max_attempts=12,
        retry_base_delay_s=1.0,
        retry_max_delay_s=4.0,
        tim_max_attempts=2,
        tim_timeout_s=3.0,
        shutdown_budget_s=10,
    )
    queues = Queues(settings)
    collector = Collector(queues)
    fleet = Fleet(settings, tmp_path)
    rng = random.Random(7)
    restarts = 0
    parked_at_restart = 0
    marks: list[str] = []
    try:
        httpx.post(f"{emulator.url}/_emulator/faults", json=FAULTS).raise_for_status()
        for _ in range(WORKERS):
            fleet.start()  # together, on an empty ledger: the migration must not race
        half = len(expected.jobs) // 2
        for n, start in enumerate(range(0, len(expected.jobs), 10)):
            queues.submit(expected.jobs[start : start + 10])
            if n % 3 == 0:
                marks += poison(settings, n)
        next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)
        deadline = time.monotonic() + 240
        while collector.done(expected.jobs) < len(expected.jobs):
            assert time.monotonic() < deadline, (
                f"only {collector.done(expected.jobs)} of {len(expected.jobs)} jobs have a result; "
                f"unexpected exits: {fleet.unexpected}"
            )
            fleet.check()
            if time.monotonic() >= next_kill:
                fleet.kill_one(rng)
                next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)
            if not restarts and collector.done(expected.jobs) >= half // 2:
                parked_at_restart = park_jobs_and_restart_broker(emulator.url, queues, settings)
                restarts += 1
            collector.drain()
            time.sleep(0.2)
        codes = fleet.stop()
        collector.drain()
        time.sleep(1.0)  # any repeat of a result would be on the queue by now
        collector.drain()
    finally:
        for worker in fleet.workers:
            worker.stop()
        httpx.delete(f"{emulator.url}/_emulator/faults")
        queues.delete_all()

    jobs_by_id = {j.job_id for j in expected.jobs}
    results = {job_id: bodies for job_id, bodies in collector.results.items() if job_id in jobs_by_id}
    duplicates = sum(len(bodies) - 1 for bodies in results.values())
    parsed = {job_id: orjson.loads(bodies[0]) for job_id, bodies in results.items()}
    statuses = Counter(result["status"] for result in parsed.values())
    proposed = {job_id for job_id, result in parsed.items() if result["wipe_proposed"]}
    gone = recalled(emulator.url, expected)
    wrong = gone & expected.keep
    missed = expected.recall - gone
    dead_marks = {
        mark
        for letter in collector.dead
        for mark in marks
        if mark.encode() in letter.body or mark.encode() in gzip_safe(letter.body)
    }
    reasons = Counter(letter.headers.get("x-dead-reason") for letter in collector.dead)
    ledger = ledger_statuses(pg_ledger)
    events = Counter(
        event
        for log in tmp_path.glob("worker-*.log")
        for line in log.read_text(errors="replace").splitlines()
        for event in ("job.retry", "job.repeated", "worker.broker_lost", "job.started")
        if f'"event": "{event}"' in line
    )
    print(
        f"\nchaos: {len(expected.jobs)} jobs, {len(marks)} poison deliveries, {fleet.kills} kills, "
        f"{restarts} broker restart(s) with {parked_at_restart} jobs parked for retry, "
        f"{len(expected.jobs) - len(results)} lost, {duplicates} repeated results, {len(wrong)} wrong and "
        f"{len(missed)} missed recalls of {len(expected.recall)}, dead letters {dict(reasons)}, "
        f"worker events {dict(events)}, {len(proposed)} wipes proposed, {time.monotonic() - started:.0f} s"
    )
    assert set(results) == jobs_by_id, "every job has a result"
    for job_id, bodies in results.items():
        assert len(set(bodies)) == 1, f"{job_id}: repeated results differ"
    assert statuses == {"done": len(expected.jobs)}, statuses
    # exactly where a wipe rule matched, also when a job ran again after an earlier attempt recalled the match
    assert proposed == expected.wipe_proposed, sorted(proposed ^ expected.wipe_proposed)
    assert all(set(parsed[job_id]["plan_ids"]) == {"wipe"} for job_id in proposed)
    assert not wrong, f"recalled messages that must stay: {sorted(wrong)[:5]}"
    assert not missed, f"missed: {sorted(missed)[:5]}"
    assert dead_marks == set(marks), f"poison not dead-lettered: {sorted(set(marks) - dead_marks)}"
    assert set(reasons) <= {"undecodable", "invalid_job"}, reasons
    assert fleet.unexpected == [], fleet.unexpected
    assert codes == [0] * WORKERS, "SIGTERM ends each worker cleanly"
    assert fleet.kills >= 5
    assert restarts == 1 and parked_at_restart > 0
    assert ledger == {"done": len(expected.jobs)}, ledger


def gzip_safe(body: bytes) -> bytes:
    try:
        return gzip.decompress(body)
    except (OSError, EOFError):
        return b""


def park_jobs_and_restart_broker(url: str, queues: Queues, settings: Settings) -> int:
    """Make the next attempts fail until some jobs wait in the retry queues, then restart RabbitMQ."""
    failing = {"commands": {"admin_getroammsg": {"error_rates": {"91000": 1.0}}, **FAULTS["commands"]}}
    httpx.post(f"{url}/_emulator/faults", json={**FAULTS, **failing}).raise_for_status()
    retry_queues = [queues.names.retry(round(s * 1000)) for s in (1.0, 2.0, 4.0)]
    deadline = time.monotonic() + 30
    parked = 0
    while time.monotonic() < deadline and parked < 3:
        parked = sum(queue_depth(name) for name in retry_queues)
        time.sleep(0.05)
    httpx.post(f"{url}/_emulator/faults", json=FAULTS).raise_for_status()
    restart_rabbitmq(down_s=5.0)  # longer than the retry delays: they run out while the broker is down
    return parked


def ledger_statuses(url: str) -> Counter[str]:
    schema = url.rsplit("%3D", 1)[1]
    with psycopg.connect(PG_ADMIN) as conn:
        query = psycopg.sql.SQL("SELECT status, count(*) FROM {}.jobs GROUP BY status")
        rows = conn.execute(query.format(psycopg.sql.Identifier(schema))).fetchall()
    return Counter(dict(rows))
