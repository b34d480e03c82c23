"""Evidence retention: dropping old evidence content, never the evidence a recall may still need.

Evidence of a message is kept (whatever its age) while the message is an item of a plan that is pending
or approved (not yet applied), or while its recall row is in a state a recall may follow (``planned``,
``failed``, ``unverified``). A purge keeps the content hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import null, select, update
from sqlalchemy.orm import Session

from worker.ledger.clock import now
from worker.ledger.models import EvidenceRow, PlanItemRow, PlanRow, RecallRow
from worker.ledger.upsert import CHUNK

#: Plans whose items may still be recalled.
OPEN_PLAN_STATES = ("pending", "approved")
#: Recall states a recall may still follow.
OPEN_RECALL_STATES = ("planned", "failed", "unverified")


@dataclass(slots=True)
class Purged:
    """What a purge did."""

    purged: list[int] = field(default_factory=list)  # message row ids whose evidence content was dropped
    kept: int = 0  # evidence old enough to go, kept because a recall of its message may still happen


def protected(session: Session, message_pks: Sequence[int]) -> set[int]:
    """Those of ``message_pks`` whose evidence a recall may still need."""
    in_open_plans = (
        select(PlanItemRow.message_pk)
        .join(PlanRow, PlanRow.id == PlanItemRow.plan_pk)
        .where(PlanItemRow.message_pk.in_(message_pks), PlanRow.status.in_(OPEN_PLAN_STATES))
    )
    open_recalls = select(RecallRow.message_pk).where(
        RecallRow.message_pk.in_(message_pks), RecallRow.state.in_(OPEN_RECALL_STATES)
    )
    return set(session.scalars(in_open_plans)) | set(session.scalars(open_recalls))


def purge_batch(session: Session, older_than: datetime, after: int, into: Purged) -> int | None:
    """Purge the next batch of evidence (message row ids above ``after``); the last id, or None when done.

    The batch's evidence rows are locked first (``FOR UPDATE``): a claim locks a message's evidence before
    it plans a recall, so either the claim committed first and its recall row protects the evidence here,
    or it waits for this purge and then finds the evidence purged and refuses.
    """
    batch = list(
        session.scalars(
            select(EvidenceRow.message_pk)
            .where(
                EvidenceRow.captured_at < older_than,
                EvidenceRow.purged_at.is_(None),
                EvidenceRow.message_pk > after,
            )
            .order_by(EvidenceRow.message_pk)
            .limit(CHUNK)
            .with_for_update()
        )
    )
    if not batch:
        return None
    keep = protected(session, batch)
    doomed = [pk for pk in batch if pk not in keep]
    if doomed:
        session.execute(
            update(EvidenceRow)
            .where(EvidenceRow.message_pk.in_(doomed))
            .values(body=null(), cloud_custom_data=None, purged_at=now())
        )
    into.purged.extend(doomed)
    into.kept += len(batch) - len(doomed)
    return batch[-1] if len(batch) == CHUNK else None
