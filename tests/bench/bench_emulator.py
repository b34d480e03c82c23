"""Emulator history throughput (one core) and the client's calls/s against it.

Rows:
- emulator ``admin_getroammsg`` full 13 KB pages per second, from a raw keep-alive load generator, next
  to the same generator on the cheapest request the gateway answers (an unknown API, refused before any
  work): the ratio is what building a history page costs over bare HTTP handling.
- the ``TimClient`` (httpx, retries, limiter) doing the same history call, next to the raw generator.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.bench import Row
from tests.bench.harness import api_request, cores, emulator_process, hammer
from tests.conftest import make_client
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.tim.client import TimClient

SECONDS = 4.0
MESSAGES = 3000
NOW = int(time.time())
HISTORY_BODY = orjson.dumps(
    {"Operator_Account": "user2", "Peer_Account": "user1", "MaxCnt": 100, "MinTime": 0, "MaxTime": NOW}
)


async def _seed(client: TimClient) -> None:
    await import_accounts(client, ["user1", "user2"])
    for start in range(0, MESSAGES, 100):
        await asyncio.gather(
            *(
                import_c2c(
                    client,
                    sender="user1" if i % 2 else "user2",
                    receiver="user2" if i % 2 else "user1",
                    timestamp=NOW - MESSAGES + i,
                    seq=i + 1,
                    random=i,
                    body=[text(f"message number {i}: " + "lorem ipsum dolor sit amet " * 6)],
                )
                for i in range(start, start + 100)
            )
        )


async def _client_rate(url: str, seconds: float, tasks: int = 32) -> float:
    async with make_client(url, rate_per_command=1_000_000) as client:
        deadline = time.perf_counter() + seconds
        done = 0

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await client.call("openim/admin_getroammsg", orjson.loads(HISTORY_BODY))
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(tasks)))
        return done / (time.perf_counter() - started)


def run() -> list[Row]:
    available = cores()
    server_core = available[0] if len(available) > 1 else None
    with emulator_process("--no-rate-limit", core=server_core) as url:

        async def measure() -> tuple[float, float, float]:
            async with make_client(url, rate_per_command=1_000_000) as client:
                await _seed(client)
                page = await client.call("openim/admin_getroammsg", orjson.loads(HISTORY_BODY))
                assert page["Complete"] == 0 and len(orjson.dumps(page)) > 12 * 1024, "pages must be full"
            history = api_request(url, "openim/admin_getroammsg", HISTORY_BODY)
            trivial = api_request(url, "openim/no_such_api", b"{}")
            await hammer(url, history, seconds=0.5)  # warm up
            bare = await hammer(url, trivial, seconds=SECONDS)
            pages = await hammer(url, history, seconds=SECONDS)
            client_rate = await _client_rate(url, SECONDS)
            return bare, pages, client_rate

        bare, pages, client_rate = asyncio.run(measure())
    return [
        Row(
            "emulator",
            "admin_getroammsg 13 KB pages/s (1 core)",
            pages,
            "calls/s",
            bare,
            "unknown-API refusal",
        ),
        Row(
            "client",
            "TimClient admin_getroammsg calls/s",
            client_rate,
            "calls/s",
            pages,
            "raw HTTP generator",
        ),
    ]
