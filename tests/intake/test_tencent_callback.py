"""Tencent's callbacks: the Sign check, the rate alarm, and the endpoint answering with Tencent's JSON."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import uvicorn
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from structlog.testing import capture_logs

from tests.services import free_port
from worker.intake.callbacks import (
    MAX_BODY_BYTES,
    AlarmInvalid,
    CallbackRefused,
    RateAlarm,
    budget_command,
    check_callback,
    lowered_rate,
    parse_rate_alarm,
    tencent_callback_endpoint,
)
from worker.tim.budget import BudgetStore, MemoryBudget, RedisBudget
from worker.tim.ratelimit import command_of

SDKAPPID = 1400000000
TOKEN = "s3cr3t-callback-token"
NOW = 1_700_000_000.0
ALARM = {
    "CallbackCommand": "Alert.RequestOverLimit",
    "ServiceName": "openim",
    "Command": "batchsendmsg",
    "Request": 510,
    "Limit": 200,
}
OK = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}


def signed(
    request_time: float = NOW, token: str = TOKEN, *, sdkappid: int = SDKAPPID, **extra: str
) -> dict[str, str]:
    """A callback's query string as Tencent sends it, signed with ``token`` at ``request_time``."""
    at = str(int(request_time))
    query = {
        "SdkAppid": str(sdkappid),
        "CallbackCommand": "Alert.RequestOverLimit",
        "contenttype": "json",
        "ClientIP": "203.0.113.7",
        "OptPlatform": "RESTAPI",
        "RequestTime": at,
        "Sign": hashlib.sha256((token + at).encode()).hexdigest(),
    }
    query.update(extra)
    return query


def check(query: dict[str, str], *, token: str | None = TOKEN, now: float = NOW) -> None:
    check_callback(query, sdkappid=SDKAPPID, token=token, now=now)


# the Sign check ------------------------------------------------------------------------------------------


def test_a_signed_callback_passes() -> None:
    check(signed())
    check(signed(NOW - 60))
    check(signed(NOW + 60))


def test_the_sign_is_compared_whatever_its_hex_case() -> None:
    query = signed()
    check({**query, "Sign": query["Sign"].upper()})


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({**signed(), "Sign": "0" * 64}, "Sign is wrong"),
        (signed(token="another-token"), "Sign is wrong"),
        ({**signed(), "Sign": "naïve"}, "Sign is wrong"),
        ({**signed(), "RequestTime": str(int(NOW) + 1)}, "Sign is wrong"),
        (signed(NOW - 61), "more than 60 s off"),
        (signed(NOW + 61), "more than 60 s off"),
        (signed(NOW - 86400), "more than 60 s off"),
        ({k: v for k, v in signed().items() if k != "Sign"}, "Sign is missing"),
        ({k: v for k, v in signed().items() if k != "RequestTime"}, "RequestTime is missing"),
        ({**signed(), "RequestTime": "1700000000.5"}, "not an integer"),
        ({**signed(), "RequestTime": "-1700000000"}, "not an integer"),
        ({**signed(), "RequestTime": "soon"}, "not an integer"),
        ({k: v for k, v in signed().items() if k != "SdkAppid"}, "SdkAppid is missing"),
        (signed(SdkAppid="1400000001"), "not this app's"),
        (signed(SdkAppid="14OOOOOOOO"), "not this app's"),
    ],
)
def test_a_callback_failing_a_check_is_refused_with_the_reason(query: dict[str, str], reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason) as refused:
        check(query)
    assert TOKEN not in str(refused.value)


def test_another_app_is_refused_even_without_a_token() -> None:
    with pytest.raises(CallbackRefused, match="not this app's"):
        check(signed(SdkAppid="1400000001"), token=None)


def test_without_a_token_no_sign_is_needed() -> None:
    check({"SdkAppid": str(SDKAPPID), "CallbackCommand": "Alert.RequestOverLimit"}, token=None)
    check({**signed(), "Sign": "anything"}, token=None, now=NOW + 3600)


# the alarm -----------------------------------------------------------------------------------------------


def test_the_documented_alarm_parses() -> None:
    assert parse_rate_alarm(ALARM) == RateAlarm("openim", "batchsendmsg", 510, 200)
    assert parse_rate_alarm({**ALARM, "Request": 510.0}).request == 510


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ServiceName": None}, "ServiceName"),
        ({"ServiceName": "open im"}, "ServiceName"),
        ({"Command": 7}, "Command"),
        ({"Command": ""}, "Command"),
        ({"Command": "x" * 65}, "Command"),
        ({"Request": "510"}, "Request"),
        ({"Request": True}, "Request"),
        ({"Request": -1}, "Request"),
        ({"Limit": 0}, "Limit"),
        ({"Limit": 200.5}, "Limit"),
        ({"Limit": None}, "Limit"),
        ({"CallbackCommand": "C2C.CallbackAfterSendMsg"}, "CallbackCommand"),
    ],
)
def test_a_bad_alarm_field_is_named(change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**ALARM, **change}.items() if v is not None}
    with pytest.raises(AlarmInvalid, match=field) as invalid:
        parse_rate_alarm(body)
    assert invalid.value.field == field


@pytest.mark.parametrize("body", [[ALARM], "alarm", None, 3])
def test_an_alarm_must_be_an_object(body: object) -> None:
    with pytest.raises(AlarmInvalid, match="body"):
        parse_rate_alarm(body)


@pytest.mark.parametrize(
    ("limit", "configured", "lowered"),
    [(200, 200, 100), (200, 120, 60), (50, 200, 25), (1, 200, 1), (200, 1, 1)],
)
def test_the_lowered_rate_is_half_the_lower_of_limit_and_configured(
    limit: int, configured: int, lowered: int
) -> None:
    alarm = RateAlarm("openim", "batchsendmsg", 510, limit)
    assert lowered_rate(alarm, configured) == lowered


def test_the_alarm_names_the_command_as_the_client_limits_it() -> None:
    alarm = parse_rate_alarm(ALARM)
    assert budget_command(alarm) == command_of("openim/batchsendmsg") == "batchsendmsg"


# the endpoint, served over real HTTP ---------------------------------------------------------------------

Endpoint = Callable[[Request], Awaitable[Response]]


class Served:
    """An endpoint served by uvicorn on this test's event loop, at ``url``."""

    def __init__(self, url: str, budget: BudgetStore) -> None:
        self.url = url
        self.budget = budget
        self.http = httpx.AsyncClient(timeout=5)

    async def post(self, query: dict[str, str], body: object = ALARM, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.http.post(self.url, params=query, content=content, **kwargs)


@contextlib.asynccontextmanager
async def serve(endpoint: Endpoint, budget: BudgetStore) -> AsyncIterator[Served]:
    app = Starlette(routes=[Route("/v1/callbacks/tencent", endpoint, methods=["GET", "POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    served = Served(f"http://127.0.0.1:{port}/v1/callbacks/tencent", budget)
    try:
        yield served
    finally:
        await served.http.aclose()
        server.should_exit = True
        await task


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def memory() -> AsyncIterator[Served]:
    """The endpoint with a token, on an in-process budget, its clock at :data:`NOW`."""
    budget = MemoryBudget()
    endpoint = tencent_callback_endpoint(
        sdkappid=SDKAPPID, token=TOKEN, budget=budget, hold_s=300, configured_rate=200, clock=lambda: NOW
    )
    async with serve(endpoint, budget) as served:
        yield served


async def test_a_signed_alarm_lowers_the_budget_and_is_answered_ok(
    memory: Served, logs: list[dict[str, Any]]
) -> None:
    reply = await memory.post(signed())
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == OK
    assert await memory.budget.current("batchsendmsg") == 100
    [event] = [e for e in logs if e["event"] == "tencent.rate_alarm"]
    assert event["command"] == "batchsendmsg"
    assert event["lowered_to"] == 100
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ({**signed(), "Sign": "0" * 64}, 401, "Sign is wrong"),
        (signed(NOW - 120), 401, "more than 60 s off"),
        ({k: v for k, v in signed().items() if k not in {"Sign", "RequestTime"}}, 401, "Sign is missing"),
        (signed(SdkAppid="1400000001"), 403, "not this app's"),
    ],
)
async def test_a_refused_callback_is_answered_fail_and_lowers_nothing(
    memory: Served, logs: list[dict[str, Any]], query: dict[str, str], status: int, reason: str
) -> None:
    reply = await memory.post(query)
    assert reply.status_code == status
    answer = reply.json()
    assert answer["ActionStatus"] == "FAIL"
    assert answer["ErrorCode"] != 0
    assert reason in answer["ErrorInfo"]
    assert await memory.budget.current("batchsendmsg") is None
    assert any(e["event"] == "tencent.callback.refused" for e in logs)
    assert TOKEN not in repr(logs) + reply.text


async def test_other_callbacks_are_acknowledged_and_ignored(
    memory: Served, logs: list[dict[str, Any]]
) -> None:
    body = {"CallbackCommand": "C2C.CallbackAfterSendMsg", "From_Account": "user1", "To_Account": "user2"}
    reply = await memory.post(signed(CallbackCommand="C2C.CallbackAfterSendMsg"), body)
    assert (reply.status_code, reply.json()) == (200, OK)
    assert await memory.budget.current("batchsendmsg") is None
    assert [e["callback"] for e in logs if e["event"] == "tencent.callback.ignored"] == [
        "C2C.CallbackAfterSendMsg"
    ]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[1, 2]"])
async def test_a_body_that_is_not_a_json_object_is_refused_with_400(memory: Served, body: bytes) -> None:
    reply = await memory.post(signed(), body)
    assert reply.status_code == 400
    assert reply.json()["ActionStatus"] == "FAIL"
    assert reply.json()["ErrorCode"] != 0


async def test_a_bad_alarm_is_refused_with_400_naming_the_field(memory: Served) -> None:
    reply = await memory.post(signed(), {**ALARM, "Limit": "lots"})
    assert reply.status_code == 400
    assert "Limit" in reply.json()["ErrorInfo"]
    assert await memory.budget.current("batchsendmsg") is None


async def test_a_body_over_64_kb_is_refused_with_413(memory: Served) -> None:
    padded = {**ALARM, "Padding": "x" * MAX_BODY_BYTES}
    reply = await memory.post(signed(), padded)
    assert reply.status_code == 413
    assert reply.json()["ActionStatus"] == "FAIL"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    reply = await memory.http.post(memory.url, params=signed(), content=chunks())
    assert reply.status_code == 413
    assert await memory.budget.current("batchsendmsg") is None


async def test_a_body_of_exactly_64_kb_is_read(memory: Served) -> None:
    body = orjson.dumps(ALARM)
    reply = await memory.post(signed(), body + b" " * (MAX_BODY_BYTES - len(body)))
    assert (reply.status_code, reply.json()) == (200, OK)


async def test_a_get_is_refused_with_405(memory: Served) -> None:
    reply = await memory.http.get(memory.url, params=signed())
    assert reply.status_code == 405
    assert reply.json()["ActionStatus"] == "FAIL"


async def test_without_a_token_an_unsigned_alarm_is_taken() -> None:
    budget = MemoryBudget()
    endpoint = tencent_callback_endpoint(
        sdkappid=SDKAPPID, token=None, budget=budget, hold_s=300, configured_rate=200
    )
    async with serve(endpoint, budget) as served:
        query = {
            "SdkAppid": str(SDKAPPID),
            "CallbackCommand": "Alert.RequestOverLimit",
            "contenttype": "json",
        }
        reply = await served.post(query, {**ALARM, "Limit": 60})
        assert (reply.status_code, reply.json()) == (200, OK)
    assert await budget.current("batchsendmsg") == 30


async def test_the_endpoint_checks_request_time_against_its_clock() -> None:
    budget = MemoryBudget()
    endpoint = tencent_callback_endpoint(
        sdkappid=SDKAPPID, token=TOKEN, budget=budget, hold_s=300, configured_rate=200
    )
    async with serve(endpoint, budget) as served:
        assert (await served.post(signed(time.time()))).status_code == 200
        assert (await served.post(signed(time.time() - 90))).status_code == 401


async def test_a_budget_store_that_is_away_is_answered_503() -> None:
    away = aioredis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    budget = RedisBudget(away, "nowhere")
    endpoint = tencent_callback_endpoint(
        sdkappid=SDKAPPID, token=TOKEN, budget=budget, hold_s=300, configured_rate=200, clock=lambda: NOW
    )
    async with serve(endpoint, budget) as served:
        reply = await served.post(signed())
        assert reply.status_code == 503
        assert reply.json()["ActionStatus"] == "FAIL"
    await away.aclose()


@pytest.mark.parametrize("token", ["", "t" * 129])
def test_a_token_tencent_would_not_accept_is_refused_at_startup(token: str) -> None:
    with pytest.raises(ValueError, match="1 to 128"):
        tencent_callback_endpoint(
            sdkappid=SDKAPPID, token=token, budget=MemoryBudget(), hold_s=300, configured_rate=200
        )


# the alarm in a real Redis -------------------------------------------------------------------------------


async def test_an_alarm_lowers_the_shared_budget_in_redis_until_the_hold_ends(
    redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    budget = RedisBudget(redis_client, redis_namespace)
    endpoint = tencent_callback_endpoint(
        sdkappid=SDKAPPID, token=TOKEN, budget=budget, hold_s=0.6, configured_rate=200, clock=lambda: NOW
    )
    async with serve(endpoint, budget) as served:
        reply = await served.post(signed())
        assert (reply.status_code, reply.json()) == (200, OK)
        key = f"{redis_namespace}:budget:batchsendmsg"
        assert await redis_client.get(key) == b"100"
        assert 0 < await redis_client.pttl(key) <= 600
        # A second alarm, for a command with a lower limit of its own: it keeps the lower rate.
        reply = await served.post(signed(), {**ALARM, "Request": 90, "Limit": 100})
        assert reply.json() == OK
        assert await budget.current("batchsendmsg") == 50
        # Another process (a worker replica) reads the same override.
        assert await RedisBudget(redis_client, redis_namespace).current("batchsendmsg") == 50
        await asyncio.sleep(0.7)
        assert await budget.current("batchsendmsg") is None
        assert await redis_client.exists(key) == 0
