"""The ``recall-worker`` command line.

Every command answers bad input with one line on stderr naming the problem and what to check, never a
traceback, and exits with one of the codes of :data:`EXIT_CODES` (shown by ``recall-worker --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson

from worker.config import ConfigError, Settings, load_settings, mask_url, unknown_environment
from worker.emulator.limits import DEFAULT_LIMIT
from worker.priority import HIGHEST, LOWEST, SUBMIT_DEFAULT, URGENT

DESCRIPTION = (
    "recall-worker: scan reported Tencent Cloud Chat conversations and recall what breaks the rules."
)

EXIT_OK = 0
#: The command ran and did not succeed (a scan whose job failed; ``rules check``: the rule file is broken).
EXIT_FAILED = 1
#: Bad input: usage, an option's value, a file, a name that does not exist, settings, refused credentials.
EXIT_USAGE = 2
#: A service could not be reached or opened: the broker, the ledger database, the Chat API.
EXIT_UNAVAILABLE = 3

EXIT_CODES = f"""exit status:
  {EXIT_OK}  done
  {EXIT_FAILED}  the command ran and failed (scan: the job failed; rules check: the rule file is broken)
  {EXIT_USAGE}  bad input: usage, a value, a file, a name that does not exist, settings, refused credentials
  {EXIT_UNAVAILABLE}  a service could not be reached: the broker (RECALL_BROKER_URL), the ledger database
     (RECALL_DATABASE_URL) or the Chat API (RECALL_TIM_REGION, RECALL_TIM_BASE_URL); run waits for the
     broker instead (it says so once)"""


class CommandError(Exception):
    """A command cannot go on: ``main`` prints the message as one line on stderr and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        self.code = code
        super().__init__(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and epilogs as written and shows every option's default (flags aside)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default not in (None, argparse.SUPPRESS)
            and action.nargs != 0  # flags (store_true & co.) have no value to show
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, with where to look, and exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def moment(value: str) -> int:
    """A point in time from the command line: Unix seconds, or an ISO 8601 date or date-time (UTC unless
    it says otherwise), as Unix seconds. Shared by every option that takes a time."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither Unix seconds nor an ISO date or date-time "
            "(e.g. 1714521600, 2024-05-01, 2024-05-01T08:00:00+08:00)"
        ) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def job_priority(value: str) -> int:
    """A job priority from the command line: an integer from 0 (lowest) to 9 (highest)."""
    text = value.strip()
    if not text.isdigit() or not LOWEST <= int(text) <= HIGHEST:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a priority: give {LOWEST} (lowest) to {HIGHEST} (highest)"
        )
    return int(text)


def _settings(args: argparse.Namespace) -> Settings:
    cached: Settings | None = getattr(args, "loaded_settings", None)
    if cached is None:
        cached = load_settings(args.config)
        args.loaded_settings = cached
    return cached


def _emulator(args: argparse.Namespace) -> int:
    from worker.emulator.gateway import Emulator, EmulatorConfig
    from worker.emulator.server import serve

    key = args.key or os.environ.get("RECALL_TIM_KEY", "")
    if not key:
        raise CommandError("give the app key with --key or RECALL_TIM_KEY")
    config = EmulatorConfig(
        key=key,
        sdkappid=args.sdkappid,
        admin=args.admin,
        rate_limit=None if args.no_rate_limit else args.rate_limit,
    )
    emulator = Emulator(config)
    if args.seed is not None:
        from worker.emulator.seedfile import InvalidSeed, apply_seed, load_seed

        try:
            made = asyncio.run(apply_seed(emulator, load_seed(args.seed)))
        except InvalidSeed as exc:
            raise CommandError(str(exc)) from None
        counts = ", ".join(
            f"{count} {what}{'' if count == 1 else 's'}" for what, count in made.items() if count
        )
        print(f"seeded from {args.seed}: {counts or 'nothing'}", flush=True)
    where = f"http://{args.host}:{args.port}"
    print(f"Chat REST API emulator on {where} (sdkappid {args.sdkappid}, admin {args.admin})", flush=True)
    serve(config, host=args.host, port=args.port, log_level=args.log_level, emulator=emulator)
    return 0


def _run(args: argparse.Namespace) -> int:
    # A stop asked for while the worker is still starting (imports, migrations) is kept, not fatal: the
    # worker then starts, consumes nothing and exits 0, as a SIGTERM later would have it.
    stop_early = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_early.set())

    from rules import RulesError
    from worker.consumer import Worker, make_client
    from worker.logs import configure_logging
    from worker.observability import Metrics, serve_operations
    from worker.queues import BrokerUnreachable, Queues
    from worker.rulebook import Rulebook
    from worker.tim.client import TimClient

    settings = _settings(args)
    settings.key()  # fail now, by name, rather than at the first job
    configure_logging(settings.log_format, settings.log_level)
    try:
        rulebook = Rulebook(settings.rules_path)
    except RulesError as exc:
        raise CommandError(f"{_rules_problems(exc)}; check RECALL_RULES_PATH") from None
    try:
        Queues(settings).check_reachable()
    except BrokerUnreachable as exc:
        # Not fatal: a worker rides out a broker restart (its consumer reconnects; /readyz says not ready
        # meanwhile). Said once, here, in words, rather than only in the reconnect loop's log lines.
        print(f"recall-worker run: {exc}; waiting for it", file=sys.stderr, flush=True)
    metrics = Metrics()

    def observed_client(s: Settings) -> TimClient:
        client = make_client(s)
        client.observers.append(metrics)
        return client

    worker = Worker(
        settings,
        rulebook,
        exit_when_idle_s=args.exit_when_idle,
        client_factory=observed_client,
        observer=metrics,
        on_tick=_reloader(rulebook),
    )
    worker.state.rules_loaded = True
    worker.install_signal_handlers()
    if stop_early.is_set():
        worker.request_stop()
    signal.signal(signal.SIGHUP, lambda *_: rulebook.reload())
    with serve_operations(settings, worker.state, metrics):
        return worker.run()


def _reloader(rulebook: Any) -> Any:
    last = [time.monotonic()]

    def tick() -> None:
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            rulebook.reload_if_changed()

    return tick


def _read_input(source: str) -> str:
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {source}: not UTF-8 text") from None


def _rules_problems(exc: Any) -> str:
    """A :class:`rules.RulesError`'s problems on one line."""
    return "; ".join(str(problem) for problem in exc.problems) or str(exc)


def _check_rulesets(settings: Settings, jobs: Sequence[Any]) -> None:
    """Refuse jobs naming a rule set the rule file lacks, when the file is at hand (on the worker's side
    only, it cannot be checked here)."""
    from rules import DEFAULT_RULES_PATH, RulesError, load_file

    path = settings.rules_path or DEFAULT_RULES_PATH
    if not path.exists():
        return
    try:
        known = set(load_file(path).rulesets)
    except RulesError as exc:
        raise CommandError(f"{_rules_problems(exc)}; check RECALL_RULES_PATH (nothing submitted)") from None
    unknown = sorted({job.ruleset for job in jobs} - known)
    if unknown:
        raise CommandError(
            f"job: ruleset: no rule set {', '.join(map(repr, unknown))} in {path} "
            f"(it has {', '.join(sorted(known))}); nothing submitted"
        )


def _submit(args: argparse.Namespace) -> int:
    from worker.jobs import InvalidJob, parse_jobs_document
    from worker.queues import Queues

    text = _read_input(args.source)
    try:
        jobs = parse_jobs_document(text)
    except InvalidJob as exc:
        raise CommandError("; ".join(exc.problems) + " (nothing submitted)") from None
    settings = _settings(args)
    _check_rulesets(settings, jobs)
    count = Queues(settings).submit(jobs, priority=args.priority)
    print(f"submitted {count} job(s) at priority {args.priority}: {', '.join(j.job_id for j in jobs)}")
    return 0


def _print_envelopes(envelopes: list[Any], *, with_headers: bool) -> None:
    from worker.envelopes import envelope_line

    for envelope in envelopes:
        sys.stdout.write(envelope_line(envelope, with_headers=with_headers) + "\n")
    sys.stdout.flush()


def _results(args: argparse.Namespace) -> int:
    from worker.queues import Queues

    queues = Queues(_settings(args))
    while True:
        envelopes = queues.read(
            queues.names.results, limit=args.limit, take=args.take or args.follow, wait_s=1.0
        )
        _print_envelopes(envelopes, with_headers=False)
        if not args.follow:
            if not envelopes:
                print("no results", file=sys.stderr)
            return 0


def _dlq_list(args: argparse.Namespace) -> int:
    from worker.queues import Queues

    queues = Queues(_settings(args))
    envelopes = queues.read(queues.names.dead, limit=args.limit)
    if not envelopes:
        print("no dead letters", file=sys.stderr)
    _print_envelopes(envelopes, with_headers=True)
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from worker.queues import Queues

    job_ids = None if args.all else set(args.job_id)
    moved = Queues(_settings(args)).replay_dead(job_ids=job_ids)
    if moved == 0:
        if job_ids is None:
            print("no dead letters to replay", file=sys.stderr)
            return 0
        raise CommandError(f"no dead letters of job {', '.join(sorted(job_ids))}; see recall-worker dlq list")
    print(f"replayed {moved} dead letter(s) onto the jobs queue")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(_settings(args).masked(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from worker.scan import run_scan

    return asyncio.run(run_scan(args, _settings(args)))


def _demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(Path(args.workdir))


def _add_job_commands(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="consume moderation jobs",
        epilog="Needs RECALL_TIM_KEY (or RECALL_TIM_KEY_FILE); RECALL_RULES_PATH names the rule file.",
    )
    run.add_argument(
        "--exit-when-idle", type=float, default=None, metavar="S", help="exit after S idle seconds"
    )
    run.set_defaults(func=_run)

    submit = commands.add_parser("submit", help="validate and publish jobs (JSON, JSON list or JSON lines)")
    submit.add_argument("source", help="file, or - for standard input")
    submit.add_argument(
        "--priority",
        type=job_priority,
        default=SUBMIT_DEFAULT,
        metavar="N",
        help=f"{LOWEST} (lowest) to {HIGHEST} (highest); {URGENT} and up take RabbitMQ's urgent lane",
    )
    submit.set_defaults(func=_submit)

    scan = commands.add_parser("scan", help="scan one conversation window now (dry run unless --recall)")
    target = scan.add_mutually_exclusive_group(required=True)
    target.add_argument("--c2c", nargs=2, metavar=("OPERATOR", "PEER"), help="one-to-one conversation")
    target.add_argument("--official-account", metavar="ID", help="official account @TOA#_…")
    target.add_argument("--group", metavar="GROUP_ID", help="group @TGS#… (needs --suspect)")
    scan.add_argument("--topic", metavar="TOPIC_ID", help="a community group's topic (with --group)")
    scan.add_argument("--suspect", help="whose messages may be recalled (c2c: default PEER; group: required)")
    scan.add_argument("--since", type=moment, help="window start: Unix seconds or ISO date/time")
    scan.add_argument("--until", type=moment, help="window end: Unix seconds or ISO date/time (default: now)")
    scan.add_argument(
        "--lookback", type=int, default=86400, help="window length in seconds when --since is absent"
    )
    scan.add_argument("--ruleset", default="default", help="rule set of the rule file to scan with")
    scan.add_argument("--recall", action="store_true", help="recall the matches (default: dry run)")
    scan.add_argument("--job-id", default=None, help="the job's ID in the ledger (default: a new scan-… ID)")
    scan.add_argument(
        "--json",
        action="store_true",
        help="print the result record (JSON) on stdout even on a terminal (always when stdout is not one)",
    )
    scan.set_defaults(func=_scan)


def _add_queue_commands(commands: Any) -> None:
    results = commands.add_parser("results", help="print job results (JSON lines)")
    results.add_argument("--take", action="store_true", help="remove what is printed from the queue")
    results.add_argument("--follow", action="store_true", help="keep printing new results (implies --take)")
    results.add_argument("--limit", type=int, default=None, help="print at most N results (default: all)")
    results.set_defaults(func=_results)

    dlq = commands.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq.add_parser("list", help="print dead letters with their reasons (left in place)")
    dlq_list.add_argument(
        "--limit", type=int, default=None, help="print at most N dead letters (default: all)"
    )
    dlq_list.set_defaults(func=_dlq_list)
    replay = dlq.add_parser("replay", help="put dead letters back on the jobs queue as first attempts")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--job-id", action="append", help="replay this job's dead letters (repeatable)")
    which.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.set_defaults(func=_dlq_replay)


def _add_tool_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True
    )
    config.add_parser("show", help="print the effective settings, secrets masked").set_defaults(
        func=_config_show
    )

    demo = commands.add_parser("demo", help="run the whole job end to end against a local emulator")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its queue")
    demo.set_defaults(func=_demo)

    emulator = commands.add_parser("emulator", help="serve the local Chat REST API emulator")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument("--port", type=int, default=8090, help="port to listen on")
    emulator.add_argument("--sdkappid", type=int, default=1400000000, help="the emulated app's SDKAppID")
    emulator.add_argument("--key", default="", help="app secret key (default: $RECALL_TIM_KEY)")
    emulator.add_argument("--admin", default="administrator", help="the emulated app's admin account")
    emulator.add_argument("--rate-limit", type=int, default=DEFAULT_LIMIT, help="calls/s per command")
    emulator.add_argument("--no-rate-limit", action="store_true", help="lift the per-command limit")
    emulator.add_argument("--log-level", default="warning", help="uvicorn's log level")
    emulator.add_argument(
        "--seed",
        type=Path,
        default=None,
        metavar="FILE",
        help="load accounts and conversations from this JSON or YAML file at start "
        "(format: worker/emulator/example-seed.yaml)",
    )
    emulator.set_defaults(func=_emulator)


def _ledger(args: argparse.Namespace) -> Any:
    from worker.ledger import open_ledger

    return open_ledger(_settings(args).database_url)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _plans_list(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    plans = ledger.list_plans(None if args.status == "all" else args.status)
    if not plans:
        print("no plans" if args.status == "all" else f"no {args.status} plans", file=sys.stderr)
        return 0
    print(f"{'plan':>5}  {'status':<9} {'reason':<22} job, suspect, report")
    for plan in plans:
        report = plan.job.get("report", {})
        print(
            f"{plan.id:>5}  {plan.status:<9} {plan.reason:<22} job {plan.job_id}"
            f"  suspect {plan.job['suspect']}"
            f"  reported by {report.get('reporter', '-')}: {report.get('reason', '-')}"
        )
    return 0


def _plans_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    _print_json(asdict(_ledger(args).plan(args.plan_id)))
    return 0


def _plans_decide(args: argparse.Namespace) -> int:
    from worker import plans
    from worker.ledger.store import PlanStateError
    from worker.queues import Queues

    ledger = _ledger(args)
    try:
        if args.plans_command == "approve":
            job = plans.approve(ledger, Queues(_settings(args)), args.plan_id, by=args.by, note=args.note)
            does = plans.what_approval_does(ledger.plan(args.plan_id))
            print(f"plan {args.plan_id} approved by {args.by}; queued {job.job_id}: {does}")
        elif args.plans_command == "requeue":
            job = plans.requeue(ledger, Queues(_settings(args)), args.plan_id)
            print(f"queued {job.job_id} again")
        elif args.plans_command == "reopen":
            plans.reopen(ledger, args.plan_id, by=args.by, note=args.note)
            print(f"plan {args.plan_id} reopened by {args.by}; it waits for review again")
        else:
            plans.reject(ledger, args.plan_id, by=args.by, note=args.note)
            print(f"plan {args.plan_id} rejected by {args.by}; nothing of it will be recalled")
    except (PlanStateError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _audit(args: argparse.Namespace) -> int:
    _print_json(_ledger(args).audit(args.job_id))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from rules import RulesError, load_file
    from worker.replay import replay

    try:
        ruleset = load_file(args.rules).get(args.ruleset)
    except RulesError as exc:
        raise CommandError(f"{_rules_problems(exc)}; check --rules and --ruleset") from None
    since = datetime.fromtimestamp(args.since, UTC)
    until = datetime.fromtimestamp(args.until, UTC) if args.until is not None else datetime.now(UTC)
    if until < since:
        raise CommandError("--until is before --since")
    ledger = _ledger(args)
    try:
        if args.reread:
            report = _reread(args, ledger, ruleset, since=since, until=until)
        else:
            report = replay(ledger, ruleset, since=since, until=until)
    finally:
        ledger.dispose()
    if args.json:
        _print_json(report.as_dict())
    else:
        print("\n".join(report.lines()))
    return 0


def _reread(
    args: argparse.Namespace, ledger: Any, candidate: Any, *, since: datetime, until: datetime
) -> Any:
    """``replay --reread``: read the past jobs' windows again from the Chat API (dry: reads only)."""
    from rules import DEFAULT_RULES_PATH, RulesError, load_file
    from worker.consumer import make_client
    from worker.replay import reread
    from worker.tim.credentials import check_credentials

    settings = _settings(args)
    path = settings.rules_path or DEFAULT_RULES_PATH
    try:
        in_force = load_file(path)
    except RulesError as exc:
        raise CommandError(f"{_rules_problems(exc)}; check RECALL_RULES_PATH") from None

    def rules_in_force(name: str) -> Any:
        try:
            return in_force.get(name)
        except RulesError as exc:
            raise CommandError(f"a past job's {_rules_problems(exc)}; check RECALL_RULES_PATH") from None

    def progress(done: int, total: int, messages: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rre-read {done}/{total} jobs, {messages} messages", end=end, file=sys.stderr, flush=True)

    settings.key()  # name a missing key now, before any job is read

    async def go() -> Any:
        async with make_client(settings) as client:
            await check_credentials(client, settings.tim_admin)  # an unreachable API is named even idle
            return await reread(
                ledger,
                client,
                rules_in_force,
                candidate,
                since=since,
                until=until,
                progress=progress if sys.stderr.isatty() else None,
            )

    return asyncio.run(go())


def _evidence_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    retention = _settings(args).evidence_retention_days
    days = retention if args.older_than_days is None else args.older_than_days
    if days < 0:
        raise CommandError("--older-than-days must be 0 or more")
    if days < retention and not args.yes:
        raise CommandError(
            f"{days} days is shorter than the retention period of {retention} "
            "days (RECALL_EVIDENCE_RETENTION_DAYS); add --yes to purge anyway"
        )
    outcome = _ledger(args).purge_evidence(datetime.now(UTC) - timedelta(days=days))
    print(
        f"purged the content of {len(outcome.purged)} evidence record(s) older than {days} days (hashes "
        f"kept); kept {outcome.kept} a recall may still need (pending or approved plans, open recalls)"
    )
    return 0


def _breaker(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    if args.breaker_command == "reset":
        if not ledger.reset_breaker(args.rule_id):
            raise CommandError(f"no tripped breaker for {args.rule_id}; see recall-worker breaker list")
        print("reset")
        return 0
    breakers = ledger.open_breakers()
    if not breakers:
        print("no tripped breakers", file=sys.stderr)
    for rule_id, reason in breakers.items():
        print(f"{rule_id}: {reason}")
    return 0


def _ledger_upgrade(args: argparse.Namespace) -> int:
    _ledger(args)
    print("ledger schema is up to date")
    return 0


def _review(args: argparse.Namespace) -> int:
    from worker.review.server import serve_review

    return serve_review(_settings(args), host=args.host, port=args.port)


def _add_ledger_commands(commands: Any) -> None:
    plans = commands.add_parser("plans", help="recall plans awaiting review").add_subparsers(
        dest="plans_command", required=True
    )
    listing = plans.add_parser("list", help="list plans")
    listing.add_argument(
        "--status",
        default="pending",
        choices=["pending", "approved", "rejected", "applied", "all"],
        help="plans in this state",
    )
    listing.set_defaults(func=_plans_list)
    show = plans.add_parser("show", help="a plan with its evidence and matches (JSON)")
    show.add_argument("plan_id", type=int, help="the plan's number (see plans list)")
    show.set_defaults(func=_plans_show)
    for name, text in (
        (
            "approve",
            "approve and queue its apply job (the recall of exactly its messages; a wipe plan: the wipe)",
        ),
        ("reject", "reject: nothing of it is recalled, by it or by a later job"),
        ("reopen", "put a rejected plan back to review; its messages are no longer held back"),
    ):
        decide = plans.add_parser(name, help=text)
        decide.add_argument("plan_id", type=int, help="the plan's number (see plans list)")
        decide.add_argument("--by", required=True, help="the moderator deciding")
        decide.add_argument("--note", default=None, help="why, kept in the ledger with the decision")
        decide.set_defaults(func=_plans_decide)
    again = plans.add_parser(
        "requeue",
        help="queue an approved plan's apply job again; an already applied plan is queued again too "
        "(nothing is recalled twice: a failed apply job runs again, a settled one republishes its result)",
    )
    again.add_argument("plan_id", type=int, help="the plan's number (see plans list)")
    again.set_defaults(func=_plans_decide)

    audit = commands.add_parser("audit", help="everything the ledger holds on one job (JSON)")
    audit.add_argument("job_id", help="the job's ID")
    audit.set_defaults(func=_audit)

    replay = commands.add_parser("replay", help="compare a candidate rule file with past jobs' matches")
    replay.add_argument("--rules", type=Path, required=True, help="candidate rule file")
    replay.add_argument("--ruleset", default="default", help="rule set of the candidate file")
    replay.add_argument(
        "--since", type=moment, required=True, help="jobs finished from: Unix seconds or ISO date/time"
    )
    replay.add_argument(
        "--until",
        type=moment,
        default=None,
        help="jobs finished until: Unix seconds or ISO date/time (default: now)",
    )
    replay.add_argument(
        "--reread",
        action="store_true",
        help="read each job's history window again from the Chat API and run the job's rule set (as the "
        "rule file in force has it) and the candidate on every message, to show what the candidate adds "
        "(dry: nothing is recalled or written; needs RECALL_TIM_KEY)",
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.set_defaults(func=_replay)

    evidence = commands.add_parser("evidence", help="stored evidence").add_subparsers(
        dest="evidence_command", required=True
    )
    purge = evidence.add_parser("purge", help="drop evidence older than the retention period")
    purge.add_argument(
        "--older-than-days", type=int, default=None, help="default: RECALL_EVIDENCE_RETENTION_DAYS; 0: all"
    )
    purge.add_argument("--yes", action="store_true", help="confirm a period below the retention period")
    purge.set_defaults(func=_evidence_purge)

    breaker = commands.add_parser("breaker", help="rule circuit breakers").add_subparsers(
        dest="breaker_command", required=True
    )
    breaker.add_parser("list", help="tripped breakers").set_defaults(func=_breaker)
    reset = breaker.add_parser("reset", help="close a rule's breaker")
    reset.add_argument("rule_id", help="the rule whose breaker to close (see breaker list)")
    reset.set_defaults(func=_breaker)

    ledger = commands.add_parser("ledger", help="the ledger database").add_subparsers(
        dest="ledger_command", required=True
    )
    ledger.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_ledger_upgrade)

    review = commands.add_parser(
        "review",
        help="serve the moderators' review page",
        epilog="The page is off unless RECALL_REVIEW_TOKEN is set: moderators sign in with that token.",
    )
    review.add_argument("--host", default="127.0.0.1", help="address to listen on")
    review.add_argument("--port", type=int, default=9103, help="port to listen on")
    review.set_defaults(func=_review)


def _intake(args: argparse.Namespace) -> int:
    from worker.intake.server import serve_intake

    return serve_intake(_settings(args))


def _intake_store(args: argparse.Namespace) -> Any:
    from worker.intake.store import IntakeStore
    from worker.ledger import open_ledger

    return IntakeStore(open_ledger(_settings(args).database_url).engine)


def _intake_deliveries(args: argparse.Namespace) -> int:
    rows = _intake_store(args).deliveries(state=args.state, limit=args.limit)
    for row in rows:
        print(orjson.dumps(row).decode())
    if not rows:
        print("no deliveries" + (f" in state {args.state}" if args.state else ""), file=sys.stderr)
    return EXIT_OK


def _intake_redeliver(args: argparse.Namespace) -> int:
    moved = _intake_store(args).redeliver(args.ids)
    print(f"{moved} dead deliver{'y' if moved == 1 else 'ies'} put back in line")
    if moved < len(args.ids):
        raise CommandError(
            f"{len(args.ids) - moved} of the ids are no dead delivery; see intake deliveries --state dead"
        )
    return EXIT_OK


def _add_intake_commands(commands: Any) -> None:
    intake = commands.add_parser(
        "intake",
        help="serve the report intake (signed HTTP API turning user reports into jobs)",
        epilog="Needs RECALL_INTAKE_KEYS (or RECALL_INTAKE_KEYS_FILE); serves on RECALL_INTAKE_HOST:"
        "RECALL_INTAKE_PORT. Without a sub-command it serves.",
    )
    intake.set_defaults(func=_intake)
    sub = intake.add_subparsers(dest="intake_command")
    listing = sub.add_parser("deliveries", help="outcome webhooks and reporter notices (JSON lines)")
    listing.add_argument(
        "--state", choices=("pending", "delivered", "dead"), default=None, help="only this state"
    )
    listing.add_argument("--limit", type=int, default=100, help="most deliveries shown, newest first")
    listing.set_defaults(func=_intake_deliveries)
    again = sub.add_parser("redeliver", help="put dead deliveries back in line")
    again.add_argument("ids", type=int, nargs="+", help="delivery ids (from intake deliveries)")
    again.set_defaults(func=_intake_redeliver)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from rules.cli import add_rules_commands

    parser = _Parser(prog="recall-worker", description=DESCRIPTION, epilog=EXIT_CODES)
    parser.add_argument("--config", type=Path, default=None, help="settings file of RECALL_NAME=value lines")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_job_commands(commands)
    _add_queue_commands(commands)
    _add_tool_commands(commands)
    _add_ledger_commands(commands)
    _add_intake_commands(commands)
    add_rules_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recall-worker`` console script."""
    args = build_parser().parse_args(argv)
    for warning in unknown_environment():
        print(f"recall-worker: warning: {warning}", file=sys.stderr)
    try:
        result: int = args.func(args)
    except Exception as exc:
        explained = explain(exc, getattr(args, "loaded_settings", None))
        if explained is None:
            raise
        message, code = explained
        print(f"{_prog(args)}: {message}", file=sys.stderr)
        return code
    return result


def _prog(args: argparse.Namespace) -> str:
    """``recall-worker COMMAND [SUB-COMMAND]`` of ``args``."""
    words = ["recall-worker", args.command]
    words += [
        value for name, value in vars(args).items() if name.endswith("_command") and isinstance(value, str)
    ]
    return " ".join(words)


#: What to check after the Chat API refused a call with these codes (not the credentials' codes).
_API_HINTS = {
    90008: "check the account IDs given (--c2c OPERATOR PEER)",
    70107: "check the account IDs given",
    10010: "check the group ID given",
    10015: "check the group ID given",
}


def explain(exc: BaseException, settings: Settings | None = None) -> tuple[str, int] | None:
    """One line saying what went wrong and what to check, and the exit code; None for an unexpected
    error (a bug, left to show its traceback)."""
    from rules import RulesError
    from worker.jobs import InvalidJob
    from worker.queues import BrokerUnreachable

    if isinstance(exc, CommandError):
        return str(exc), exc.code
    if isinstance(exc, ConfigError):
        return exc.one_line(), EXIT_USAGE
    if isinstance(exc, BrokerUnreachable):
        return str(exc), EXIT_UNAVAILABLE
    if isinstance(exc, InvalidJob):
        return "; ".join(f"job: {problem}" for problem in exc.problems), EXIT_USAGE
    if isinstance(exc, RulesError):
        return f"{_rules_problems(exc)}; check the rule file (RECALL_RULES_PATH)", EXIT_USAGE
    return _explain_service(exc, settings) or (
        (str(exc).strip("'\""), EXIT_USAGE) if isinstance(exc, LookupError | ValueError) else None
    )


def _explain_service(exc: BaseException, settings: Settings | None) -> tuple[str, int] | None:
    """The Chat API's and the ledger database's errors."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from worker.tim.credentials import hint
    from worker.tim.errors import TimApiError, TimError, TimProtocolError, credential_code

    if isinstance(exc, DBAPIError | ArgumentError):
        where = f" at {mask_url(settings.database_url)}" if settings is not None else ""
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"cannot open the ledger{where} ({reason}); check RECALL_DATABASE_URL", EXIT_UNAVAILABLE
    if isinstance(exc, TimApiError):
        code = credential_code(exc)
        if code is not None:
            used = (
                f"RECALL_TIM_SDKAPPID={settings.tim_sdkappid}, RECALL_TIM_ADMIN={settings.tim_admin}"
                if settings is not None
                else "RECALL_TIM_SDKAPPID, RECALL_TIM_ADMIN"
            )
            return (
                f"the Chat API refused the credentials (ErrorCode {code}: {exc.info}): {hint(code)}; "
                f"in use: {used} and the key of RECALL_TIM_KEY (or RECALL_TIM_KEY_FILE)",
                EXIT_USAGE,
            )
        what = _API_HINTS.get(exc.code, "see the Chat API's error code list")
        return (
            f"the Chat API refused {exc.command}: ErrorCode {exc.code}, {exc.info}; {what}",
            EXIT_UNAVAILABLE if exc.retryable else EXIT_USAGE,
        )
    if isinstance(exc, TimProtocolError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, TimError):
        return (
            f"cannot reach the Chat API ({exc}); check RECALL_TIM_REGION or RECALL_TIM_BASE_URL",
            EXIT_UNAVAILABLE,
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
