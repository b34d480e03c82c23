"""The media fetcher's Prometheus metrics, in whichever registry they are given (the worker's, once wired).

Counters end in ``_total``; labels are bounded (an outcome, a reason kind, a cache name), never a URL or
a host.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from worker.metricdocs import metrics_table_of


class MediaMetrics:
    """Every metric of the media fetcher, registered in ``registry`` (a fresh one when none is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.fetches = Counter(
            "recall_media_fetches_total",
            "Pictures asked of the media fetcher, by outcome (ok, refused, failed), cache hits included.",
            ["outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "recall_media_refusals_total",
            "Pictures not handed on, by reason kind (host, address, redirect, size, timeout, type, bomb, "
            "http, ...).",
            ["kind"],
            registry=r,
        )
        self.bytes = Counter(
            "recall_media_bytes_total", "Bytes of media bodies downloaded (not from the cache).", registry=r
        )
        self.cache_hits = Counter(
            "recall_media_cache_hits_total",
            "Pictures answered from the cache, by cache (memory, redis).",
            ["cache"],
            registry=r,
        )
        self.cache_errors = Counter(
            "recall_media_cache_errors_total",
            "Media cache reads or writes that failed (the fetch went on without the cache).",
            registry=r,
        )
        self.duration = Histogram(
            "recall_media_fetch_duration_seconds",
            "Time of one picture's download (redirects included; cache hits excluded).",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def count(self, outcome: str, kind: str) -> None:
        """Count one picture's outcome ("ok", "refused", "failed") and, unless ok, its reason kind."""
        self.fetches.labels(outcome=outcome).inc()
        if outcome != "ok":
            self.refusals.labels(kind=kind).inc()


def media_metrics_table() -> str:
    """The Markdown table of the media fetcher's metrics, as the README shows it."""
    return metrics_table_of(MediaMetrics().registry)
