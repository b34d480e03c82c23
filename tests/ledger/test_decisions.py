"""A moderator's rejection is a decision on the plan's messages: no later job recalls them, until a newer
decision (approving a plan with them, or reopening the rejected plan) lifts it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.ledger.helpers import cli, make_job, record
from worker.ledger.store import Ledger, PlanStateError


def audited(ledger: Ledger, job_id: str, msg_key: str) -> dict[str, Any]:
    """The audit of one message of a job."""
    [message] = [m for m in ledger.audit(job_id)["messages"] if m["msg_key"] == msg_key]
    return dict(message)


def decision_of(ledger: Ledger, job_id: str, msg_key: str) -> dict[str, Any] | None:
    decision: dict[str, Any] | None = audited(ledger, job_id, msg_key)["decision"]
    return decision


def test_a_rejection_holds_until_an_approval_or_a_reopen_lifts_it(ledger: Ledger) -> None:
    preview_pk, ids = record(ledger, make_job("preview-1", mode="dry_run"), ["m1", "m2"])
    plan = ledger.create_plan(preview_pk, "dry_run", ids.values())
    ledger.decide_plan(plan, approve=False, by="alice", note="a joke between friends")
    assert ledger.rejected_messages([*ids.values(), 999_999]) == {
        ids["m1"]: f"rejected by alice in plan {plan}",
        ids["m2"]: f"rejected by alice in plan {plan}",
    }

    # A later report on the same conversation names the same messages, and one more.
    report_pk, later = record(ledger, make_job("report-2"), ["m1", "m2", "m3"])
    assert later["m1"] == ids["m1"] and later["m2"] == ids["m2"]
    claim = ledger.claim_recalls(report_pk, later)
    assert claim.to_call == ["m3"]
    assert claim.skipped == {"m1": "rejected_by_moderator", "m2": "rejected_by_moderator"}
    decision = decision_of(ledger, "report-2", "m1")
    assert decision is not None
    assert (decision["state"], decision["plan"], decision["by"]) == ("rejected_by_moderator", plan, "alice")
    assert datetime.fromisoformat(str(decision["at"]))
    assert decision_of(ledger, "report-2", "m3") is None

    # A newer decision: another plan with m1 is approved.
    flagged = ledger.create_plan(report_pk, "flag_rule_only", [later["m1"]])
    ledger.decide_plan(flagged, approve=True, by="bob")
    assert set(ledger.rejected_messages(ids.values())) == {ids["m2"]}
    assert decision_of(ledger, "report-2", "m1") is None
    assert ledger.claim_recalls(report_pk, {"m1": later["m1"]}).to_call == ["m1"]

    # Reopening the rejected plan lifts what is left of its rejection and puts it back for review.
    with pytest.raises(PlanStateError, match="not rejected"):
        ledger.reopen_plan(flagged, by="carol")
    with pytest.raises(PlanStateError, match="no plan"):
        ledger.reopen_plan(999_999, by="carol")
    view = ledger.reopen_plan(plan, by="carol", note="second look")
    assert (view.status, view.decided_by, view.decided_at) == ("pending", None, None)
    assert ledger.rejected_messages(ids.values()) == {}
    assert ledger.claim_recalls(report_pk, {"m2": later["m2"]}).to_call == ["m2"]
    m2 = audited(ledger, "preview-1", "m2")
    assert m2["decision"] is None
    [history] = m2["decisions"]
    assert (history["decision"], history["plan"], history["by"]) == ("rejected", plan, "alice")
    assert (history["lifted"], history["lifted_by"], history["lifted_note"]) == (
        "reopened",
        "carol",
        "second look",
    )
    [m1_history] = audited(ledger, "preview-1", "m1")["decisions"]
    assert (m1_history["lifted"], m1_history["lifted_by"], m1_history["lifted_plan"]) == (
        "approved",
        "bob",
        flagged,
    )
    # Rejected again after the reopen: the new rejection holds.
    ledger.decide_plan(plan, approve=False, by="dave")
    assert ledger.rejected_messages([ids["m1"]]) == {ids["m1"]: f"rejected by dave in plan {plan}"}


def test_plans_reopen_command(database_url: str, ledger: Ledger) -> None:
    job_pk, ids = record(ledger, make_job("preview-cli", mode="dry_run"), ["m1"])
    plan = ledger.create_plan(job_pk, "dry_run", ids.values())
    pending = cli(database_url, "plans", "reopen", str(plan), "--by", "carol")
    assert pending.returncode == 2 and pending.stdout == ""
    assert pending.stderr.count("\n") == 1 and "pending, not rejected" in pending.stderr
    missing = cli(database_url, "plans", "reopen", "424242", "--by", "carol")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no plan 424242" in missing.stderr
    ledger.decide_plan(plan, approve=False, by="alice")
    reopened = cli(database_url, "plans", "reopen", str(plan), "--by", "carol", "--note", "look again")
    assert reopened.returncode == 0, reopened.stderr
    assert reopened.stdout.count("\n") == 1 and f"plan {plan} reopened by carol" in reopened.stdout
    assert ledger.plan(plan).status == "pending"
    assert ledger.rejected_messages(ids.values()) == {}
