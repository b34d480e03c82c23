"""Tencent's callback as the intake mounts it: ``POST /v1/callbacks/tencent`` of the app ``build_intake``
assembles from the settings (``RECALL_TIM_SDKAPPID``, ``RECALL_TIM_CALLBACK_TOKEN``, ``RECALL_REDIS_URL``),
served on a real socket.

A signed rate alarm is acknowledged with Tencent's OK; another app's or a wrongly signed one is refused;
with Redis the command's budget is lowered under the key the worker's limiters read; and every answer is
the one the OpenAPI document describes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from tests.intake.test_api import intake_settings
from tests.intake.test_openapi import Answer, answer_problems
from tests.intake.test_tencent_callback import ALARM, OK, signed
from tests.services import REDIS, free_port, require
from worker.intake.server import IntakeThread, build_intake
from worker.tim.budget import RedisBudget
from worker.tim.ratelimit import command_of, namespace_for

ROUTE = "/v1/callbacks/tencent"
TOKEN = "intake-callback-token-0123"
#: The configured rate: the alarm's Limit (200) is above it, so the budget is lowered to half of this.
RATE = 120
LOWERED = 60
HOLD_S = 30


def query(sdkappid: int, *, token: str = TOKEN, at: float | None = None, **extra: str) -> dict[str, str]:
    """The query string Tencent appends to the callback URL, signed now (or ``at``)."""
    return signed(time.time() if at is None else at, token, sdkappid=sdkappid, **extra)


def call(intake: IntakeThread, params: dict[str, str], body: object = ALARM) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{intake.url}{ROUTE}", params=params, content=content, timeout=10)


def an_app() -> int:
    """An SDKAppID nothing else uses (no other test, no worker here): its Redis namespace is this test's."""
    return 1_490_000_000 + secrets.randbelow(9_000_000)


def serve(tmp_path: Path, sdkappid: int, **overrides: Any) -> IntakeThread:
    settings = intake_settings(
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        tim_sdkappid=sdkappid,
        tim_callback_token=TOKEN,
        tim_rate_limit=RATE,
        intake_alarm_hold_s=HOLD_S,
        **overrides,
    )
    return IntakeThread(build_intake(settings))


@pytest.fixture
def sdkappid() -> int:
    return an_app()


@pytest.fixture
def intake(tmp_path: Path, sdkappid: int) -> Iterator[IntakeThread]:
    """The intake without Redis: the callback lowers an in-process budget."""
    with serve(tmp_path, sdkappid) as running:
        yield running


def test_a_signed_rate_alarm_is_acknowledged_with_tencents_ok(intake: IntakeThread, sdkappid: int) -> None:
    answer = call(intake, query(sdkappid))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == OK


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"SdkAppid": "1400000001"}, 403, "not this app's"),
        ({"SdkAppid": ""}, 403, "SdkAppid is missing"),
        ({"Sign": "0" * 64}, 401, "Sign is wrong"),
        ({"Sign": ""}, 401, "Sign is missing"),
    ],
    ids=["another-app", "no-app", "wrong-sign", "no-sign"],
)
def test_another_apps_or_a_wrongly_signed_callback_is_refused(
    intake: IntakeThread, sdkappid: int, change: dict[str, str], status: int, says: str
) -> None:
    answer = call(intake, {**query(sdkappid), **change})
    assert answer.status_code == status
    assert answer.json()["ActionStatus"] == "FAIL" and answer.json()["ErrorCode"] != 0
    assert says in answer.json()["ErrorInfo"]
    assert TOKEN not in answer.text


def test_a_callback_signed_with_another_token_or_too_long_ago_is_refused(
    intake: IntakeThread, sdkappid: int
) -> None:
    assert call(intake, query(sdkappid, token="another-token-of-some-size")).status_code == 401
    stale = call(intake, query(sdkappid, at=time.time() - 120))
    assert stale.status_code == 401 and "more than 60 s off" in stale.json()["ErrorInfo"]


# the budget in Redis, as the worker reads it ---------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    require(REDIS)
    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    yield client
    client.close()


@pytest.fixture
def budget_key(redis_client: redis.Redis, sdkappid: int) -> Iterator[str]:
    """The Redis key of the alarmed command's budget in this app's namespace, deleted afterwards."""
    key = f"recall:{sdkappid}:budget:batchsendmsg"
    redis_client.delete(key)
    yield key
    redis_client.delete(key)


def worker_reads(sdkappid: int, path: str) -> int | None:
    """The override the worker's limiter of ``path`` (``service/command``) reads, as the client builds it."""

    async def read() -> int | None:
        client = aioredis.from_url("redis://127.0.0.1:6379/0")
        try:
            return await RedisBudget(client, namespace_for(sdkappid)).current(command_of(path))
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_a_signed_alarm_lowers_the_commands_budget_in_redis_where_the_worker_reads_it(
    tmp_path: Path, sdkappid: int, redis_client: redis.Redis, budget_key: str
) -> None:
    with serve(tmp_path, sdkappid, redis_url="redis://127.0.0.1:6379/0") as running:
        assert call(running, query(sdkappid, SdkAppid=str(sdkappid + 1))).status_code == 403
        assert call(running, query(sdkappid, Sign="f" * 64)).status_code == 401
        assert redis_client.exists(budget_key) == 0, "a refused callback lowered the budget"
        assert redis_client.exists(f"recall:{sdkappid + 1}:budget:batchsendmsg") == 0

        answer = call(running, query(sdkappid))
        assert (answer.status_code, answer.json()) == (200, OK)
    assert redis_client.get(budget_key) == str(LOWERED).encode()
    assert 0 < redis_client.pttl(budget_key) <= HOLD_S * 1000
    assert worker_reads(sdkappid, "openim/batchsendmsg") == LOWERED
    assert worker_reads(sdkappid, "openim/sendmsg") is None


# the answers against the OpenAPI document ----------------------------------------------------------------


def test_every_answer_of_the_callback_is_documented_and_every_documented_one_is_given(
    tmp_path: Path, intake: IntakeThread, sdkappid: int
) -> None:
    document = httpx.get(f"{intake.url}/openapi.json").json()
    answers: list[Answer] = []

    def called(what: str, expected: int, response: httpx.Response) -> None:
        answers.append(Answer(what, ROUTE, "post", expected, response))

    called("a signed alarm", 200, call(intake, query(sdkappid)))
    other = {"CallbackCommand": "C2C.CallbackAfterSendMsg", "From_Account": "a", "To_Account": "b"}
    called(
        "another callback",
        200,
        call(intake, query(sdkappid, CallbackCommand=other["CallbackCommand"]), other),
    )
    called("a body that is not JSON", 400, call(intake, query(sdkappid), b"{not json"))
    called("an alarm with a bad field", 400, call(intake, query(sdkappid), {**ALARM, "Limit": "lots"}))
    called("a wrong Sign", 401, call(intake, query(sdkappid, Sign="0" * 64)))
    called("another app", 403, call(intake, query(sdkappid, SdkAppid="1400000001")))
    called("a body over 64 KiB", 413, call(intake, query(sdkappid), {**ALARM, "Padding": "x" * 70_000}))
    away = tmp_path / "away"
    away.mkdir()
    with serve(away, sdkappid, redis_url=f"redis://127.0.0.1:{free_port()}/0") as no_redis:
        called("an alarm while Redis is away", 503, call(no_redis, query(sdkappid)))

    problems = [problem for answer in answers for problem in answer_problems(document, answer)]
    documented = set(document["paths"][ROUTE]["post"]["responses"])
    given = {str(answer.response.status_code) for answer in answers}
    if documented != given:
        problems.append(f"documented {sorted(documented)}, given {sorted(given)}")
    assert not problems, "\n".join(problems)
