"""Purging evidence never breaks the evidence-first rule: what a recall may still need is kept, a plan
without evidence cannot be approved, and nothing is recalled without its evidence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.ledger.helpers import cli, make_job, record
from worker.ledger.models import RecallRow
from worker.ledger.store import Ledger, PlanStateError, now


def evidence_body(ledger: Ledger, job_id: str, msg_key: str) -> object:
    [message] = [m for m in ledger.audit(job_id)["messages"] if m["msg_key"] == msg_key]
    return message["evidence"]["MsgBody"]


def test_purge_keeps_the_evidence_a_recall_may_still_need(ledger: Ledger) -> None:
    keys = ["pending", "planned", "recalled", "rejected", "approved", "failed", "unverified", "unclaimed"]
    job_pk, ids = record(ledger, make_job("report-1"), keys)
    ledger.create_plan(job_pk, "flag_rule_only", [ids["pending"]])
    rejected = ledger.create_plan(job_pk, "over_cap", [ids["rejected"]])
    ledger.decide_plan(rejected, approve=False, by="ann")
    approved = ledger.create_plan(job_pk, "dry_run", [ids["approved"]])
    ledger.decide_plan(approved, approve=True, by="ann")
    claimed = ledger.claim_recalls(
        job_pk, {k: ids[k] for k in ("planned", "recalled", "failed", "unverified")}
    )
    assert len(claimed.to_call) == 4
    ledger.record_recall(ids["recalled"], state="recalled", code=0, info="")
    ledger.record_recall(ids["failed"], state="failed", code=20004, info="busy")
    ledger.record_recall(ids["unverified"], state="recalled", code=0, info="")
    ledger.record_verification({ids["unverified"]: False, ids["recalled"]: True})

    first = ledger.purge_evidence(now() + timedelta(seconds=1))
    assert sorted(first.purged) == sorted(ids[k] for k in ("recalled", "rejected", "unclaimed"))
    assert first.kept == 5  # pending plan, approved plan, planned, failed, unverified
    for key in ("pending", "planned", "approved", "failed", "unverified"):
        assert evidence_body(ledger, "report-1", key) is not None, key
    for key in ("recalled", "rejected", "unclaimed"):
        assert evidence_body(ledger, "report-1", key) is None, key
    ledger.mark_plan_applied(approved)
    second = ledger.purge_evidence(now() + timedelta(seconds=1))
    assert (second.purged, second.kept) == ([ids["approved"]], 4)

    # A plan whose evidence is gone cannot be approved...
    held = ledger.create_plan(job_pk, "rule_breaker_tripped", [ids["unclaimed"], ids["pending"]])
    assert ledger.plan(held).missing_evidence == ["unclaimed"]
    with pytest.raises(PlanStateError, match="evidence"):
        ledger.decide_plan(held, approve=True, by="ann")
    assert ledger.plan(held).status == "pending"
    # ...and no job recalls a message whose evidence was purged, as one that has none.
    with pytest.raises(RuntimeError, match="no evidence stored for unclaimed"):
        ledger.claim_recalls(job_pk, {"unclaimed": ids["unclaimed"]})
    with ledger.session() as session:
        assert session.get(RecallRow, ids["unclaimed"]) is None


def test_a_new_scan_of_the_same_content_restores_purged_evidence(ledger: Ledger) -> None:
    _, ids = record(ledger, make_job("report-1"), ["same", "changed"])
    assert len(ledger.purge_evidence(now() + timedelta(seconds=1)).purged) == 2
    job_pk, again = record(ledger, make_job("report-2"), ["same"])
    _, changed = record(ledger, make_job("report-3"), ["changed"], text="buy spam, edited")
    assert again == {"same": ids["same"]} and changed == {"changed": ids["changed"]}
    assert evidence_body(ledger, "report-2", "same") is not None, "the same content: the original again"
    assert evidence_body(ledger, "report-3", "changed") is None, "other content is not the original"
    assert ledger.claim_recalls(job_pk, again).to_call == ["same"]


def test_evidence_purge_command(database_url: str, ledger: Ledger) -> None:
    job_pk, ids = record(ledger, make_job("report-1"), ["old", "kept"])
    ledger.create_plan(job_pk, "flag_rule_only", [ids["kept"]])
    negative = cli(database_url, "evidence", "purge", "--older-than-days", "-5")
    assert negative.returncode == 2 and negative.stdout == ""
    assert negative.stderr.count("\n") == 1 and "0 or more" in negative.stderr
    unconfirmed = cli(database_url, "evidence", "purge", "--older-than-days", "0")
    assert unconfirmed.returncode == 2 and unconfirmed.stdout == ""
    assert unconfirmed.stderr.count("\n") == 1 and "--yes" in unconfirmed.stderr
    assert "180" in unconfirmed.stderr
    assert evidence_body(ledger, "report-1", "old") is not None, "nothing purged without --yes"
    default = cli(database_url, "evidence", "purge")
    assert default.returncode == 0, default.stderr
    assert "purged the content of 0 evidence record(s) older than 180 days" in default.stdout
    forced = cli(database_url, "evidence", "purge", "--older-than-days", "0", "--yes")
    assert forced.returncode == 0, forced.stderr
    assert "purged the content of 1 evidence record(s) older than 0 days" in forced.stdout
    assert "kept 1" in forced.stdout
    assert evidence_body(ledger, "report-1", "old") is None
    assert evidence_body(ledger, "report-1", "kept") is not None
    with ledger.session() as session:
        assert session.scalars(select(RecallRow)).all() == []
