"""A job's row in the ledger: its id is an idempotency key, its first settlement is the one kept, and a
recall the history shows done counts as verified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.ledger.helpers import make_job, record
from worker.jobs import Job
from worker.ledger.models import JobRow, RecallRow
from worker.ledger.store import JobIdConflict, Ledger, Settled, Started, job_fingerprint

RESULT = '{"job_id":"report-x",  "status":"done","note":"垃圾 \\u0000"}'.encode()


def test_a_recall_the_history_shows_done_is_verified_after_a_redelivery(ledger: Ledger) -> None:
    job_pk, ids = record(ledger, make_job("report-killed"), ["recalled", "planned"])
    assert len(ledger.claim_recalls(job_pk, ids).to_call) == 2
    ledger.record_recall(ids["recalled"], state="recalled", code=0, info="")
    # The worker was killed here; the redelivered job's scan sees both messages recalled in the history.
    ledger.settle_already_recalled(ids.values())
    with ledger.session() as session:
        rows = {row.message_pk: row for row in session.scalars(select(RecallRow))}
    assert rows[ids["recalled"]].state == "recalled"
    assert rows[ids["planned"]].state == "already_recalled"
    for row in rows.values():
        assert row.verified is True and row.verified_at is not None


def test_documents_that_parse_to_the_same_job_have_the_same_fingerprint() -> None:
    short = (
        '{"version":1,"job_id":"j","conversation":{"type":"c2c","operator":"bob","peer":"eve"},'
        '"suspect":"eve","window":{"since":1,"until":2}}'
    )
    spelled_out = (
        '{"mode":"recall","ruleset":"default","report":{"msg_keys":[]},"window":{"until":2,"since":1},'
        '"suspect":"eve","conversation":{"peer":"eve","type":"c2c","operator":"bob"},"job_id":"j",'
        '"version":1,"apply_plan":null}'
    )
    fingerprint = job_fingerprint(Job.model_validate_json(short))
    assert fingerprint == job_fingerprint(Job.model_validate_json(spelled_out))
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    other = Job.model_validate_json(short.replace('"until":2', '"until":3'))
    assert job_fingerprint(other) != fingerprint


def test_the_same_job_twice_is_one_row_with_two_attempts(ledger: Ledger) -> None:
    job = make_job("report-x")
    first = ledger.start_job(job, ruleset_version="v1")
    second = ledger.start_job(make_job("report-x"), ruleset_version="v1")
    assert isinstance(first, Started) and isinstance(second, Started)
    assert (second.pk, first.attempt, second.attempt) == (first.pk, 1, 2)
    assert ledger.audit("report-x")["fingerprint"] == job_fingerprint(job)


def test_a_reused_job_id_is_refused_and_the_first_job_is_left_as_it_was(ledger: Ledger) -> None:
    job_pk, _ = record(ledger, make_job("report-x"), ["m1"])
    ledger.settle_job(job_pk, status="done", result=RESULT, error=None, scanned=3, pages=1, dead_reason=None)
    before = ledger.audit("report-x")
    other = make_job("report-x", operator="user2", peer="user1", suspect="user1")
    with pytest.raises(JobIdConflict) as refused:
        ledger.start_job(other, ruleset_version="v2")
    assert refused.value.job_id == "report-x"
    assert str(refused.value) == (
        "job_id 'report-x' was already used for another job (c2c:bob|eve, suspect eve); use a new job_id"
    )
    wider = make_job("report-x", window={"since": 0, "until": 10})
    with pytest.raises(JobIdConflict):
        ledger.start_job(wider, ruleset_version="v1")
    assert ledger.audit("report-x") == before
    assert before["conversation"] == {"type": "c2c", "operator": "bob", "peer": "eve"}
    assert [m["msg_key"] for m in before["messages"]] == ["m1"] and before["status"] == "done"


def test_the_first_settlement_is_kept_and_returned_again(ledger: Ledger) -> None:
    job = make_job("report-x")
    started = ledger.start_job(job, ruleset_version="v1")
    assert isinstance(started, Started)
    first = ledger.settle_job(
        started.pk, status="done", result=RESULT, error=None, scanned=5, pages=1, dead_reason=None
    )
    assert first == Settled("done", RESULT, None)
    second = ledger.settle_job(
        started.pk,
        status="failed",
        result=b'{"status":"failed"}',
        error="late",
        scanned=0,
        pages=0,
        dead_reason="permanent_error",
    )
    assert second == first
    ledger.finish_job(started.pk, status="retrying", error="a stale attempt", scanned=0, pages=0)
    again = ledger.start_job(job, ruleset_version="v2")
    assert again == first and isinstance(again, Settled) and again.result == RESULT
    audit = ledger.audit("report-x")
    assert (audit["status"], audit["error"], audit["messages_scanned"], audit["attempts"]) == (
        "done",
        None,
        5,
        1,
    )
    assert audit["dead_reason"] is None and audit["settled_at"] is not None
    assert audit["result"] == {"job_id": "report-x", "status": "done", "note": "垃圾 \x00"}
    assert audit["ruleset_version"] == "v1"


def test_a_failed_job_runs_again_only_for_an_operator_replaying_it(ledger: Ledger) -> None:
    job = make_job("report-x")
    started = ledger.start_job(job, ruleset_version="v1")
    assert isinstance(started, Started)
    failed = b'{"status":"failed"}'
    ledger.settle_job(
        started.pk,
        status="failed",
        result=failed,
        error="boom",
        scanned=0,
        pages=0,
        dead_reason="permanent_error",
    )
    assert ledger.start_job(job, ruleset_version="v1") == Settled("failed", failed, "permanent_error")
    before = datetime.now(UTC) - timedelta(hours=1)
    assert ledger.start_job(job, ruleset_version="v1", replayed_at=before) == Settled(
        "failed", failed, "permanent_error"
    ), "a replay from before the failure does not run it again"
    rerun = ledger.start_job(job, ruleset_version="v1", replayed_at=datetime.now(UTC) + timedelta(seconds=1))
    assert rerun == Started(started.pk, 2)
    audit = ledger.audit("report-x")
    assert (audit["status"], audit["result"], audit["dead_reason"], audit["settled_at"]) == (
        "running",
        None,
        None,
        None,
    )
    done = ledger.settle_job(
        started.pk, status="done", result=RESULT, error=None, scanned=1, pages=1, dead_reason=None
    )
    assert done == Settled("done", RESULT, None)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert ledger.start_job(job, ruleset_version="v1", replayed_at=later) == done, "only a failure runs again"


def test_a_row_from_before_fingerprints_is_adopted_by_its_own_job_only(ledger: Ledger) -> None:
    job = make_job("report-old")
    started = ledger.start_job(job, ruleset_version="v1")
    assert isinstance(started, Started)
    with ledger.session() as session, session.begin():
        session.execute(update(JobRow).values(fingerprint=None))
    other = make_job("report-old", operator="user2", peer="user1", suspect="user1")
    with pytest.raises(JobIdConflict):
        ledger.start_job(other, ruleset_version="v1")
    assert ledger.start_job(job, ruleset_version="v1") == Started(started.pk, 2)
    assert ledger.audit("report-old")["fingerprint"] == job_fingerprint(job)
