"""Tables of the ledger.

A message is identified by its conversation and MsgKey (``messages``); ``recalls`` holds at most one row per
message, so however many reports or redeliveries name it, a message is recalled, and recorded, once.
Evidence (the full original body) is stored per message before any recall of it is attempted. A moderator's
rejection of a plan is kept per message (``message_decisions``) until a newer decision lifts it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every ledger table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class JobRow(Base):
    """One moderation job (all its attempts)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(128), unique=True)
    conversation_key: Mapped[str] = mapped_column(String(200), index=True)
    conversation: Mapped[dict[str, Any]]
    suspect: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    ruleset: Mapped[str] = mapped_column(String(64))
    ruleset_version: Mapped[str] = mapped_column(String(64), default="")
    report: Mapped[dict[str, Any]]
    window_since: Mapped[int]
    window_until: Mapped[int]
    applies_plan: Mapped[int | None] = mapped_column(default=None)  # the plan an apply job carries out
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    messages_scanned: Mapped[int] = mapped_column(default=0)
    pages_fetched: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # SHA-256 of the job's canonical JSON: the job_id is an idempotency key for exactly this job.
    # NULL on rows written before fingerprints; the first start of the same job adopts the row.
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)  # the published result, verbatim
    dead_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


class MessageRow(Base):
    """A message's identity: its conversation and MsgKey."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_key", "msg_key", name="uq_message_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_key: Mapped[str] = mapped_column(String(200))
    msg_key: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(64))
    receiver: Mapped[str | None] = mapped_column(String(64), default=None)
    msg_time: Mapped[int]


class MatchRow(Base):
    """One rule matching one place of one message, in one job."""

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("job_pk", "message_pk", "rule_id", "element_path", name="uq_match"),
        Index("ix_matches_rule", "rule_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(128))
    rule_type: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(16))
    element_path: Mapped[str] = mapped_column(String(300), default="")
    evidence: Mapped[str] = mapped_column(Text, default="")
    normalized: Mapped[str] = mapped_column(Text, default="")


class EvidenceRow(Base):
    """A message as it was before anything was done to it: body, custom data, and their hash."""

    __tablename__ = "evidence"

    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    body: Mapped[list[Any] | None]
    cloud_custom_data: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(index=True)
    purged_at: Mapped[datetime | None] = mapped_column(default=None)


class RecallRow(Base):
    """What happened to one message: planned -> recalled / already_recalled / not_found / failed."""

    __tablename__ = "recalls"

    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    code: Mapped[int | None] = mapped_column(Integer, default=None)
    info: Mapped[str] = mapped_column(Text, default="")
    planned_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    verified: Mapped[bool | None] = mapped_column(default=None)
    verified_at: Mapped[datetime | None] = mapped_column(default=None)


class PlanRow(Base):
    """A recall plan waiting for (or past) a moderator's decision."""

    __tablename__ = "plans"
    # A unique index rather than a constraint: SQLite adds an index in place, whereas a constraint would
    # mean rebuilding the table, which with foreign keys on deletes every plan item through the cascade.
    __table_args__ = (Index("uq_plans_job_reason", "job_pk", "reason", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    apply_job_id: Mapped[str | None] = mapped_column(String(128), default=None)


class PlanItemRow(Base):
    """A message in a plan.

    ``approved`` is the moderator's choice of this message when the plan was approved: True (selected: the
    apply job recalls it), False (deselected: not recalled, and held back like a rejected message), None
    while the plan is undecided or rejected, and on plans approved whole before subsets existed.
    """

    __tablename__ = "plan_items"

    plan_pk: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    approved: Mapped[bool | None] = mapped_column(default=None)


class MessageDecisionRow(Base):
    """A moderator's decision on one message, taken by deciding a plan that holds it.

    A rejection is active until lifted: by the approval of a (newer) plan with the message, or by reopening
    the rejected plan. Lifted rows stay, so the audit shows who decided what, and who changed it.
    """

    __tablename__ = "message_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    plan_pk: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # "rejected"
    decided_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text, default=None)
    lifted_at: Mapped[datetime | None] = mapped_column(default=None)
    lifted_by: Mapped[str | None] = mapped_column(String(64), default=None)
    lifted_how: Mapped[str | None] = mapped_column(String(16), default=None)  # "approved" or "reopened"
    lifted_plan_pk: Mapped[int | None] = mapped_column(
        ForeignKey("plans.id", ondelete="SET NULL"), default=None
    )
    lifted_note: Mapped[str | None] = mapped_column(Text, default=None)


class WipeRow(Base):
    """A ``delete_group_msg_by_sender`` call: every message of ``sender`` among the group's (or topic's) last
    1,000, recalled silently, with no per-message reply. Recorded before the call is made.

    ``listed`` is how many of the approved plan's messages were still there to wipe; afterwards the history
    is read again: ``recalled`` of them showed as recalled and ``missed`` did not (they are recalled by seq).
    """

    __tablename__ = "wipes"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    plan_pk: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    conversation_key: Mapped[str] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(64))
    listed: Mapped[int]
    called_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    recalled: Mapped[int | None] = mapped_column(default=None)
    missed: Mapped[int | None] = mapped_column(default=None)


class RuleStatRow(Base):
    """How often a rule matched in one job: the baseline of the circuit breaker."""

    __tablename__ = "rule_stats"
    __table_args__ = (Index("ix_rule_stats_rule_at", "rule_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128))
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    matches: Mapped[int]
    scanned: Mapped[int]
    at: Mapped[datetime]


class BreakerRow(Base):
    """A tripped circuit breaker: the rule's matches are planned for review, not recalled, until ``until``."""

    __tablename__ = "breakers"

    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tripped_at: Mapped[datetime]
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


# report intake ------------------------------------------------------------------------------------------


class CaseRow(Base):
    """Reports on one (conversation, suspect) gathered into one job.

    ``open`` while reports still gather (at most one open case per conversation and suspect: a partial
    unique index); ``queued`` once its job is in the outbox; then ``running``; finally ``done`` (the job
    acted or proposed action), ``dismissed`` (it found nothing) or ``failed`` (the job gave up).
    """

    __tablename__ = "cases"
    __table_args__ = (
        Index(
            "uq_cases_open",
            "conversation_key",
            "suspect",
            unique=True,
            postgresql_where=text("state = 'open'"),
            sqlite_where=text("state = 'open'"),
        ),
        Index("ix_cases_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_key: Mapped[str] = mapped_column(String(200))
    conversation: Mapped[dict[str, Any]]
    suspect: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime]
    last_report_at: Mapped[datetime]
    due_at: Mapped[datetime]  # when the job is made: quiet since the last report, or the deadline
    deadline_at: Mapped[datetime]  # the latest due_at may move to: the first report's longest wait
    reports: Mapped[int] = mapped_column(default=0)
    follow_up_of: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), default=None
    )
    job_id: Mapped[str | None] = mapped_column(String(128), unique=True, default=None)
    mode: Mapped[str | None] = mapped_column(String(16), default=None)
    why: Mapped[str | None] = mapped_column(Text, default=None)  # why the job runs in its mode
    window_since: Mapped[int | None] = mapped_column(default=None)  # the job's window, once made
    window_until: Mapped[int | None] = mapped_column(default=None)
    max_seq: Mapped[int | None] = mapped_column(default=None)  # the newest group message its reports name
    outcome: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


class ReportRow(Base):
    """One user report, as the app backend filed it."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(String(40), unique=True)
    case_pk: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    reporter: Mapped[str] = mapped_column(String(64), index=True)
    suspect: Mapped[str] = mapped_column(String(64))
    conversation_key: Mapped[str] = mapped_column(String(200))
    msg_refs: Mapped[list[Any]]  # MsgKeys (one-to-one, official account) or MsgSeqs (group)
    category: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    reported_at: Mapped[int]
    received_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64), default="")  # which intake key signed it


class ReporterRow(Base):
    """A reporter's record: how many reports, how many held up, and this minute's count (rate limit)."""

    __tablename__ = "reporters"

    reporter: Mapped[str] = mapped_column(String(64), primary_key=True)
    reports: Mapped[int] = mapped_column(default=0)
    upheld: Mapped[int] = mapped_column(default=0)
    baseless: Mapped[int] = mapped_column(default=0)
    window_start: Mapped[int] = mapped_column(default=0)  # Unix minute of the rate-limit window
    window_count: Mapped[int] = mapped_column(default=0)
    last_report_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxRow(Base):
    """A job waiting to be published (or published): stored with its case, sent by the relay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(128), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class DeliveryRow(Base):
    """One report outcome to deliver: a webhook to the app backend, or a chat notice to the reporter."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("report_pk", "kind", name="uq_delivery_report_kind"),
        Index("ix_deliveries_due", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_pk: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "webhook" or "notice"
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class SeenSignatureRow(Base):
    """A signed intake request already served: the same signature again is a replay."""

    __tablename__ = "seen_signatures"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    report_id: Mapped[str | None] = mapped_column(String(40), default=None)
    seen_at: Mapped[datetime] = mapped_column(index=True)
