"""The intake's HTTP API (Starlette): file a report, ask what became of it, Tencent's callbacks, probes.

``POST /v1/reports`` answers ``202`` only once the report is stored (committed). Everything a request can
get wrong is answered with a JSON error naming it, and nothing is stored: ``401`` signature, ``413`` body
too large, ``400`` not JSON, ``422`` a field (or a refused report: a self-report, a protected suspect),
``409`` a replayed request, ``429`` the reporter's limit (with ``Retry-After``), ``503`` the database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.intake.batcher import Batcher
from worker.intake.metrics import IntakeMetrics
from worker.intake.model import MAX_BODY_BYTES, PROTECTED, SELF_REPORT, InvalidReport, parse_report
from worker.intake.openapi import openapi_document
from worker.intake.signing import BadSignature, verify
from worker.intake.store import Incoming, IntakeStore, Outcome, Replayed, Stored

log = structlog.get_logger("recall.intake")

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Gatekeeping:
    """Who may file reports, and which reports are refused outright."""

    keys: Mapping[str, str]  # key id -> secret; two during a rotation
    protected: frozenset[str] = frozenset()
    skew_s: int = 300


class JSONResponse(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error: ``{"error": code, "message": ..., ...}``."""
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


class _Refused(Exception):
    """A request answered before anything is stored."""

    def __init__(self, outcome: str, response: Response) -> None:
        self.outcome = outcome
        self.response = response


def _refuse(outcome: str, status: int, code: str, message: str, **extra: Any) -> _Refused:
    return _Refused(outcome, error(status, code, message, **extra))


def _invalid(problems: list[dict[str, str]]) -> _Refused:
    first = problems[0]
    status = 400 if first["field"] == "(body)" else 422
    message = f"{first['field']}: {first['message']}"
    return _refuse("invalid", status, "invalid_report", message, field=first["field"], problems=problems)


def _answer_stored(outcome: Outcome) -> tuple[str, Response]:
    """The answer to a report the store took (or refused as a replay, or over the reporter's limit)."""
    if isinstance(outcome, Stored):
        body = {"report_id": outcome.report_id, "status": "queued", "case_id": outcome.case_id}
        headers = {"Location": f"/v1/reports/{outcome.report_id}"}
        return "stored", JSONResponse(body, status_code=202, headers=headers)
    if isinstance(outcome, Replayed):
        message = "this signed request was served before; sign each request afresh"
        return "replayed", error(409, "replayed", message, report_id=outcome.report_id)
    message = "this reporter filed too many reports; try later"
    return "rate_limited", error(429, "rate_limited", message, retry_after=outcome.retry_after_s)


class _Reports:
    """``POST /v1/reports`` and ``GET /v1/reports/{id}``."""

    def __init__(
        self,
        store: IntakeStore,
        gate: Gatekeeping,
        batcher: Batcher[Incoming, Outcome],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.gate = gate
        self.batcher = batcher
        self.clock = clock

    async def incoming(self, request: Request) -> Incoming:
        """The request's report, checked; :class:`_Refused` with the answer if it is not acceptable."""
        declared = request.headers.get("content-length", "")
        too_large = f"a report is at most {MAX_BODY_BYTES} bytes"
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _refuse("invalid", 413, "too_large", too_large)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise _refuse("invalid", 413, "too_large", too_large)
        now = self.clock()
        try:
            verified = verify(
                self.gate.keys,
                request.headers,
                "POST",
                request.url.path,
                body,
                now=now,
                skew_s=self.gate.skew_s,
            )
        except BadSignature as exc:
            raise _refuse("unauthorized", 401, "unauthorized", str(exc)) from None
        try:
            report = parse_report(body)
        except InvalidReport as exc:
            raise _invalid(exc.problems) from None
        if report.reported_at > now + self.gate.skew_s:
            raise _invalid([{"field": "reported_at", "message": "is in the future"}])
        if report.reporter == report.suspect:
            raise _refuse("refused", 422, "refused", SELF_REPORT, field="suspect")
        if report.suspect in self.gate.protected:
            raise _refuse("refused", 422, "refused", PROTECTED, field="suspect")
        return Incoming(report, verified.signature, verified.key_id)

    async def file(self, request: Request) -> tuple[str, Response]:
        """Check, store, answer."""
        try:
            incoming = await self.incoming(request)
        except _Refused as refused:
            return refused.outcome, refused.response
        try:
            outcome = await self.batcher.submit(incoming)
        except Exception as exc:  # noqa: BLE001 - the database is down or refused: say so; nothing is stored
            log.warning(
                "intake_store_failed", error=type(exc).__name__, detail=str(exc).splitlines()[0][:200]
            )
            return "unavailable", error(503, "unavailable", "reports cannot be stored now", retry_after=5)
        return _answer_stored(outcome)

    async def status(self, request: Request) -> Response:
        """What became of one report."""
        try:
            verify(
                self.gate.keys,
                request.headers,
                "GET",
                request.url.path,
                b"",
                now=self.clock(),
                skew_s=self.gate.skew_s,
            )
        except BadSignature as exc:
            return error(401, "unauthorized", str(exc))
        report_id = request.path_params["report_id"]
        if len(report_id) > 40:
            return error(404, "not_found", "no such report")
        try:
            view = await anyio.to_thread.run_sync(self.store.report_status, report_id)
        except Exception:  # noqa: BLE001 - the database is down: say so
            return error(503, "unavailable", "the report store cannot be read now", retry_after=5)
        if view is None:
            return error(404, "not_found", "no such report")
        return JSONResponse(view)


def build_intake_app(
    store: IntakeStore,
    gate: Gatekeeping,
    *,
    metrics: IntakeMetrics | None = None,
    tencent_callback: Endpoint | None = None,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
    clock: Callable[[], float] = time.time,
    max_batch: int = 200,
) -> Starlette:
    """The intake app over ``store``. ``background`` (the outbox relay) runs for the app's lifetime."""
    observed = metrics or IntakeMetrics()

    async def write(items: Sequence[Incoming]) -> Sequence[Outcome]:
        observed.batch_size.observe(len(items))
        return await store.write_batch_async(items)

    batcher: Batcher[Incoming, Outcome] = Batcher(write, max_batch=max_batch)
    reports = _Reports(store, gate, batcher, clock)

    async def file_report(request: Request) -> Response:
        started = time.perf_counter()
        outcome, response = await reports.file(request)
        observed.reports.labels(outcome).inc()
        observed.request_duration.observe(time.perf_counter() - started)
        return response

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            with anyio.fail_after(2):
                await anyio.to_thread.run_sync(store.ping)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "unready", "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(observed.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        batcher.start()
        async with anyio.create_task_group() as tasks:
            if background is not None:
                tasks.start_soon(background)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        await batcher.stop()
        await store.aclose()

    routes = [
        Route("/v1/reports", file_report, methods=["POST"]),
        Route("/v1/reports/{report_id}", reports.status, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    if tencent_callback is not None:
        routes.append(Route("/v1/callbacks/tencent", tencent_callback, methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher = batcher
    app.state.metrics = observed
    return app
