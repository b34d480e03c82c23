"""The intake's store on SQLite and on the real PostgreSQL: coalescing under concurrency, the reporter limit,
replays, follow-up cases, and settling cases from the ledger's job records."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from tests.intake.reports import NOW, QUIET_S, Clock, incoming, settle
from worker.intake.store import IntakeStore, Limited, Replayed, Stored
from worker.intake.trust import Policy
from worker.jobs import parse_job
from worker.ledger.store import Ledger
from worker.results import JobResult


def close(store: IntakeStore, policy: Policy | None = None) -> list[str]:
    return store.close_due(policy or Policy(), lookback_s=3600, ruleset="default")


def outbox_jobs(store: IntakeStore) -> list[dict]:
    return [orjson.loads(body) for _, _, body in store.unpublished()]


def test_100_concurrent_reports_from_30_reporters_make_exactly_one_job_naming_all(
    store: IntakeStore, clock: Clock
) -> None:
    items = [incoming(reporter=f"reporter{n % 30}", msg_seqs=[100 + n]) for n in range(100)]
    with ThreadPoolExecutor(max_workers=32) as pool:  # 100 transactions racing for one case
        outcomes = list(pool.map(lambda item: store.write_batch([item])[0], items))
    assert all(isinstance(o, Stored) for o in outcomes)
    assert len({o.case_id for o in outcomes if isinstance(o, Stored)}) == 1

    assert close(store) == []  # still inside the quiet period
    clock.now += QUIET_S + 1
    assert close(store) == [f"intake-{outcomes[0].case_id}"]  # type: ignore[union-attr]
    [job] = outbox_jobs(store)
    assert sorted(job["report"]["reports"]) == sorted(o.report_id for o in outcomes)  # type: ignore[union-attr]
    assert len(job["report"]["msg_seqs"]) == 100
    assert job["mode"] == "recall"  # 30 distinct reporters agree
    parse_job(orjson.dumps(job))
    assert close(store) == []  # closed once


def test_a_batch_of_reports_on_two_conversations_makes_two_cases(store: IntakeStore) -> None:
    outcomes = store.write_batch(
        [
            incoming(reporter="a"),
            incoming(reporter="b", conversation={"type": "group", "group_id": "@TGS#other"}),
            incoming(reporter="c"),
        ]
    )
    cases = [o.case_id for o in outcomes if isinstance(o, Stored)]
    assert cases[0] == cases[2] != cases[1]


def test_reports_keep_arriving_and_the_case_still_closes_by_its_deadline(
    store: IntakeStore, clock: Clock
) -> None:
    for _ in range(12):  # one every 25 s: never quiet for 30 s
        store.write_batch([incoming(reporter=f"r{clock.now}")])
        clock.now += 25
        if clock.now >= NOW + 300:
            break
    assert len(close(store)) == 1


def test_a_trusted_reporters_report_is_due_at_once(store: IntakeStore) -> None:
    store.write_batch([incoming(reporter="someone")])
    assert close(store) == []
    store.write_batch([incoming(reporter="moderator1")])
    [job_id] = close(store)
    assert outbox_jobs(store)[0]["mode"] == "recall"
    assert job_id.startswith("intake-")


def test_the_reporter_limit_counts_per_minute_and_says_when_to_come_back(
    store: IntakeStore, clock: Clock
) -> None:
    clock.now = NOW - NOW % 60 + 45  # 15 s before the minute turns
    outcomes = store.write_batch([incoming(reporter="eager") for _ in range(7)])
    assert [type(o) for o in outcomes] == [Stored] * 5 + [Limited] * 2
    assert outcomes[-1] == Limited(15)
    assert isinstance(store.write_batch([incoming(reporter="eager")])[0], Limited)
    assert isinstance(store.write_batch([incoming(reporter="other")])[0], Stored)
    clock.now += 15
    assert isinstance(store.write_batch([incoming(reporter="eager")])[0], Stored)


def test_a_replayed_signature_is_refused_and_names_the_first_report(store: IntakeStore) -> None:
    first, again_in_batch = store.write_batch([incoming("sig-same"), incoming("sig-same")])
    assert isinstance(first, Stored)
    assert again_in_batch == Replayed(first.report_id)
    assert store.write_batch([incoming("sig-same")]) == [Replayed(first.report_id)]
    assert store.report_status(first.report_id)["case"]["reports"] == 1  # type: ignore[index]


def test_a_report_the_running_job_covers_joins_it_and_a_newer_one_starts_a_follow_up(
    store: IntakeStore, clock: Clock
) -> None:
    [first] = store.write_batch([incoming(msg_seqs=[50])])
    clock.now += QUIET_S + 1
    close(store)
    assert isinstance(first, Stored)
    [older] = store.write_batch([incoming(reporter="late", msg_seqs=[40])])
    assert older == Stored(older.report_id, first.case_id, joined_running=True)  # type: ignore[union-attr]
    [newer] = store.write_batch([incoming(reporter="later", msg_seqs=[60])])
    assert isinstance(newer, Stored)
    assert newer.case_id != first.case_id and not newer.joined_running
    status = store.report_status(newer.report_id)
    assert status is not None and status["case"]["follow_up_of"] == first.case_id
    assert status["status"] == "queued" and "due_at" in status


def test_one_to_one_reports_are_covered_by_the_send_time_in_their_msgkey(
    store: IntakeStore, clock: Clock
) -> None:
    conversation = {"type": "c2c"}
    [first] = store.write_batch(
        [incoming(conversation=conversation, msg_seqs=[], msg_keys=[f"1_2_{NOW - 60}"])]
    )
    clock.now += QUIET_S + 1
    close(store)
    [inside] = store.write_batch(
        [incoming(conversation=conversation, msg_seqs=[], msg_keys=[f"3_4_{NOW - 10}"], signature=None)]
    )
    [outside] = store.write_batch(
        [incoming(conversation=conversation, msg_seqs=[], msg_keys=[f"5_6_{int(clock.now) + 100}"])]
    )
    assert isinstance(first, Stored) and isinstance(inside, Stored) and isinstance(outside, Stored)
    assert inside.case_id == first.case_id and outside.case_id != first.case_id


def test_settling_a_case_moves_reporter_trust_and_queues_one_delivery_per_report_and_channel(
    store: IntakeStore, ledger: Ledger, clock: Clock
) -> None:
    stored = store.write_batch(
        [incoming(reporter="good"), incoming(reporter="good"), incoming(reporter="meh")]
    )
    clock.now += QUIET_S + 1
    [job_id] = close(store)
    assert store.track(webhook=True, notices=True).started == 0  # not started by a worker yet
    [body] = [b for _, _, b in store.unpublished()]
    started = ledger.start_job(parse_job(body), ruleset_version="test")
    assert store.track(webhook=True, notices=True).started == 1
    assert store.report_status(stored[0].report_id)["status"] == "running"  # type: ignore[union-attr,index]
    record = JobResult(job_id=job_id, status="done", recalled=["1", "2"], messages_scanned=40)
    ledger.settle_job(
        started.pk,  # type: ignore[union-attr]
        status="done",
        result=record.to_json(),
        error=None,
        scanned=40,
        pages=2,
        dead_reason=None,
    )
    assert store.track(webhook=True, notices=True).settled == {"done": 1}
    status = store.report_status(stored[0].report_id)  # type: ignore[union-attr]
    assert status is not None and status["status"] == "done"
    assert status["counts"]["recalled"] == 2 and status["counts"]["scanned"] == 40
    reporters = {r["reporter"]: r for r in store.reports_of_job(job_id)}
    assert reporters["good"]["upheld"] == 1  # counted once for its two reports on the case
    assert reporters["good"]["trust"] == pytest.approx(2 / 3, abs=0.01)
    deliveries = store.deliveries()
    assert sorted(d["kind"] for d in deliveries) == ["notice"] * 3 + ["webhook"] * 3
    assert store.track(webhook=True, notices=True).settled == {}  # settled once


def test_a_job_that_found_nothing_dismisses_its_reports_and_lowers_trust(
    store: IntakeStore, ledger: Ledger, clock: Clock
) -> None:
    [stored] = store.write_batch([incoming(reporter="baseless")])
    clock.now += QUIET_S + 1
    [job_id] = close(store)
    settle(ledger, store, job_id, status="done", messages_scanned=12)
    store.track(webhook=False, notices=False)
    status = store.report_status(stored.report_id)  # type: ignore[union-attr]
    assert status is not None and status["status"] == "dismissed"
    [reporter] = store.reports_of_job(job_id)
    assert reporter["baseless"] == 1 and reporter["trust"] == pytest.approx(1 / 3, abs=0.01)
    assert store.deliveries() == []  # no channel configured


def test_low_trust_reporters_get_a_dry_run_unless_enough_agree(
    store: IntakeStore, ledger: Ledger, clock: Clock
) -> None:
    policy = Policy(low_trust=0.3, agree=2)
    for round_ in range(2):  # two baseless reports: trust 1/2, then 1/3, then 1/4
        store.write_batch([incoming(reporter="crier", msg_seqs=[1000 + round_])])
        clock.now += QUIET_S + 1
        [job_id] = close(store, policy)
        assert outbox_jobs(store)[-1]["mode"] == "recall"
        settle(ledger, store, job_id, status="done")
        store.track(webhook=False, notices=False)
    store.write_batch([incoming(reporter="crier", msg_seqs=[2000])])
    clock.now += QUIET_S + 1
    close(store, policy)
    assert outbox_jobs(store)[-1]["mode"] == "dry_run"
    store.write_batch([incoming(reporter="crier", msg_seqs=[3000]), incoming(reporter="x", msg_seqs=[3001])])
    clock.now += QUIET_S + 1
    close(store, policy)
    assert outbox_jobs(store)[-1]["mode"] == "recall"  # two reporters agree


def test_the_outbox_keeps_a_job_until_it_is_marked_published(store: IntakeStore, clock: Clock) -> None:
    store.write_batch([incoming()])
    clock.now += QUIET_S + 1
    [job_id] = close(store)
    [(pk, listed, _)] = store.unpublished()
    assert listed == job_id
    store.publish_failed([pk], "broker down")
    assert [row[1] for row in store.unpublished()] == [job_id]
    store.mark_published([pk])
    assert store.unpublished() == []
