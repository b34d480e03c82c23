"""A lean HTTP/1.1 keep-alive load generator, run as its own process so it does not take the server's CPU.

::

    python -m tests.bench.loadgen --url http://127.0.0.1:8000 --requests FILE closed --seconds 4
    python -m tests.bench.loadgen --url http://127.0.0.1:8000 --requests FILE open --rate 1000

``FILE`` holds complete raw requests, each prefixed by its length (4 bytes, big-endian): see
:func:`write_requests`. Each one is sent once, in order, so signed single-use requests work; the file is read
whole before the clock starts.

- ``closed``: ``--connections`` connections send the next request as soon as their previous one is answered,
  until the file is used up or ``--seconds`` pass: ``rate`` is the server's throughput.
- ``open``: the requests are due at ``--rate`` per second, whatever the server does; a due request goes to an
  idle connection, or, when every connection is busy, waits for one and counts as ``late``. Latency runs from
  the time a request was due, not from when it could be sent, so a slow server cannot hide its queue
  (no coordinated omission).

Prints one JSON line: ``{sent, statuses: {code: count}, unanswered, elapsed_s, rate, p50_ms, p99_ms, max_ms,
late, cpu_s, ...}``; ``cpu_s`` is the generator's own CPU time: near ``elapsed_s``, the generator was the
limit, not the server. Exit status 0; 1 when more than ``--max-bad`` (0.1%) of the requests were not answered
with ``--expect`` (202), the JSON line printed all the same; 2 when the exchange broke (refused connection,
closed connection, a response that is not plain ``Content-Length`` HTTP/1.1), with the reason on stderr.

:func:`run_loadgen` starts it (pinned to a core with ``taskset`` when asked) and raises :class:`LoadFailed`
unless it exits 0, so a broken server cannot produce a fast-looking number.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_PREFIX = struct.Struct(">I")
EXPECT = 202
MAX_BAD = 0.001  # the share of requests that may be answered with anything but EXPECT


class ProtocolError(RuntimeError):
    """The server's answer was not what this generator reads: it stops rather than guess."""


# --- requests files -----------------------------------------------------------------------------------------


def raw_request(url: str, method: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """One complete keep-alive HTTP/1.1 request to ``url`` (``http://host:port``)."""
    host = url.removeprefix("http://").rstrip("/")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def write_requests(path: Path, requests: Iterable[bytes]) -> int:
    """Write ``requests`` to ``path``, each prefixed by its length; returns how many."""
    count = 0
    with path.open("wb") as out:
        for request in requests:
            out.write(_PREFIX.pack(len(request)))
            out.write(request)
            count += 1
    return count


def read_requests(path: Path) -> list[bytes]:
    """The requests :func:`write_requests` wrote."""
    data = path.read_bytes()
    requests = []
    at = 0
    while at < len(data):
        if at + _PREFIX.size > len(data):
            raise ValueError(f"{path}: truncated length prefix at byte {at}")
        (length,) = _PREFIX.unpack_from(data, at)
        at += _PREFIX.size
        if at + length > len(data):
            raise ValueError(f"{path}: request at byte {at} is cut short")
        requests.append(data[at : at + length])
        at += length
    return requests


# --- the exchange -------------------------------------------------------------------------------------------


class Connection:
    """One keep-alive connection: a request, then its whole response, then the next request."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> int:
        """Send ``request``, read its response; returns the status code."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError(
                f"the server closed the connection before answering ({exc.partial[:80]!r})"
            ) from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("response head larger than 64 KiB") from None
        status, length, close = _parse_head(head)
        try:
            await self.reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise ProtocolError(f"the server closed the connection inside a {length}-byte body") from None
        if close:
            self.close()
        return status


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, the server closes the connection) of one response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    status = int(parts[1])
    if status < 200:
        raise ProtocolError(f"informational response {status} is not expected")
    length: int | None = None
    close = False
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            if not value.isdigit():
                raise ProtocolError(f"Content-Length {value[:20]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            raise ProtocolError(
                f"Transfer-Encoding {value[:20]!r} is not read here: answer with Content-Length"
            )
        elif name == "connection":
            close = "close" in value.lower()
    if length is None:
        raise ProtocolError(f"response {status} without Content-Length")
    return status, length, close


async def _connect(host: str, port: int, count: int) -> list[Connection]:
    connections = [Connection(host, port) for _ in range(count)]
    try:
        await asyncio.gather(*(c.open() for c in connections))
    except OSError as exc:
        raise ProtocolError(f"cannot connect to {host}:{port}: {exc}") from None
    return connections


class Tally:
    """What came back: status counts and latencies (seconds)."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.last_answer = 0.0

    def add(self, status: int, latency: float, now: float) -> None:
        self.statuses[status] += 1
        self.latencies.append(latency)
        self.last_answer = now


async def closed_loop(
    host: str, port: int, requests: Sequence[bytes], *, connections: int, seconds: float, drain_s: float
) -> dict[str, Any]:
    """Every connection as fast as the server answers, until the requests run out or ``seconds`` pass."""
    pool = await _connect(host, port, connections)
    tally = Tally()
    clock = time.perf_counter
    position = 0
    started = clock()
    deadline = started + seconds

    async def drive(connection: Connection) -> None:
        nonlocal position
        while position < len(requests) and clock() < deadline:
            request = requests[position]
            position += 1
            sent = clock()
            status = await connection.exchange(request)
            now = clock()
            tally.add(status, now - sent, now)

    try:
        await asyncio.wait_for(asyncio.gather(*(drive(c) for c in pool)), seconds + drain_s)
    except TimeoutError:
        raise ProtocolError(f"answers still missing {drain_s:.0f}s after the run") from None
    finally:
        for connection in pool:
            connection.close()
    elapsed = clock() - started
    return _summary("closed", position, tally, elapsed, late=0, connections=connections)


async def open_loop(
    host: str, port: int, requests: Sequence[bytes], *, connections: int, rate: float, drain_s: float
) -> dict[str, Any]:
    """Every request due at ``rate`` per second; latency from when it was due (see the module's docstring)."""
    pool = await _connect(host, port, connections)
    tally = Tally()
    clock = time.perf_counter
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    idle = 0

    async def drive(connection: Connection) -> None:
        nonlocal idle
        while True:
            idle += 1
            item = await queue.get()
            idle -= 1
            if item is None:
                return
            due, request = item
            status = await connection.exchange(request)
            now = clock()
            tally.add(status, now - due, now)

    tasks = [asyncio.create_task(drive(c)) for c in pool]
    await asyncio.sleep(0)  # every connection waits for work
    late = 0
    sent = 0
    started = clock()
    total = len(requests)
    while sent < total:
        due_now = min(total, int((clock() - started) * rate) + 1)
        while sent < due_now:
            if queue.qsize() >= idle:  # no connection free to take it now
                late += 1
            queue.put_nowait((started + sent / rate, requests[sent]))
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, started + sent / rate - clock()))
        if any(t.done() for t in tasks):
            break  # a connection broke: stop offering, report why below
    for _ in tasks:
        queue.put_nowait(None)
    done, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    for connection in pool:
        connection.close()
    for task in done:
        task.result()  # a connection's ProtocolError ends the run here
    elapsed = (tally.last_answer or clock()) - started
    return _summary("open", sent, tally, elapsed, late=late, connections=connections, offered=rate)


def _percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``ordered`` (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _summary(mode: str, sent: int, tally: Tally, elapsed: float, **extra: Any) -> dict[str, Any]:
    ordered = sorted(tally.latencies)
    answered = len(ordered)
    return {
        "mode": mode,
        "sent": sent,
        "statuses": {str(code): count for code, count in sorted(tally.statuses.items())},
        "unanswered": sent - answered,
        "elapsed_s": round(elapsed, 4),
        "rate": round(answered / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 3),
        **extra,
    }


def bad_answers(result: Mapping[str, Any], expect: int = EXPECT) -> int:
    """Requests sent and not answered with ``expect``: other statuses and no answer at all."""
    other = sum(count for code, count in result["statuses"].items() if code != str(expect))
    return int(other + result["unanswered"])


# --- command line -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.loadgen", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", required=True, help="http://host:port")
    parser.add_argument("--requests", required=True, type=Path, help="file of length-prefixed raw requests")
    parser.add_argument("--expect", type=int, default=EXPECT, help="the status every answer should have")
    parser.add_argument("--max-bad", type=float, default=MAX_BAD, help="share of other answers tolerated")
    parser.add_argument("--timeout", type=float, default=30.0, help="wait this long for the last answers")
    modes = parser.add_subparsers(dest="mode", required=True)
    closed = modes.add_parser("closed", help="as fast as the server answers")
    closed.add_argument("--connections", type=int, default=32)
    closed.add_argument("--seconds", type=float, default=math.inf, help="stop sending after this long")
    opened = modes.add_parser("open", help="at a fixed offered rate")
    opened.add_argument("--connections", type=int, default=64)
    opened.add_argument("--rate", type=float, required=True, help="requests per second offered")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    host, _, port = args.url.removeprefix("http://").rstrip("/").rpartition(":")
    requests = read_requests(args.requests)
    if not requests:
        print(f"loadgen: {args.requests} holds no requests", file=sys.stderr)
        return 2
    try:
        import uvloop  # noqa: PLC0415 - optional: the lighter the generator, the less it measures itself

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    gc.collect()
    gc.disable()  # no collector pauses inside the measured latencies; the process is short-lived
    try:
        if args.mode == "closed":
            coro = closed_loop(
                host,
                int(port),
                requests,
                connections=args.connections,
                seconds=args.seconds,
                drain_s=args.timeout,
            )
        else:
            coro = open_loop(
                host, int(port), requests, connections=args.connections, rate=args.rate, drain_s=args.timeout
            )
        cpu = time.process_time()
        result = runner(coro)
        result["cpu_s"] = round(time.process_time() - cpu, 3)  # near elapsed_s: the generator was the limit
    except ProtocolError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    bad = bad_answers(result, args.expect)
    if bad > args.max_bad * max(result["sent"], 1):
        print(
            f"loadgen: {bad} of {result['sent']} requests not answered {args.expect}: {result['statuses']}, "
            f"{result['unanswered']} unanswered",
            file=sys.stderr,
        )
        return 1
    return 0


# --- from a benchmark ---------------------------------------------------------------------------------------


class LoadFailed(RuntimeError):
    """The generator did not exit 0; ``result`` is its JSON line when it printed one."""

    def __init__(self, message: str, result: dict[str, Any] | None, stderr: str) -> None:
        super().__init__(message)
        self.result = result
        self.stderr = stderr


def run_loadgen(
    url: str,
    requests: Path,
    mode: str,
    *,
    connections: int | None = None,
    seconds: float | None = None,
    rate: float | None = None,
    core: int | None = None,
    expect: int = EXPECT,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Run the generator as its own process (on ``core`` when given and ``taskset`` exists); its result.

    Raises :class:`LoadFailed` when it exits other than 0: too many answers not ``expect``, or a broken
    exchange.
    """
    command = [sys.executable, "-m", "tests.bench.loadgen", "--url", url, "--requests", str(requests)]
    command += ["--expect", str(expect), "--timeout", str(timeout), mode]
    if connections is not None:
        command += ["--connections", str(connections)]
    if seconds is not None:
        command += ["--seconds", str(seconds)]
    if rate is not None:
        command += ["--rate", str(rate)]
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else None
    if done.returncode != 0 or result is None:
        raise LoadFailed(
            f"load generator exited {done.returncode}: {done.stderr.strip() or 'no output'}",
            result,
            done.stderr,
        )
    return dict(result)


if __name__ == "__main__":
    sys.exit(main())
