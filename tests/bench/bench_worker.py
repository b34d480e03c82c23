"""Worker throughput: jobs/s of one worker process against the emulator with 20 ms added latency, next to a
one-job-at-a-time baseline (concurrency 1) measured in the same run.

Each job scans a 60-message one-to-one conversation (several pages) and recalls 3 messages; the two runs
use disjoint conversations so both do the same work.
"""

from __future__ import annotations

import asyncio
import tempfile
import time

import httpx

from tests.bench import Row
from tests.bench.harness import cores, emulator_process
from tests.conftest import make_client
from tests.worker.harness import ThreadWorker, job, wait_results, worker_settings
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.queues import Queues
from worker.rulebook import Rulebook

LATENCY_MS = 20
T0 = int(time.time()) - 7200
SEQUENTIAL_JOBS = 20
CONCURRENT_JOBS = 80
CONCURRENCY = 16


async def _seed(url: str, first: int, count: int) -> None:
    async with make_client(url, rate_per_command=100_000) as client:
        users = [f"{p}{i}" for i in range(first, first + count) for p in ("s", "r")]
        await import_accounts(client, users)
        for i in range(first, first + count):
            calls = []
            for n in range(60):
                spam = n % 20 == 5
                sender, receiver = (f"s{i}", f"r{i}") if n % 2 or spam else (f"r{i}", f"s{i}")
                body = [
                    text(
                        "FREE CRYPTO giveaway, claim it now" if spam else f"ordinary message number {n} " * 8
                    )
                ]
                calls.append(
                    import_c2c(
                        client,
                        sender=sender,
                        receiver=receiver,
                        timestamp=T0 + n * 10,
                        seq=n + 1,
                        random=i,
                        body=body,
                    )
                )
            await asyncio.gather(*calls)


def _drain(url: str, first: int, count: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = worker_settings(f"sqlite:///{tmp}/queue.db", url, concurrency=concurrency)
        queues = Queues(settings)
        queues.submit(
            [
                job(f"b-{i}", operator=f"r{i}", peer=f"s{i}", suspect=f"s{i}", since=T0 - 1, until=T0 + 1000)
                for i in range(first, first + count)
            ]
        )
        started = time.perf_counter()
        with ThreadWorker(settings, Rulebook()):
            results = wait_results(queues, count, timeout_s=300)
        elapsed = time.perf_counter() - started
    recalled = sum(len(r["recalled"]) for r in results)
    if recalled != 3 * count or any(r["status"] != "done" for r in results):
        raise RuntimeError(
            f"the benchmark jobs did not all recall their 3 messages: {recalled} for {count} jobs"
        )
    return count / elapsed


def run() -> list[Row]:
    available = cores()
    with emulator_process("--no-rate-limit", core=available[0] if len(available) > 1 else None) as url:
        asyncio.run(_seed(url, 0, SEQUENTIAL_JOBS + CONCURRENT_JOBS))
        faults = {"commands": {"*": {"latency_ms": LATENCY_MS}}}
        httpx.post(f"{url}/_emulator/faults", json=faults).raise_for_status()
        sequential = _drain(url, 0, SEQUENTIAL_JOBS, 1)
        concurrent = _drain(url, SEQUENTIAL_JOBS, CONCURRENT_JOBS, CONCURRENCY)
    return [
        Row(
            "worker",
            f"jobs/s, 1 process, concurrency {CONCURRENCY}, {LATENCY_MS} ms API latency",
            concurrent,
            "jobs/s",
            sequential,
            "one job at a time",
        )
    ]
