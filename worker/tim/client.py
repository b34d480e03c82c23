"""Async client of the Tencent Cloud Chat REST API.

One :class:`TimClient` owns one pool of keep-alive connections (:mod:`worker.tim.http`; httpx when a
transport is injected or an egress proxy is configured). Every call goes to
``{base}/v4/{service}/{command}?sdkappid&identifier&usersig&random&contenttype=json`` as a JSON POST, under
the command's rate limit, and is retried (bounded, exponential backoff with jitter) when the failure is
transient: ErrorCode 10002/91000, network errors, HTTP 5xx.

A rate-limit answer (60007, 60011, 60018, 60019) is not one of those retries: it tells the command's limiter
(which lowers the rate, fleet-wide with Redis: :mod:`worker.tim.adaptive`) and the call queues for a slot
again, as long as :attr:`RetryPolicy.rate_limit_patience_s` allows. It never costs the job an attempt.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from worker.redact import protect_logger
from worker.tim.adaptive import AdaptivePolicy
from worker.tim.budget import BudgetStore, RedisBudget
from worker.tim.errors import (
    RATE_LIMIT_CODES,
    TimApiError,
    TimError,
    TimHttpError,
    TimProtocolError,
    TimTransportError,
)
from worker.tim.http import HttpPool, HttpTransportError
from worker.tim.models import JsonObject
from worker.tim.ratelimit import (
    DEFAULT_RATE,
    DEFAULT_WINDOW_S,
    CommandLimiters,
    Limiter,
    command_of,
    namespace_for,
)
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
    #: How long one attempt may keep queueing again after rate-limit answers before it gives up.
    rate_limit_patience_s: float = 120.0


@dataclass(slots=True)
class ClientStats:
    """What the client did: attempts by command and outcome, retries, rate-limit answers, and the time every
    call spent waiting for the limiter."""

    attempts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    retries: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    rate_wait_s: float = 0.0

    def calls(self, command: str) -> int:
        """Attempts made for ``command``, whatever their outcome."""
        return sum(self.attempts[command].values())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "attempts": {cmd: dict(outcomes) for cmd, outcomes in self.attempts.items()},
            "retries": dict(self.retries),
            "rate_limited": dict(self.rate_limited),
            "rate_wait_s": round(self.rate_wait_s, 3),
        }


class CallObserver(Protocol):
    """Told about every attempt, retry and rate-limit wait (metrics hook). Outcomes are "0", an ErrorCode,
    "http_<status>", "transport" or "protocol"."""

    def attempt(self, command: str, outcome: str, latency_s: float) -> None: ...
    def retry(self, command: str) -> None: ...
    def rate_wait(self, command: str, seconds: float) -> None: ...
    def rate_limited(self, command: str) -> None: ...
    def limiter_state(self, command: str, rate_per_s: float, waiting: int) -> None: ...


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
        adaptive: AdaptivePolicy | None = None,
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
            rate_per_command,
            rate_window_s,
            redis=self._redis,
            namespace=namespace,
            budget=budget,
            policy=adaptive,
        )
        # A call holds a slot from taking its rate-limit token until its answer, so that a token is never
        # taken by a request that then queues for a pooled connection and reaches the service late.
        self._slots = asyncio.Semaphore(max_connections)
        self._http = _poster(self.base_url, timeout_s, max_connections, transport)
        self._query_head = f"sdkappid={sdkappid}&identifier={quote(admin, safe='')}&usersig="
        self._signed: tuple[str, str] = ("", "")  # the UserSig, and the query up to its random part
        # ``random`` only tells requests apart (it is no secret): a seeded generator, not a system call each
        self._random = random.Random(secrets.randbits(64))

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
        try:
            return await self._patient_attempt(path, command, payload)
        except TimError as error:
            if not _worth_retrying(error):
                raise
            first: TimError | None = error
        # Most calls succeed at once, and tenacity's machinery costs more than the call itself: it only
        # starts on a transient failure, which it is handed as its first attempt (counted, logged, backed
        # off from, exactly as if it had made it).
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts) | stop_before_delay(self.retry.max_total_s),
            wait=wait_random_exponential(
                multiplier=self.retry.backoff_initial_s, max=self.retry.backoff_max_s
            ),
            retry=retry_if_exception(_worth_retrying),
            before_sleep=self._on_retry(command),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await self._patient_attempt(path, command, payload)
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def _patient_attempt(self, path: str, command: str, payload: bytes) -> JsonObject:
        """One attempt, queued for a slot again after each rate-limit answer until patience runs out."""
        give_up_at: float | None = None
        while True:
            try:
                return await self._attempt(path, command, payload)
            except TimApiError as error:
                if error.code not in RATE_LIMIT_CODES:
                    raise
                now = time.monotonic()
                give_up_at = give_up_at or now + self.retry.rate_limit_patience_s
                if now >= give_up_at:
                    raise
                log.debug("tim.rate_limited", command=command, code=error.code)

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
            limiter = self._limiters.for_command(command)
            waited = await limiter.acquire()
            self.stats.rate_wait_s += waited
            for observer in self.observers:
                observer.rate_wait(command, waited)
                observer.limiter_state(command, limiter.rate_per_s(), limiter.waiting)
            target = f"/v4/{path}?{self._query()}"
            started = time.perf_counter()
            try:
                try:
                    status, content = await self._http.post(target, payload)
                except (httpx.HTTPError, HttpTransportError) as exc:
                    raise TimTransportError(command, exc) from None
                reply = parse_reply(command, status, content)
            except TimError as error:
                self._record(command, _outcome_of(error), time.perf_counter() - started)
                if isinstance(error, TimApiError) and error.code in RATE_LIMIT_CODES:
                    await self._rate_limited(limiter, command)
                raise
            self._record(command, "0", time.perf_counter() - started)
            return reply

    def _query(self) -> str:
        """The URL's query: the signed part is built again only when the UserSig is renewed."""
        usersig = self._usersig.get()
        if usersig != self._signed[0]:
            self._signed = (usersig, f"{self._query_head}{quote(usersig, safe='')}&contenttype=json&random=")
        return f"{self._signed[1]}{self._random.getrandbits(32)}"

    async def _rate_limited(self, limiter: Limiter, command: str) -> None:
        self.stats.rate_limited[command] += 1
        for observer in self.observers:
            observer.rate_limited(command)
        try:
            await limiter.limited()
        except (RedisError, OSError) as exc:  # the answer is still waited out; only the fleet is not told
            log.warning("tim.rate_limit.unshared", command=command, error=type(exc).__name__)

    def _record(self, command: str, outcome: str, latency_s: float) -> None:
        self.stats.attempts[command][outcome] += 1
        for observer in self.observers:
            observer.attempt(command, outcome, latency_s)


class _Poster(Protocol):
    """Sends one POST to the API's origin; answers ``(status, body)``."""

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]: ...
    async def aclose(self) -> None: ...


class _HttpxPoster:
    """httpx, for an injected transport (tests) or an egress proxy (``HTTP(S)_PROXY``), which the lean pool
    does not speak."""

    def __init__(self, base_url: str, timeout_s: float, max_connections: int, transport: Any) -> None:
        self._base_url = base_url
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=limits,
            transport=transport,
            headers={"Content-Type": "application/json"},
        )

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(f"{self._base_url}{target}", content=body)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _poster(
    base_url: str, timeout_s: float, max_connections: int, transport: httpx.AsyncBaseTransport | None
) -> _Poster:
    """The lean keep-alive pool (about 25 µs of CPU a call, against about 1 ms through httpx), unless a
    transport is injected or a proxy is configured."""
    if transport is not None or any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return _HttpxPoster(base_url, timeout_s, max_connections, transport)
    return HttpPool(
        base_url,
        max_connections=max_connections,
        timeout_s=timeout_s,
        connect_timeout_s=min(timeout_s, 5.0),
    )


def _worth_retrying(error: BaseException) -> bool:
    # Rate-limit answers were already waited out inside the attempt (see _patient_attempt).
    if isinstance(error, TimApiError) and error.code in RATE_LIMIT_CODES:
        return False
    return isinstance(error, TimError) and error.retryable


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
