"""``recall-worker scan`` writes for where its output goes: no bar frames in a redirected stderr, the result
record as one plain JSON line on a redirected stdout, and a notice of the plan a dry run stores."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson

from tests.cli import cli_env, run_cli
from tests.conftest import KEY
from worker.emulator.seedfile import SeedFile, apply_seed
from worker.emulator.server import EmulatorThread

SEED = {
    "c2c": [
        {"from": "bob", "to": "eve", "time": "-3h", "text": "hello"},
        {"from": "eve", "to": "bob", "time": "-2h", "text": "cheap followers here"},
        {"from": "eve", "to": "bob", "time": "-1h", "text": "see you"},
    ]
}


def _scan(emulator: EmulatorThread, workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(
        {
            "RECALL_DATABASE_URL": f"sqlite:///{workdir}/ledger.db",
            "RECALL_BROKER_URL": f"sqlite:///{workdir}/queue.db",
            "RECALL_TIM_BASE_URL": emulator.url,
            "RECALL_TIM_KEY": KEY,
            "TERM": "xterm-256color",  # a terminal type, yet stderr is a pipe: still no bar
        }
    )
    return run_cli("scan", "--c2c", "bob", "eve", "--lookback", "86400", *extra, env=env, cwd=workdir)


def test_a_redirected_scan_has_no_bar_frames_a_json_line_and_names_its_plan(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    asyncio.run(apply_seed(emulator.emulator, SeedFile.model_validate(SEED)))
    done = _scan(emulator, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr, "no progress-bar frames, no escapes"
    pages = [line for line in done.stderr.splitlines() if line.startswith("scan: page ")]
    assert 1 <= len(pages) == int(orjson.loads(done.stdout)["pages_fetched"]), "one plain line a page"
    [line] = done.stdout.splitlines()
    result = orjson.loads(line)
    assert result["status"] == "dry_run"
    plan_id = result["plan_ids"]["dry_run"]
    notice = [line for line in done.stderr.splitlines() if f"stored plan {plan_id}" in line]
    assert len(notice) == 1
    assert "review queue" in notice[0] and f"plans reject {plan_id}" in notice[0]


def test_a_scan_without_matches_stores_no_plan_and_says_none(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    asyncio.run(apply_seed(emulator.emulator, SeedFile.model_validate({"accounts": ["bob", "eve"]})))
    done = _scan(emulator, tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["plan_ids"] == {}
    assert "stored plan" not in done.stderr
