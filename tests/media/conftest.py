"""Fixtures of the media fetcher's tests: the picture host, fetchers bound to it, and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.media.server import MediaServer, serve
from worker.media.fetch import MediaFetcher
from worker.media.metrics import MediaMetrics

#: The picture host is local: these let the fetcher reach it.
LOCAL_HOSTS = ("127.0.0.1", "localhost")
LOCAL_NETWORKS = ("127.0.0.0/8", "::1")

MakeFetcher = Callable[..., MediaFetcher]


@pytest.fixture(scope="session")
def media_server() -> Iterator[MediaServer]:
    """The picture host over http, for the session."""
    with serve() as server:
        yield server


@pytest.fixture
async def make_fetcher() -> AsyncIterator[MakeFetcher]:
    """Builds fetchers that may reach the local picture host (unless told otherwise), each with its own
    metrics registry; every one is closed afterwards."""
    made: list[MediaFetcher] = []

    def make(**options: Any) -> MediaFetcher:
        options.setdefault("allowed_hosts", LOCAL_HOSTS)
        options.setdefault("allowed_networks", LOCAL_NETWORKS)
        options.setdefault("timeout_s", 3.0)
        options.setdefault("metrics", MediaMetrics())
        fetcher = MediaFetcher(**options)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.aclose()
