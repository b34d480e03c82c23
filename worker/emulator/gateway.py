"""The emulator's front door: what every REST call goes through before its command handler.

Order, as the real gateway answers: POST only; known command; the URL's ``sdkappid``, ``identifier``,
``usersig``, ``random`` and ``contenttype``; UserSig verification; admin-only identifier; the per-command
frequency limit; injected faults; the JSON body; the handler. The answer is always HTTP 200 with
``ActionStatus/ErrorCode/ErrorInfo`` except for an injected HTTP error.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

import orjson

from worker.emulator.auth import EMPTY, verify_usersig
from worker.emulator.clock import Clock
from worker.emulator.errors import ApiFailure
from worker.emulator.faults import Fault, FaultPlan
from worker.emulator.limits import DEFAULT_LIMIT, ServerLimits
from worker.emulator.media import MediaStore
from worker.emulator.service import ChatService, Handler, RawFields, ServiceSettings

HTTP_PARSE_ERROR = 60002
JSON_PARSE_ERROR = 60003
ACCOUNT_OR_SIG_ERROR = 60004
BAD_RESOURCE = 60009
NEEDS_ADMIN = 60010
FREQUENCY_LIMIT = 60007
NO_SDKAPPID = 60012
UNKNOWN_SDKAPPID = 70020
UINT32_MAX = 4294967295
#: Services whose pages document their own "JSON parse failed" code.
PARSE_ERROR_BY_SERVICE = {"openim": 90001}

_OK_HEAD = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0'


@dataclass(slots=True)
class EmulatorConfig:
    """Identity of the emulated app and its starting behaviour."""

    key: str
    sdkappid: int = 1400000000
    admin: str = "administrator"
    rate_limit: int | None = DEFAULT_LIMIT
    settings: ServiceSettings = field(default_factory=ServiceSettings)


@dataclass(slots=True)
class CallStats:
    """Calls per command and outcome ("0", an ErrorCode, "http_502", "timeout"), and limit breaches."""

    calls: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    limit_breaches: Counter[str] = field(default_factory=Counter)

    def record(self, command: str, outcome: str) -> None:
        self.calls[command][outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": {cmd: dict(outcomes) for cmd, outcomes in self.calls.items()},
            "totals": {cmd: sum(outcomes.values()) for cmd, outcomes in self.calls.items()},
            "limit_breaches": dict(self.limit_breaches),
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer."""

    status: int
    body: bytes
    content_type: bytes = b"application/json; charset=utf-8"


def fail(code: int, info: str) -> Answer:
    """A ``FAIL`` answer with the documented code."""
    return Answer(200, orjson.dumps({"ActionStatus": "FAIL", "ErrorInfo": info, "ErrorCode": code}))


class Emulator:
    """One emulated Chat app: its state, limits, faults and statistics."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.service = ChatService(config.admin, self.clock, config.settings)
        self.limits = ServerLimits(config.rate_limit)
        self.faults = FaultPlan()
        self.stats = CallStats()
        self.service.drop_recall = self._drop_recall
        self._current_command = ""
        #: Pictures uploaded through ``/_emulator/media``, served to media fetchers.
        self.media = MediaStore()

    def _drop_recall(self) -> bool:
        return self.faults.drop_recall(self._current_command)

    def reset(self) -> None:
        """Back to a fresh app: no data, no faults, default limits, wall-clock time, zeroed stats."""
        self.service.reset()
        self.media.reset()
        self.service.settings = replace(self.config.settings)
        self.limits.configure(self.config.rate_limit, {})
        self.limits.set_tenant({})
        self.faults.clear()
        self.clock.reset()
        self.stats = CallStats()

    async def handle(self, method: str, path: str, query: bytes, body: bytes) -> Answer:
        """Serve one HTTP request to ``/v4/...``."""
        parts = path.strip("/").split("/")
        route = "/".join(parts[1:]) if len(parts) == 3 and parts[0] == "v4" else ""
        command = parts[-1] if route else "unknown"
        answer = await self._serve(method, route, command, query, body)
        if answer.status != 200:
            outcome = f"http_{answer.status}"
        elif answer.body.startswith(_OK_HEAD):
            outcome = "0"
        else:
            outcome = str(orjson.loads(answer.body).get("ErrorCode"))
        self.stats.record(command, outcome)
        return answer

    async def _serve(self, method: str, route: str, command: str, query: bytes, body: bytes) -> Answer:
        try:
            handler = self._admit(method, route, command, query)
            if (latency := self.faults.latency_s(command)) > 0:
                await asyncio.sleep(latency)
            fault = self.faults.draw(command)
            if fault is not None:
                return await self._inflict(fault)
            request = self._parse_body(route, body)
            self._current_command = command
            reply = handler(request)
        except ApiFailure as failure:
            return fail(failure.code, failure.info)
        if isinstance(reply, RawFields):
            return Answer(200, _OK_HEAD + b"," + reply.data + b"}")
        if not reply:
            return Answer(200, _OK_HEAD + b"}")
        return Answer(200, _OK_HEAD + b"," + orjson.dumps(reply)[1:])

    def _admit(self, method: str, route: str, command: str, query: bytes) -> Handler:
        if method != "POST":
            raise ApiFailure(HTTP_PARSE_ERROR, "only HTTP POST is supported")
        handler = self.service.handlers.get(route)
        if handler is None:
            raise ApiFailure(BAD_RESOURCE, f"no such API: /v4/{route or '?'}")
        self._check_url(dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)))
        if not self.limits.admit(command, time.monotonic()):
            self.stats.limit_breaches[command] += 1
            raise ApiFailure(FREQUENCY_LIMIT, "REST API call frequency over the limit")
        return handler

    @staticmethod
    async def _inflict(fault: Fault) -> Answer:
        if fault.kind == "http":
            return Answer(int(fault.value), b"<html><body>502 Bad Gateway</body></html>", b"text/html")
        if fault.kind == "timeout":
            await asyncio.sleep(fault.value)
            return fail(91000, "timed out")
        return fail(int(fault.value), "injected fault: internal error, please retry")

    @staticmethod
    def _parse_body(route: str, body: bytes) -> dict[str, Any]:
        try:
            request = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            code = PARSE_ERROR_BY_SERVICE.get(route.split("/", 1)[0], JSON_PARSE_ERROR)
            raise ApiFailure(code, "Fail to Parse json data of body, Please check it")
        return request

    def _check_url(self, params: dict[str, str]) -> None:
        sdkappid = params.get("sdkappid", "")
        if not sdkappid:
            raise ApiFailure(NO_SDKAPPID, "sdkappid is missing from the URL")
        if not sdkappid.isdigit() or int(sdkappid) != self.config.sdkappid:
            raise ApiFailure(UNKNOWN_SDKAPPID, "SDKAppID does not exist")
        if params.get("contenttype") != "json":
            raise ApiFailure(HTTP_PARSE_ERROR, "contenttype must be json")
        random = params.get("random", "")
        if not random.isdigit() or int(random) > UINT32_MAX:
            raise ApiFailure(HTTP_PARSE_ERROR, "random must be a 32-bit unsigned integer")
        identifier = params.get("identifier", "")
        if not identifier:
            raise ApiFailure(ACCOUNT_OR_SIG_ERROR, "identifier is missing from the URL")
        usersig = params.get("usersig", "")
        if not usersig:
            raise ApiFailure(EMPTY, "usersig is missing from the URL")
        verify_usersig(
            usersig,
            key=self.config.key,
            sdkappid=self.config.sdkappid,
            identifier=identifier,
            now=self.clock.now(),
        )
        if identifier != self.config.admin:
            raise ApiFailure(NEEDS_ADMIN, "this request requires App admin permission")
