"""Running ``recall-worker`` as a subprocess, as a user does, with only the settings a test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def cli_env(settings: Mapping[str, str] = {}) -> dict[str, str]:
    """This environment without any ``RECALL_*`` variable (they would point the command elsewhere), plus
    ``settings`` (full variable names)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RECALL_")}
    env.update(settings)
    return env


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``recall-worker ARGS`` run to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
