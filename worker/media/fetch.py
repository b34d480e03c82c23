"""The media fetcher: gets the pictures of reported messages for the media rules, safely, or says why not.

:class:`MediaFetcher` never raises for anything the network or the remote does: each picture comes back as
:class:`~rules.media.Media` with its bytes, or with none and a short reason the media rules record
("refused: host not allowed (evil.example)", "refused: private address 10.0.0.5", "failed: HTTP 404").

Safe by construction:

- **Which URLs.** http and https only, no credentials in the URL, and only hosts on the allow list (exact
  names or ``*.domain`` wildcards; by default Tencent Cloud's object storage, see :mod:`worker.media.allow`).
  Redirects are followed by hand, at most three, each hop checked like the first; one that leaves the
  allow list is refused.
- **Which addresses, and no DNS rebinding.** The HTTP client (httpcore's connection pool, with its TLS and
  HTTP/1.1 handling unchanged) is given a network backend of ours, :class:`GuardedBackend`: when the pool
  opens a connection, the backend resolves the host through the event loop (``loop.getaddrinfo``), refuses
  unless *every* address it resolves to is public or in an allowed network, and then connects to exactly
  those checked addresses, by address. There is no second lookup between the check and the connection,
  so a name that answers a public address to the check and a private one to the connect cannot happen. For
  https nothing else changes: TLS is negotiated over that socket with the host name as SNI, and the
  certificate is verified against the host name, so pinning costs no verification. Pooled connections are
  keyed by scheme, host name and port, and each was checked when it was opened. Proxy settings in the
  environment are ignored (a proxy would resolve names itself).
- **How much.** At most ``max_bytes`` (a larger Content-Length is refused before reading, and the body is
  counted while it streams) and at most ``timeout_s`` in all for one picture (connect, redirects and the
  whole body: a server that drips a byte at a time, under every per-read timeout, is still cut off).
- **What.** The type is sniffed from the bytes (PNG, JPEG, GIF, WEBP, BMP); the declared type is not
  trusted. The picture's dimensions are read from its header, and Pillow opens the header (never decoding
  the pixels) under its decompression-bomb guard; a picture of more than ``max_pixels`` pixels is refused.

Outcomes are cached by UUID and URL (:mod:`worker.media.cache`) and counted (:mod:`worker.media.metrics`).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import httpcore
import httpx
import structlog
from prometheus_client import CollectorRegistry

from rules.media import Media, MediaRef
from worker.config import Settings
from worker.media.allow import (
    TENCENT_MEDIA_HOSTS,
    IPNetwork,
    address_refusal,
    parse_host_patterns,
    parse_networks,
)
from worker.media.cache import CacheError, MediaCache, MemoryCache, RedisCache, cache_key
from worker.media.guard import (
    REDIRECT_STATUSES,
    Outcome,
    Target,
    Verdict,
    check_url,
    content_length,
    failed,
    follow_redirect,
    http_failure,
    outcome_of,
    refused,
    seconds_text,
    size_text,
)
from worker.media.image import DEFAULT_MAX_PIXELS, check_image
from worker.media.metrics import MediaMetrics

log = structlog.get_logger("worker.media")

DEFAULT_MAX_BYTES: Final = 5 * 1024 * 1024
DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_CONCURRENCY: Final = 8
DEFAULT_CACHE_TTL_S: Final = 86400.0
#: How long a transient failure (timeout, connection error, HTTP 5xx) is cached.
DEFAULT_TRANSIENT_TTL_S: Final = 60.0
#: A cache read or write slower than this counts as a cache error and the fetch goes on without it.
CACHE_TIMEOUT_S: Final = 1.0
#: After a cache error, the cache is left alone this long (a Redis outage must not slow every fetch).
CACHE_BACKOFF_S: Final = 30.0
USER_AGENT: Final = b"recall-worker-media/1"

#: Resolves a host name to its addresses (as strings), like ``loop.getaddrinfo``; raises :class:`Blocked`.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Blocked(Exception):
    """Raised inside the HTTP client when a connection may not be opened; carries the verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to for a TCP connection, in the resolver's order, through the
    event loop; :class:`Blocked` ("failed: could not resolve …") when it resolves to none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise Blocked(failed("dns", f"could not resolve {host[:80]}")) from None
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Blocked(failed("dns", f"could not resolve {host[:80]}"))
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to checked addresses: it resolves the host itself, refuses
    the connection unless every address is allowed, and connects to those very addresses."""

    def __init__(
        self,
        allowed_networks: Sequence[IPNetwork] = (),
        *,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allowed_networks = tuple(allowed_networks)
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address, connect to the first checked address that answers."""
        addresses = await self._resolve(host, port)
        for address in addresses:
            why = address_refusal(address, self.allowed_networks)
            if why is not None:
                raise Blocked(refused("address", why))
        error: Exception = Blocked(failed("network", f"could not connect to {host[:80]}"))
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address.split("%", 1)[0],
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: pictures come over TCP."""
        raise Blocked(refused("url", "unix sockets are not allowed"))

    async def sleep(self, seconds: float) -> None:
        """Sleep as the inner backend does."""
        await self._inner.sleep(seconds)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class MediaFetcher:
    """Fetches pictures for the media rules: allow-listed, size- and time-capped, cached, counted.

    ``fetch_many`` is the worker pipeline's media source (``Callable[[Sequence[MediaRef]],
    Awaitable[Mapping[str, Media]]]``). Use as ``async with MediaFetcher(...) as fetcher`` or call
    :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = TENCENT_MEDIA_HOSTS,
        allowed_networks: Iterable[str | IPNetwork] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cache: MediaCache | None = None,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        transient_ttl_s: float = DEFAULT_TRANSIENT_TTL_S,
        metrics: MediaMetrics | None = None,
        resolver: Resolver = resolve,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if max_bytes < 1 or timeout_s <= 0 or concurrency < 1 or max_pixels < 1:
            raise ValueError("max_bytes, timeout_s, concurrency and max_pixels must be positive")
        self.allowed_hosts = parse_host_patterns(allowed_hosts)
        self.allowed_networks = parse_networks(
            str(n) if not isinstance(n, str) else n for n in allowed_networks
        )
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.max_pixels = max_pixels
        self.cache: MediaCache = cache if cache is not None else MemoryCache()
        self.cache_ttl_s = cache_ttl_s
        self.transient_ttl_s = min(transient_ttl_s, cache_ttl_s)
        self.metrics = metrics if metrics is not None else MediaMetrics()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._cache_down_until = 0.0
        self._timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=concurrency,
            max_keepalive_connections=concurrency,
            keepalive_expiry=30.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=GuardedBackend(self.allowed_networks, resolver=resolver),
        )

    async def __aenter__(self) -> MediaFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (and the cache's client, when the cache owns one)."""
        await self._pool.aclose()
        await self.cache.aclose()

    # the public calls -----------------------------------------------------------------------------------

    async def fetch_many(self, refs: Sequence[MediaRef]) -> dict[str, Media]:
        """Every picture of ``refs`` by UUID, fetched at most ``concurrency`` at a time; a UUID given twice
        is fetched once. A UUID given with two different URLs is refused (which bytes would be examined
        is otherwise the sender's choice). Never raises for anything the network or the remote does."""
        by_uuid: dict[str, MediaRef] = {}
        conflicting: set[str] = set()
        for ref in refs:
            seen = by_uuid.setdefault(ref.uuid, ref)
            if seen.url != ref.url:
                conflicting.add(ref.uuid)
        results: dict[str, Media] = {}
        for uuid in conflicting:
            verdict = refused("conflict", "one UUID with several URLs")
            self.metrics.count(verdict.status, verdict.kind)
            results[uuid] = Media(uuid, None, verdict.reason)
        wanted = [ref for uuid, ref in by_uuid.items() if uuid not in conflicting]
        fetched = await asyncio.gather(*(self.fetch(ref) for ref in wanted))
        results.update((media.uuid, media) for media in fetched)
        return {uuid: results[uuid] for uuid in by_uuid}

    async def fetch(self, ref: MediaRef) -> Media:
        """The picture ``ref`` names, or why there is none. Never raises for anything the network or the
        remote does (only cancellation goes through)."""
        try:
            outcome = await self._outcome(ref)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fetch is never fatal; the scan records the reason
            log.exception("media fetch error", uuid=ref.uuid)
            outcome = outcome_of(failed("error", f"internal error ({type(exc).__name__})", "none"))
        self.metrics.count(outcome.status, outcome.kind)
        if outcome.verdict is not None:
            log.info("media not fetched", uuid=ref.uuid, kind=ref.kind, reason=outcome.verdict.reason)
        return outcome.media(ref.uuid)

    # the steps ------------------------------------------------------------------------------------------

    async def _outcome(self, ref: MediaRef) -> Outcome:
        target = check_url(ref.url, self.allowed_hosts)
        if isinstance(target, Verdict):
            return outcome_of(target)
        key = cache_key(ref.uuid, ref.url)
        cached = await self._cache_get(key)
        if cached is not None:
            self.metrics.cache_hits.labels(cache=self.cache.name).inc()
            return cached
        async with self._semaphore:
            started = time.monotonic()
            outcome = await self._download(target)
            self.metrics.duration.observe(time.monotonic() - started)
        ttl = self._ttl(outcome)
        if ttl > 0:
            await self._cache_put(key, outcome, ttl)
        return outcome

    def _ttl(self, outcome: Outcome) -> float:
        if outcome.verdict is None or outcome.verdict.retention == "full":
            return self.cache_ttl_s
        return self.transient_ttl_s if outcome.verdict.retention == "short" else 0.0

    def _cache_usable(self) -> bool:
        return time.monotonic() >= self._cache_down_until

    def _cache_failed(self, exc: Exception) -> None:
        self.metrics.cache_errors.inc()
        self._cache_down_until = time.monotonic() + CACHE_BACKOFF_S
        log.warning("media cache unavailable", error=str(exc) or "timed out", retry_in_s=CACHE_BACKOFF_S)

    async def _cache_get(self, key: str) -> Outcome | None:
        if not self._cache_usable():
            return None
        try:
            async with asyncio.timeout(CACHE_TIMEOUT_S):
                return await self.cache.get(key)
        except (CacheError, TimeoutError) as exc:
            self._cache_failed(exc)
            return None

    async def _cache_put(self, key: str, outcome: Outcome, ttl_s: float) -> None:
        if not self._cache_usable():
            return
        try:
            async with asyncio.timeout(CACHE_TIMEOUT_S):
                await self.cache.put(key, outcome, ttl_s)
        except (CacheError, TimeoutError) as exc:
            self._cache_failed(exc)

    async def _download(self, target: Target) -> Outcome:  # noqa: PLR0911 - one return per failure
        """Download under the total time cap, mapping every network outcome to an :class:`Outcome`."""
        timed_out = refused("timeout", f"timed out after {seconds_text(self.timeout_s)}", "short")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(target)
        except TimeoutError:
            return outcome_of(timed_out)
        except Blocked as exc:
            return outcome_of(exc.verdict)
        except httpcore.TimeoutException:
            return outcome_of(timed_out)
        except httpcore.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                return outcome_of(failed("tls", f"TLS certificate not valid for {target.host[:80]}"))
            return outcome_of(failed("network", f"could not connect to {target.host[:80]}"))
        except (httpcore.NetworkError, httpcore.RemoteProtocolError):
            return outcome_of(failed("network", "connection broken"))
        except httpcore.ProtocolError:
            return outcome_of(failed("network", "not a valid HTTP answer"))
        except httpcore.UnsupportedProtocol:
            return outcome_of(refused("url", "unsupported URL"))

    async def _follow(self, first: Target) -> Outcome:
        target = first
        for hop in itertools.count(1):
            url = httpcore.URL(
                scheme=target.scheme.encode(),
                host=target.host.encode("ascii"),
                port=target.port,
                target=target.target,
            )
            headers = [
                (b"Host", target.authority.encode("ascii")),
                (b"User-Agent", USER_AGENT),
                (b"Accept", b"image/*"),
                (b"Accept-Encoding", b"identity"),
            ]
            async with self._pool.stream(
                "GET", url, headers=headers, extensions={"timeout": self._timeouts}
            ) as answer:
                if answer.status in REDIRECT_STATUSES:
                    following = follow_redirect(
                        target, _header(answer.headers, b"location"), hop, self.allowed_hosts
                    )
                    if isinstance(following, Verdict):
                        return outcome_of(following)
                    target = following
                    continue
                if answer.status != 200:
                    return outcome_of(http_failure(answer.status))
                declared = _header(answer.headers, b"content-type") or ""
                too_big = outcome_of(refused("size", f"body over {size_text(self.max_bytes)}", "full"))
                length = content_length(_header(answer.headers, b"content-length"))
                if length is not None and length > self.max_bytes:
                    return too_big
                body = bytearray()
                async for chunk in answer.aiter_stream():
                    body += chunk
                    self.metrics.bytes.inc(len(chunk))
                    if len(body) > self.max_bytes:
                        return too_big
            return self._judge(bytes(body), declared)
        raise AssertionError("unreachable")  # pragma: no cover

    def _judge(self, body: bytes, declared: str) -> Outcome:
        checked = check_image(body, declared, self.max_pixels)
        if not checked.ok:
            return outcome_of(refused(checked.kind, checked.detail, "full"))
        return Outcome(body, checked.content_type)


def fetcher_from_settings(
    settings: Settings, *, redis: Any = None, registry: CollectorRegistry | None = None
) -> MediaFetcher:
    """The fetcher the settings describe. Its cache is Redis (shared by the fleet, under
    ``<queue_prefix>:media:``) when ``redis`` (a ``redis.asyncio`` client returning bytes) is given or
    ``RECALL_REDIS_URL`` is set (then the fetcher owns and closes the client), else in process. Its
    metrics go into ``registry`` (a fresh one when None)."""
    cache: MediaCache
    if redis is not None or settings.redis_url:
        owns = redis is None
        if redis is None:
            import redis.asyncio as aioredis  # noqa: PLC0415 - only when Redis is configured

            url = settings.redis_url or ""
            redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        cache = RedisCache(
            redis,
            prefix=f"{settings.queue_prefix}:media",
            max_item_bytes=settings.media_max_bytes + 256,
            owns_client=owns,
        )
    else:
        cache = MemoryCache()
    return MediaFetcher(
        allowed_hosts=settings.media_allowed_hosts,
        allowed_networks=settings.media_allowed_networks,
        max_bytes=settings.media_max_bytes,
        timeout_s=settings.media_timeout_s,
        concurrency=settings.media_concurrency,
        cache=cache,
        cache_ttl_s=settings.media_cache_ttl_s,
        metrics=MediaMetrics(registry),
    )
