"""Running the worker in tests: on a thread (with any rule source) or as the real process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import KEY
from worker.config import Settings
from worker.consumer import Worker
from worker.jobs import Job
from worker.queues import Queues
from worker.runner import RuleSource


def worker_settings(broker_url: str, emulator_url: str, **overrides: Any) -> Settings:
    """Settings for one test: its own queue prefix and ledger, fast retries, the emulator."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tempfile.gettempdir()}/recall-test-ledgers/{prefix}.db",
        "broker_url": broker_url,
        "queue_prefix": prefix,
        "tim_base_url": emulator_url,
        "tim_key": KEY,
        "retry_base_delay_s": 0.2,
        "retry_max_delay_s": 1.0,
        "http_port": 0,
        "confirm_timeout_s": 5,
        "shutdown_budget_s": 10,
    }
    values.update(overrides)
    return Settings.model_validate(values)


class ThreadWorker:
    """A worker consuming on a background thread until stopped."""

    def __init__(self, settings: Settings, rules: RuleSource, **kwargs: Any) -> None:
        self.worker = Worker(settings, rules, **kwargs)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def __enter__(self) -> ThreadWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 30) -> None:
        self.worker.request_stop()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the worker did not stop"


def job(
    job_id: str,
    *,
    operator: str = "user2",
    peer: str = "user1",
    suspect: str = "user1",
    since: int,
    until: int,
    mode: str = "recall",
    ruleset: str = "default",
    **extra: Any,
) -> Job:
    """A one-to-one job."""
    return Job.model_validate(
        {
            "version": 1,
            "job_id": job_id,
            "conversation": {"type": "c2c", "operator": operator, "peer": peer},
            "suspect": suspect,
            "window": {"since": since, "until": until},
            "ruleset": ruleset,
            "mode": mode,
            **extra,
        }
    )


def wait_results(queues: Queues, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Take results off the results queue until ``count`` have arrived."""
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(results)} of {count} results arrived: {results}"
        for envelope in queues.read(queues.names.results, take=True, wait_s=min(1.0, remaining)):
            results.append(orjson.loads(envelope.body))
    return results


class ProcessWorker:
    """``recall-worker run`` as its own process, configured only through ``RECALL_*`` variables."""

    def __init__(
        self, settings: Settings, log_path: Path, *, extra_env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
        for name, value in settings.model_dump().items():
            if value is not None:
                shown = value.get_secret_value() if hasattr(value, "get_secret_value") else value
                if isinstance(shown, list):  # list settings are comma-separated in the environment
                    shown = ",".join(map(str, shown))
                env[f"RECALL_{name.upper()}"] = str(shown)
        env["RECALL_LOG_FORMAT"] = "json"
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessWorker:
        # The installed entry point, run directly, as the container's exec-form ENTRYPOINT runs it.
        entrypoint = Path(sys.executable).with_name("recall-worker")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(entrypoint), "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
