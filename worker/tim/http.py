"""A small keep-alive HTTP/1.1 client for the Chat REST API: ``POST`` a JSON body to one origin.

Why not httpx: its connection pool checks every pooled socket for readability, parses the URL and builds a
request object on every call, which costs about a millisecond of CPU per call. This client does only what
the API needs, on an :class:`asyncio.Protocol` with :mod:`httptools` (llhttp) parsing the answers:

- one origin (``http`` or ``https``, host, port), ``POST`` only, answers as ``(status, body)``;
- answers framed by ``Content-Length``, chunked transfer-encoding, or (without either) read until close;
  ``Connection: close`` answers close their connection;
- a LIFO pool of idle keep-alive connections, at most ``max_connections`` open; callers beyond that wait in
  FIFO order. A connection the server closed while idle is dropped when the close is seen (no per-request
  socket polling). A request on a reused connection that fails before any byte of its answer arrived (the
  server closed the connection as we sent) is retried once on a fresh connection; nothing else is retried;
- a connect timeout and a total per-request timeout; a connection whose request timed out, failed or was
  cancelled is closed, never pooled.

What it does not do: proxies (``HTTP(S)_PROXY`` are ignored), redirects, compression, cookies, HTTP/2.

Errors are :class:`HttpTransportError`, whose message names the kind of failure and the origin only: the
request target (whose query string carries the UserSig) never appears in it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

__all__ = ["HttpPool", "HttpTransportError"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})
#: What a failed exchange raises that means "no complete answer" (anything else is cancellation or a bug).
_TRANSPORT_ERRORS = (OSError, HttpParserError, HttpParserUpgrade)


class HttpTransportError(Exception):
    """The request got no complete answer: connection refused or reset, timeout, TLS or protocol error.

    ``kind`` is a short name for the failure (an exception type name, or ``"timeout"``); ``origin`` is
    ``host:port``. Neither the message nor the attributes hold the request target.
    """

    def __init__(self, kind: str, origin: str, detail: str = "") -> None:
        self.kind = kind
        self.origin = origin
        super().__init__(f"{kind} {detail or 'talking to'} {origin}")


class _ConnectionClosed(ConnectionError):
    """The server closed the connection before the answer was complete."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, parses its answer into ``waiter``'s result."""

    __slots__ = (
        "_body",
        "_framed",
        "_headers_done",
        "_parser",
        "_pool",
        "_status",
        "alive",
        "closed",
        "idle",
        "keep_alive",
        "received",
        "transport",
        "waiter",
    )

    def __init__(self, pool: HttpPool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._parser = HttpResponseParser(self)
        self._body: list[bytes] = []
        self._status = 0
        self._framed = False  # the answer has a Content-Length or is chunked (EOF before its end is an error)
        self._headers_done = False
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.alive = False  # connected, and neither side has closed or given up on it
        self.received = False  # a byte of the current answer has arrived
        self.keep_alive = False  # the last answer allows the connection to be reused
        self.idle = False  # in the pool's idle stack
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.alive = True

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: a stray answer (e.g. a 408 before closing); never reuse
            self.abort()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._fail(exc)
            self.abort()

    def eof_received(self) -> bool | None:
        self.alive = False
        return None  # let the transport close itself; connection_lost settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.idle:
            self._pool._forget_idle(self)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if exc is None and self._headers_done and not self._framed and self._status >= 200:
                # An answer without Content-Length or chunking: it ends where the connection does.
                self.keep_alive = False
                self.waiter = None
                waiter.set_result((self._status, b"".join(self._body)))
            else:
                self._fail(exc or _ConnectionClosed("connection closed before the answer was complete"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._pool._forget(self)

    # -- httptools callbacks ------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer after the one we asked for
            self.alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._status
        if status < 200:  # an interim (1xx) answer: the real one follows
            self._body.clear()
            self._framed = self._headers_done = False
            return
        self.keep_alive = self._parser.should_keep_alive()
        waiter = self.waiter
        self.waiter = None
        body = self._body
        result = b"" if not body else body[0] if len(body) == 1 else b"".join(body)
        if waiter is not None and not waiter.done():
            waiter.set_result((status, result))

    # -- used by the pool ---------------------------------------------------------------------------------

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, bytes]]:
        """Write one request; the future resolves to its answer (or fails with the transport's error)."""
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self.waiter = waiter
        self.received = self._framed = self._headers_done = False
        self.keep_alive = False
        self._status = 0
        self._body = []
        if self.transport is None:  # pragma: no cover - the pool sends only on connected connections
            raise _ConnectionClosed("not connected")
        self.transport.write(data)
        return waiter

    def abort(self) -> None:
        """Close the connection now (unsent data is dropped); it is never reused."""
        self.alive = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        self.alive = False
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one origin, for ``POST`` requests with a JSON body.

    ``base_url`` is ``http(s)://host[:port][/prefix]``; a path prefix is put before every target.
    ``timeout_s`` bounds a whole :meth:`post` (waiting for a connection, connecting, sending, reading the
    answer); ``connect_timeout_s`` bounds opening a connection (TCP and TLS handshake). ``headers`` are
    sent with every request after the defaults (``Content-Type: application/json``), replacing any of the
    same name; ``Host``, ``Content-Length`` and ``Connection`` are set by the pool. ``ssl_context`` is for
    https only (default: :func:`ssl.create_default_context`).

    Use from one event loop. Not safe to share between threads.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        timeout_s: float,
        connect_timeout_s: float,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError("base_url must be http://host[:port] or https://host[:port]")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("base_url must not carry a query, fragment or credentials")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        self._host = parts.hostname
        self._port = parts.port or _DEFAULT_PORTS[scheme]
        host_in_header = f"[{self._host}]" if ":" in self._host else self._host
        default_port = parts.port in (None, _DEFAULT_PORTS[scheme])
        authority = host_in_header if default_port else f"{host_in_header}:{self._port}"
        self._origin = f"{host_in_header}:{self._port}"
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._max = max_connections
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s

        merged = {"content-type": ("Content-Type", "application/json")}
        for name, value in (headers or {}).items():
            if name.lower() in _FORBIDDEN_HEADERS:
                raise ValueError(f"header {name} is set by the pool")
            merged[name.lower()] = (name, value)
        lines = [f"Host: {authority}"]
        for name, value in merged.values():
            if any(c in name or c in value for c in "\r\n\0") or not name or ":" in name:
                raise ValueError(f"invalid header {name!r}")
            lines.append(f"{name}: {value}")
        lines.append("Connection: keep-alive")
        lines.append("Content-Length: ")
        # A request is b"POST " + prefix + target + _head_tail + length + b"\r\n\r\n" + body.
        self._head_start = f"POST {parts.path.rstrip('/')}".encode("ascii")
        self._head_tail = (" HTTP/1.1\r\n" + "\r\n".join(lines)).encode("latin-1")

        self._idle: list[_Connection] = []  # LIFO: the most recently used connection is the warmest
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._open = 0  # slots taken: connections open or opening, and slots handed to waiters
        self._connections: set[_Connection] = set()
        self._closed = False

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def origin(self) -> str:
        """``host:port`` of the server."""
        return self._origin

    @property
    def open_connections(self) -> int:
        """Connections open and usable right now (busy or idle)."""
        return sum(1 for conn in self._connections if conn.alive)

    @property
    def idle_connections(self) -> int:
        """Connections waiting in the pool for a request."""
        return len(self._idle)

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` to ``target`` (path and query, already percent-encoded); return (status, body).

        Raises :class:`HttpTransportError` when no complete answer arrives (any status is an answer).
        """
        if self._closed:
            raise RuntimeError("the HTTP pool is closed")
        if not target.startswith("/") or " " in target or "\r" in target or "\n" in target:
            raise ValueError("target must be an absolute path, percent-encoded")
        try:
            encoded = target.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("target must be percent-encoded ASCII") from None
        data = b"%s%s%s%d\r\n\r\n%s" % (self._head_start, encoded, self._head_tail, len(body), body)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._exchange(data)
        except TimeoutError:
            raise HttpTransportError("timeout", self._origin, f"({self._timeout_s:g}s) waiting for") from None

    async def aclose(self) -> None:
        """Close every connection and fail the callers waiting for one. Further posts raise RuntimeError."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(HttpTransportError("PoolClosed", self._origin))
        self._idle.clear()
        connections = list(self._connections)
        for conn in connections:
            conn.idle = False
            conn.abort()
        if connections:
            await asyncio.wait([conn.closed for conn in connections], timeout=1.0)

    # -- internals ----------------------------------------------------------------------------------------

    async def _exchange(self, data: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        conn, reused = await self._acquire(loop)
        try:
            answer = await conn.send(data, loop)
        except BaseException as exc:
            if reused and not conn.received and isinstance(exc, ConnectionError) and not self._closed:
                # The server closed this idle connection as we sent: it never answered. Retry once, on a new
                # connection in the same slot.
                conn.abort()
                conn = await self._connect_in_slot(loop)
                try:
                    answer = await conn.send(data, loop)
                except BaseException as again:
                    self._discard(conn)
                    if isinstance(again, _TRANSPORT_ERRORS):
                        raise HttpTransportError(type(again).__name__, self._origin) from again
                    raise
            else:
                self._discard(conn)
                if isinstance(exc, _TRANSPORT_ERRORS):
                    raise HttpTransportError(type(exc).__name__, self._origin) from exc
                raise
        if conn.keep_alive and conn.alive:
            self._release(conn)
        else:
            self._discard(conn)
        return answer

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> tuple[_Connection, bool]:
        """A connection to send on, and whether it was reused from the pool."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.idle = False
            if conn.alive:
                return conn, True
            conn.abort()  # closed, and its close not yet handled: its slot is ours now
            self._open -= 1
        if self._open < self._max:
            self._open += 1
            return await self._connect_in_slot(loop), False
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Cancelled after being handed a connection or a slot: pass it on.
                passed = waiter.result()
                if passed is None:
                    self._slot_freed()
                else:
                    self._release(passed)
            raise
        if handed is not None:
            if handed.alive:
                return handed, True
            handed.abort()
        return await self._connect_in_slot(loop), False

    async def _connect_in_slot(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """Open a connection in a slot already counted in ``_open``; give the slot back on failure."""
        conn = _Connection(self, loop)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self._ssl is None:
                    await loop.create_connection(lambda: conn, self._host, self._port)
                else:
                    await loop.create_connection(
                        lambda: conn, self._host, self._port, ssl=self._ssl, server_hostname=self._host
                    )
        except BaseException as exc:
            conn.abort()
            self._slot_freed()
            if isinstance(exc, TimeoutError):
                raise HttpTransportError(
                    "timeout", self._origin, f"({self._connect_timeout_s:g}s) connecting to"
                ) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
                raise HttpTransportError(type(exc).__name__, self._origin, "connecting to") from exc
            raise
        if self._closed:
            conn.abort()
            self._slot_freed()
            raise RuntimeError("the HTTP pool is closed")
        self._connections.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        """Give a healthy connection to the first waiter, or back to the idle stack."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self._closed:
            self._discard(conn)
            return
        conn.idle = True
        self._idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        """Close a connection that must not be reused and free its slot."""
        conn.abort()
        self._slot_freed()

    def _slot_freed(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter, who opens a connection in it
                return
        self._open -= 1

    def _forget_idle(self, conn: _Connection) -> None:
        """An idle connection was closed (by the server, or on error): drop it and free its slot."""
        conn.idle = False
        try:
            self._idle.remove(conn)
        except ValueError:  # pragma: no cover - idle is True only while it is in the stack
            return
        self._slot_freed()

    def _forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
