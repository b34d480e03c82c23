"""Tencent Chat's callbacks: the rate alarm lowers a command's budget for a while.

Tencent calls the app's callback URL with ``POST`` and appends ``SdkAppid``, ``CallbackCommand``,
``contenttype``, ``ClientIP`` and ``OptPlatform`` to it; when a callback token is configured also ``Sign``
and ``RequestTime``, where ``Sign = hex(sha256(Token + RequestTime))``, and a request whose RequestTime is
more than a minute off is to be rejected. :func:`check_callback` checks exactly that. The signature covers
the time only, not the body or the command, so within that minute a captured URL could carry another body:
serve this over HTTPS only. (A replay cache would not help: two genuine callbacks in the same second carry
the same Sign.)

``Alert.RequestOverLimit`` fires when a command's requests pass 80 % of its limit::

    {"CallbackCommand": "Alert.RequestOverLimit", "ServiceName": "openim", "Command": "batchsendmsg",
     "Request": 510, "Limit": 200}

The endpoint then lowers the command's budget (:mod:`worker.tim.budget`) to :func:`lowered_rate` for the
hold; the worker's limiters space that command's calls for the lowered rate until it expires. Every other
CallbackCommand is acknowledged and ignored. Tencent is answered with its JSON:
``{"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}``, or ``"FAIL"`` with a non-zero code and a 4xx
status when a callback is refused.

Mounting (someone else's route): build the budget on the worker's namespace, so that the worker reads what
this writes: ``RedisBudget(redis, namespace_for(settings.tim_sdkappid))`` with ``RECALL_REDIS_URL`` set,
else a ``MemoryBudget`` (which only slows this process's own calls).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from worker.redact import register_secret
from worker.tim.budget import BudgetStore, BudgetUnavailable
from worker.tim.ratelimit import command_of

log = structlog.get_logger("worker.intake.callbacks")

RATE_ALARM = "Alert.RequestOverLimit"
#: Largest RequestTime skew accepted, in seconds (Tencent: "more than 1 minute off must be rejected").
MAX_SKEW_S = 60
#: Largest body read; a larger one is refused with 413.
MAX_BODY_BYTES = 64 * 1024

# Non-zero ErrorCodes of a refused callback (ours; Tencent logs them, it does not act on them).
ERR_REFUSED = 1  # SdkAppid or signature
ERR_BAD_REQUEST = 2  # not JSON, not an object, or a field of the alarm
ERR_TOO_LARGE = 3
ERR_METHOD = 4
ERR_UNAVAILABLE = 5  # the budget store is away; Tencent may call again

_REQUEST_TIME = re.compile(r"[0-9]{1,12}")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class CallbackRefused(ValueError):
    """A callback failed the checks; ``reason`` says which, never with the token."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AlarmInvalid(ValueError):
    """A rate alarm's body is not as documented; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


@dataclass(frozen=True, slots=True)
class RateAlarm:
    """One ``Alert.RequestOverLimit``: ``command`` of ``service`` ran at ``request`` calls/s against a
    ``limit`` of calls/s."""

    service: str
    command: str
    request: int
    limit: int


def sign(token: str, request_time: str) -> str:
    """Tencent's Sign: the hex SHA-256 of the token followed by RequestTime (as sent). Pure."""
    return hashlib.sha256((token + request_time).encode()).hexdigest()


def check_callback(query: Mapping[str, str], *, sdkappid: int, token: str | None, now: float) -> None:
    """Accept a callback's query string, or raise :class:`CallbackRefused`. Pure.

    ``SdkAppid`` must be this app's. With a ``token``, ``RequestTime`` must be whole Unix seconds within
    :data:`MAX_SKEW_S` of ``now`` and ``Sign`` must be :func:`sign` of it (compared in constant time).
    Without one, no Sign is asked for (and any sent cannot be checked).
    """
    app = query.get("SdkAppid")
    if not app:
        raise CallbackRefused("SdkAppid is missing", status=403)
    if not (app.isascii() and app.isdigit()) or int(app) != sdkappid:
        raise CallbackRefused("SdkAppid is not this app's", status=403)
    if token is None:
        return
    given, request_time = query.get("Sign"), query.get("RequestTime")
    if not given:
        raise CallbackRefused("Sign is missing")
    if not request_time:
        raise CallbackRefused("RequestTime is missing")
    if not _REQUEST_TIME.fullmatch(request_time):
        raise CallbackRefused("RequestTime is not an integer")
    if abs(now - int(request_time)) > MAX_SKEW_S:
        raise CallbackRefused(f"RequestTime is more than {MAX_SKEW_S} s off")
    expected = sign(token, request_time).encode()
    if not hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace")):
        raise CallbackRefused("Sign is wrong")


def _name(body: Mapping[str, object], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise AlarmInvalid(field, "is missing or not a string")
    if not _NAME.fullmatch(value):
        raise AlarmInvalid(field, "is not a plain name (letters, digits, _ . -; at most 64)")
    return value


def _count(body: Mapping[str, object], field: str, least: int) -> int:
    value = body.get(field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise AlarmInvalid(field, "is missing or not an integer")
    if value < least:
        raise AlarmInvalid(field, f"is below {least}")
    return value


def parse_rate_alarm(body: object) -> RateAlarm:
    """The :class:`RateAlarm` in a callback's parsed JSON body, or :class:`AlarmInvalid`. Pure."""
    if not isinstance(body, dict):
        raise AlarmInvalid("body", "is not a JSON object")
    command = body.get("CallbackCommand", RATE_ALARM)
    if command != RATE_ALARM:
        raise AlarmInvalid("CallbackCommand", f"is not {RATE_ALARM}")
    return RateAlarm(
        service=_name(body, "ServiceName"),
        command=_name(body, "Command"),
        request=_count(body, "Request", 0),
        limit=_count(body, "Limit", 1),
    )


def lowered_rate(alarm: RateAlarm, configured_rate: int) -> int:
    """The calls per window to hold ``alarm``'s command to while the alarm stands: half of the lower of
    Tencent's ``Limit`` and the configured rate, at least 1. Pure.

    Why half: the limit is the app's, shared with every other caller of the command (the app's own backend
    sends with ``batchsendmsg`` too), and the alarm says the app as a whole is already past 80 % of it. The
    worker's share of ``Request`` is unknown, so it cannot take exactly its part; yielding half of what it
    may use leaves the app's own traffic room, and moderation can wait a few minutes more. ``Limit`` counts
    because it may be below the configured rate (a smaller plan, or a command with its own lower limit).
    """
    return max(1, min(alarm.limit, configured_rate) // 2)


def budget_command(alarm: RateAlarm) -> str:
    """The command string the worker's limiters (and so the budget) know ``alarm``'s command by. Pure."""
    return command_of(f"{alarm.service}/{alarm.command}")


def tencent_reply(status: int = 200, code: int = 0, info: str = "") -> Response:
    """Tencent's callback answer: ``OK`` with code 0, else ``FAIL`` with ``code`` and ``info``."""
    body = {"ActionStatus": "OK" if code == 0 else "FAIL", "ErrorCode": code, "ErrorInfo": info}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class _Fail(Exception):
    """A refusal on its way to becoming Tencent's FAIL answer."""

    def __init__(self, status: int, code: int, info: str) -> None:
        super().__init__(info)
        self.status, self.code, self.info = status, code, info


async def _read_object(request: Request, limit: int) -> dict[str, object]:
    """The request's body as a JSON object of at most ``limit`` bytes, else :class:`_Fail`."""
    too_large = _Fail(413, ERR_TOO_LARGE, f"body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise _Fail(400, ERR_BAD_REQUEST, "body is not JSON") from None
    if not isinstance(body, dict):
        raise _Fail(400, ERR_BAD_REQUEST, "body is not a JSON object")
    return body


def tencent_callback_endpoint(
    *,
    sdkappid: int,
    token: str | None,
    budget: BudgetStore,
    hold_s: float,
    configured_rate: int,
    clock: Callable[[], float] = time.time,
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint for Tencent's callbacks (mount it for ``POST``).

    It checks the query string (:func:`check_callback`, against ``clock()``), reads at most
    :data:`MAX_BODY_BYTES` of JSON, and for ``Alert.RequestOverLimit`` lowers the command's ``budget`` to
    :func:`lowered_rate` of ``configured_rate`` for ``hold_s`` seconds. Other callbacks are acknowledged
    and ignored. Refusals: 401/403 (SdkAppid, signature), 413 (body too large), 400 (not a JSON object, a
    bad alarm field), 405 (not POST), 503 (the budget store is away).
    """
    if token is not None:
        if not 1 <= len(token) <= 128:
            raise ValueError("the callback token must be 1 to 128 characters")
        register_secret(token)
    if not hold_s > 0:
        raise ValueError("hold_s must be positive")
    if configured_rate < 1:
        raise ValueError("configured_rate must be at least 1")

    async def endpoint(request: Request) -> Response:
        callback = request.query_params.get("CallbackCommand", "")
        try:
            if request.method != "POST":
                raise _Fail(405, ERR_METHOD, "callbacks are POSTed")
            try:
                check_callback(request.query_params, sdkappid=sdkappid, token=token, now=clock())
            except CallbackRefused as refused:
                raise _Fail(refused.status, ERR_REFUSED, refused.reason) from None
            body = await _read_object(request, MAX_BODY_BYTES)
            callback = callback or str(body.get("CallbackCommand", ""))
            if callback == RATE_ALARM:
                await on_rate_alarm(body)
            else:
                log.info("tencent.callback.ignored", callback=callback[:64])
        except _Fail as fail:
            log.warning(
                "tencent.callback.refused", callback=callback[:64], status=fail.status, reason=fail.info
            )
            return tencent_reply(fail.status, fail.code, fail.info)
        return tencent_reply()

    async def on_rate_alarm(body: dict[str, object]) -> None:
        try:
            alarm = parse_rate_alarm(body)
        except AlarmInvalid as invalid:
            raise _Fail(400, ERR_BAD_REQUEST, str(invalid)) from None
        command, rate = budget_command(alarm), lowered_rate(alarm, configured_rate)
        try:
            await budget.lower(command, rate, hold_s)
        except BudgetUnavailable as exc:
            log.error("tencent.rate_alarm.unstored", command=command, error=str(exc))
            raise _Fail(503, ERR_UNAVAILABLE, "the budget store is unavailable") from None
        log.warning(
            "tencent.rate_alarm",
            service=alarm.service,
            command=command,
            request=alarm.request,
            limit=alarm.limit,
            lowered_to=rate,
            hold_s=hold_s,
        )

    return endpoint
