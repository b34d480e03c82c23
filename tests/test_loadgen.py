"""The benchmarks' load generator (``tests/bench/loadgen.py``) against the bare 202 endpoint: it counts what
comes back, and answers other than 202 fail the run instead of passing for a fast one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench.harness import service_process
from tests.bench.loadgen import (
    ROOT,
    LoadFailed,
    ProtocolError,
    _parse_head,
    raw_request,
    run_loadgen,
    write_requests,
)
from tests.services import free_port


@pytest.fixture(scope="module")
def bare_url() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tests.bench.bare_endpoint", "--port", str(port)]
    with service_process(command, f"{url}/healthz", cwd=ROOT, startup_s=20):
        yield url


def _file(tmp_path: Path, url: str, paths: list[str]) -> Path:
    file = tmp_path / "requests.bin"
    headers = {"Content-Type": "application/json"}
    write_requests(
        file, (raw_request(url, "POST", p, headers, b'{"n": %d}' % n) for n, p in enumerate(paths))
    )
    return file


def test_closed_loop_counts_every_answer(bare_url: str, tmp_path: Path) -> None:
    result = run_loadgen(bare_url, _file(tmp_path, bare_url, ["/v1/reports"] * 800), "closed", connections=8)
    assert result["sent"] == 800
    assert result["statuses"] == {"202": 800}
    assert result["unanswered"] == 0
    assert result["rate"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_open_loop_offers_the_rate(bare_url: str, tmp_path: Path) -> None:
    file = _file(tmp_path, bare_url, ["/v1/reports"] * 400)
    result = run_loadgen(bare_url, file, "open", connections=16, rate=400)
    assert result["statuses"] == {"202": 400}
    assert result["offered"] == 400
    assert 0.9 <= result["elapsed_s"] < 3  # 400 requests due over one second
    assert result["late"] >= 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_wrong_status_fails_the_run(bare_url: str, tmp_path: Path) -> None:
    file = _file(tmp_path, bare_url, ["/no-such-path"] * 200)
    with pytest.raises(LoadFailed, match="not answered 202") as failed:
        run_loadgen(bare_url, file, "closed", connections=4)
    assert failed.value.result is not None
    assert failed.value.result["statuses"] == {"404": 200}


def test_a_few_wrong_statuses_are_counted_and_tolerated_up_to_a_thousandth(
    bare_url: str, tmp_path: Path
) -> None:
    file = _file(tmp_path, bare_url, ["/v1/reports"] * 1999 + ["/no-such-path"])
    result = run_loadgen(bare_url, file, "closed", connections=4)
    assert result["statuses"] == {"202": 1999, "404": 1}
    file = _file(tmp_path, bare_url, ["/v1/reports"] * 998 + ["/no-such-path"] * 2)
    with pytest.raises(LoadFailed) as failed:
        run_loadgen(bare_url, file, "closed", connections=4)
    assert failed.value.result is not None
    assert failed.value.result["statuses"] == {"202": 998, "404": 2}


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "without Content-Length"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "not an HTTP/1.1 status line"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "informational"),
    ],
)
def test_unexpected_responses_stop_the_generator(head: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        _parse_head(head)


def test_a_closing_server_is_followed() -> None:
    assert _parse_head(b"HTTP/1.1 202 Accepted\r\nContent-Length: 7\r\nConnection: close\r\n\r\n") == (
        202,
        7,
        True,
    )
