"""Report intake throughput and latency on one process with the PostgreSQL store, next to a bare endpoint.

The issue's target, on this 2-core machine: at least 1,000 reports/s, and p99 under 50 ms at 1,000 reports/s
offered. Each server runs pinned to the first core; the load generator (:mod:`tests.bench.loadgen`) runs as
its own process on the second, so it does not take the server's CPU (PostgreSQL and RabbitMQ are not pinned).

For each server, in the same run:

- closed loop: 32, then 256 keep-alive connections as fast as it answers, 3 s each: reports/s. The intake
  commits reports in groups (one transaction for whatever waits), so its rate grows with the reports in
  flight until the CPU is the limit: the two figures show both ends;
- open loop: 1,000 reports/s offered for 4 s over up to 256 connections, latency counted from when each
  report was due (a report that finds every connection busy waits, and that wait counts): p50/p99.

The baseline is :mod:`tests.bench.bare_endpoint`: the same Starlette and uvicorn settings, answering 202
without looking at the report. Every request is a distinct, freshly signed report (a signature is good once
and for 5 minutes), built just before its phase. More than 0.1% of answers other than 202 fails the bench.

Rows: intake reports/s (both concurrencies) and p99 against the bare endpoint's, then the best rate and the
p99 against the targets (ratio ≥ 1 meets the rate target; < 1 meets the p99 one). Each phase's whole result
(statuses, late, the generator's and the server's CPU time) is printed on stderr.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.bench import Row
from tests.bench.harness import cores, service_process
from tests.bench.loadgen import ROOT, raw_request, run_loadgen, write_requests
from tests.services import POSTGRES, RABBITMQ, free_port, reachable
from worker.intake.signing import signed_headers

KEY_ID = "bench"
SECRET = uuid.uuid4().hex  # 32 characters
PATH = "/v1/reports"
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
REPORTERS = 5000
CONVERSATIONS = 200
WARM_UP = 1500
CLOSED_SECONDS = 3.0
CLOSED_CONNECTIONS = (32, 256)
OPEN_RATE = 1000
OPEN_SECONDS = 4.0
OPEN_CONNECTIONS = 256
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
INTAKE_COMMAND = [sys.executable, "-m", "worker.cli", "intake"]

_sequence = itertools.count(1)  # every report of the run carries its own message sequence: all distinct
_random = random.Random(20240611)


def report_requests(url: str, count: int) -> list[bytes]:
    """``count`` distinct reports, signed now, as raw requests to ``url``."""
    now = int(time.time())
    requests = []
    for _ in range(count):
        n = next(_sequence)
        conversation = _random.randrange(CONVERSATIONS)
        body = orjson.dumps(
            {
                "reporter": f"r{_random.randrange(REPORTERS)}",
                "suspect": f"s{conversation}",
                "conversation": {"type": "group", "group_id": f"@TGS#bench{conversation}"},
                "msg_seqs": [n],
                "category": "spam",
                "description": f"spam links, report {n}",
                "reported_at": now,
            }
        )
        headers = {
            "Content-Type": "application/json",
            **signed_headers(KEY_ID, SECRET, "POST", PATH, body),
        }
        requests.append(raw_request(url, "POST", PATH, headers, body))
    return requests


def _one_report(url: str) -> None:
    """One report through httpx: the answer must be 202 with a report id, before any load."""
    (request,) = report_requests(url, 1)
    head, _, body = request.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    headers.pop("Host")
    headers.pop("Content-Length")
    answer = httpx.post(url + PATH, content=body, headers=headers, timeout=10)
    if answer.status_code != 202 or "report_id" not in answer.json():
        raise RuntimeError(f"{url}{PATH} answered {answer.status_code} {answer.text[:300]!r}, expected 202")


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by process ``pid`` (all its threads), or None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _phase(pid: int, url: str, file: Path, mode: str, **options: Any) -> dict[str, Any]:
    """One generator run; its result plus the server's CPU time over it (``server_cpu_s``)."""
    before = cpu_seconds(pid)
    result = run_loadgen(url, file, mode, **options)
    after = cpu_seconds(pid)
    if before is not None and after is not None:
        # from just before the generator starts to its end (its start-up included): near elapsed_s, the
        # server's core was the limit
        result["server_cpu_s"] = round(after - before, 3)
    return result


def measure(pid: int, url: str, workdir: Path, load_core: int | None) -> dict[str, dict[str, Any]]:
    """Warm up, then the closed-loop and the open-loop phases against ``url`` (served by process ``pid``);
    the generator's results."""
    _one_report(url)
    file = workdir / "requests.bin"
    write_requests(file, report_requests(url, WARM_UP))
    warm = run_loadgen(url, file, "closed", connections=64, core=load_core)
    results = {}
    for connections in CLOSED_CONNECTIONS:
        # enough to keep the server busy the whole phase; running out early still measures a rate
        pool = int(min(80_000, max(8000, warm["rate"] * CLOSED_SECONDS * 4)))
        write_requests(file, report_requests(url, pool))
        results[f"closed {connections}"] = _phase(
            pid, url, file, "closed", connections=connections, seconds=CLOSED_SECONDS, core=load_core
        )
    write_requests(file, report_requests(url, int(OPEN_RATE * OPEN_SECONDS)))
    results["open"] = _phase(
        pid, url, file, "open", connections=OPEN_CONNECTIONS, rate=OPEN_RATE, core=load_core
    )
    file.unlink()
    return results


def _bare(workdir: Path, server_core: int | None, load_core: int | None) -> dict[str, dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tests.bench.bare_endpoint", "--port", str(port)]
    with service_process(command, f"{url}/healthz", core=server_core, cwd=ROOT) as proc:
        return measure(proc.pid, url, workdir, load_core)


def intake_missing() -> str | None:
    """Why the intake cannot be measured here, or None."""
    known = subprocess.run([*INTAKE_COMMAND, "--help"], capture_output=True, check=False, cwd=ROOT)
    if known.returncode != 0:
        return "`recall-worker intake` does not exist (yet)"
    for name, host, port in (POSTGRES, RABBITMQ):
        if not reachable(host, port):
            return f"{name} is not reachable on {host}:{port}"
    return None


def _intake(workdir: Path, server_core: int | None, load_core: int | None) -> dict[str, dict[str, Any]]:
    from tests.ledger.conftest import fresh_pg_schema  # noqa: PLC0415 - pulls in pytest and psycopg
    from worker.config import load_settings  # noqa: PLC0415
    from worker.queues import Queues  # noqa: PLC0415

    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    with fresh_pg_schema() as database_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "RECALL_DATABASE_URL": database_url,
            "RECALL_BROKER_URL": BROKER_URL,
            "RECALL_QUEUE_PREFIX": prefix,
            "RECALL_INTAKE_KEYS": f"{KEY_ID}:{SECRET}",
            "RECALL_INTAKE_HOST": "127.0.0.1",
            "RECALL_INTAKE_PORT": str(port),
            "RECALL_INTAKE_REPORTER_LIMIT": "1000000",
        }
        subprocess.run(
            [sys.executable, "-m", "worker.cli", "ledger", "upgrade"],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            with service_process(
                INTAKE_COMMAND, f"{url}/healthz", env=env, core=server_core, cwd=ROOT
            ) as proc:
                return measure(proc.pid, url, workdir, load_core)
        finally:
            try:
                Queues(load_settings(broker_url=BROKER_URL, queue_prefix=prefix)).delete_all()
            except Exception as exc:  # noqa: BLE001 - leftover queues must not hide the run's own error
                print(f"  could not delete the queues {prefix}.*: {exc}", file=sys.stderr)


def _show(name: str, results: dict[str, dict[str, Any]]) -> None:
    for phase, result in results.items():
        print(f"  {name} {phase}: {json.dumps(result)}", file=sys.stderr, flush=True)


def run() -> list[Row]:
    available = cores()
    server_core, load_core = (available[0], available[1]) if len(available) > 1 else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bare = _bare(workdir, server_core, load_core)
        _show("bare", bare)
        why_not = intake_missing()
        if why_not is not None:
            if os.environ.get("CI") == "true":
                raise RuntimeError(f"intake benchmark: {why_not}")
            print(f"  intake not measured: {why_not}", file=sys.stderr, flush=True)
            rows = [
                Row("intake", f"bare 202 endpoint reports/s, {c} conns", bare[f"closed {c}"]["rate"], "/s")
                for c in CLOSED_CONNECTIONS
            ]
            rows.append(Row("intake", "bare 202 endpoint p99 at 1,000/s", bare["open"]["p99_ms"], "ms"))
            return rows
        intake = _intake(workdir, server_core, load_core)
        _show("intake", intake)
    rows = [
        Row(
            "intake",
            f"reports/s, 1 process + PostgreSQL, {c} conns",
            intake[f"closed {c}"]["rate"],
            "/s",
            bare[f"closed {c}"]["rate"],
            "bare 202",
        )
        for c in CLOSED_CONNECTIONS
    ]
    best = max(intake[f"closed {c}"]["rate"] for c in CLOSED_CONNECTIONS)
    p99 = intake["open"]["p99_ms"]
    rows += [
        Row("intake", "p99 at 1,000/s offered", p99, "ms", bare["open"]["p99_ms"], "bare 202"),
        Row("intake", "best reports/s against the target", best, "/s", TARGET_RATE, "target, at least"),
        Row("intake", "p99 at 1,000/s against the target", p99, "ms", TARGET_P99_MS, "target, under"),
    ]
    return rows
