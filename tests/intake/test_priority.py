"""A case's job priority from its reporters (worker/intake/trust.py ``case_priority``), the store's
``priorities`` over a database, and the relay publishing each job with it to the real RabbitMQ."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.intake.reports import QUIET_S, Clock, incoming
from tests.services import RABBITMQ, require
from worker import priority
from worker.config import Settings, load_settings
from worker.intake.relay import JobMaking, Relay
from worker.intake.store import IntakeStore, Stored
from worker.intake.trust import Policy, Record, case_priority, trust_score
from worker.queues import Queues

POLICY = Policy(trusted=frozenset({"moderator1"}))
NEW = Record()
#: Trust 0.2: below the low-trust threshold (0.35).
BAD = Record(upheld=0, baseless=3)


def priority_of(*records: Record, trusted: int = 0) -> int:
    """The priority of a case whose distinct reporters have ``records`` (and ``trusted`` trusted ones)."""
    named = {f"reporter{n}": record for n, record in enumerate(records)}
    reporters = [*named, *(["moderator1"] if trusted else [])]
    return case_priority(POLICY, reporters, named)


# --- case_priority: the documented examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ((BAD,), 0),  # one low-trust reporter: a dry run, lowest
        ((BAD, BAD), 0),  # two, still fewer than agree (3): a dry run
        ((NEW,), 1),  # one newcomer
        ((Record(upheld=1),), 2),  # trust 2/3
        ((NEW, NEW), 3),
        ((Record(upheld=3),), 4),  # trust 0.8
        ((NEW, NEW, NEW), 5),  # the urgent lane from here
        ((Record(upheld=8),), 6),  # trust 0.9
        ((NEW, NEW, NEW, NEW), 7),
        ((NEW,) * 5, 8),
        ((NEW,) * 40, 8),  # reporters alone never reach a trusted reporter's 9
        ((BAD, BAD, BAD), 1),  # three low-trust reporters agree: the job recalls, low in line
    ],
)
def test_documented_priorities(records: tuple[Record, ...], expected: int) -> None:
    assert priority_of(*records) == expected


def test_a_trusted_reporter_is_the_highest_whoever_else_reported() -> None:
    assert priority_of(trusted=1) == priority.HIGHEST
    assert priority_of(BAD, trusted=1) == priority.HIGHEST
    assert priority_of(*[NEW] * 10, trusted=1) == priority.HIGHEST


def test_a_case_without_reporters_is_the_lowest() -> None:
    assert case_priority(POLICY, [], {}) == priority.LOWEST


def test_a_reporter_named_twice_counts_once() -> None:
    assert case_priority(POLICY, ["a", "a", "a"], {}) == case_priority(POLICY, ["a"], {})


def test_only_a_trusted_reporter_or_enough_agreement_reaches_the_urgent_lane_from_newcomers() -> None:
    assert not priority.is_urgent(priority_of(NEW, NEW))
    assert priority.is_urgent(priority_of(NEW, NEW, NEW))
    assert priority.is_urgent(priority_of(trusted=1))


_RECORDS = st.builds(
    Record, upheld=st.integers(min_value=0, max_value=200), baseless=st.integers(min_value=0, max_value=200)
)


@given(st.lists(_RECORDS, max_size=12))
def test_priority_is_always_a_level(records: list[Record]) -> None:
    assert priority.LOWEST <= priority_of(*records) <= priority.HIGHEST - 1


@given(st.lists(_RECORDS, max_size=10), _RECORDS)
def test_one_more_distinct_reporter_never_lowers_it(records: list[Record], more: Record) -> None:
    assert priority_of(*records, more) >= priority_of(*records)


@given(st.lists(_RECORDS, min_size=1, max_size=10), st.integers(min_value=1, max_value=50))
def test_more_trust_in_a_reporter_never_lowers_it(records: list[Record], upheld: int) -> None:
    better = Record(records[0].upheld + upheld, records[0].baseless)
    assert trust_score(better) > trust_score(records[0])
    assert priority_of(better, *records[1:]) >= priority_of(*records)


# --- the store and the relay ------------------------------------------------------------------------------


def due_case(store: IntakeStore, clock: Clock, suspect: str, *reporters: str) -> str:
    """A case on ``suspect`` reported by ``reporters`` made into a job; its job id."""
    stored = store.write_batch([incoming(reporter=r, suspect=suspect) for r in reporters])
    assert all(isinstance(s, Stored) for s in stored)
    clock.now += QUIET_S + 1
    [job_id] = store.close_due(POLICY, lookback_s=3600, ruleset="default")
    return job_id


def test_the_store_gives_each_outbox_job_its_cases_priority(store: IntakeStore, clock: Clock) -> None:
    one = due_case(store, clock, "spammer1", "a")
    three = due_case(store, clock, "spammer2", "a", "b", "c")
    trusted = due_case(store, clock, "spammer3", "moderator1")
    assert store.priorities([one, three, trusted, "intake-404"], POLICY) == {
        one: 1,
        three: 5,
        trusted: 9,
        "intake-404": 0,
    }
    assert store.priorities([], POLICY) == {}


@pytest.fixture
def rabbit() -> Iterator[Settings]:
    """Settings of a fresh queue prefix on the real RabbitMQ; its queues are deleted afterwards."""
    require(RABBITMQ)
    settings = load_settings(
        broker_url="amqp://guest:guest@127.0.0.1:5672//", queue_prefix=f"prio-{uuid.uuid4().hex[:10]}"
    )
    yield settings
    Queues(settings).delete_all()


async def test_a_case_with_more_or_trusted_reporters_is_published_with_a_higher_priority(
    store: IntakeStore, clock: Clock, rabbit: Settings
) -> None:
    one = due_case(store, clock, "spammer1", "a")
    three = due_case(store, clock, "spammer2", "a", "b", "c")
    trusted = due_case(store, clock, "spammer3", "moderator1")
    queues = Queues(rabbit)
    relay = Relay(store, queues.publish_jobs, JobMaking(POLICY, lookback_s=3600))
    assert await relay.publish_outbox() == 3
    normal = {e.headers["x-job-id"]: e.priority for e in queues.read(queues.names.jobs, wait_s=5)}
    urgent = {e.headers["x-job-id"]: e.priority for e in queues.read(queues.names.urgent, wait_s=5)}
    assert normal == {one: 1}
    assert urgent == {three: 5, trusted: 9}
