"""The ``recall-worker`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from worker.config import ConfigError, Settings, load_settings
from worker.emulator.limits import DEFAULT_LIMIT


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _emulator(args: argparse.Namespace) -> int:
    from worker.emulator.gateway import EmulatorConfig
    from worker.emulator.server import serve

    key = args.key or os.environ.get("RECALL_TIM_KEY", "")
    if not key:
        print("recall-worker emulator: give the app key with --key or RECALL_TIM_KEY", file=sys.stderr)
        return 2
    config = EmulatorConfig(
        key=key,
        sdkappid=args.sdkappid,
        admin=args.admin,
        rate_limit=None if args.no_rate_limit else args.rate_limit,
    )
    where = f"http://{args.host}:{args.port}"
    print(f"Chat REST API emulator on {where} (sdkappid {args.sdkappid}, admin {args.admin})", flush=True)
    serve(config, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _run(args: argparse.Namespace) -> int:
    # A stop asked for while the worker is still starting (imports, migrations) is kept, not fatal: the
    # worker then starts, consumes nothing and exits 0, as a SIGTERM later would have it.
    stop_early = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_early.set())

    from worker.consumer import Worker, make_client
    from worker.logs import configure_logging
    from worker.observability import Metrics, serve_operations
    from worker.rulebook import Rulebook
    from worker.tim.client import TimClient

    settings = _settings(args)
    settings.key()  # fail now, by name, rather than at the first job
    configure_logging(settings.log_format, settings.log_level)
    rulebook = Rulebook(settings.rules_path)
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
    return sys.stdin.read() if source == "-" else Path(source).read_text()


def _submit(args: argparse.Namespace) -> int:
    from worker.jobs import InvalidJob, parse_jobs_document
    from worker.queues import Queues

    try:
        jobs = parse_jobs_document(_read_input(args.source))
    except InvalidJob as exc:
        print("not submitted; fix these first:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    count = Queues(_settings(args)).submit(jobs)
    print(f"submitted {count} job(s): {', '.join(j.job_id for j in jobs)}")
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
            return 0


def _dlq_list(args: argparse.Namespace) -> int:
    from worker.queues import Queues

    queues = Queues(_settings(args))
    _print_envelopes(queues.read(queues.names.dead, limit=args.limit), with_headers=True)
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from worker.queues import Queues

    if not args.all and not args.job_id:
        print("recall-worker dlq replay: give --job-id (repeatable) or --all", file=sys.stderr)
        return 2
    moved = Queues(_settings(args)).replay_dead(job_ids=None if args.all else set(args.job_id))
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
    run = commands.add_parser("run", help="consume moderation jobs")
    run.add_argument(
        "--exit-when-idle", type=float, default=None, metavar="S", help="exit after S idle seconds"
    )
    run.set_defaults(func=_run)

    submit = commands.add_parser("submit", help="validate and publish jobs (JSON, JSON list or JSON lines)")
    submit.add_argument("source", help="file, or - for standard input")
    submit.set_defaults(func=_submit)

    scan = commands.add_parser("scan", help="scan one conversation window now (dry run unless --recall)")
    target = scan.add_mutually_exclusive_group(required=True)
    target.add_argument("--c2c", nargs=2, metavar=("OPERATOR", "PEER"), help="one-to-one conversation")
    target.add_argument("--official-account", metavar="ID", help="official account @TOA#_…")
    target.add_argument("--group", metavar="GROUP_ID", help="group @TGS#… (needs --suspect)")
    scan.add_argument("--topic", metavar="TOPIC_ID", help="a community group's topic (with --group)")
    scan.add_argument("--suspect", help="whose messages may be recalled (c2c: default PEER; group: required)")
    scan.add_argument("--since", type=int, help="window start, Unix seconds")
    scan.add_argument("--until", type=int, help="window end, Unix seconds (default: now)")
    scan.add_argument(
        "--lookback", type=int, default=86400, help="window length in seconds when --since is absent"
    )
    scan.add_argument("--ruleset", default="default")
    scan.add_argument("--recall", action="store_true", help="recall the matches (default: dry run)")
    scan.add_argument("--job-id", default=None)
    scan.set_defaults(func=_scan)


def _add_queue_commands(commands: Any) -> None:
    results = commands.add_parser("results", help="print job results (JSON lines)")
    results.add_argument("--take", action="store_true", help="remove what is printed from the queue")
    results.add_argument("--follow", action="store_true", help="keep printing new results (implies --take)")
    results.add_argument("--limit", type=int, default=None)
    results.set_defaults(func=_results)

    dlq = commands.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq.add_parser("list", help="print dead letters with their reasons (left in place)")
    dlq_list.add_argument("--limit", type=int, default=None)
    dlq_list.set_defaults(func=_dlq_list)
    replay = dlq.add_parser("replay", help="put dead letters back on the jobs queue as first attempts")
    replay.add_argument("--job-id", action="append", default=[], help="replay this job's dead letters")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.set_defaults(func=_dlq_replay)


def _add_tool_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True
    )
    config.add_parser("show", help="print the effective settings, secrets masked").set_defaults(
        func=_config_show
    )

    demo = commands.add_parser("demo", help="run the whole job end to end against a local emulator")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its queue (default: .demo)")
    demo.set_defaults(func=_demo)

    emulator = commands.add_parser("emulator", help="serve the local Chat REST API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8090)
    emulator.add_argument("--sdkappid", type=int, default=1400000000)
    emulator.add_argument("--key", default="", help="app secret key (default: $RECALL_TIM_KEY)")
    emulator.add_argument("--admin", default="administrator")
    emulator.add_argument("--rate-limit", type=int, default=DEFAULT_LIMIT, help="calls/s per command")
    emulator.add_argument("--no-rate-limit", action="store_true", help="lift the per-command limit")
    emulator.add_argument("--log-level", default="warning")
    emulator.set_defaults(func=_emulator)


def _ledger(args: argparse.Namespace) -> Any:
    from worker.ledger import open_ledger

    return open_ledger(_settings(args).database_url)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _plans_list(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    for plan in ledger.list_plans(None if args.status == "all" else args.status):
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
        print(f"recall-worker plans: {exc}", file=sys.stderr)
        return 2
    return 0


def _audit(args: argparse.Namespace) -> int:
    try:
        _print_json(_ledger(args).audit(args.job_id))
    except LookupError as exc:
        print(f"recall-worker audit: {exc}", file=sys.stderr)
        return 2
    return 0


def _since(value: str) -> Any:
    from datetime import UTC, datetime

    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _replay(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from rules import load_file
    from worker.replay import replay

    ruleset = load_file(args.rules).get(args.ruleset)
    until = _since(args.until) if args.until else datetime.now(UTC)
    report = replay(_ledger(args), ruleset, since=_since(args.since), until=until)
    if args.json:
        _print_json(report.as_dict())
    else:
        print("\n".join(report.lines()))
    return 0


def _evidence_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    retention = _settings(args).evidence_retention_days
    days = retention if args.older_than_days is None else args.older_than_days
    if days < 0:
        print("recall-worker evidence purge: --older-than-days must be 0 or more", file=sys.stderr)
        return 2
    if days < retention and not args.yes:
        print(
            f"recall-worker evidence purge: {days} days is shorter than the retention period of {retention} "
            "days (RECALL_EVIDENCE_RETENTION_DAYS); add --yes to purge anyway",
            file=sys.stderr,
        )
        return 2
    outcome = _ledger(args).purge_evidence(datetime.now(UTC) - timedelta(days=days))
    print(
        f"purged the content of {len(outcome.purged)} evidence record(s) older than {days} days (hashes "
        f"kept); kept {outcome.kept} a recall may still need (pending or approved plans, open recalls)"
    )
    return 0


def _breaker(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    if args.breaker_command == "reset":
        print("reset" if ledger.reset_breaker(args.rule_id) else f"no tripped breaker for {args.rule_id}")
        return 0
    for rule_id, reason in ledger.open_breakers().items():
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
        "--status", default="pending", choices=["pending", "approved", "rejected", "applied", "all"]
    )
    listing.set_defaults(func=_plans_list)
    show = plans.add_parser("show", help="a plan with its evidence and matches (JSON)")
    show.add_argument("plan_id", type=int)
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
        decide.add_argument("plan_id", type=int)
        decide.add_argument("--by", required=True, help="the moderator deciding")
        decide.add_argument("--note", default=None)
        decide.set_defaults(func=_plans_decide)
    again = plans.add_parser("requeue", help="queue an approved plan's apply job again")
    again.add_argument("plan_id", type=int)
    again.set_defaults(func=_plans_decide)

    audit = commands.add_parser("audit", help="everything the ledger holds on one job (JSON)")
    audit.add_argument("job_id")
    audit.set_defaults(func=_audit)

    replay = commands.add_parser("replay", help="compare a candidate rule file with past jobs' matches")
    replay.add_argument("--rules", type=Path, required=True, help="candidate rule file")
    replay.add_argument("--ruleset", default="default")
    replay.add_argument("--since", required=True, help="Unix time or ISO date")
    replay.add_argument("--until", default=None, help="Unix time or ISO date (default: now)")
    replay.add_argument("--json", action="store_true")
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
    reset.add_argument("rule_id")
    reset.set_defaults(func=_breaker)

    ledger = commands.add_parser("ledger", help="the ledger database").add_subparsers(
        dest="ledger_command", required=True
    )
    ledger.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_ledger_upgrade)

    review = commands.add_parser("review", help="serve the moderators' review page")
    review.add_argument("--host", default="127.0.0.1")
    review.add_argument("--port", type=int, default=9103)
    review.set_defaults(func=_review)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from rules.cli import add_rules_commands

    parser = argparse.ArgumentParser(prog="recall-worker", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="settings file of RECALL_NAME=value lines")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_job_commands(commands)
    _add_queue_commands(commands)
    _add_tool_commands(commands)
    _add_ledger_commands(commands)
    add_rules_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recall-worker`` console script."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"recall-worker: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
