"""Where a worker's CPU goes: py-spy's raw samples, each attributed to the part of the worker it was in."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

LOOP = "event loop"
#: Parts by the module a sample's innermost recognised frame belongs to (the first pattern that matches).
PARTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("HTTP client", r"\((httpx|httpcore|h11|anyio|sniffio|httptools)/|worker/tim/http\.py"),
        ("ledger (SQLAlchemy, psycopg)", r"\((sqlalchemy|psycopg|psycopg_pool)/|worker/ledger/"),
        ("broker (kombu, amqp)", r"\((kombu|amqp|vine)/|worker/broker/|^Worker\.\w+ \(worker/consumer\.py"),
        ("reply parsing", r"worker/tim/(replies|history|models|recall)\.py"),
        ("API client and limiter", r"worker/tim/(client|ratelimit|adaptive|usersig|budget)\.py|\(tenacity/"),
        ("rules", r"\(rules/"),
        ("pipeline and results", r"worker/(pipeline|runner|scan|results|jobs|plans|redact)\.py"),
        ("logs and metrics", r"\((structlog|logging|prometheus_client)/|worker/(logs|observability)\.py"),
        (
            "event loop",
            r"\((asyncio|concurrent|selectors|threading|queue)/|\(asyncio|selectors\.py|threading\.py",
        ),
    )
)

#: A sample whose innermost frame is one of these waits is not work: the event loop's poll, a thread waiting
#: for work, psycopg waiting for the server's answer, kombu waiting for the broker.
_IDLE = re.compile(
    r"^(\w+\.)?(select|poll|wait|_wait_for_tstate_lock|acquire|get|_worker) "
    r"\((selectors|threading|queue|concurrent/futures/thread)\.py"
    r"|^Connection\.wait \(psycopg/connection\.py"
    r"|^TCPTransport\._read \(amqp/transport\.py"
)


def breakdown(raw: Path) -> dict[str, float]:
    """Each part's share of the busy samples in py-spy's ``--format raw`` output at ``raw``."""
    parts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]
        if not frames or not count.isdigit() or _IDLE.match(frames[-1]):
            continue
        parts[_part_of(frames)] += int(count)
    total = sum(parts.values())
    return {part: n / total for part, n in parts.items()} if total else {}


def _part_of(frames: list[str]) -> str:
    # The event loop's own frames count only when no part of the worker is under them: a socket write made
    # for the HTTP client is the HTTP client's.
    loop = False
    for frame in reversed(frames):
        for name, pattern in PARTS:
            if pattern.search(frame):
                if name != LOOP:
                    return name
                loop = True
                break
    return LOOP if loop else "other"
