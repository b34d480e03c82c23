"""``recall-worker demo``: every command it prints as a hint works when pasted, and its summary reads right.

The demo runs once, in a fresh copy of the project (no ``.demo/`` or ``.recall/`` left from earlier runs),
with the project's virtualenv linked in as ``.venv`` so that ``.venv/bin/recall-worker`` means there what it
means in a checkout after ``make demo``. Each hint line (``  $ COMMAND``) is then run through a shell exactly
as printed, from that directory.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli import cli_env
from worker.demo import HINT_PREFIX

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(
    ".git", ".venv", ".demo", ".recall", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
    "__pycache__", "build", "*.egg-info",
)  # fmt: skip

pytestmark = pytest.mark.slow


@dataclass
class Demo:
    cwd: Path
    env: dict[str, str]
    out: str

    def hints(self) -> list[str]:
        return [line[len(HINT_PREFIX) :] for line in self.out.splitlines() if line.startswith(HINT_PREFIX)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    if not (ROOT / ".venv" / "bin" / "recall-worker").exists():
        pytest.skip("needs the project's virtualenv (.venv, made by `make test`)")
    cwd = tmp_path_factory.mktemp("demo") / "project"
    shutil.copytree(ROOT, cwd, ignore=SKIP, symlinks=True)
    (cwd / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    env = cli_env()
    ran = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return Demo(cwd, env, ran.stdout)


def run_hint(demo: Demo, command: str) -> str:
    # through a shell, exactly as a reader pastes it (the command is the demo's own output)
    ran = subprocess.run(  # noqa: S602
        command,
        shell=True,
        cwd=demo.cwd,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, f"{command}\n{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
    return ran.stdout


def check_promise(command: str, out: str) -> str:
    """Assert ``out`` is what ``command`` promises; returns the command's kind (``plans show`` ...)."""
    words = shlex.split(command)
    assert words[0].startswith("RECALL_DATABASE_URL=sqlite:///"), command
    assert words[1] == ".venv/bin/recall-worker", command
    args = words[2:]
    if args[:2] == ["plans", "show"]:
        plan: dict[str, Any] = json.loads(out)
        assert plan["id"] == int(args[2])
        assert plan["status"] == "pending"
        assert plan["items"], "the plan lists its messages"
        assert all(item["body"] and item["matches"] for item in plan["items"]), "with evidence, matches"
        return "plans show"
    if args[:2] == ["plans", "list"]:
        assert "demo-frank-reports-eve-preview" in out and "dry_run" in out
        assert "intake-1" in out and "wipe" in out  # the intake's job for the group's reports
        return "plans list"
    if args[0] == "audit":
        trail: dict[str, Any] = json.loads(out)
        assert trail["job_id"] == args[1]
        assert trail["status"] == "done"
        assert trail["result"]["job_id"] == args[1]
        if args[1] == "demo-alice-reports-bob":
            assert len(trail["messages"]) == 8
            assert all(m["evidence"]["MsgBody"] for m in trail["messages"])
        else:
            assert trail["result"]["wiped"], "the wipe's apply job lists what it took"
        return "audit"
    raise AssertionError(f"a hint this test does not know how to check: {command}")


def test_every_hint_works_when_pasted(demo: Demo) -> None:
    hints = demo.hints()
    kinds = [check_promise(command, run_hint(demo, command)) for command in hints]
    assert {"plans show", "plans list", "audit"} <= set(kinds), hints
    assert not any(" approve" in command for command in hints), "the demo's emulator is gone: no approving"
    # no command hides in the prose: every line naming the CLI is a hint line
    for line in demo.out.splitlines():
        if "recall-worker" in line and not line.startswith(HINT_PREFIX):
            pytest.fail(f"a command outside the hint lines: {line}")
    # and the default ledger was never touched: the hints name the demo's
    assert not (demo.cwd / ".recall").exists()


def test_the_summary_says_what_became_of_the_matches(demo: Demo) -> None:
    out = demo.out
    header = "demo-alice-reports-bob: done - scanned 240 messages in 6 pages, 8 matched: 7 recalled, 1 left"
    assert header in out
    assert re.search(r"in 1 page, ", out) and "1 pages" not in out
    # two rules on one message: each with its own evidence; flag rules marked
    line = next(line for line in out.splitlines() if "planted: link in a custom element" in line)
    assert "blocked-domains at MsgBody[0].MsgContent.Data - 'https://scam-example.com/win'" in line
    assert "scam-words-en (flag) at MsgBody[0].MsgContent.Data - 'scam'" in line
    assert "scam-group-invites (wipe)" in out
    assert "(temporary: it stops when the demo ends)" in out


def test_the_audits_evidence_is_whole_json(demo: Demo) -> None:
    lines = demo.out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("=== audit trail of"))
    bodies = [line.strip() for line in lines[start:] if line.startswith("  [")]
    assert bodies
    for body in bodies:
        assert isinstance(json.loads(body), list), body
