"""``recall-worker scan``: one window of one conversation, scanned now, without a queue.

A dry run unless ``--recall``; the progress bar shows how far back through the window the pages reached.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
import time
from collections import Counter
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from worker.config import Settings
from worker.consumer import make_client, policy_of
from worker.jobs import InvalidJob, Job, parse_job
from worker.ledger import open_ledger
from worker.ledger.store import JobIdConflict, Settled
from worker.media.fetch import fetcher_from_settings
from worker.pipeline import run_job
from worker.results import JobResult, MatchRecord, result_of
from worker.rulebook import Rulebook
from worker.tim.history import ApiCaller
from worker.tim.models import JsonObject


class ProgressCaller:
    """Passes calls through and reports how far back through the window the history pages reached.

    On a terminal that is a rich progress bar on stderr; when stderr is not a terminal (a file, a pipe,
    CI), one plain line per page and no bar, so a redirected log holds no carriage-return frames.
    """

    def __init__(self, inner: ApiCaller, since: int, until: int, console: Console | None = None) -> None:
        self.inner = inner
        self.since = since
        self.until = until
        self.console = console or Console(stderr=True)
        self.pages = 0
        self.reached = until
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressCaller:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("scanning"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("pages {task.fields[pages]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task("scan", total=max(1, self.until - self.since), pages=0)
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    async def call(self, path: str, body: Any) -> JsonObject:
        reply = await self.inner.call(path, body)
        items = reply.get("MsgList") or reply.get("RspMsgList")
        if isinstance(items, list):
            self.pages += 1
            stamps: list[int] = []
            for item in items:
                stamp = item.get("MsgTimeStamp") if isinstance(item, dict) else None
                if isinstance(stamp, int) and stamp > 0:
                    stamps.append(stamp)
            if stamps:
                self.reached = max(self.since, min(self.reached, *stamps))
            # Whether paging is done is the history iterator's call, not a reply's: the bar is completed when
            # the job returns (see run_scan).
            self.update(messages=len(items))
        return reply

    def fraction(self, *, done: bool = False) -> float:
        """How much of the window the pages have covered, 0 to 1."""
        span = max(1, self.until - self.since)
        return 1.0 if done else (self.until - self.reached) / span

    def update(self, *, done: bool = False, messages: int | None = None) -> None:
        """Show the progress: move the bar, or (not on a terminal) print one plain line for a new page."""
        if self._bar is not None and self._task is not None:
            span = max(1, self.until - self.since)
            self._bar.update(self._task, completed=round(span * self.fraction(done=done)), pages=self.pages)
        elif messages is not None:
            self.console.print(
                f"scan: page {self.pages}: {plural(messages, 'message')}, "
                f"{self.fraction(done=done):.0%} of the window",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def job_from_args(args: argparse.Namespace) -> Job:
    """The job a ``scan`` command line describes."""
    until = args.until or int(time.time())
    since = args.since if args.since is not None else until - args.lookback
    if getattr(args, "topic", None) and not getattr(args, "group", None):
        raise ValueError("--topic goes with --group")
    if args.c2c:
        operator, peer = args.c2c
        conversation: dict[str, str] = {"type": "c2c", "operator": operator, "peer": peer}
        suspect = args.suspect or peer
    elif getattr(args, "group", None):
        if not args.suspect:
            raise ValueError("--group needs --suspect: the member whose messages may be recalled")
        conversation = {"type": "group", "group_id": args.group}
        if args.topic:
            conversation["topic_id"] = args.topic
        suspect = args.suspect
    else:
        conversation = {"type": "official_account", "account": args.official_account}
        suspect = args.official_account
    return parse_job(
        orjson.dumps(
            {
                "version": 1,
                "job_id": args.job_id or f"scan-{int(time.time())}-{secrets.token_hex(3)}",
                "conversation": conversation,
                "suspect": suspect,
                "window": {"since": since, "until": until},
                "ruleset": args.ruleset,
                "mode": "recall" if args.recall else "dry_run",
            }
        )
    )


def plural(count: int, noun: str) -> str:
    """``1 page``, ``6 pages``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def rule_text(rule_id: str, action: str) -> str:
    """A rule's name, marked when its action is not ``recall`` (``flag``: review only; ``wipe``)."""
    return rule_id if action == "recall" else f"{rule_id} ({action})"


def matches_text(matches: list[MatchRecord]) -> str:
    """Every rule that matched one message, each with where it matched and its own evidence."""
    evidence: dict[tuple[str, str, str], list[str]] = {}
    for match in sorted(matches, key=lambda m: m.rule_id):
        found = evidence.setdefault((match.rule_id, match.action, match.element_path), [])
        if match.evidence not in found:
            found.append(match.evidence)
    return "; ".join(
        f"{rule_text(rule_id, action)} at {path} - {', '.join(repr(e) for e in found)}"
        for (rule_id, action, path), found in evidence.items()
    )


def outcome_of(result: JobResult, key: str) -> tuple[str, str]:
    """What became of one matched message: its count label in the header, and its column in the lines."""
    if key in result.recalled:
        return "recalled", "recalled    "
    if key in result.planned:
        dry_run = result.status == "dry_run"
        return ("would recall", "would recall") if dry_run else ("for review", "for review  ")
    if key in {f.msg_key for f in result.failed}:
        return "failed", "FAILED      "
    if key in result.already_recalled and key not in {s.msg_key for s in result.skipped}:
        return "already gone", "already gone"
    return "left", "left        "


def summary_lines(result: JobResult) -> list[str]:
    """A readable account of a result: one line per matched message, saying what happened to it and why.

    The header counts what became of the matched messages, not only how many matched; each rule that
    matched a message shows its own evidence, and rules whose action is not ``recall`` are marked.
    """
    by_key: dict[str, list[MatchRecord]] = {}
    for match in result.matches:
        by_key.setdefault(match.msg_key, []).append(match)
    reasons = {s.msg_key: s.reason for s in result.skipped}
    failures = {f.msg_key: f for f in result.failed}
    in_group = (result.conversation or {}).get("type") == "group"
    lines: list[str] = []
    outcomes: Counter[str] = Counter()
    for key, matches in sorted(by_key.items(), key=lambda item: item[1][0].time):
        shown = f"seq {key}" if in_group else key
        outcome, column = outcome_of(result, key)
        outcomes[outcome] += 1
        line = f"  {column} {matches[0].sender}'s {shown}: {matches_text(matches)}"
        if outcome == "failed":
            line += f" (service said {failures[key].code} {failures[key].info})"
        elif outcome == "left" and key in reasons:
            line += f" ({reasons[key].replace('_', ' ')})"
        lines.append(line)
    header = (
        f"job {result.job_id}: {result.status} - scanned {plural(result.messages_scanned, 'message')} in "
        f"{plural(result.pages_fetched, 'page')}, {len(by_key)} matched"
    )
    if outcomes:
        header += ": " + ", ".join(f"{count} {outcome}" for outcome, count in outcomes.items())
    applied_a_plan = result.apply_plan is not None
    if applied_a_plan:
        header += f"; applied an approved plan: {len(result.recalled)} recalled, {len(result.wiped)} wiped"
    lines.insert(0, header)
    if result.wiped:
        lines.append(
            f"  wiped        {len(result.wiped)} of {result.suspect}'s messages (delete_group_msg_by_sender)"
        )
    if result.wipe_proposed:
        lines.append(
            f"  proposed     a wipe of {result.suspect}'s recent group messages ({result.wipe_proposed}): "
            f"plan {result.plan_ids.get('wipe')}, for a moderator to approve"
        )
    unmatched = result.messages_scanned - len(by_key)
    if unmatched > 0 and not applied_a_plan:
        other = "other message" if unmatched == 1 else "other messages"
        lines.append(f"  kept         {unmatched} {other}: no rule matched")
    if result.error:
        lines.append(f"  error: {result.error}")
    return lines


def plan_notice(result: JobResult, *, stored_now: bool = True) -> list[str]:
    """Say which plans the scan left in the moderators' review queue, and how to drop them.

    A dry run stores its plan, as a queued dry-run job does: a moderator may approve it to recall exactly
    what the scan found. Storing it silently would leave work in the review queue nobody asked for.
    """
    lines = []
    for reason, plan_id in sorted(result.plan_ids.items(), key=lambda item: item[1]):
        what = reason.replace("_", " ")
        where = "in the review queue, pending" if stored_now else "when it first ran (it may be decided)"
        lines.append(
            f"recall-worker scan: stored plan {plan_id} ({what}) {where}: "
            f"see `recall-worker plans show {plan_id}`; `plans approve {plan_id} --by NAME` recalls it, "
            f"`plans reject {plan_id} --by NAME` drops it"
        )
    return lines


async def run_scan(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scan; print a summary (and any plan it stored) on stderr, and the result record on stdout
    when stdout is not a terminal or ``--json`` asks for it."""
    try:
        job = job_from_args(args)
    except InvalidJob as exc:
        # the wording of ``submit``: each problem as ``job: path: message``
        print("recall-worker scan: " + "; ".join(f"job: {p}" for p in exc.problems), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"recall-worker scan: {exc}", file=sys.stderr)
        return 2
    rulebook = Rulebook(settings.rules_path)
    ruleset = rulebook.ruleset(job.ruleset)
    ledger = open_ledger(settings.database_url)
    started = time.perf_counter()
    already_ran = False
    try:
        start = ledger.start_job(job, ruleset_version=rulebook.version)
        if isinstance(start, Settled):
            # The same scan (same --job-id and window) already ran: show what it did, run nothing again.
            result = JobResult.model_validate_json(start.result)
            already_ran = True
            print(f"recall-worker scan: job {job.job_id} already ran; its result:", file=sys.stderr)
        else:
            async with make_client(settings) as client, fetcher_from_settings(settings) as media:
                policy = dataclasses.replace(policy_of(settings), media=media.fetch_many)
                with ProgressCaller(client, job.since, job.until) as progress:
                    report = await run_job(
                        job, progress, ruleset, ledger=ledger, policy=policy, job_pk=start.pk
                    )
                    progress.update(done=True)
            result = result_of(job, report, attempts=start.attempt, duration_s=time.perf_counter() - started)
            ledger.settle_job(
                start.pk,
                status=result.status,
                result=result.to_json(),
                error=result.error,
                scanned=result.messages_scanned,
                pages=result.pages_fetched,
                dead_reason=None,
            )
    except JobIdConflict as exc:
        print(f"recall-worker scan: {exc}", file=sys.stderr)
        return 2
    finally:
        ledger.dispose()
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    for line in plan_notice(result, stored_now=not already_ran):
        print(line, file=sys.stderr)
    if getattr(args, "json", False) or not sys.stdout.isatty():
        sys.stdout.write(orjson.dumps(result.model_dump(mode="json")).decode() + "\n")
    return 0 if result.status in ("done", "dry_run") else 1
