"""Moderators' decisions on stored recall plans: approving queues an apply job, rejecting records why and
holds the plan's messages back from later jobs, reopening puts a rejected plan back to review.

A plan may be approved in part (a subset of its messages): the apply job recalls exactly the selected ones,
and each deselected message counts as rejected (held back from later jobs until a newer decision). A wipe
plan is approved whole or not at all."""

from __future__ import annotations

from collections.abc import Collection

from worker import priority as prio
from worker.jobs import Job
from worker.ledger.store import Ledger, PlanView
from worker.queues import Queues


def apply_job_for(plan: PlanView) -> Job:
    """The job that recalls exactly ``plan``'s messages (re-checked against the history first)."""
    job = plan.job
    return Job.model_validate(
        {
            "version": 1,
            "job_id": plan.apply_job_id or f"plan-{plan.id}-apply",
            "conversation": job["conversation"],
            "suspect": job["suspect"],
            "window": job["window"],
            "report": job["report"],
            "ruleset": job["ruleset"],
            "mode": "recall",
            "apply_plan": plan.id,
        }
    )


def what_approval_does(plan: PlanView) -> str:
    """What the apply job of ``plan`` will do, in a moderator's words."""
    if plan.is_wipe:
        return (
            f"it wipes every message {plan.job['suspect']} sent among the group's last 1,000, then recalls "
            "by seq any of these the wipe missed."
        )
    left_out = plan.deselected
    if left_out:
        return (
            f"it recalls exactly the {len(plan.items) - len(left_out)} selected message(s); the "
            f"{len(left_out)} left out count as rejected and are held back from later jobs."
        )
    return "it recalls exactly these messages."


def approve(
    ledger: Ledger,
    queues: Queues,
    plan_id: int,
    *,
    by: str,
    note: str | None = None,
    only: Collection[str] | None = None,
) -> Job:
    """Approve a pending plan (only the MsgKeys ``only``, if given) and queue its apply job.

    Deselected messages count as rejected: see :meth:`Ledger.decide_plan`.
    """
    plan = ledger.decide_plan(plan_id, approve=True, by=by, note=note, only=only)
    job = apply_job_for(plan)
    queues.submit([job], priority=prio.APPLY_PLAN)  # a moderator decided and waits for it
    return job


def requeue(ledger: Ledger, queues: Queues, plan_id: int) -> Job:
    """Queue the apply job of an approved plan again (it recalls nothing twice).

    If that job failed, it runs again; if it settled otherwise, its stored result is published again.
    """
    plan = ledger.plan(plan_id)
    if plan.status not in ("approved", "applied"):
        raise ValueError(f"plan {plan_id} is {plan.status}; only an approved plan has an apply job")
    job = apply_job_for(plan)
    queues.submit([job], rerun=True, priority=prio.APPLY_PLAN)
    return job


def reject(ledger: Ledger, plan_id: int, *, by: str, note: str | None = None) -> PlanView:
    """Reject a pending plan: nothing of it will be recalled, by it or by any later job, until a newer
    decision (approving a plan with the same messages, or reopening this one)."""
    return ledger.decide_plan(plan_id, approve=False, by=by, note=note)


def reopen(ledger: Ledger, plan_id: int, *, by: str, note: str | None = None) -> PlanView:
    """Put a rejected plan back to review; its messages are no longer held back by the rejection."""
    return ledger.reopen_plan(plan_id, by=by, note=note)
