"""Group messages in the ledger: identity by (group, topic, seq), and the record of a wipe."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ledger.helpers import T0, scanned, start
from tests.worker.groups import group_job as shared_group_job
from worker.jobs import Job
from worker.ledger.store import Ledger, PlanStateError

GROUP = "@TGS#2C5SZEAEF"
TOPIC = "@TGS#_@TGS#2C5SZEAEF@TOPIC#_news"


def group_job(job_id: str, *, topic: str | None = None, **extra: Any) -> Job:
    """eve's messages in ``GROUP`` (or its ``topic``) over the hour from ``T0``."""
    return shared_group_job(job_id, GROUP, suspect="eve", window=(T0, T0 + 3600), topic_id=topic, **extra)


def test_a_seq_names_one_message_per_group_or_topic(ledger: Ledger) -> None:
    in_group = group_job("in-group")
    again = group_job("in-group-again")
    in_topic = group_job("in-topic", topic=TOPIC)
    ids = {
        job.job_id: ledger.record_scan(start(ledger, job), job, [scanned("7"), scanned("8")])
        for job in (in_group, again, in_topic)
    }
    assert ids["in-group"] == ids["in-group-again"], "the same seq of the same group is one message"
    assert set(ids["in-topic"].values()).isdisjoint(ids["in-group"].values()), "a topic numbers apart"
    # so one recall of seq 7 in the group does not stop the topic's seq 7 from being recalled
    first = ledger.claim_recalls(start(ledger, group_job("claims")), {"7": ids["in-group"]["7"]})
    assert first.to_call == ["7"]
    ledger.record_recall(ids["in-group"]["7"], state="recalled", code=0, info="")
    topic_pk = start(ledger, group_job("claims-topic", topic=TOPIC))
    assert ledger.claim_recalls(topic_pk, {"7": ids["in-topic"]["7"]}).to_call == ["7"]
    repeat = ledger.claim_recalls(start(ledger, group_job("claims-again")), {"7": ids["in-group"]["7"]})
    assert repeat.skipped == {"7": "already_recalled"}


def test_a_wipe_is_recorded_before_the_call_and_completed_after(ledger: Ledger) -> None:
    scan = group_job("scan")
    scan_pk = start(ledger, scan)
    ids = ledger.record_scan(scan_pk, scan, [scanned("3"), scanned("5", text="hello")])
    plan = ledger.create_plan(scan_pk, "wipe", ids.values())
    with pytest.raises(PlanStateError):
        ledger.approved_plan(plan)  # not approved yet: no apply job may carry it out
    ledger.decide_plan(plan, approve=True, by="ann", note="spam account")
    reason, items = ledger.approved_plan(plan)
    assert (reason, items) == ("wipe", ids)
    apply = group_job("plan-apply", apply_plan=plan)
    apply_pk = start(ledger, apply)
    wipe = ledger.start_wipe(apply_pk, plan, apply, listed=2)
    [pending] = ledger.audit("plan-apply")["wipes"]
    assert pending["finished_at"] is None and pending["recalled"] is None, "recorded before the call"
    assert (pending["plan"], pending["sender"], pending["listed"]) == (plan, "eve", 2)
    assert pending["conversation_key"] == f"group:{GROUP}"
    ledger.finish_wipe(wipe, recalled=1, missed=1)
    [done] = ledger.audit("plan-apply")["wipes"]
    assert (done["recalled"], done["missed"]) == (1, 1)
    assert done["finished_at"] is not None
    [shown] = ledger.audit("scan")["plans"]
    assert (shown["reason"], shown["status"], shown["apply_job_id"]) == (
        "wipe",
        "approved",
        f"plan-{plan}-apply",
    )
