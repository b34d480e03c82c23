"""Outcome webhooks against a real HTTP receiver that checks signatures the way an app backend would."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from email.utils import formatdate

import httpx
import orjson
import pytest

from tests.intake.receiver import SECRET, Receiver
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

PAYLOAD = {
    "delivery_id": "dlv-000042",
    "report_id": "rep-2026-000123",
    "job_id": "r-2026-000123",
    "outcome": "actioned",
    "note": "举报已处理",
}


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
