"""One job, end to end: history window -> rules -> ledger -> plan -> recall -> verify -> report.

The plan is a pure function of the job, the matches and the policy: only messages the suspect sent inside
the window are recalled; what is already recalled, a hole, a group's system message, someone else's
message, a protected account's message, a message a moderator decided to keep (a rejected plan), or matched
only by a ``flag`` rule (or by a rule whose circuit breaker is tripped) is left, each with its reason;
flagged and breaker-held messages go to a plan for review. More than ``max_recalls`` candidates escalate
the job: everything goes to a plan, nothing is recalled. A dry run stores its plan and never calls a recall
API.

In a group, an escalated job or a ``wipe`` rule's match also proposes a wipe: one
``delete_group_msg_by_sender`` call that silently recalls everything the suspect sent among the group's
last 1,000 messages. It is broad and has no per-message reply, so it is only ever a plan: it lists every
message of the suspect the walk saw in the window (their evidence is kept first) and runs only once a
moderator approves it; afterwards the history is read again and what the wipe missed is recalled by seq.

The ledger is the source of truth: every matched message's evidence is committed before any recall of it;
a message some job already recalled is never recalled again; after recalling, the history pages that held
the recalled messages are read again to verify each recall took effect. A job's ledger work is a few fused
transactions, each one hop to a thread: the scan with all the plan needs, then the plans with the claim,
then every recall's outcome with its verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from rules.media import Media, MediaRef, media_refs
from worker.jobs import C2CConversation, GroupConversation, Job, OfficialAccountConversation
from worker.ledger.store import CallOutcome, Claim, Ledger, ScannedMessage, ScanRecord, now
from worker.ledger.views import WIPE_PLAN
from worker.tim.history import (
    ApiCaller,
    HistoryStats,
    iter_c2c_history,
    iter_group_history,
    iter_official_account_history,
)
from worker.tim.models import JsonObject, Message, MessageState
from worker.tim.recall import (
    RecallOutcome,
    RecallResult,
    recall_c2c,
    recall_group,
    recall_official_account,
    wipe_group_sender,
)


class Scanner(Protocol):
    """A rule set's per-job evaluator (``rules.RuleSet.scanner()``)."""

    def feed_many(
        self, messages: Sequence[Message], media: Mapping[str, Media] | None = None
    ) -> list[Any]: ...
    def finish(self) -> list[Any]: ...


#: Gets the pictures media rules examine (the worker's allow-listed fetcher): never raises, every picture
#: comes back as bytes or as the reason it was not fetched.
MediaSource = Callable[[Sequence[MediaRef]], Awaitable[Mapping[str, Media]]]


class RuleSetLike(Protocol):
    """A compiled rule set."""

    @property
    def name(self) -> str: ...

    def scanner(self) -> Scanner: ...


class SkipReason(enum.StrEnum):
    """Why a matched message is not recalled."""

    NOT_SUSPECT = "not_sent_by_suspect"
    OUTSIDE_WINDOW = "outside_window"
    ALREADY_RECALLED = "already_recalled"
    HOLE = "deleted_or_expired"
    FLAG_ONLY = "flag_rule_only"
    BREAKER = "rule_breaker_tripped"
    PROTECTED = "protected_account"
    NOT_FOUND = "gone_before_recall"
    NOT_IN_WINDOW_NOW = "no_longer_in_history"
    CLAIMED = "being_recalled_by_another_job"
    REJECTED = "rejected_by_moderator"
    SYSTEM = "system_message"


#: Rule actions that recall the message they match.
RECALL_ACTIONS = frozenset({"recall", "wipe"})
#: What the ledger records as the recall ``info`` of a message an approved wipe took.
WIPED = "wiped by delete_group_msg_by_sender"


#: Messages handed to the rules at once.
SCAN_PAGE = 100

#: Reasons whose messages go to a plan for a moderator's review.
REVIEW_REASONS = (SkipReason.FLAG_ONLY, SkipReason.BREAKER)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a rule's match rate is far above its recent baseline, hold its recalls for review."""

    factor: float = 10.0
    min_matches: int = 20
    min_jobs: int = 5
    floor_rate: float = 0.001
    lookback_s: int = 7 * 86400
    cooldown_s: int = 3600


@dataclass(frozen=True, slots=True)
class Policy:
    """The safety rules a job runs under."""

    max_recalls: int = 50
    protected: frozenset[str] = frozenset()
    verify: bool = True
    claim_lease_s: float = 600.0  # another job's claim on a message is respected this long
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    #: Where media rules get pictures; None: they see none (each picture "not examined").
    media: MediaSource | None = None


@dataclass(frozen=True, slots=True)
class MessageRef:
    """What the plan needs to know of a scanned message."""

    msg_key: str
    sender: str
    receiver: str | None
    timestamp: int
    state: MessageState
    system: bool = False  # a group's system message (IsSystemMsg 1): never recalled
    #: The history page (1 = the first the walk read) that held the message; 0 when unknown. Verifying a
    #: recall reads again only the pages that held recalled messages.
    page: int = 0

    @classmethod
    def of(cls, message: Message, page: int = 0) -> MessageRef:
        """What the plan needs of ``message``, found on the walk's page ``page``."""
        return cls(
            message.msg_key,
            message.from_account,
            message.to_account,
            message.timestamp,
            message.state,
            message.system,
            page,
        )


@dataclass(slots=True)
class Matched:
    """A message and every rule match on it."""

    ref: MessageRef
    matches: list[Any] = field(default_factory=list)
    body: tuple[JsonObject, ...] = ()
    cloud_custom_data: str = ""

    def ledger_record(self) -> ScannedMessage:
        ref = self.ref
        return ScannedMessage(
            ref.msg_key,
            ref.sender,
            ref.receiver,
            ref.timestamp,
            self.body,
            self.cloud_custom_data,
            self.matches,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What to recall, what goes to review, and what is left and why.

    ``wipe`` says why a wipe of the suspect's messages is proposed (``over_cap``, or ``rule <id>``), or
    is empty: only ever in a group, and never for a protected account.
    """

    to_recall: tuple[MessageRef, ...]
    skipped: tuple[tuple[str, SkipReason], ...]
    over_cap: bool
    wipe: str = ""

    def review(self) -> dict[SkipReason, list[str]]:
        """Messages to put in a plan for review, by reason."""
        groups: dict[SkipReason, list[str]] = {}
        for key, reason in self.skipped:
            if reason in REVIEW_REASONS:
                groups.setdefault(reason, []).append(key)
        return groups


def left_because(job: Job, ref: MessageRef, policy: Policy) -> SkipReason | None:
    """Why ``ref`` may not be recalled by ``job`` whatever matched it, or None. Pure."""
    checks = (
        (ref.system, SkipReason.SYSTEM),
        (ref.sender != job.suspect, SkipReason.NOT_SUSPECT),
        (ref.sender in policy.protected, SkipReason.PROTECTED),
        (not job.since <= ref.timestamp <= job.until, SkipReason.OUTSIDE_WINDOW),
        (ref.state is MessageState.RECALLED, SkipReason.ALREADY_RECALLED),
        (ref.state is MessageState.HOLE, SkipReason.HOLE),
    )
    return next((reason for applies, reason in checks if applies), None)


def plan_recalls(
    job: Job,
    matched: Iterable[Matched],
    policy: Policy,
    open_breakers: Iterable[str] = (),
    rejected: Iterable[str] = (),
) -> Plan:
    """Decide which matched messages the job may recall. Pure.

    ``rejected`` names messages (MsgKeys) a moderator decided to keep by rejecting a plan of them: they are
    neither recalled nor put in a new plan.
    """
    held = set(open_breakers)
    kept_by_moderator = set(rejected)
    to_recall: list[MessageRef] = []
    skipped: list[tuple[str, SkipReason]] = []
    wipe_rules: set[str] = set()
    for item in sorted(matched, key=lambda m: (m.ref.timestamp, m.ref.msg_key)):
        ref = item.ref
        recall_rules = {match.rule_id for match in item.matches if match.action in RECALL_ACTIONS}
        reason = left_because(job, ref, policy)
        if reason is SkipReason.ALREADY_RECALLED:
            # The sender is what a wipe rule judges: its verdict stands after the message is gone (when
            # this job runs again after its first attempt recalled it, say).
            wipe_rules |= {m.rule_id for m in item.matches if m.action == "wipe" and m.rule_id not in held}
        if reason is not None:
            skipped.append((ref.msg_key, reason))
        elif ref.msg_key in kept_by_moderator:
            skipped.append((ref.msg_key, SkipReason.REJECTED))
        elif not recall_rules:
            skipped.append((ref.msg_key, SkipReason.FLAG_ONLY))
        elif recall_rules <= held:
            skipped.append((ref.msg_key, SkipReason.BREAKER))
        else:
            to_recall.append(ref)
            wipe_rules |= {m.rule_id for m in item.matches if m.action == "wipe" and m.rule_id not in held}
    over_cap = len(to_recall) > policy.max_recalls
    wipe = ""
    if isinstance(job.conversation, GroupConversation) and job.suspect not in policy.protected:
        if over_cap:
            wipe = "over_cap"
        elif wipe_rules:
            wipe = "rule " + ", ".join(sorted(wipe_rules))
    return Plan(tuple(to_recall), tuple(skipped), over_cap, wipe)


def rule_counts(matched: Iterable[Matched]) -> dict[str, int]:
    """How many messages each rule matched."""
    counts: Counter[str] = Counter()
    for item in matched:
        for rule_id in {match.rule_id for match in item.matches}:
            counts[rule_id] += 1
    return dict(counts)


def may_trip(count: int, scanned: int, policy: BreakerPolicy) -> bool:
    """Whether a rule that matched ``count`` of a job's ``scanned`` messages matched often enough to trip its
    breaker (whatever its baseline). Pure."""
    return count >= policy.min_matches and scanned > 0


def breaker_trips(
    counts: dict[str, int], scanned: int, baselines: dict[str, tuple[int, int, int]], policy: BreakerPolicy
) -> dict[str, str]:
    """Rules whose match rate in this job is ``factor`` times their baseline rate, with why. Pure.

    ``baselines`` maps a rule to (matches, messages scanned, jobs) over the lookback period.
    """
    trips = {}
    rate = 0.0
    for rule_id, count in counts.items():
        if not may_trip(count, scanned, policy):
            continue
        matches, base_scanned, jobs = baselines.get(rule_id, (0, 0, 0))
        if jobs < policy.min_jobs:
            continue
        base_rate = max(matches / base_scanned if base_scanned else 0.0, policy.floor_rate)
        rate = count / scanned
        if rate > policy.factor * base_rate:
            trips[rule_id] = (
                f"matched {count} of {scanned} messages ({rate:.1%}), over {policy.factor:g}x its "
                f"baseline of {base_rate:.2%} across {jobs} jobs"
            )
    return trips


class CountingCaller:
    """Wraps the shared client to count one job's API calls by command."""

    def __init__(self, inner: ApiCaller) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def call(self, path: str, body: Any) -> JsonObject:
        self.calls[path.rsplit("/", 1)[-1]] += 1
        return await self.inner.call(path, body)


@dataclass(slots=True)
class JobReport:
    """Everything the job did, for its result record."""

    matched: list[Matched]
    plan: Plan
    history: HistoryStats
    recalls: list[RecallResult]
    api_calls: dict[str, int]
    ruleset: str
    plans: dict[str, int] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    breakers: dict[str, str] = field(default_factory=dict)
    wiped: list[str] = field(default_factory=list)  # taken by an approved wipe, as the history showed

    @property
    def failed_recalls(self) -> list[RecallResult]:
        return [r for r in self.recalls if r.outcome is RecallOutcome.FAILED]


def history_of(
    job: Job,
    client: ApiCaller,
    stats: HistoryStats,
    *,
    since: int | None = None,
    until: int | None = None,
    start_seq: int | None = None,
) -> AsyncIterator[Message]:
    """The job's history window (or a part of it), as its conversation type reads it.

    ``start_seq`` starts a group's walk at that seq rather than at the newest message (the other APIs page
    by time alone and ignore it).
    """
    conversation = job.conversation
    start, end = job.since if since is None else since, job.until if until is None else until
    if isinstance(conversation, C2CConversation):
        return iter_c2c_history(
            client,
            operator=conversation.operator,
            peer=conversation.peer,
            since=start,
            until=end,
            stats=stats,
        )
    if isinstance(conversation, OfficialAccountConversation):
        return iter_official_account_history(
            client, account=conversation.account, since=start, until=end, stats=stats
        )
    return iter_group_history(
        client,
        group_id=conversation.group_id,
        topic_id=conversation.topic_id,
        since=start,
        until=end,
        stats=stats,
        start_seq=start_seq,
    )


@dataclass(slots=True)
class Scan:
    """What a walk of the window found: the matched messages and, in a group, every live message of the
    suspect's (matched or not: what a wipe would take, with the evidence a wipe plan shows)."""

    matched: list[Matched]
    suspect_messages: list[Matched] = field(default_factory=list)


def _wipeable(message: Message, job: Job) -> bool:
    return (
        message.from_account == job.suspect
        and not message.system
        and message.state is MessageState.NORMAL
        and job.since <= message.timestamp <= job.until
    )


async def scan(
    job: Job, client: ApiCaller, ruleset: RuleSetLike, stats: HistoryStats, media: MediaSource | None = None
) -> Scan:
    """Walk the window through the rules; keep the matched messages (and, in a group, the suspect's).

    Messages are handed to the rules a page at a time: the engine normalizes and searches a whole batch in
    one pass, which costs much less than message by message. When the rule set has media rules, the
    pictures of the page's messages that could be recalled (the suspect's, still there) are fetched
    through ``media`` first; nobody else's are fetched, as nothing of theirs would be recalled.
    """
    scanner = ruleset.scanner()
    matched: dict[str, Matched] = {}
    seen: dict[str, MessageRef] = {}
    kept: dict[str, tuple[tuple[JsonObject, ...], str]] = {}  # bodies window rules may name after the walk
    window_rules = bool(getattr(ruleset, "has_window_rules", True))
    in_group = isinstance(job.conversation, GroupConversation)
    wipeable: list[str] = []
    page: list[Message] = []

    def add(match: Any) -> None:
        entry = matched.get(match.msg_key)
        if entry is None:
            ref = seen.get(match.msg_key)
            if ref is None:
                return  # a window rule named a message this walk never saw
            body, ccd = kept.get(match.msg_key, ((), ""))
            entry = matched[match.msg_key] = Matched(ref, body=body, cloud_custom_data=ccd)
        entry.matches.append(match)

    wants_media = bool(getattr(ruleset, "wants_media", False))

    async def pictures() -> Mapping[str, Media] | None:
        if not wants_media:
            return None
        refs = [
            ref
            for m in page
            if m.from_account == job.suspect and m.is_actionable and not m.system
            for ref in media_refs(m.body)
        ]
        if not refs:
            return {}
        if media is None:
            return {r.uuid: Media(r.uuid, None, "no media fetcher configured") for r in refs}
        return await media(refs)

    async def feed() -> None:
        by_key = {m.msg_key: m for m in page}
        found = await pictures()
        if found is None:
            matches = scanner.feed_many(page)
        elif any(m.examined for m in found.values()):
            # decoding and hashing pictures takes ~20 ms each: off the event loop, which other jobs share
            matches = await asyncio.to_thread(scanner.feed_many, page, found)
        else:
            matches = scanner.feed_many(page, found)
        for match in matches:
            message = by_key.get(match.msg_key)
            if message is not None and match.msg_key not in kept:
                kept[match.msg_key] = (tuple(dict(e) for e in message.body), message.cloud_custom_data)
            add(match)
        page.clear()

    async for message in history_of(job, client, stats):
        # The walk yields a page's messages before it fetches the next: ``stats.pages`` is this one's page.
        seen[message.msg_key] = MessageRef.of(message, stats.pages)
        if in_group and _wipeable(message, job):
            wipeable.append(message.msg_key)
        if (window_rules or in_group) and message.from_account == job.suspect:
            kept[message.msg_key] = (tuple(dict(e) for e in message.body), message.cloud_custom_data)
        page.append(message)
        if len(page) >= SCAN_PAGE:
            await feed()
    await feed()
    for match in scanner.finish():
        add(match)
    suspect_messages = [
        matched.get(key) or Matched(seen[key], body=kept[key][0], cloud_custom_data=kept[key][1])
        for key in wipeable
    ]
    return Scan(list(matched.values()), suspect_messages)


async def recall(job: Job, client: ApiCaller, targets: Iterable[MessageRef]) -> list[RecallResult]:
    """Recall ``targets`` with the conversation's recall API."""
    conversation = job.conversation
    targets = list(targets)
    if not targets:
        return []
    reason = f"moderation job {job.job_id}"
    if isinstance(conversation, OfficialAccountConversation):
        return await recall_official_account(
            client, account=conversation.account, msg_keys=[t.msg_key for t in targets], reason=reason
        )
    if isinstance(conversation, GroupConversation):
        return await recall_group(
            client,
            group_id=conversation.group_id,
            topic_id=conversation.topic_id,
            seqs=[int(t.msg_key) for t in targets],
            reason=reason,
        )
    results = []
    for target in targets:
        receiver = target.receiver or ""
        results.append(
            await recall_c2c(client, sender=target.sender, receiver=receiver, msg_key=target.msg_key)
        )
    return results


def page_groups(job: Job, refs: Sequence[MessageRef]) -> list[list[MessageRef]]:
    """``refs`` grouped by the history page that held them, for :func:`verify`.

    An official account's history can only be read from its newest message (the API takes no time bound and
    no start), so there every ref is in one group; refs whose page is unknown (0) form one group too.
    """
    if isinstance(job.conversation, OfficialAccountConversation):
        return [list(refs)] if refs else []
    groups: dict[int, list[MessageRef]] = {}
    for ref in refs:
        groups.setdefault(ref.page, []).append(ref)
    return [groups[page] for page in sorted(groups)]


async def verify(job: Job, client: ApiCaller, recalled: list[MessageRef]) -> list[str]:
    """Read again the history pages that held ``recalled``; return the keys that do not show as recalled.

    Each page's recalled messages (:func:`page_groups`) are read in one narrow window: from the oldest's
    time to the newest's, a part of that page's span, so they come back on one page (two when the window's
    edge seconds hold more messages), and the pages between them are not read again. A group's messages are
    read by seq, from the page's highest recalled seq down to its lowest, not from the newest. An official
    account's are read in one walk from the newest message. Each walk stops as soon as its messages all
    showed.
    """
    pending = {ref.msg_key for ref in recalled}
    for refs in page_groups(job, recalled):
        left = [ref for ref in refs if ref.msg_key in pending]  # another page's walk may have shown some
        if not left:
            continue
        keys = {ref.msg_key for ref in left}
        since, until = min(r.timestamp for r in left), max(r.timestamp for r in left)
        start_seq = floor = None
        if isinstance(job.conversation, GroupConversation):
            start_seq, floor = max(int(key) for key in keys), min(int(key) for key in keys)
        async for message in history_of(
            job, client, HistoryStats(), since=since, until=until, start_seq=start_seq
        ):
            if message.msg_key in pending and message.state is MessageState.RECALLED:
                pending.discard(message.msg_key)
                keys.discard(message.msg_key)
                if not keys:
                    break
            if floor is not None and message.seq <= floor:
                break  # a group's walk goes down by seq: none of the page's messages can follow
    return sorted(pending)


class Run:
    """One attempt of one job against the ledger."""

    def __init__(self, job: Job, client: ApiCaller, ledger: Ledger, policy: Policy) -> None:
        self.job = job
        self.client = CountingCaller(client)
        self.ledger = ledger
        self.policy = policy
        self.stats = HistoryStats()

    async def _ledger(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(method, *args, **kwargs)

    async def scan_and_plan(self, job_pk: int, ruleset: RuleSetLike) -> tuple[Scan, Plan, ScanRecord]:
        """Scan, then record and plan: one ledger transaction commits the evidence of every matched message
        (before any recall can be attempted) and reads everything the plan needs."""
        job, breaker = self.job, self.policy.breaker
        found = await scan(job, self.client, ruleset, self.stats, self.policy.media)
        matched = found.matched
        counts = rule_counts(m for m in matched if m.ref.sender == job.suspect)
        scanned = self.stats.messages
        # Only a rule that may trip needs its baseline (see breaker_trips): no other baseline is read.
        candidates = [rule_id for rule_id, count in counts.items() if may_trip(count, scanned, breaker)]
        gone = [
            m.ref.msg_key
            for m in matched
            if left_because(job, m.ref, self.policy) is SkipReason.ALREADY_RECALLED
        ]
        record: ScanRecord = await self._ledger(
            self.ledger.record_scan_for_plan,
            job_pk,
            job,
            [m.ledger_record() for m in matched],
            counts=counts,
            scanned=scanned,
            baseline_rules=candidates,
            baseline_since=now() - timedelta(seconds=breaker.lookback_s),
            trips=lambda baselines: breaker_trips(counts, scanned, baselines, breaker),
            cooldown_s=breaker.cooldown_s,
            already_recalled=gone,
        )
        kept = [key for key, pk in record.ids.items() if pk in record.rejected]
        plan = plan_recalls(job, matched, self.policy, record.open_breakers, kept)
        return found, plan, record

    @staticmethod
    def claimed(
        refs: Sequence[MessageRef], claim: Claim
    ) -> tuple[list[MessageRef], list[tuple[str, SkipReason]]]:
        """The refs ``claim`` lets this job recall now, and the others with why not."""
        skipped = [(key, SkipReason(reason)) for key, reason in claim.skipped.items()]
        called = set(claim.to_call)
        return [ref for ref in refs if ref.msg_key in called], skipped

    async def claim(
        self, job_pk: int, refs: list[MessageRef], ids: dict[str, int]
    ) -> tuple[list[MessageRef], list[tuple[str, SkipReason]]]:
        """The refs the ledger lets this job recall now, and the others with why not."""
        claim = await self._ledger(
            self.ledger.claim_recalls,
            job_pk,
            {r.msg_key: ids[r.msg_key] for r in refs},
            lease_s=self.policy.claim_lease_s,
        )
        return self.claimed(refs, claim)

    async def recall_and_verify(
        self, targets: list[MessageRef], ids: dict[str, int]
    ) -> tuple[list[RecallResult], list[str]]:
        """Recall claimed ``targets``, verify, and record every outcome with its verification in one ledger
        transaction (returns the unverified keys).

        Until that commits, the claims stay as the claim left them, as they would if the worker died right
        after its calls: a later attempt takes its own claims over and finds the messages recalled. If the
        verification fails, the outcomes are recorded without it before the error goes on.
        """
        results = await recall(self.job, self.client, targets)
        outcomes = [CallOutcome(ids[r.msg_key], r.outcome.value, r.code, r.info) for r in results]
        if not self.policy.verify:
            await self._ledger(self.ledger.record_recalls, outcomes)
            return results, []
        done = {r.msg_key for r in results if r.outcome.is_done}
        checked = [ref for ref in targets if ref.msg_key in done]
        try:
            unverified = await verify(self.job, self.client, checked)
        except BaseException:
            with contextlib.suppress(Exception):  # the verification's error is the one to report
                await self._ledger(self.ledger.record_recalls, outcomes)
            raise
        failed = set(unverified)
        await self._ledger(
            self.ledger.record_recalls,
            outcomes,
            {ids[ref.msg_key]: ref.msg_key not in failed for ref in checked},
        )
        return results, unverified

    async def recall_claimed(
        self, job_pk: int, refs: list[MessageRef], ids: dict[str, int]
    ) -> tuple[list[RecallResult], list[tuple[str, SkipReason]], list[str]]:
        """Recall what the ledger lets this job recall; record each outcome; verify."""
        targets, skipped = await self.claim(job_pk, refs, ids)
        results, unverified = await self.recall_and_verify(targets, ids)
        return results, skipped, unverified

    async def wipe(
        self, job_pk: int, plan_id: int, refs: list[MessageRef], ids: dict[str, int]
    ) -> tuple[list[str], list[RecallResult], list[tuple[str, SkipReason]], list[str]]:
        """Carry out an approved wipe: claim the plan's live messages, record the wipe, make the one
        ``delete_group_msg_by_sender`` call, read those messages again, and recall by seq what it missed.

        The call has no per-message reply and only reaches the group's last 1,000 messages, so the history
        is the judge: a claimed message that shows as recalled afterwards is recorded recalled (and
        verified) by the wipe; the others go through ``group_msg_recall`` like any recall. A protected
        suspect is never wiped. Returns the wiped keys, the by-seq recalls, the skipped and the unverified.
        """
        job, ledger = self.job, self.ledger
        conversation = job.conversation
        if job.suspect in self.policy.protected or not isinstance(conversation, GroupConversation):
            return [], [], [], []
        claimed, skipped = await self.claim(job_pk, refs, ids)
        wipe_id = await self._ledger(ledger.start_wipe, job_pk, plan_id, job, listed=len(claimed))
        await wipe_group_sender(
            self.client, group_id=conversation.group_id, sender=job.suspect, topic_id=conversation.topic_id
        )
        missed = set(await verify(job, self.client, claimed))
        wiped = [ref.msg_key for ref in claimed if ref.msg_key not in missed]
        await self._ledger(ledger.finish_wipe, wipe_id, recalled=len(wiped), missed=len(missed))
        await self._ledger(
            ledger.record_recalls,
            [CallOutcome(ids[key], "recalled", 0, WIPED) for key in wiped],
            {ids[key]: True for key in wiped},
        )
        leftover = [ref for ref in claimed if ref.msg_key in missed]
        results, unverified = await self.recall_and_verify(leftover, ids)
        return wiped, results, skipped, unverified


async def run_job(
    job: Job, client: ApiCaller, ruleset: RuleSetLike, *, ledger: Ledger, policy: Policy, job_pk: int
) -> JobReport:
    """Run ``job`` (already started in the ledger as ``job_pk``)."""
    run = Run(job, client, ledger, policy)
    if job.apply_plan is not None:
        return await apply_plan(run, job_pk, job.apply_plan, ruleset.name)
    found, plan, record = await run.scan_and_plan(job_pk, ruleset)
    to_plan: dict[str, list[str]] = {}  # reason -> MsgKeys, created in this order
    to_claim: list[MessageRef] = []
    if job.dry_run or plan.over_cap:
        keys = [ref.msg_key for ref in plan.to_recall] + [
            k for group in plan.review().values() for k in group
        ]
        if keys:
            to_plan["dry_run" if job.dry_run else "over_cap"] = keys
    else:
        to_plan |= {reason.value: keys for reason, keys in plan.review().items()}
        to_claim = list(plan.to_recall)
    evidence: list[ScannedMessage] = []
    wiped: list[str] = []
    if plan.wipe:
        # The wipe plan shows every message of the suspect's the walk saw: their evidence first.
        evidence = [m.ledger_record() for m in found.suspect_messages if m.ref.msg_key not in record.ids]
        wiped = [m.ref.msg_key for m in found.suspect_messages]
        if wiped:
            to_plan[WIPE_PLAN] = wiped
    ids, plans = record.ids, {}
    recalls: list[RecallResult] = []
    unverified: list[str] = []
    skipped = list(plan.skipped)
    if evidence or to_plan or to_claim:
        prepared = await run._ledger(
            ledger.prepare_recalls,
            job_pk,
            job,
            ids,
            evidence=evidence,
            plans=to_plan,
            claim=[ref.msg_key for ref in to_claim],
            lease_s=policy.claim_lease_s,
        )
        ids, plans = prepared.ids, prepared.plans
        targets, ledger_skipped = run.claimed(to_claim, prepared.claim)
        skipped += ledger_skipped
        recalls, unverified = await run.recall_and_verify(targets, ids)
    # A wipe is only proposed with a plan to approve: none when the suspect has no live message left here.
    final_plan = Plan(plan.to_recall, tuple(skipped), plan.over_cap, plan.wipe if wiped else "")
    return JobReport(
        found.matched,
        final_plan,
        run.stats,
        recalls,
        dict(run.client.calls),
        ruleset.name,
        plans,
        unverified,
        record.trips,
    )


async def apply_plan(run: Run, job_pk: int, plan_id: int, ruleset_name: str) -> JobReport:
    """Recall exactly the messages of an approved plan that are still there and not yet recalled.

    An approved wipe plan makes its one ``delete_group_msg_by_sender`` call instead (see :meth:`Run.wipe`).
    """
    job, ledger = run.job, run.ledger
    reason, ids = await run._ledger(ledger.approved_plan, plan_id)
    refs: dict[str, MessageRef] = {}
    async for message in history_of(job, run.client, run.stats):
        if message.msg_key in ids:
            refs[message.msg_key] = MessageRef.of(message, run.stats.pages)
    to_recall: list[MessageRef] = []
    skipped: list[tuple[str, SkipReason]] = []
    for key in sorted(ids):
        ref = refs.get(key)
        left = SkipReason.NOT_IN_WINDOW_NOW if ref is None else left_because(job, ref, run.policy)
        if left is not None:
            skipped.append((key, left))
        elif ref is not None:
            to_recall.append(ref)
    wiped: list[str] = []
    if reason == WIPE_PLAN:
        wiped, recalls, ledger_skipped, unverified = await run.wipe(job_pk, plan_id, to_recall, ids)
    else:
        recalls, ledger_skipped, unverified = await run.recall_claimed(job_pk, to_recall, ids)
    await run._ledger(ledger.mark_plan_applied, plan_id)
    plan = Plan(tuple(to_recall), tuple(skipped + ledger_skipped), over_cap=False)
    return JobReport(
        [],
        plan,
        run.stats,
        recalls,
        dict(run.client.calls),
        ruleset_name,
        unverified=unverified,
        wiped=wiped,
    )
