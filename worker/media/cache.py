"""Fetch outcomes cached by picture, so that a picture is fetched once: per process, or per fleet.

The key is the picture's UUID *and* URL (hashed): a message's sender writes both, so a UUID alone would let
someone send their own picture under the UUID of a harmless one that is already cached, and have the
harmless bytes examined instead. What is cached is the outcome: the bytes and their type, or the refusal's
reason (with its kind), for as long as the verdict's retention allows (see
:class:`~worker.media.guard.Verdict`).

- :class:`MemoryCache`: an in-process LRU with a TTL per entry, bounded in entries and bytes.
- :class:`RedisCache`: shared by every replica through Redis (``redis.asyncio``), under a key prefix, each
  entry with its TTL; entries above a size are not stored. Redis's own ``maxmemory`` policy bounds the whole.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from redis.exceptions import RedisError

from worker.media.guard import Outcome, Verdict

DEFAULT_MAX_ENTRIES: Final = 4096
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024


class CacheError(Exception):
    """The shared cache could not be read or written (the fetch goes on without it)."""


class MediaCache(Protocol):
    """Where fetch outcomes are kept."""

    #: The cache's name, a metric label ("memory", "redis").
    name: str

    async def get(self, key: str) -> Outcome | None:
        """The outcome stored under ``key``, or None. May raise :class:`CacheError`."""
        ...

    async def put(self, key: str, outcome: Outcome, ttl_s: float) -> None:
        """Keep ``outcome`` under ``key`` for ``ttl_s`` seconds. May raise :class:`CacheError`."""
        ...

    async def aclose(self) -> None:
        """Release what the cache owns."""
        ...


def cache_key(uuid: str, url: str) -> str:
    """The cache key of the picture ``uuid`` at ``url``: a hash of both."""
    return hashlib.sha256(f"{uuid}\n{url}".encode("utf-8", "surrogatepass")).hexdigest()


# encoding (Redis values) ----------------------------------------------------------------------------------

_PICTURE: Final = b"P"
_VERDICT: Final = b"V"


def encode_outcome(outcome: Outcome) -> bytes:
    """``outcome`` as stored in Redis: ``P<type>\\n<bytes>``, or
    ``V<status>\\n<kind>\\n<retention>\\n<detail>``."""
    if outcome.verdict is None:
        return _PICTURE + outcome.content_type.encode("ascii", "replace") + b"\n" + (outcome.data or b"")
    v = outcome.verdict
    return _VERDICT + "\n".join((v.status, v.kind, v.retention, v.detail)).encode("utf-8", "replace")


def decode_outcome(raw: bytes) -> Outcome | None:
    """The outcome :func:`encode_outcome` stored, or None when ``raw`` is not one (read as a miss)."""
    if raw.startswith(_PICTURE):
        content_type, sep, data = raw[1:].partition(b"\n")
        if not sep:
            return None
        return Outcome(data, content_type.decode("ascii", "replace"))
    if raw.startswith(_VERDICT):
        parts = raw[1:].decode("utf-8", "replace").split("\n", 3)
        if (
            len(parts) != 4
            or parts[0] not in ("refused", "failed")
            or parts[2] not in ("none", "short", "full")
        ):
            return None
        status, kind, retention, detail = parts
        return Outcome(verdict=Verdict(status, kind, detail, retention))  # type: ignore[arg-type]
    return None


# in process -----------------------------------------------------------------------------------------------


class MemoryCache:
    """An in-process LRU of outcomes, each with its own expiry; at most ``max_entries`` entries and
    ``max_bytes`` bytes of pictures (the least recently used go first)."""

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Outcome]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of pictures held now."""
        return self._bytes

    async def get(self, key: str) -> Outcome | None:
        """The outcome under ``key`` while it has not expired, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, outcome = entry
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return outcome

    async def put(self, key: str, outcome: Outcome, ttl_s: float) -> None:
        """Keep ``outcome`` for ``ttl_s`` seconds (nothing when it alone is over the byte bound)."""
        size = len(outcome.data or b"")
        if ttl_s <= 0 or size > self.max_bytes or self.max_entries <= 0:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl_s, outcome)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def aclose(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        _, outcome = self._entries.pop(key)
        self._bytes -= len(outcome.data or b"")


# shared ---------------------------------------------------------------------------------------------------


class RedisCache:
    """Outcomes shared by every replica through Redis: ``<prefix>:<key>``, each with its TTL. Values over
    ``max_item_bytes`` are not stored. Redis errors become :class:`CacheError`. The client must return bytes
    (``decode_responses=False``, redis-py's default)."""

    name = "redis"

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "recall:media",
        max_item_bytes: int = 8 * 1024 * 1024,
        owns_client: bool = False,
    ) -> None:
        self._redis = redis
        self.prefix = prefix
        self.max_item_bytes = max_item_bytes
        self._owns_client = owns_client

    async def aclose(self) -> None:
        """Close the Redis client when this cache created it (``owns_client``); a shared one stays open."""
        if self._owns_client:
            await self._redis.aclose()

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def get(self, key: str) -> Outcome | None:
        """The outcome under ``key``, or None (absent, expired, or not one this module wrote)."""
        try:
            raw = await self._redis.get(self._key(key))
        except (RedisError, OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"reading the media cache: {type(exc).__name__}") from exc
        if not isinstance(raw, bytes | bytearray):
            return None  # absent, or a client that decodes responses (pass one that returns bytes)
        return decode_outcome(bytes(raw))

    async def put(self, key: str, outcome: Outcome, ttl_s: float) -> None:
        """Store ``outcome`` for ``ttl_s`` seconds (rounded up to whole seconds)."""
        value = encode_outcome(outcome)
        if ttl_s <= 0 or len(value) > self.max_item_bytes:
            return
        try:
            await self._redis.set(self._key(key), value, ex=max(1, math.ceil(ttl_s)))
        except (RedisError, OSError) as exc:
            raise CacheError(f"writing the media cache: {type(exc).__name__}") from exc
