"""The fleet at the API's ceiling: 1, 2 and 4 worker processes on RabbitMQ, PostgreSQL and Redis against the
emulator at its 200 calls/s limit per command, with 20 ms added latency, running history-heavy one-to-one
jobs (a twelve-page conversation, three messages recalled; see :mod:`tests.bench.fleet_emulator`).

For each fleet size:
- **deep queue**: jobs published all at once; once the fleet is busy, the history calls/s it makes (as a
  share of the limit: the baseline), the rate-limit answers it got, and jobs/s;
- **70 % of capacity**: jobs published steadily at 70 % of the deep-queue jobs/s; publish-to-result
  p50 and p99.

And one process with the limit lifted: jobs/s, and its CPU per job with the breakdown by part (sampled
with py-spy when it is installed and allowed to attach), against the same job's API time as the baseline.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench import Row
from tests.bench.fleet import (
    HISTORY,
    CallSampler,
    ResultReader,
    cpu_seconds,
    fleet,
    fleet_job,
    percentile,
    seeded_emulator,
)
from tests.bench.profile import breakdown
from worker.queues import Queues

LIMIT = 200
LATENCY_MS = 20
CONCURRENCY = 16
SIZES = (1, 2, 4)
WARM_S = 6.0  # from the first publish until the fleet is measured: processes started, in flight full
DEEP_S = 20.0
STEADY_S = 20.0
CPU_JOBS = 600
PROFILED_JOBS = 300
#: Conversations of each fleet size's deep queue (the steady run takes about 160 more): each job recalls its
#: own, so none is scanned twice.
PER_SIZE = 480
CONVERSATIONS = len(SIZES) * (PER_SIZE + 200)


class Conversations:
    """Hands out unused conversation numbers."""

    def __init__(self, seeded: int = CONVERSATIONS) -> None:
        self.seeded = seeded
        self.next = 0

    def take(self, count: int) -> range:
        taken = range(self.next, self.next + count)
        self.next += count
        if self.next > self.seeded:
            raise RuntimeError("the benchmark ran out of seeded conversations")
        return taken


def _check(bodies: list[dict[str, object]]) -> None:
    bad = [b for b in bodies if b.get("status") != "done" or len(b.get("recalled") or []) != 3]  # type: ignore[arg-type]
    if bad:
        raise RuntimeError(f"{len(bad)} benchmark jobs did not recall their 3 messages: {bad[0]}")


def _deep_and_steady(url: str, processes: int, pool: Conversations) -> list[Row]:
    name = f"{processes} process{'es' if processes > 1 else ''}"
    with fleet(url, processes, concurrency=CONCURRENCY) as (settings, _workers):
        queues = Queues(settings)
        with ResultReader(queues) as reader, CallSampler(url) as sampler:
            deep = pool.take(PER_SIZE)
            queues.submit([fleet_job(i, "deep") for i in deep])
            time.sleep(WARM_S + 2 * processes)  # more processes hold more jobs in flight: longer to fill
            t0 = time.monotonic()
            done0 = len(reader.arrived)
            time.sleep(DEEP_S)
            t1 = time.monotonic()
            done1 = len(reader.arrived)
            calls_per_s, refused = sampler.between(t0, t1, HISTORY)
            jobs_per_s = (done1 - done0) / (t1 - t0)
            if done1 >= len(deep):
                raise RuntimeError("the queue ran dry while it was measured: seed more conversations")
            reader.wait_for(len(deep), 300)
            _check(list(reader.bodies.values()))

            steady = pool.take(int(jobs_per_s * 0.7 * STEADY_S) + 1)
            published: dict[str, float] = {}
            gap = 1 / (jobs_per_s * 0.7)
            begin = time.monotonic()
            for n, i in enumerate(steady):
                time.sleep(max(0.0, begin + n * gap - time.monotonic()))
                job = fleet_job(i, "steady")
                queues.submit([job])
                published[job.job_id] = time.monotonic()
            reader.wait_for(len(deep) + len(steady), 120)
            _check([reader.bodies[j] for j in published])
            latencies = [reader.arrived[j] - t for j, t in published.items()]
    return [
        Row("fleet", f"history calls/s, {name}, deep queue", calls_per_s, "calls/s", LIMIT, "the limit"),
        Row("fleet", f"rate-limit answers, {name}, deep queue", refused, "answers"),
        Row("fleet", f"jobs/s, {name}, deep queue", jobs_per_s, "jobs/s"),
        Row("fleet", f"publish->result p50, {name}, 70 % load", percentile(latencies, 0.5), "s"),
        Row("fleet", f"publish->result p99, {name}, 70 % load", percentile(latencies, 0.99), "s"),
    ]


def _lifted(url: str, emulator_pid: int, pool: Conversations) -> list[Row]:
    """One process, the limit lifted: jobs/s and CPU per job (the emulator's beside it), then the
    breakdown of that CPU from a second batch sampled with py-spy (sampling slows the process down)."""
    with fleet(url, 1, concurrency=32, redis=False, extra={"tim_rate_limit": 100_000}) as (settings, workers):
        queues = Queues(settings)
        proc = workers[0].proc
        assert proc is not None
        with ResultReader(queues) as reader:
            warm = pool.take(20)
            queues.submit([fleet_job(i, "warm") for i in warm])
            reader.wait_for(len(warm), 120)
            jobs = pool.take(CPU_JOBS)
            cpu0, emulator0, t0 = cpu_seconds(proc.pid), cpu_seconds(emulator_pid), time.monotonic()
            queues.submit([fleet_job(i, "cpu") for i in jobs])
            reader.wait_for(len(warm) + len(jobs), 600)
            t1, cpu1, emulator1 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(emulator_pid)
            sampled = pool.take(PROFILED_JOBS)
            queues.submit([fleet_job(i, "sampled") for i in sampled])
            with tempfile.TemporaryDirectory() as tmp:
                profile = _sample(proc.pid, Path(tmp) / "profile.txt", seconds=8.0)
                shares = breakdown(profile) if profile is not None else {}
            reader.wait_for(len(warm) + len(jobs) + len(sampled), 600)
            _check(list(reader.bodies.values()))
    cpu_ms = (cpu1 - cpu0) / len(jobs) * 1000
    rows = [
        Row("fleet", "jobs/s, 1 process, limit lifted", len(jobs) / (t1 - t0), "jobs/s"),
        Row("fleet", "worker CPU per job, limit lifted", cpu_ms, "ms"),
        Row("fleet", "  emulator CPU per job (same run)", (emulator1 - emulator0) / len(jobs) * 1000, "ms"),
    ]
    for part, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        rows.append(Row("fleet", f"  worker CPU of which {part}", cpu_ms * share, "ms"))
    return rows


def _sample(pid: int, out: Path, *, seconds: float) -> Path | None:
    """py-spy's raw samples of ``pid`` for ``seconds`` (None when py-spy is missing or may not attach)."""
    spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    time.sleep(1.0)
    done = subprocess.run(
        [
            spy,
            "record",
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
            "--pid",
            str(pid),
            "-d",
            str(round(seconds)),
            "--threads",
        ],
        capture_output=True,
        check=False,
    )
    return out if done.returncode == 0 and out.exists() else None


def run() -> list[Row]:
    rows: list[Row] = []
    pool = Conversations(CONVERSATIONS)
    with seeded_emulator(CONVERSATIONS, rate_limit=LIMIT, latency_ms=LATENCY_MS) as (url, _):
        for processes in SIZES:
            rows += _deep_and_steady(url, processes, pool)
    with seeded_emulator(CPU_JOBS + PROFILED_JOBS + 20, rate_limit=0, latency_ms=LATENCY_MS) as (url, pid):
        rows += _lifted(url, pid, Conversations(CPU_JOBS + PROFILED_JOBS + 20))
    return rows
