"""The fleet benchmark's plumbing: the seeded emulator as a process, worker processes on RabbitMQ, PostgreSQL
and Redis, jobs published and results collected with their timings, the API's call rate sampled.

Every worker is the real ``recall-worker run`` process. Figures come from outside the workers: call counts
from the emulator's statistics, per-process CPU from ``/proc``, publish-to-result times from this process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Self

import httpx
import orjson

from tests.bench.fleet_emulator import window
from tests.bench.harness import service_process
from tests.conftest import KEY
from tests.ledger.conftest import fresh_pg_schema
from tests.services import free_port
from tests.worker.harness import ProcessWorker, job, worker_settings
from worker.config import Settings
from worker.jobs import Job
from worker.queues import Queues

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"
HISTORY = "admin_getroammsg"
RATE_LIMITED = ("60007", "60011", "60018", "60019")


@contextmanager
def seeded_emulator(conversations: int, *, rate_limit: int, latency_ms: float) -> Iterator[tuple[str, int]]:
    """The fleet emulator with ``conversations`` seeded, every command ``latency_ms`` slower: its URL and
    process id."""
    port = free_port()
    command = [sys.executable, "-m", "tests.bench.fleet_emulator", "--port", str(port)]
    command += ["--conversations", str(conversations), "--rate-limit", str(rate_limit)]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RECALL_TIM_KEY": KEY}
    with service_process(command, f"{url}/_emulator/health", env=env, startup_s=180) as proc:
        if latency_ms:
            faults = {"commands": {"*": {"latency_ms": latency_ms}}}
            httpx.post(f"{url}/_emulator/faults", json=faults).raise_for_status()
        yield url, proc.pid


def fleet_job(i: int, prefix: str) -> Job:
    """The job over conversation ``i``."""
    since, until = window()
    return job(f"{prefix}-{i}", operator=f"r{i}", peer=f"s{i}", suspect=f"s{i}", since=since, until=until)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Background:
    """Runs :meth:`_step` over and over on a thread, from ``with`` until its end."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._step()

    def _step(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


class CallSampler(_Background):
    """Samples the emulator's call counts every ``every_s``: ``(time, admitted calls by command, rate-limit
    answers of every command)``."""

    def __init__(self, url: str, every_s: float = 0.5) -> None:
        super().__init__()
        self.url = url
        self.every_s = every_s
        self.samples: list[tuple[float, dict[str, int], int]] = []
        self._http = httpx.Client()

    def _step(self) -> None:
        calls = self._http.get(f"{self.url}/_emulator/stats").json()["calls"]
        admitted = {
            command: sum(n for code, n in outcomes.items() if code not in RATE_LIMITED)
            for command, outcomes in calls.items()
        }
        refused = sum(
            n for outcomes in calls.values() for code, n in outcomes.items() if code in RATE_LIMITED
        )
        self.samples.append((time.monotonic(), admitted, refused))
        self._stop.wait(self.every_s)

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        self._http.close()

    def between(self, start: float, end: float, command: str = HISTORY) -> tuple[float, int]:
        """Admitted calls/s of ``command`` and rate-limit answers (all commands) from ``start`` to ``end``."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            raise RuntimeError("too few call samples in the measured span")
        first, last = inside[0], inside[-1]
        calls = last[1].get(command, 0) - first[1].get(command, 0)
        return calls / (last[0] - first[0]), last[2] - first[2]


class ResultReader(_Background):
    """Takes results off the results queue, noting when each arrived (job id -> monotonic time), and keeps
    their bodies."""

    def __init__(self, queues: Queues) -> None:
        super().__init__()
        self.queues = queues
        self.arrived: dict[str, float] = {}
        self.bodies: dict[str, dict[str, Any]] = {}

    def _step(self) -> None:
        for envelope in self.queues.read(self.queues.names.results, take=True, wait_s=0.2):
            body = orjson.loads(envelope.body)
            self.arrived[body["job_id"]] = time.monotonic()
            self.bodies[body["job_id"]] = body

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.arrived) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.arrived)} of {count} results arrived")
            time.sleep(0.05)


@contextmanager
def fleet(
    url: str, processes: int, *, concurrency: int, redis: bool = True, extra: dict[str, Any] | None = None
) -> Iterator[tuple[Settings, list[ProcessWorker]]]:
    """``processes`` worker processes sharing one queue prefix, a fresh PostgreSQL ledger and (with
    ``redis``) one shared rate limit; stopped, and their queues deleted, afterwards."""
    with ExitStack() as stack:
        database = stack.enter_context(fresh_pg_schema())
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        overrides: dict[str, Any] = {
            "database_url": database,
            "concurrency": concurrency,
            "log_level": "warning",
        }
        if redis:
            overrides["redis_url"] = REDIS
        overrides.update(extra or {})
        settings = worker_settings(BROKER, url, **overrides)
        queues = Queues(settings)
        stack.callback(queues.delete_all)
        workers = [ProcessWorker(settings, logs / f"worker-{n}.log") for n in range(processes)]
        for worker in workers:
            stack.callback(worker.stop)
            worker.start()
        yield settings, workers


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
