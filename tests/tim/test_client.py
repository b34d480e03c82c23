"""The REST client: URL and parameters, reply parsing, retries counted by the emulator, redaction."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import structlog

from tests.conftest import ADMIN, KEY, SDKAPPID, make_client
from tests.services import free_port
from worker.emulator.server import EmulatorThread
from worker.tim.client import RetryPolicy, TimClient, parse_reply
from worker.tim.errors import TimApiError, TimError, TimHttpError, TimProtocolError, TimTransportError
from worker.tim.regions import REGION_DOMAINS, base_url_for
from worker.tim.usersig import UserSigProvider

OK = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'


def set_faults(url: str, spec: dict[str, object]) -> None:
    httpx.post(f"{url}/_emulator/faults", json=spec).raise_for_status()


def emulator_calls(url: str, command: str) -> dict[str, int]:
    calls: dict[str, dict[str, int]] = httpx.get(f"{url}/_emulator/stats").json()["calls"]
    return calls.get(command, {})


async def test_request_carries_the_documented_url_and_parameters() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=OK)

    async with TimClient(
        sdkappid=SDKAPPID,
        key=KEY,
        admin=ADMIN,
        base_url="https://console.tim.qq.com",
        transport=httpx.MockTransport(answer),
    ) as client:
        for _ in range(50):
            await client.call("openim/admin_getroammsg", {"Operator_Account": "a"})
    request = seen[0]
    parts = urlsplit(str(request.url))
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "console.tim.qq.com",
        "/v4/openim/admin_getroammsg",
    )
    params = parse_qs(parts.query)
    assert params["sdkappid"] == [str(SDKAPPID)]
    assert params["identifier"] == [ADMIN]
    assert params["contenttype"] == ["json"]
    assert params["usersig"][0]
    assert request.method == "POST"
    assert request.read() == b'{"Operator_Account":"a"}'
    randoms = [int(parse_qs(urlsplit(str(r.url)).query)["random"][0]) for r in seen]
    assert all(0 <= r <= 4294967295 for r in randoms)
    assert len(set(randoms)) == len(randoms), "random must be fresh on every call"


def test_every_documented_region_has_a_base_url() -> None:
    assert set(REGION_DOMAINS) >= {
        "china",
        "singapore",
        "seoul",
        "tokyo",
        "frankfurt",
        "silicon-valley",
        "jakarta",
    }
    assert base_url_for("singapore") == "https://adminapisgp.im.qcloud.com"
    assert base_url_for("china", backup=True) == "https://adminapi.my-imcloud.com"
    assert base_url_for("tokyo", backup=True) == "https://adminapijpn.im.qcloud.com"
    with pytest.raises(ValueError, match="unknown Chat region 'mars'"):
        base_url_for("mars")


@pytest.mark.parametrize(
    ("status", "content", "error", "text"),
    [
        (502, b"<html>", TimHttpError, "HTTP 502"),
        (200, b"<html>", TimProtocolError, "not JSON"),
        (200, b"[1, 2]", TimProtocolError, "JSON list"),
        (200, b'{"ActionStatus":"OK"}', TimProtocolError, "ErrorCode is missing"),
        (200, b'{"ActionStatus":"FAIL","ErrorCode":"90001"}', TimProtocolError, "not an integer"),
        (200, b'{"ActionStatus":"FAIL","ErrorCode":0}', TimProtocolError, "ActionStatus is not OK"),
        (
            200,
            b'{"ActionStatus":"FAIL","ErrorCode":70009,"ErrorInfo":"bad sig"}',
            TimApiError,
            "70009: bad sig",
        ),
    ],
)
def test_parse_reply_types_every_failure(
    status: int, content: bytes, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        parse_reply("admin_getroammsg", status, content)


def test_retryable_codes_are_the_documented_ones() -> None:
    assert TimApiError("c", 91000, "").retryable
    assert TimApiError("c", 10002, "").retryable
    assert TimApiError("c", 60007, "").retryable
    assert not TimApiError("c", 70009, "").retryable
    assert not TimApiError("c", 90001, "").retryable
    assert TimHttpError("c", 503).retryable
    assert not TimHttpError("c", 404).retryable


async def test_91000_10002_and_502_are_retried_until_success(
    emulator: EmulatorThread, client: TimClient
) -> None:
    set_faults(emulator.url, {"fail_next": {"account_import": [91000, 10002, "http_502"]}})
    await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
    assert emulator_calls(emulator.url, "account_import") == {"91000": 1, "10002": 1, "http_502": 1, "0": 1}
    assert client.stats.retries["account_import"] == 3
    assert client.stats.attempts["account_import"] == {"91000": 1, "10002": 1, "http_502": 1, "0": 1}


async def test_bad_signature_is_not_retried(emulator: EmulatorThread) -> None:
    async with make_client(emulator.url, key="wrong-key-wrong-key") as client:
        with pytest.raises(TimApiError) as caught:
            await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
    assert caught.value.code == 70009
    assert emulator_calls(emulator.url, "account_import") == {"70009": 1}


async def test_retries_are_bounded_and_the_last_error_is_raised(emulator: EmulatorThread) -> None:
    set_faults(emulator.url, {"commands": {"account_import": {"error_rates": {"91000": 1.0}}}})
    policy = RetryPolicy(max_attempts=3, max_total_s=10, backoff_initial_s=0.01, backoff_max_s=0.02)
    async with make_client(emulator.url, retry=policy) as client:
        with pytest.raises(TimApiError) as caught:
            await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
    assert caught.value.code == 91000
    assert emulator_calls(emulator.url, "account_import") == {"91000": 3}


async def test_total_retry_time_is_bounded(emulator: EmulatorThread) -> None:
    set_faults(emulator.url, {"commands": {"account_import": {"error_rates": {"91000": 1.0}}}})
    policy = RetryPolicy(max_attempts=100, max_total_s=0.5, backoff_initial_s=0.1, backoff_max_s=0.2)
    async with make_client(emulator.url, retry=policy) as client:
        with pytest.raises(TimApiError):
            await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
    assert emulator_calls(emulator.url, "account_import")["91000"] < 10


async def test_timeouts_are_retried(emulator: EmulatorThread) -> None:
    set_faults(
        emulator.url,
        {"commands": {"account_import": {"timeout_s": 2}}, "fail_next": {"account_import": ["timeout"]}},
    )
    async with make_client(emulator.url, timeout_s=0.3) as client:
        await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
        assert client.stats.attempts["account_import"] == {"transport": 1, "0": 1}


async def test_connection_refused_is_a_transport_error() -> None:
    policy = RetryPolicy(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01)
    async with make_client(f"http://127.0.0.1:{free_port()}", retry=policy) as client:
        with pytest.raises(TimTransportError, match="ConnectionRefusedError"):
            await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
        assert client.stats.attempts["account_import"] == {"transport": 2}


@pytest.mark.parametrize("through", ["lean pool", "httpx"])
async def test_key_and_usersig_never_reach_logs_or_errors(
    emulator: EmulatorThread,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    through: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()], logger_factory=structlog.PrintLoggerFactory()
    )
    other_key = "another-key-123456"
    one_try = RetryPolicy(max_attempts=1)
    sigs = {name: UserSigProvider(SDKAPPID, key, ADMIN) for name, key in (("good", KEY), ("bad", other_key))}
    errors: list[str] = []
    # an injected transport makes the client use httpx (as an egress proxy does), which logs its requests
    http: dict[str, Any] = {"transport": httpx.AsyncHTTPTransport()} if through == "httpx" else {}
    try:
        set_faults(emulator.url, {"fail_next": {"account_import": [91000, "http_502"]}})
        async with make_client(emulator.url, usersig=sigs["good"], **http) as client:
            await client.call("im_open_login_svc/account_import", {"UserID": "alice"})
        for failing in (
            make_client(emulator.url, key=other_key, usersig=sigs["bad"], retry=one_try, **http),
            make_client(f"http://127.0.0.1:{free_port()}", usersig=sigs["good"], retry=one_try, **http),
        ):
            async with failing:
                with pytest.raises(TimError) as caught:
                    await failing.call("im_open_login_svc/account_import", {"UserID": "alice"})
            errors += [str(caught.value), repr(caught.value)]
    finally:
        structlog.reset_defaults()
    captured = capsys.readouterr()
    text = "\n".join([*errors, caplog.text, captured.out, captured.err])
    assert "tim.retry" in captured.out, "the retries should have been logged"
    if through == "httpx":
        assert "HTTP Request" in caplog.text, "httpx should have logged its requests"
        assert "usersig=***" in caplog.text
    for secret in (KEY, other_key, sigs["good"].get(), sigs["bad"].get()):
        assert secret not in text
