"""Async client of the Tencent Cloud Chat REST API.

One :class:`TimClient` owns one pooled ``httpx.AsyncClient``. Every call goes to
``{base}/v4/{service}/{command}?sdkappid&identifier&usersig&random&contenttype=json`` as a JSON POST, under
the command's rate limit, and is retried (bounded, exponential backoff with jitter) when the failure is
transient: ErrorCode 10002/91000, frequency limits, network errors, HTTP 5xx.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson
import redis.asyncio as aioredis
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from worker.redact import protect_logger
from worker.tim.budget import BudgetStore, RedisBudget
from worker.tim.errors import (
    TimApiError,
    TimError,
    TimHttpError,
    TimProtocolError,
    TimTransportError,
)
from worker.tim.models import JsonObject
from worker.tim.ratelimit import DEFAULT_RATE, DEFAULT_WINDOW_S, CommandLimiters, command_of, namespace_for
from worker.tim.regions import base_url_for
from worker.tim.usersig import UserSigProvider

log = structlog.get_logger("worker.tim")

for _name in ("httpx", "httpcore"):
    protect_logger(_name)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried inside one call."""

    max_attempts: int = 5
    max_total_s: float = 30.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0


@dataclass(slots=True)
class ClientStats:
    """What the client did: attempts by command and outcome, retries, time spent waiting for the limiter."""

    attempts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    retries: Counter[str] = field(default_factory=Counter)
    rate_wait_s: float = 0.0

    def calls(self, command: str) -> int:
        """Attempts made for ``command``, whatever their outcome."""
        return sum(self.attempts[command].values())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "attempts": {cmd: dict(outcomes) for cmd, outcomes in self.attempts.items()},
            "retries": dict(self.retries),
            "rate_wait_s": round(self.rate_wait_s, 3),
        }


class CallObserver(Protocol):
    """Told about every attempt, retry and rate-limit wait (metrics hook). Outcomes are "0", an ErrorCode,
    "http_<status>", "transport" or "protocol"."""

    def attempt(self, command: str, outcome: str, latency_s: float) -> None: ...
    def retry(self, command: str) -> None: ...
    def rate_wait(self, command: str, seconds: float) -> None: ...


def _outcome_of(error: TimError) -> str:
    if isinstance(error, TimApiError):
        return str(error.code)
    if isinstance(error, TimHttpError):
        return f"http_{error.status}"
    if isinstance(error, TimTransportError):
        return "transport"
    return "protocol"


class TimClient:
    """Calls the Chat REST API as the app admin."""

    def __init__(
        self,
        *,
        sdkappid: int,
        key: str,
        base_url: str,
        admin: str = "administrator",
        timeout_s: float = 10.0,
        rate_per_command: int = DEFAULT_RATE,
        rate_window_s: float = DEFAULT_WINDOW_S,
        retry: RetryPolicy | None = None,
        max_connections: int = 16,
        usersig: UserSigProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        redis_url: str | None = None,
        budget: BudgetStore | None = None,
    ) -> None:
        self.sdkappid = sdkappid
        self.admin = admin
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self.observers: list[CallObserver] = []
        self._usersig = usersig or UserSigProvider(sdkappid, key, admin)
        # A shared limit needs a shared counter: with Redis, every replica of this app draws from one.
        self._redis = aioredis.from_url(redis_url) if redis_url else None
        namespace = namespace_for(sdkappid)
        # Tencent's rate alarm lowers a command's budget (worker.intake.callbacks); with Redis, every replica
        # reads it from the same namespace. ``budget`` overrides that (tests, or an in-process store).
        if budget is None and self._redis is not None:
            budget = RedisBudget(self._redis, namespace)
        self._limiters = CommandLimiters(
            rate_per_command, rate_window_s, redis=self._redis, namespace=namespace, budget=budget
        )
        # A call holds a slot from taking its rate-limit token until its answer, so that a token is never
        # taken by a request that then queues for a pooled connection and reaches the service late.
        self._slots = asyncio.Semaphore(max_connections)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=limits,
            transport=transport,
            headers={"Content-Type": "application/json"},
        )

    @classmethod
    def for_region(cls, region: str, **kwargs: Any) -> TimClient:
        """Build a client for one of the documented data-centre regions (see :mod:`worker.tim.regions`)."""
        return cls(base_url=base_url_for(region), **kwargs)

    async def __aenter__(self) -> TimClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (and the Redis connection, if any)."""
        await self._http.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    async def call(self, path: str, body: Mapping[str, Any]) -> JsonObject:
        """POST ``body`` to ``v4/{path}`` (e.g. ``openim/admin_getroammsg``) and return the reply.

        Raises :class:`TimApiError` for a non-zero ErrorCode once retries (if the code is retryable) are
        spent, and the other :class:`TimError` subclasses for transport and protocol failures.
        """
        command = command_of(path)
        payload = orjson.dumps(body)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts) | stop_before_delay(self.retry.max_total_s),
            wait=wait_random_exponential(
                multiplier=self.retry.backoff_initial_s, max=self.retry.backoff_max_s
            ),
            retry=retry_if_exception(lambda e: isinstance(e, TimError) and e.retryable),
            before_sleep=self._on_retry(command),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(path, command, payload)
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _on_retry(self, command: str) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            self.stats.retries[command] += 1
            for observer in self.observers:
                observer.retry(command)
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "tim.retry",
                command=command,
                call_attempt=state.attempt_number,
                error=str(error),
                sleep_s=round(state.upcoming_sleep, 3),
            )

        return before_sleep

    async def _attempt(self, path: str, command: str, payload: bytes) -> JsonObject:
        async with self._slots:
            waited = await self._limiters.for_command(command).acquire()
            self.stats.rate_wait_s += waited
            for observer in self.observers:
                observer.rate_wait(command, waited)
            params = {
                "sdkappid": str(self.sdkappid),
                "identifier": self.admin,
                "usersig": self._usersig.get(),
                "random": str(secrets.randbits(32)),
                "contenttype": "json",
            }
            started = time.perf_counter()
            try:
                try:
                    response = await self._http.post(
                        f"{self.base_url}/v4/{path}", params=params, content=payload
                    )
                except httpx.HTTPError as exc:
                    raise TimTransportError(command, exc) from None
                reply = parse_reply(command, response.status_code, response.content)
            except TimError as error:
                self._record(command, _outcome_of(error), time.perf_counter() - started)
                raise
            self._record(command, "0", time.perf_counter() - started)
            return reply

    def _record(self, command: str, outcome: str, latency_s: float) -> None:
        self.stats.attempts[command][outcome] += 1
        for observer in self.observers:
            observer.attempt(command, outcome, latency_s)


def parse_reply(command: str, status: int, content: bytes) -> JsonObject:
    """Turn an HTTP answer into the reply object, or raise the matching :class:`TimError`. Pure."""
    if status != 200:
        raise TimHttpError(command, status)
    try:
        reply = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise TimProtocolError(command, "body is not JSON") from None
    if not isinstance(reply, dict):
        raise TimProtocolError(command, f"body is a JSON {type(reply).__name__}, not an object")
    code = reply.get("ErrorCode")
    if type(code) is not int:
        raise TimProtocolError(command, "ErrorCode is missing or not an integer")
    if code != 0:
        info = reply.get("ErrorInfo")
        raise TimApiError(command, code, info if isinstance(info, str) else "")
    if reply.get("ActionStatus") != "OK":
        raise TimProtocolError(command, "ErrorCode is 0 but ActionStatus is not OK")
    return reply
