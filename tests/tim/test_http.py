"""The keep-alive HTTP/1.1 pool (worker.tim.http) over real sockets: small asyncio servers started here, each
scripted per request, and the in-process emulator. No mocks."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tests.conftest import ADMIN, KEY, SDKAPPID
from tests.services import free_port
from worker.emulator.server import EmulatorThread
from worker.tim.http import HttpPool, HttpTransportError
from worker.tim.usersig import UserSigProvider

SECRET = "usersig=eJyrVkrOz9UrSS0uUbICM5VKS1KLlKwMjUwMDSyNLM0MTAyNTM"
TARGET = f"/v4/openim/admin_getroammsg?sdkappid=1&identifier=admin&{SECRET}&random=7&contenttype=json"


def answer(body: bytes = b"{}", *, status: str = "200 OK", headers: str = "") -> bytes:
    """A Content-Length answer."""
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


@dataclass
class Request:
    """A request as the server read it."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    connection: int  # which accepted connection (0-based) carried it
    index: int  # its position on that connection (0-based)


@dataclass
class Exchange:
    """What the server's script sees and does for one request."""

    request: Request
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


#: A script answers one request; it returns False to close the connection afterwards.
Script = Callable[[Exchange], Awaitable[bool]]


async def ok_script(exchange: Exchange) -> bool:
    await exchange.send(answer(b'{"echo":%d}' % len(exchange.request.body)))
    return True


@dataclass
class Server:
    """A TCP (optionally TLS) HTTP/1.1 server on 127.0.0.1 that runs ``script`` for every request."""

    script: Script = ok_script
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0  # accepted so far
    open: int = 0  # open right now
    most_open: int = 0
    closed_by_client: int = 0  # connections that ended with EOF from the client between requests
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        number = self.connections
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            index = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial:
                        self.closed_by_client += 1
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ")
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, version, headers, body, number, index)
                self.requests.append(request)
                index += 1
                if not await self.script(Exchange(request, writer)):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        except asyncio.CancelledError:  # stop(): the test is over
            return
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Start servers (``await serve(script)``); all are stopped after the test."""
    servers: list[Server] = []

    async def start(script: Script = ok_script, ssl_context: ssl.SSLContext | None = None) -> Server:
        server = await Server(script, ssl_context).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def pool_for(url: str, **options: object) -> HttpPool:
    settings: dict[str, object] = {"max_connections": 4, "timeout_s": 5.0, "connect_timeout_s": 2.0}
    settings.update(options)
    return HttpPool(url, **settings)  # type: ignore[arg-type]


async def eventually(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition did not come true in time")


async def step_until_done(task: asyncio.Task[object]) -> None:
    """Yield to the loop one step at a time until ``task`` is done: this test resumes right after the step
    that finished it, before the callbacks that step scheduled (e.g. waking a waiter) have run."""
    for _ in range(10_000):
        if task.done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the task did not finish")


def assert_secret_free(error: BaseException) -> None:
    """Neither the error nor anything chained to it mentions the target."""
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen), *map(str, seen.args)):
            assert "usersig" not in text
            assert SECRET not in text
            assert "/v4/" not in text
        seen = seen.__cause__ or seen.__context__


# -- framing --------------------------------------------------------------------------------------------


async def test_content_length_answer_and_the_request_as_sent(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve()
    async with pool_for(server.url + "/prefix/", headers={"X-Trace": "abc"}) as pool:
        status, body = await pool.post(TARGET, b'{"a":1}')
    assert (status, body) == (200, b'{"echo":7}')
    [request] = server.requests
    assert request.method == "POST"
    assert request.target == "/prefix" + TARGET
    assert request.version == "HTTP/1.1"
    assert request.body == b'{"a":1}'
    assert request.headers == {
        "host": f"127.0.0.1:{server.port}",
        "content-type": "application/json",
        "x-trace": "abc",
        "connection": "keep-alive",
        "content-length": "7",
    }


async def test_default_port_is_left_out_of_host_and_headers_replace_defaults() -> None:
    pool = HttpPool(
        "http://example.invalid",
        max_connections=1,
        timeout_s=1,
        connect_timeout_s=1,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert pool.origin == "example.invalid:80"
    head = pool._head_tail.decode()
    assert "Host: example.invalid\r\n" in head
    assert "content-type: application/json; charset=utf-8\r\n" in head
    assert "Content-Type: application/json\r\n" not in head
    await pool.aclose()


@pytest.mark.parametrize(
    ("base_url", "options"),
    [
        ("ftp://host", {}),
        ("http://", {}),
        ("http://host?x=1", {}),
        ("http://user:pw@host", {}),
        ("http://host", {"max_connections": 0}),
        ("http://host", {"timeout_s": 0}),
        ("http://host", {"headers": {"Host": "other"}}),
        ("http://host", {"headers": {"X-Bad": "a\r\nInjected: 1"}}),
    ],
)
def test_bad_settings_are_refused(base_url: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        pool_for(base_url, **options)


@pytest.mark.parametrize("target", ["no-slash", "/a b", "/a\r\nX: 1", "/é"])
async def test_bad_targets_are_refused_without_echoing_them(target: str) -> None:
    async with pool_for("http://127.0.0.1:9") as pool:
        with pytest.raises(ValueError, match="target") as caught:
            await pool.post(target, b"{}")
    assert target not in str(caught.value)


async def test_chunked_answer_in_pieces_then_reuse(serve: Callable[..., Awaitable[Server]]) -> None:
    async def chunked(exchange: Exchange) -> bool:
        await exchange.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
        )
        await asyncio.sleep(0.01)
        await exchange.send(b"\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.01)
        await exchange.send(b"6\r\n, worl\r\n1\r\nd\r\n0\r\n")
        await asyncio.sleep(0.01)
        await exchange.send(b"\r\n")
        return True

    server = await serve(chunked)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"hello, world")
        assert await pool.post(TARGET, b"{}") == (200, b"hello, world")
    assert server.connections == 1


async def test_connection_close_answer_is_not_reused(serve: Callable[..., Awaitable[Server]]) -> None:
    async def close(exchange: Exchange) -> bool:
        await exchange.send(answer(b"bye", headers="Connection: close\r\n"))
        return False

    server = await serve(close)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"bye")
        assert pool.idle_connections == 0
        assert await pool.post(TARGET, b"{}") == (200, b"bye")
        await eventually(lambda: pool.open_connections == 0)
    assert server.connections == 2


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_answer_without_length_is_read_until_close(
    serve: Callable[..., Awaitable[Server]], version: str
) -> None:
    async def until_close(exchange: Exchange) -> bool:
        await exchange.send(f"HTTP/{version} 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ".encode())
        await asyncio.sleep(0.02)
        await exchange.send(b"second part")
        return False

    server = await serve(until_close)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"first part, second part")
        assert await pool.post(TARGET, b"{}") == (200, b"first part, second part")
        assert pool.idle_connections == 0
    assert server.connections == 2


async def test_interim_answer_is_skipped_and_statuses_are_returned(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def interim(exchange: Exchange) -> bool:
        await exchange.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await exchange.send(answer(b"busy", status="503 Service Unavailable"))
        return True

    server = await serve(interim)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (503, b"busy")
        assert await pool.post(TARGET, b"{}") == (503, b"busy")
    assert server.connections == 1


async def test_empty_and_large_bodies(serve: Callable[..., Awaitable[Server]]) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, arriving in many reads

    async def sized(exchange: Exchange) -> bool:
        size = len(exchange.request.body)
        await exchange.send(answer(b"" if size == 0 else big))
        return True

    server = await serve(sized)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"") == (200, b"")
        assert await pool.post(TARGET, big) == (200, big)
    assert [len(r.body) for r in server.requests] == [0, len(big)]


async def test_answer_cut_short_is_an_error(serve: Callable[..., Awaitable[Server]]) -> None:
    async def short(exchange: Exchange) -> bool:
        await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        return False

    server = await serve(short)
    async with pool_for(server.url) as pool:
        with pytest.raises(HttpTransportError) as caught:
            await pool.post(TARGET, b"{}")
    assert_secret_free(caught.value)
    assert len(server.requests) == 1  # not retried: the server had started answering


async def test_garbage_answer_is_a_protocol_error(serve: Callable[..., Awaitable[Server]]) -> None:
    async def garbage(exchange: Exchange) -> bool:
        await exchange.send(b"SPDY/9 what\r\n\r\n")
        return True

    server = await serve(garbage)
    async with pool_for(server.url) as pool:
        with pytest.raises(HttpTransportError, match="HttpParser") as caught:
            await pool.post(TARGET, b"{}")
        assert pool.open_connections == 0
    assert_secret_free(caught.value)


# -- keep-alive -----------------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve()
    async with pool_for(server.url) as pool:
        for n in range(20):
            assert await pool.post(TARGET, b"x" * n) == (200, b'{"echo":%d}' % n)
        assert (pool.open_connections, pool.idle_connections) == (1, 1)
    assert server.connections == 1
    assert [r.index for r in server.requests] == list(range(20))


async def test_idle_connection_closed_by_the_server_is_dropped(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def then_close(exchange: Exchange) -> bool:
        await exchange.send(answer(b"ok"))  # keep-alive answer, but the server drops the connection
        return False

    server = await serve(then_close)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
        await eventually(lambda: pool.open_connections == 0)  # seen by the protocol, no polling
        assert pool.idle_connections == 0
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
    assert server.connections == 2
    assert len(server.requests) == 2


async def test_reused_connection_closed_unanswered_is_retried_once(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def race(exchange: Exchange) -> bool:
        if exchange.request.connection == 0 and exchange.request.index == 1:
            return False  # idle timeout at the very moment the request arrived: closed without an answer
        await exchange.send(answer(b"ok"))
        return True

    server = await serve(race)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
        assert pool.open_connections == 1
    assert server.connections == 2
    assert [(r.connection, r.index) for r in server.requests] == [(0, 0), (0, 1), (1, 0)]


async def test_fresh_connection_closed_unanswered_is_not_retried(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def hang_up(exchange: Exchange) -> bool:
        return False

    server = await serve(hang_up)
    async with pool_for(server.url) as pool:
        with pytest.raises(HttpTransportError) as caught:
            await pool.post(TARGET, b"{}")
        assert pool.open_connections == 0
    assert_secret_free(caught.value)
    assert server.connections == 1


async def test_reused_connection_closed_twice_fails_after_one_retry(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def first_only(exchange: Exchange) -> bool:
        if exchange.request.connection == 0 and exchange.request.index == 0:
            await exchange.send(answer(b"ok"))
            return True
        return False

    server = await serve(first_only)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
        with pytest.raises(HttpTransportError):
            await pool.post(TARGET, b"{}")
    assert len(server.requests) == 3  # the first, the one on the reused connection, one retry


@pytest.mark.parametrize("later", [False, True])
async def test_stray_bytes_after_an_answer_drop_the_connection(
    serve: Callable[..., Awaitable[Server]], later: bool
) -> None:
    async def chatty(exchange: Exchange) -> bool:
        stray = answer(b"timeout", status="408 Request Timeout")
        if exchange.request.connection == 0:
            if later:  # arrives while the connection is idle in the pool
                await exchange.send(answer(b"ok"))
                await asyncio.sleep(0.05)
                await exchange.send(stray)
            else:  # arrives right behind the answer, in the same read
                await exchange.send(answer(b"ok") + stray)
            await asyncio.sleep(0.05)
            return True
        await exchange.send(answer(b"ok"))
        return True

    server = await serve(chatty)
    async with pool_for(server.url) as pool:
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
        await asyncio.sleep(0.1)
        assert (pool.open_connections, pool.idle_connections) == (0, 0)
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
    assert [r.connection for r in server.requests] == [0, 1]


# -- failures -------------------------------------------------------------------------------------------


async def test_connection_refused_names_the_origin_not_the_target() -> None:
    port = free_port()
    async with pool_for(f"http://127.0.0.1:{port}") as pool:
        with pytest.raises(HttpTransportError) as caught:
            await pool.post(TARGET, b"{}")
        assert pool.open_connections == 0
    error = caught.value
    assert error.kind == "ConnectionRefusedError"
    assert error.origin == f"127.0.0.1:{port}"
    assert str(error) == f"ConnectionRefusedError connecting to 127.0.0.1:{port}"
    assert_secret_free(error)


async def test_unknown_host_is_a_transport_error() -> None:
    async with pool_for("http://no-such-host.invalid") as pool:
        with pytest.raises(HttpTransportError, match=r"connecting to no-such-host\.invalid:80") as caught:
            await pool.post(TARGET, b"{}")
    assert_secret_free(caught.value)


async def test_timeout_closes_the_connection_and_the_next_call_uses_a_new_one(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def slow_first(exchange: Exchange) -> bool:
        if exchange.request.connection == 0:
            await asyncio.sleep(10)
        await exchange.send(answer(b"ok"))
        return True

    server = await serve(slow_first)
    async with pool_for(server.url, timeout_s=0.2) as pool:
        with pytest.raises(HttpTransportError) as caught:
            await pool.post(TARGET, b"{}")
        assert caught.value.kind == "timeout"
        assert str(caught.value) == f"timeout (0.2s) waiting for 127.0.0.1:{server.port}"
        assert_secret_free(caught.value)
        assert pool.open_connections == 0
        assert await pool.post(TARGET, b"{}") == (200, b"ok")
    assert server.connections == 2


@pytest.mark.parametrize(
    ("connect_timeout_s", "timeout_s", "message"),
    [(0.2, 5.0, r"^timeout \(0\.2s\) connecting to"), (5.0, 0.2, r"^timeout \(0\.2s\) waiting for")],
)
async def test_connect_timeout_covers_the_tls_handshake(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], connect_timeout_s: float, timeout_s: float, message: str
) -> None:
    _, client_context = tls
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # plain TCP that never answers the TLS hello

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with pool_for(
            f"https://127.0.0.1:{port}",
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            ssl_context=client_context,
        ) as pool:
            with pytest.raises(HttpTransportError, match=message):
                await pool.post(TARGET, b"{}")
            assert pool.open_connections == 0
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_closed_pool_refuses_posts(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve()
    pool = pool_for(server.url)
    await pool.post(TARGET, b"{}")
    await pool.aclose()
    assert pool.open_connections == 0
    await eventually(lambda: server.closed_by_client == 1)
    with pytest.raises(RuntimeError, match="closed"):
        await pool.post(TARGET, b"{}")


# -- the pool -------------------------------------------------------------------------------------------


async def test_max_connections_under_50_concurrent_posts(serve: Callable[..., Awaitable[Server]]) -> None:
    async def slow(exchange: Exchange) -> bool:
        await asyncio.sleep(0.01)
        await exchange.send(answer(exchange.request.body))
        return True

    server = await serve(slow)
    async with pool_for(server.url, max_connections=5) as pool:
        answers = await asyncio.gather(*(pool.post(TARGET, b"%d" % n) for n in range(50)))
        assert pool.open_connections == 5
    assert answers == [(200, b"%d" % n) for n in range(50)]
    assert server.connections == 5
    assert server.most_open == 5


async def test_waiters_are_served_in_order(serve: Callable[..., Awaitable[Server]]) -> None:
    finished: list[int] = []

    async def slow(exchange: Exchange) -> bool:
        await asyncio.sleep(0.005)
        await exchange.send(answer(exchange.request.body))
        return True

    server = await serve(slow)
    async with pool_for(server.url, max_connections=1) as pool:

        async def one(n: int) -> None:
            await pool.post(TARGET, b"%d" % n)
            finished.append(n)

        tasks = []
        for n in range(10):
            tasks.append(asyncio.create_task(one(n)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    assert finished == list(range(10))
    assert [r.body for r in server.requests] == [b"%d" % n for n in range(10)]
    assert server.connections == 1


async def test_idle_connections_are_reused_last_in_first_out(serve: Callable[..., Awaitable[Server]]) -> None:
    async def slow(exchange: Exchange) -> bool:
        await asyncio.sleep(0.01 * int(exchange.request.body))
        await exchange.send(answer(b"ok"))
        return True

    server = await serve(slow)
    async with pool_for(server.url, max_connections=3) as pool:
        await asyncio.gather(*(pool.post(TARGET, b"%d" % n) for n in (1, 2, 3)))  # finish in that order
        assert pool.idle_connections == 3
        await pool.post(TARGET, b"0")
    last = server.requests[-1]
    assert last.connection == server.requests[2].connection  # the one that came back last


async def test_closed_connections_pass_their_slot_to_waiters(serve: Callable[..., Awaitable[Server]]) -> None:
    async def close(exchange: Exchange) -> bool:
        await exchange.send(answer(exchange.request.body, headers="Connection: close\r\n"))
        return False

    server = await serve(close)
    async with pool_for(server.url, max_connections=2) as pool:
        answers = await asyncio.gather(*(pool.post(TARGET, b"%d" % n) for n in range(10)))
    assert answers == [(200, b"%d" % n) for n in range(10)]
    assert server.connections == 10
    assert server.most_open <= 2


async def test_aclose_fails_the_calls_in_flight_and_waiting(serve: Callable[..., Awaitable[Server]]) -> None:
    async def held(exchange: Exchange) -> bool:
        await asyncio.sleep(10)
        return True

    server = await serve(held)
    pool = pool_for(server.url, max_connections=1)
    first = asyncio.create_task(pool.post(TARGET, b"1"))
    second = asyncio.create_task(pool.post(TARGET, b"2"))
    await eventually(lambda: len(server.requests) == 1)
    await pool.aclose()
    with pytest.raises(HttpTransportError, match="PoolClosed"):
        await second
    with pytest.raises(HttpTransportError, match="ConnectionClosed"):
        await first
    assert pool.open_connections == 0
    assert len(server.requests) == 1


# -- cancellation ---------------------------------------------------------------------------------------


async def test_cancelled_request_closes_its_connection(serve: Callable[..., Awaitable[Server]]) -> None:
    release = asyncio.Event()

    async def held(exchange: Exchange) -> bool:
        await release.wait()
        await exchange.send(answer(b"late %d" % exchange.request.connection))
        return True

    server = await serve(held)
    async with pool_for(server.url, max_connections=1) as pool:
        task = asyncio.create_task(pool.post(TARGET, b"{}"))
        await eventually(lambda: len(server.requests) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (pool.open_connections, pool.idle_connections) == (0, 0)
        release.set()
        # The slot is free again, and the next call does not read the cancelled call's answer.
        assert await pool.post(TARGET, b"{}") == (200, b"late 1")
    assert server.connections == 2


async def test_cancelled_waiter_gives_up_its_place(serve: Callable[..., Awaitable[Server]]) -> None:
    release = asyncio.Event()

    async def held(exchange: Exchange) -> bool:
        await release.wait()
        await exchange.send(answer(exchange.request.body))
        return True

    server = await serve(held)
    async with pool_for(server.url, max_connections=1) as pool:
        first = asyncio.create_task(pool.post(TARGET, b"1"))
        waiting = asyncio.create_task(pool.post(TARGET, b"2"))
        third = asyncio.create_task(pool.post(TARGET, b"3"))
        await eventually(lambda: len(server.requests) == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert await first == (200, b"1")
        assert await third == (200, b"3")
        assert pool.open_connections == 1
    assert [r.body for r in server.requests] == [b"1", b"3"]
    assert server.connections == 1


async def test_waiter_cancelled_after_being_handed_a_connection_passes_it_on(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve()
    async with pool_for(server.url, max_connections=1) as pool:
        first = asyncio.create_task(pool.post(TARGET, b"1"))
        second = asyncio.create_task(pool.post(TARGET, b"2"))
        third = asyncio.create_task(pool.post(TARGET, b"3"))
        await step_until_done(first)
        # ``first`` finished and handed its connection to ``second``, which has not run yet: cancel it now.
        second.cancel()
        assert await first == (200, b'{"echo":1}')
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await third == (200, b'{"echo":1}')
        assert pool.open_connections == 1
    assert server.connections == 1


async def test_waiter_cancelled_after_being_handed_a_slot_passes_it_on(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def close(exchange: Exchange) -> bool:
        await exchange.send(answer(exchange.request.body, headers="Connection: close\r\n"))
        return False

    server = await serve(close)
    async with pool_for(server.url, max_connections=1) as pool:
        first = asyncio.create_task(pool.post(TARGET, b"1"))
        second = asyncio.create_task(pool.post(TARGET, b"2"))
        third = asyncio.create_task(pool.post(TARGET, b"3"))
        await step_until_done(first)
        second.cancel()  # it was handed the freed slot, and has not run yet
        assert await first == (200, b"1")
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await third == (200, b"3")
    assert [r.body for r in server.requests] == [b"1", b"3"]


# -- TLS ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command line tool to make a self-signed certificate")
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_tls_with_a_self_signed_certificate(
    serve: Callable[..., Awaitable[Server]], tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls
    server = await serve(ssl_context=server_context)
    assert server.url.startswith("https://")
    async with pool_for(server.url, ssl_context=client_context) as pool:
        for n in range(5):
            assert await pool.post(TARGET, b"x" * n) == (200, b'{"echo":%d}' % n)
        answers = await asyncio.gather(*(pool.post(TARGET, b"{}") for _ in range(10)))
        assert set(answers) == {(200, b'{"echo":2}')}
    assert server.connections <= 4
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"


async def test_tls_refuses_an_untrusted_certificate(
    serve: Callable[..., Awaitable[Server]], tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, _ = tls
    server = await serve(ssl_context=server_context)
    async with pool_for(server.url) as pool:  # the default context: system CAs only
        with pytest.raises(HttpTransportError, match="SSLCertVerificationError connecting to") as caught:
            await pool.post(TARGET, b"{}")
        assert pool.open_connections == 0
    assert_secret_free(caught.value)
    assert server.requests == []


# -- the emulator ---------------------------------------------------------------------------------------


async def test_real_calls_against_the_emulator(emulator: EmulatorThread) -> None:
    sig = UserSigProvider(SDKAPPID, KEY, ADMIN).get()

    def target(path: str, random: int) -> str:
        query = f"sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig}&random={random}&contenttype=json"
        return f"/v4/{path}?{query}"

    async with pool_for(emulator.url, max_connections=8) as pool:
        status, body = await pool.post(
            target("im_open_login_svc/multiaccount_import", 1), orjson.dumps({"Accounts": ["u1", "u2"]})
        )
        assert status == 200
        assert orjson.loads(body)["ErrorCode"] == 0
        history = orjson.dumps({"Operator_Account": "u1", "Peer_Account": "u2", "MaxCnt": 10, "MinTime": 0,
                                "MaxTime": 2**31 - 1})  # fmt: skip
        answers = await asyncio.gather(
            *(pool.post(target("openim/admin_getroammsg", n), history) for n in range(40))
        )
        assert {status for status, _ in answers} == {200}
        assert all(orjson.loads(body)["ErrorCode"] == 0 for _, body in answers)
        assert pool.open_connections <= 8
        status, body = await pool.post(target("openim/no_such_api", 99), b"{}")
        assert status == 200 or status >= 400
