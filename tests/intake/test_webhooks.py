"""Outcome webhooks against a real HTTP receiver that checks signatures the way an app backend would."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.services import free_port
from worker.intake.signing import BadSignature
from worker.intake.webhooks import (
    MAX_RETRY_AFTER_S,
    Attempt,
    backoff_s,
    parse_retry_after,
    post_webhook,
    verify_webhook,
    webhook_headers,
)

SECRET = "whsec-3f9a1c7e5b2d4f6a8c0e"
PAYLOAD = {
    "delivery_id": "dlv-000042",
    "report_id": "rep-2026-000123",
    "job_id": "r-2026-000123",
    "outcome": "actioned",
    "note": "举报已处理",
}


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    problem: str = ""


@dataclass
class Receiver:
    """An app backend on a thread: verifies every delivery, records it, answers as the path says."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        try:
            verify_webhook(SECRET, request.headers, path, body)
        except BadSignature as exc:
            self.received.append(Received(path, dict(request.headers), body, False, str(exc)))
            return PlainTextResponse(str(exc), status_code=401)
        self.received.append(Received(path, dict(request.headers), body, True))
        return await self.answer(request.path_params["behaviour"])

    async def answer(self, behaviour: str) -> Response:
        if behaviour == "hang":
            await asyncio.to_thread(self.release.wait, 10)
            return PlainTextResponse("too late")
        make = ANSWERS.get(behaviour)
        return make() if make else PlainTextResponse("no such behaviour", status_code=404)


def _maintenance() -> Response:
    when = formatdate(time.time() + 30, usegmt=True)
    return PlainTextResponse("back soon", status_code=503, headers={"Retry-After": when})


#: What the receiver answers, by the last segment of the path.
ANSWERS: dict[str, Callable[[], Response]] = {
    "ok": lambda: PlainTextResponse("stored"),
    "no-content": lambda: Response(status_code=204),
    # A misconfigured receiver that dumps its settings, secret included, into its error page.
    "fail": lambda: PlainTextResponse(f"Traceback ... WEBHOOK_SECRET={SECRET!r}", status_code=500),
    "refuse": lambda: PlainTextResponse("unknown outcome field\n\nrejected", status_code=400),
    "busy": lambda: PlainTextResponse("slow down", status_code=429, headers={"Retry-After": "7"}),
    "maintenance": _maintenance,
    "moved": lambda: Response(status_code=302, headers={"Location": "/hooks/ok"}),
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    app = Starlette(routes=[Route("/hooks/{behaviour}", state.handle, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host=state.host, port=0, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    state.port = int(server.servers[0].sockets[0].getsockname()[1])
    yield state
    state.release.set()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fresh(receiver: Receiver) -> Receiver:
    receiver.received.clear()
    return receiver


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def post(http: httpx.AsyncClient, url: str, **kwargs: object) -> Attempt:
    options: dict[str, object] = {"timeout_s": 5.0, **kwargs}
    secret = str(options.pop("secret", SECRET))
    payload = options.pop("payload", PAYLOAD)
    assert isinstance(payload, dict)
    return await post_webhook(http, url, secret, payload, **options)  # type: ignore[arg-type]


# answers ------------------------------------------------------------------------------------------------


async def test_a_2xx_is_ok_and_the_receiver_checks_the_signature(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/ok")
    assert attempt == Attempt(ok=True, status=200, error="", retryable=False, retry_after_s=None)
    [seen] = fresh.received
    assert seen.verified, seen.problem
    assert seen.body == orjson.dumps(PAYLOAD)
    assert orjson.loads(seen.body) == PAYLOAD
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-recall-delivery"] == "dlv-000042"
    assert seen.headers["x-recall-key"] == "webhook"
    assert seen.headers["x-recall-signature"].startswith("v1=")
    assert SECRET not in str(seen.headers)


async def test_any_2xx_is_ok(http: httpx.AsyncClient, fresh: Receiver) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/no-content")
    assert (attempt.ok, attempt.status, attempt.error) == (True, 204, "")


async def test_the_query_string_is_not_signed_so_a_url_with_one_still_verifies(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/ok?tenant=7&src=recall")
    assert attempt.ok
    assert fresh.received[0].verified
    assert fresh.received[0].path == "/hooks/ok"


async def test_a_payload_without_a_delivery_id_has_no_delivery_header(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/ok", payload={"report_id": "rep-1"})
    assert attempt.ok
    assert "x-recall-delivery" not in fresh.received[0].headers


async def test_a_5xx_is_retryable_and_the_error_never_holds_the_secret(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/fail")
    assert not attempt.ok
    assert attempt.status == 500
    assert attempt.retryable
    assert attempt.error.startswith("HTTP 500 Internal Server Error")
    assert SECRET not in attempt.error
    assert "WEBHOOK_SECRET=" in attempt.error, "the receiver's own words are quoted, the secret masked"
    assert len(attempt.error) <= 220


async def test_a_4xx_is_not_retryable(http: httpx.AsyncClient, fresh: Receiver) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/refuse")
    assert (attempt.ok, attempt.status, attempt.retryable) == (False, 400, False)
    assert attempt.error == "HTTP 400 Bad Request: unknown outcome field rejected"
    assert attempt.retry_after_s is None


async def test_429_is_retryable_after_the_receivers_delay(http: httpx.AsyncClient, fresh: Receiver) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/busy")
    assert (attempt.ok, attempt.status, attempt.retryable) == (False, 429, True)
    assert attempt.retry_after_s == 7.0
    assert "HTTP 429" in attempt.error


async def test_a_retry_after_date_becomes_seconds(http: httpx.AsyncClient, fresh: Receiver) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/maintenance")
    assert (attempt.status, attempt.retryable) == (503, True)
    assert attempt.retry_after_s is not None
    assert 27 <= attempt.retry_after_s <= 31


async def test_a_wrong_secret_is_refused_by_the_receiver_and_not_retried(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    other = "whsec-not-the-receivers-one"
    attempt = await post(http, f"{fresh.url}/hooks/ok", secret=other)
    assert (attempt.ok, attempt.status, attempt.retryable) == (False, 401, False)
    assert "does not match" in attempt.error
    assert other not in attempt.error
    assert not fresh.received[0].verified


async def test_a_stale_signature_is_refused(http: httpx.AsyncClient, fresh: Receiver) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/ok", now=time.time() - 3600)
    assert (attempt.ok, attempt.status) == (False, 401)
    assert "X-Recall-Timestamp" in fresh.received[0].problem


async def test_redirects_are_not_followed(http: httpx.AsyncClient, fresh: Receiver) -> None:
    attempt = await post(http, f"{fresh.url}/hooks/moved")
    assert (attempt.ok, attempt.status, attempt.retryable) == (False, 302, False)
    assert "redirects are not followed" in attempt.error
    assert len(fresh.received) == 1


# no answer ----------------------------------------------------------------------------------------------


async def test_a_receiver_that_hangs_times_out_and_is_retryable(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    started = time.monotonic()
    attempt = await post(http, f"{fresh.url}/hooks/hang", timeout_s=0.3)
    assert time.monotonic() - started < 2.0
    assert (attempt.ok, attempt.status, attempt.retryable) == (False, None, True)
    assert "timed out" in attempt.error
    assert "0.3 s" in attempt.error


async def test_connection_refused_is_retryable(http: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/ok?token={SECRET}"
    attempt = await post(http, url)
    assert (attempt.ok, attempt.status, attempt.retryable) == (False, None, True)
    assert attempt.error == "connection refused"


@pytest.mark.parametrize("url", ["ftp://example.com/hooks", "http://", "not a url"])
async def test_a_url_that_cannot_work_is_not_retryable(http: httpx.AsyncClient, url: str) -> None:
    attempt = await post(http, url)
    assert (attempt.ok, attempt.retryable) == (False, False)
    assert "not a valid http(s) URL" in attempt.error


async def test_no_error_ever_holds_the_secret(http: httpx.AsyncClient, fresh: Receiver) -> None:
    closed = free_port()
    urls = [
        f"{fresh.url}/hooks/{behaviour}?key={SECRET}"
        for behaviour in ("fail", "refuse", "busy", "moved", "hang", "missing")
    ] + [f"http://127.0.0.1:{closed}/{SECRET}", f"ftp://{SECRET}/x"]
    attempts = [await post(http, url, timeout_s=0.3) for url in urls]
    assert all(not a.ok and a.error for a in attempts)
    for attempt in attempts:
        assert SECRET not in attempt.error
        assert len(attempt.error) <= 220


async def test_a_delivery_id_that_cannot_be_a_header_is_a_caller_error(
    http: httpx.AsyncClient, fresh: Receiver
) -> None:
    with pytest.raises(ValueError, match="delivery_id"):
        await post(http, f"{fresh.url}/hooks/ok", payload={"delivery_id": "a\nb"})
    assert fresh.received == []


# the receiving side, pure -------------------------------------------------------------------------------


def test_verify_webhook_refuses_a_changed_body() -> None:
    body = orjson.dumps(PAYLOAD)
    headers = {k.lower(): v for k, v in webhook_headers(SECRET, "/hooks", body, PAYLOAD).items()}
    verify_webhook(SECRET, headers, "/hooks", body)
    with pytest.raises(BadSignature, match="does not match"):
        verify_webhook(SECRET, headers, "/hooks", body.replace(b"actioned", b"dismissed"))
    with pytest.raises(BadSignature, match="does not match"):
        verify_webhook(SECRET, headers, "/other", body)
    with pytest.raises(BadSignature, match="more than"):
        verify_webhook(SECRET, headers, "/hooks", body, now=time.time() + 3600)


# pure pieces --------------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_without_jitter() -> None:
    delays = [backoff_s(n, rand=lambda: 0.5) for n in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    assert backoff_s(3, base_s=1.5, rand=lambda: 0.5) == 6.0


def test_backoff_caps() -> None:
    assert backoff_s(10, rand=lambda: 0.5) == 600.0
    assert backoff_s(30, cap_s=300.0, rand=lambda: 0.5) == 300.0
    assert backoff_s(10**6, rand=lambda: 0.5) == 600.0, "a huge attempt number must not overflow"


def test_backoff_stays_within_the_jitter_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(1, 40):
        nominal = min(600.0, 2.0 * 2 ** (attempt - 1))
        samples = [backoff_s(attempt, rand=rng.random) for _ in range(200)]
        assert all(nominal * 0.8 <= s <= nominal * 1.2 for s in samples)
        assert max(samples) - min(samples) > nominal * 0.2, "jitter must spread retries"
    assert backoff_s(4, rand=lambda: 0.0) == pytest.approx(16 * 0.8)
    assert backoff_s(4, rand=lambda: 0.999999) == pytest.approx(16 * 1.2, rel=1e-5)
    assert backoff_s(4, jitter=0.0, rand=lambda: 0.0) == 16.0


@pytest.mark.parametrize(("attempt", "jitter"), [(0, 0.2), (-1, 0.2), (1, 1.0), (1, -0.1)])
def test_backoff_refuses_nonsense(attempt: int, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"attempt|jitter"):
        backoff_s(attempt, jitter=jitter)


def test_retry_after_reads_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 2.5 ", now=now) == 2.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("nan", now=now) is None
    assert parse_retry_after("99999999", now=now) == MAX_RETRY_AFTER_S
    assert parse_retry_after(formatdate(now + 120, usegmt=True), now=now) == 120.0
    assert parse_retry_after(formatdate(now - 120, usegmt=True), now=now) == 0.0
