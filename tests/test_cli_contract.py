"""The command line's contract: every command and option is explained by ``--help``, and every bad input is
answered with one line on stderr naming the problem, a documented exit code, and never a traceback."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli import cli_env, run_cli
from tests.conftest import KEY
from tests.services import free_port, reachable
from worker.cli import EXIT_CODES, EXIT_USAGE, build_parser, main
from worker.emulator.server import EmulatorThread

RULES = Path(__file__).parent.parent / "rules" / "examples" / "default.yaml"
JOB = (
    '{"version": 1, "job_id": "contract-1", '
    '"conversation": {"type": "c2c", "operator": "bob", "peer": "eve"}, "suspect": "eve", '
    ' "window": {"since": 1700000000, "until": %d}%s}'
)


def _parsers(
    parser: argparse.ArgumentParser, path: str = "recall-worker"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every sub-command's parser, with the command line that reaches it."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_command_and_option_is_explained_by_help() -> None:
    problems = []
    for path, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                problems += [f"{path} {name}: no help line" for name in action.choices if not helps.get(name)]
                continue
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help:
                problems.append(f"{path} {name}: no help text")
                continue
            shown = formatter._expand_help(action)
            # flags (nargs 0: store_true and the like) have no value whose default could be shown
            if action.default is not None and action.nargs != 0 and "default" not in shown:
                problems.append(f"{path} {name}: the default {action.default!r} is not shown")
        parser.format_help()  # every help renders
    assert not problems, "\n".join(problems)


def test_the_help_reads_as_text_and_documents_exit_codes_and_the_review_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and "exit status" in top and EXIT_CODES.splitlines()[1].strip() in top
    with pytest.raises(SystemExit):
        main(["review", "--help"])
    assert "RECALL_REVIEW_TOKEN" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plans", "--help"])
    assert "already applied plan is queued again" in " ".join(capsys.readouterr().out.split())


@dataclass
class Case:
    """One bad input: the command, the settings, the exit code expected and what stderr's line says."""

    name: str
    args: list[str]
    code: int
    says: list[str]
    env: dict[str, str] = field(default_factory=dict)
    never: list[str] = field(default_factory=list)
    within_s: float | None = None  # timed: run alone, after the others
    lines: int = 1


@dataclass
class Outcome:
    case: Case
    code: int
    stdout: str
    stderr: str
    elapsed_s: float


def _run(case: Case, workdir: Path) -> Outcome:
    env = cli_env(
        {
            "RECALL_DATABASE_URL": f"sqlite:///{workdir}/ledger.db",
            "RECALL_BROKER_URL": f"sqlite:///{workdir}/queue.db",
            "RECALL_HTTP_PORT": "0",
            **case.env,
        }
    )
    started = time.monotonic()
    done = run_cli(*case.args, env=env, cwd=workdir)
    return Outcome(case, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def _cases(emulator_url: str, tmp: Path) -> list[Case]:
    closed = free_port()
    api = {"RECALL_TIM_BASE_URL": emulator_url, "RECALL_TIM_KEY": KEY}
    long_window = tmp / "long-window.json"
    long_window.write_text(JOB % (1700000000 + 91 * 86400, ""))
    other_ruleset = tmp / "other-ruleset.json"
    other_ruleset.write_text(JOB % (1700003600, ', "ruleset": "nosuch"'))
    broken_rules = tmp / "broken.yaml"
    broken_rules.write_text("default: [\n")
    config = tmp / "recall.env"
    config.write_text("RECALL_CONCURENCY=8\nnot a setting\nRECALL_HEARTBEAT_S=1\n")
    window = "job: window: the window is longer than 90 days"
    cases = [
        Case(
            "scan: an operator the API does not know (90008)",
            ["scan", "--c2c", "nosuch", "eve", "--since", "2024-01-01", "--until", "2024-01-01T12:00:00"],
            EXIT_USAGE,
            ["90008", "nosuch"],
            api,
        ),
        Case(
            "scan: a wrong key (70009)",
            ["scan", "--c2c", "bob", "eve"],
            EXIT_USAGE,
            ["70009", "RECALL_TIM_KEY", "RECALL_TIM_SDKAPPID", "RECALL_TIM_ADMIN"],
            {**api, "RECALL_TIM_KEY": "0" * 64},
            never=["0" * 64],
        ),
        Case("scan: an unknown rule set", ["scan", "--c2c", "a", "b", "--ruleset", "nosuch"], 2, ["nosuch"]),
        Case(
            "scan: a window too long", ["scan", "--c2c", "a", "b", "--lookback", str(91 * 86400)], 2, [window]
        ),
        Case(
            "scan: a date that is none", ["scan", "--c2c", "a", "b", "--since", "yesterday"], 2, ["yesterday"]
        ),
        Case("submit: a window too long", ["submit", str(long_window)], 2, [window]),
        Case("submit: a missing file", ["submit", "nosuchfile.json"], 2, ["nosuchfile.json"]),
        Case(
            "submit: a rule set the rule file lacks",
            ["submit", str(other_ruleset)],
            2,
            ["nosuch", "nothing submitted"],
            {"RECALL_RULES_PATH": str(RULES)},
        ),
        Case(
            "submit: an unreachable broker",
            ["submit", str(other_ruleset)],
            3,
            ["broker", f"127.0.0.1:{closed}", "***", "RECALL_BROKER_URL"],
            {
                "RECALL_BROKER_URL": f"amqp://guest:secret-pw@127.0.0.1:{closed}//",
                "RECALL_RULES_PATH": "/nonexistent",
            },
            never=["secret-pw"],
            within_s=8.0,
        ),
        Case(
            "run: a missing rule file",
            ["run"],
            2,
            ["RECALL_RULES_PATH", "/nonexistent.yaml"],
            {**api, "RECALL_RULES_PATH": "/nonexistent.yaml"},
        ),
        Case(
            "run: a broken rule file",
            ["run"],
            2,
            ["RECALL_RULES_PATH", "broken.yaml"],
            {**api, "RECALL_RULES_PATH": str(broken_rules)},
        ),
        Case("plans show: no such plan", ["plans", "show", "99"], 2, ["no plan 99"]),
        Case(
            "plans list: an unreachable database",
            ["plans", "list"],
            3,
            ["ledger", f"127.0.0.1:{closed}", "RECALL_DATABASE_URL"],
            {"RECALL_DATABASE_URL": f"postgresql://postgres:secret-pw@127.0.0.1:{closed}/test"},
            never=["secret-pw"],
        ),
        Case(
            "replay: a date that is none",
            ["replay", "--rules", str(RULES), "--since", "yesterday"],
            2,
            ["--since", "yesterday"],
        ),
        Case(
            "replay: a missing rule file",
            ["replay", "--rules", "nosuch.yaml", "--since", "2024-01-01"],
            2,
            ["nosuch.yaml"],
        ),
        Case(
            "replay: a broken rule file",
            ["replay", "--rules", str(broken_rules), "--since", "0"],
            2,
            ["broken.yaml"],
        ),
        Case("dlq replay: no such job", ["dlq", "replay", "--job-id", "nope"], 2, ["nope"]),
        Case("breaker reset: no such breaker", ["breaker", "reset", "nosuch-rule"], 2, ["nosuch-rule"]),
        Case("plans list: none", ["plans", "list"], 0, ["no pending plans"]),
        Case("breaker list: none", ["breaker", "list"], 0, ["no tripped breakers"]),
        Case("dlq list: none", ["dlq", "list"], 0, ["no dead letters"]),
        Case("a usage error", ["plans", "show", "x"], 2, ["invalid int value", "--help"]),
        Case(
            "a config file: every problem at once",
            ["--config", str(config), "config", "show"],
            2,
            ["RECALL_CONCURENCY", "recall.env:2", "RECALL_HEARTBEAT_S", "RECALL_MAX_ATTEMPTS"],
            {"RECALL_MAX_ATTEMPTS": "0"},
        ),
        Case(
            "a misspelled environment variable: warned, not fatal",
            ["config", "show"],
            0,
            ["RECALL_CONCURENCY", "RECALL_CONCURRENCY"],
            {"RECALL_CONCURENCY": "8"},
        ),
        *_intake_cases(),
    ]
    if reachable("127.0.0.1", 5432):
        cases.append(
            Case(
                "audit: a missing database",
                ["audit", "x"],
                3,
                ["ledger", "recall_no_such_db", "RECALL_DATABASE_URL"],
                {"RECALL_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/recall_no_such_db"},
            )
        )
    return cases


def _intake_cases() -> list[Case]:
    """``recall-worker intake``: its keys and webhook settings, and its two sub-commands."""
    key = "k1:intake-secret-0123456789"
    three = ["k1:first-secret-0000000001", "k2:second-secret-000000002", "k3:third-secret-0000000003"]
    return [
        Case("intake: no keys", ["intake"], 2, ["RECALL_INTAKE_KEYS"]),
        Case(
            "intake: a key without a colon",
            ["intake"],
            2,
            ["intake key 1", "ID:SECRET"],
            {"RECALL_INTAKE_KEYS": "nocolon-secret-0123456789"},
            never=["nocolon-secret-0123456789"],
        ),
        Case(
            "intake: a secret shorter than 16 characters",
            ["intake"],
            2,
            ["intake key 2", "16 characters or more"],
            {"RECALL_INTAKE_KEYS": f"{key},k2:short-Zq9x"},
            never=["short-Zq9x", "intake-secret-0123456789"],
        ),
        Case(
            "intake: three keys",
            ["intake"],
            2,
            ["at most two intake keys"],
            {"RECALL_INTAKE_KEYS": ",".join(three)},
            never=[k.split(":")[1] for k in three],
        ),
        Case(
            "intake: a webhook without its secret",
            ["intake"],
            2,
            ["RECALL_INTAKE_WEBHOOK_URL", "RECALL_INTAKE_WEBHOOK_SECRET"],
            {"RECALL_INTAKE_KEYS": key, "RECALL_INTAKE_WEBHOOK_URL": "https://backend.example/outcomes"},
            never=["intake-secret-0123456789"],
        ),
        Case(
            "intake deliveries: an unknown state",
            ["intake", "deliveries", "--state", "bogus"],
            EXIT_USAGE,
            ["--state", "bogus", "--help"],
        ),
        Case(
            "intake redeliver: no such dead delivery",
            ["intake", "redeliver", "999"],
            2,
            ["1 of the ids are no dead delivery", "intake deliveries --state dead"],
        ),
        Case(
            "intake deliveries: an unreachable database",
            ["intake", "deliveries"],
            3,
            ["ledger", "127.0.0.1:9", "RECALL_DATABASE_URL"],
            {"RECALL_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x"},
            within_s=5.0,
        ),
    ]


def test_intake_help_names_its_settings_and_sub_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["intake", "--help"])
    shown = capsys.readouterr().out
    assert "RECALL_INTAKE_KEYS" in shown and "deliveries" in shown and "redeliver" in shown
    assert "intake" in {path.split()[1] for path, _ in _parsers(build_parser()) if " " in path}


def test_every_bad_input_is_answered_in_one_line(emulator: EmulatorThread, tmp_path: Path) -> None:
    cases = _cases(emulator.url, tmp_path)
    workdirs = []
    for number in range(len(cases)):
        workdir = tmp_path / f"case-{number}"
        workdir.mkdir()
        workdirs.append(workdir)
    untimed = [(c, w) for c, w in zip(cases, workdirs, strict=True) if c.within_s is None]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outcomes = list(pool.map(_run, *zip(*untimed, strict=True)))
    outcomes += [_run(c, w) for c, w in zip(cases, workdirs, strict=True) if c.within_s is not None]
    problems = []
    for outcome in outcomes:
        case, lines = outcome.case, outcome.stderr.splitlines()
        said = f"{case.name}: exit {outcome.code}, stderr {outcome.stderr!r}"
        if "Traceback" in outcome.stderr or len(lines) != case.lines:
            problems.append(f"{said}: expected {case.lines} line(s) and no traceback")
        if outcome.code != case.code:
            problems.append(f"{said}: expected exit {case.code}")
        problems += [f"{said}: does not say {word!r}" for word in case.says if word not in outcome.stderr]
        problems += [
            f"{said}: shows {word!r}" for word in case.never if word in outcome.stderr + outcome.stdout
        ]
        if case.within_s is not None and outcome.elapsed_s > case.within_s:
            problems.append(f"{said}: took {outcome.elapsed_s:.1f}s, more than {case.within_s}s")
    assert not problems, "\n".join(problems)


def test_run_names_an_unreachable_broker_once_and_waits_for_it(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    """A worker rides out a broker restart, so one that starts while the broker is down says so in one line,
    waits (it does not exit: a fleet restarting during a broker outage would otherwise crash-loop), and
    still ends cleanly on SIGTERM."""
    closed = free_port()
    env = cli_env(
        {
            "RECALL_TIM_BASE_URL": emulator.url,
            "RECALL_TIM_KEY": KEY,
            "RECALL_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db",
            "RECALL_BROKER_URL": f"amqp://guest:secret-pw@127.0.0.1:{closed}//",
            "RECALL_HTTP_PORT": "0",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the line (or the process's end)
        assert "cannot reach the broker" in first and f"127.0.0.1:{closed}" in first, first
        assert "RECALL_BROKER_URL" in first and "waiting for it" in first, first
        assert "secret-pw" not in first
        time.sleep(1.0)
        assert proc.poll() is None, "the worker waits for the broker instead of exiting"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest and "secret-pw" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
