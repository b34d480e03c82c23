"""The HTTP client's own cost per API call: ``httpx.AsyncClient`` (what :class:`TimClient` uses) against
:class:`worker.tim.http.HttpPool`.

The emulator runs as its own process (pinned to the first core when there are several, rate limit off).
This process makes ``CALLS`` ``openim/admin_getroammsg`` calls (an empty one-to-one history between two
imported accounts: a small, valid answer with ErrorCode 0) from ``CALLERS`` concurrent tasks through each
client, configured as :class:`TimClient` configures httpx (``CALLERS`` pooled connections, JSON content
type). Every call builds its query as the client does (admin UserSig, a fresh ``random``): httpx gets the
parameters as a dict, the pool a pre-encoded target.

Rows, the pool next to httpx measured in the same run: calls/s, and CPU of this process per call
(``time.process_time`` over the run divided by the calls; it includes the event loop and the callers'
own small work, which is the same for both). The two clients run ``ROUNDS`` times, interleaved; the best
round of each counts (noise on a shared machine only ever makes a round slower).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import httpx
import orjson

from tests.bench import Row
from tests.bench.harness import cores, emulator_process
from tests.conftest import ADMIN, KEY, SDKAPPID, make_client
from worker.emulator.seed import import_accounts
from worker.tim.http import HttpPool
from worker.tim.usersig import UserSigProvider

CALLS = 4000
CALLERS = 16
ROUNDS = 3
PATH = "openim/admin_getroammsg"
BODY = orjson.dumps(
    {"Operator_Account": "user2", "Peer_Account": "user1", "MaxCnt": 100, "MinTime": 0, "MaxTime": 2**31 - 1}
)

Post = Callable[[], Awaitable[tuple[int, bytes]]]


async def _drive(post: Post, calls: int) -> tuple[float, float]:
    """Make ``calls`` posts from ``CALLERS`` tasks; return (calls/s, CPU µs per call)."""
    remaining = calls

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status, content = await post()
            if status != 200 or b'"ErrorCode":0' not in content.replace(b" ", b""):
                raise RuntimeError(f"unexpected answer: HTTP {status} {content[:200]!r}")

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    elapsed = time.perf_counter() - started
    return calls / elapsed, (time.process_time() - cpu) / calls * 1e6


async def _measure(url: str) -> tuple[tuple[float, float], tuple[float, float]]:
    async with make_client(url, rate_per_command=1_000_000) as client:
        await import_accounts(client, ["user1", "user2"])
    sig = UserSigProvider(SDKAPPID, KEY, ADMIN)

    def params() -> dict[str, str]:
        return {
            "sdkappid": str(SDKAPPID),
            "identifier": ADMIN,
            "usersig": sig.get(),
            "random": str(secrets.randbits(32)),
            "contenttype": "json",
        }

    def target() -> str:
        return (
            f"/v4/{PATH}?sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig.get()}"
            f"&random={secrets.randbits(32)}&contenttype=json"
        )

    limits = httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)
    async with (
        httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=limits,
            headers={"Content-Type": "application/json"},
        ) as http,
        HttpPool(url, max_connections=CALLERS, timeout_s=10.0, connect_timeout_s=5.0) as pool,
    ):
        endpoint = f"{url}/v4/{PATH}"

        async def via_httpx() -> tuple[int, bytes]:
            response = await http.post(endpoint, params=params(), content=BODY)
            return response.status_code, response.content

        async def via_pool() -> tuple[int, bytes]:
            return await pool.post(target(), BODY)

        await _drive(via_httpx, 300)  # warm up: connections open, code paths hot
        await _drive(via_pool, 300)
        httpx_best = (0.0, float("inf"))
        pool_best = (0.0, float("inf"))
        for _ in range(ROUNDS):
            rate, cpu = await _drive(via_httpx, CALLS)
            httpx_best = (max(httpx_best[0], rate), min(httpx_best[1], cpu))
            rate, cpu = await _drive(via_pool, CALLS)
            pool_best = (max(pool_best[0], rate), min(pool_best[1], cpu))
        return httpx_best, pool_best


def run() -> list[Row]:
    available = cores()
    server_core = available[0] if len(available) > 1 else None
    with emulator_process("--no-rate-limit", core=server_core) as url:
        (httpx_rate, httpx_cpu), (pool_rate, pool_cpu) = asyncio.run(_measure(url))
    return [
        Row(
            "http",
            f"HttpPool calls/s ({CALLERS} callers)",
            pool_rate,
            "calls/s",
            httpx_rate,
            "httpx.AsyncClient",
        ),
        Row("http", "HttpPool CPU per call (this process)", pool_cpu, "µs", httpx_cpu, "httpx.AsyncClient"),
    ]
