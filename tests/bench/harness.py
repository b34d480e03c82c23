"""Shared benchmark plumbing: server processes pinned to one core, a raw HTTP/1.1 load generator."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ADMIN, KEY, SDKAPPID
from tests.services import free_port
from worker.tim.usersig import UserSigProvider

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def cores() -> list[int]:
    """The CPU cores this process may run on."""
    return sorted(os.sched_getaffinity(0))


@contextmanager
def emulator_process(*extra: str, core: int | None = None) -> Iterator[str]:
    """Start ``recall-worker emulator`` (pinned to ``core`` when possible); yield its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "worker.cli", "emulator", "--port", str(port), *extra]
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    proc = subprocess.Popen(command, env={**os.environ, "RECALL_TIM_KEY": KEY}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_emulator/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    """``command`` run on ``core`` only (through ``taskset``), when a core is given and taskset exists."""
    if core is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(core), *command]
    return list(command)


@contextmanager
def service_process(
    command: Sequence[str],
    health_url: str,
    *,
    env: Mapping[str, str] | None = None,
    core: int | None = None,
    startup_s: float = 30,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` (pinned to ``core`` when possible), wait until ``health_url`` answers 200, stop it
    with SIGTERM afterwards. If it exits or does not answer in time, the error quotes its stderr."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            pinned(command, core),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

        def failure(what: str) -> RuntimeError:
            stderr.seek(0)
            tail = stderr.read()[-2000:].decode(errors="replace").strip()
            return RuntimeError(f"{' '.join(command)}: {what}\n{tail}")

        try:
            deadline = time.monotonic() + startup_s
            while True:
                try:
                    httpx.get(health_url, timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        raise failure(f"exited {proc.returncode} before answering {health_url}") from None
                    if time.monotonic() > deadline:
                        raise failure(f"no answer on {health_url} in {startup_s:.0f}s") from None
                    time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def api_request(url: str, path: str, body: bytes) -> bytes:
    """A complete keep-alive HTTP/1.1 request for ``path`` carrying a valid admin UserSig."""
    host = url.removeprefix("http://")
    sig = UserSigProvider(SDKAPPID, KEY, ADMIN).get()
    query = f"sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig}&random=12345&contenttype=json"
    head = (
        f"POST /v4/{path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def hammer(url: str, request: bytes, *, seconds: float, connections: int = 32) -> float:
    """Send ``request`` over ``connections`` keep-alive connections for ``seconds``; return requests/s."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.perf_counter() + seconds

    async def one_connection() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        done = 0
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _LENGTH.search(head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            done += 1
        writer.close()
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(one_connection() for _ in range(connections)))
    return sum(counts) / (time.perf_counter() - started)
