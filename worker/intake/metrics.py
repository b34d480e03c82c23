"""The intake's Prometheus metrics, in their own registry (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.metricdocs import metrics_table_of


class IntakeMetrics:
    """Every metric of the intake process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reports = Counter(
            "recall_intake_reports_total",
            "Report requests answered, by outcome (stored, invalid, unauthorized, refused, replayed, "
            "rate_limited, unavailable).",
            ["outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "recall_intake_request_seconds",
            "Time to answer one report request.",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.batch_size = Histogram(
            "recall_intake_batch_reports",
            "Reports stored per transaction (group commit).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
            registry=r,
        )
        self.jobs_published = Counter(
            "recall_intake_jobs_published_total", "Jobs the outbox relay published (confirmed).", registry=r
        )
        self.publish_failures = Counter(
            "recall_intake_publish_failures_total", "Outbox publishes that failed (retried).", registry=r
        )
        self.cases_settled = Counter(
            "recall_intake_cases_settled_total", "Cases whose job finished, by state.", ["state"], registry=r
        )
        self.deliveries = Counter(
            "recall_intake_deliveries_total",
            "Outcome deliveries tried, by kind (webhook, notice) and result (delivered, retry, dead).",
            ["kind", "result"],
            registry=r,
        )
        self.backlog = Gauge(
            "recall_intake_backlog",
            "Open cases, unpublished jobs, pending and dead deliveries.",
            ["what"],
            registry=r,
        )


def intake_metrics_table() -> str:
    """The Markdown table of the intake's metrics, as the README shows it."""
    return metrics_table_of(IntakeMetrics().registry)
