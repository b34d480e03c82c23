"""Health, readiness and Prometheus metrics, served over HTTP by the worker process.

- ``/healthz`` (liveness): the consume loop has ticked recently; a stuck loop fails it.
- ``/readyz`` (readiness): connected to the broker, rule sets loaded, credentials accepted by the Chat API,
  not shutting down.
- ``/metrics``: Prometheus text format; counters end in ``_total``, durations are ``_seconds`` histograms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from worker.config import Settings
from worker.consumer import WorkerState
from worker.results import JobResult

STUCK_AFTER_S = 60.0


class Metrics:
    """Every metric of the worker, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter("recall_jobs_total", "Jobs finished, by final status.", ["status"], registry=r)
        self.job_duration = Histogram(
            "recall_job_duration_seconds",
            "Time of one job attempt.",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.job_retries = Counter(
            "recall_job_retries_total", "Job attempts that failed and were requeued.", registry=r
        )
        self.dead_lettered = Counter(
            "recall_jobs_dead_lettered_total",
            "Jobs sent to the dead-letter queue, by reason.",
            ["reason"],
            registry=r,
        )
        self.in_flight = Gauge("recall_jobs_in_flight", "Jobs being worked on now.", registry=r)
        self.recalls = Counter(
            "recall_recalls_total",
            "Messages recalled or found already recalled, by conversation type and result.",
            ["conversation", "result"],
            registry=r,
        )
        self.rule_matches = Counter(
            "recall_rule_matches_total", "Rule matches, by rule id.", ["rule_id"], registry=r
        )
        self.api_calls = Counter(
            "recall_tim_calls_total",
            "Chat REST API attempts, by command and ErrorCode (or http_NNN, transport).",
            ["command", "code"],
            registry=r,
        )
        self.api_latency = Histogram(
            "recall_tim_call_duration_seconds",
            "Chat REST API latency of one attempt.",
            ["command"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.api_retries = Counter(
            "recall_tim_retries_total", "Chat REST API calls retried.", ["command"], registry=r
        )
        self.results_repeated = Counter(
            "recall_results_repeated_total",
            "Results published again for a job the ledger had already settled (a redelivery).",
            registry=r,
        )
        self.credentials_ok = Gauge(
            "recall_credentials_ok",
            "1 when the Chat API accepted the credentials at the last check, 0 when it refused them.",
            registry=r,
        )
        self.credentials_ok.set(float("nan"))  # unknown until the first check answers: not a 0 to alert on
        self.credential_errors = Counter(
            "recall_credential_errors_total",
            "Credential errors (70001, 70003, 70009, 70013, 70014, ...) from the Chat API, by code.",
            ["code"],
            registry=r,
        )
        self.rate_waited = Counter(
            "recall_tim_rate_limit_wait_seconds_total",
            "Time every call spent queued for its rate-limiter slot.",
            ["command"],
            registry=r,
        )
        self.rate_limit_answers = Counter(
            "recall_tim_rate_limited_total",
            "Rate-limit answers (60007, 60011, 60018, 60019): each lowers the rate and is waited out.",
            ["command"],
            registry=r,
        )
        self.rate_current = Gauge(
            "recall_tim_rate_limit_rate",
            "Calls/s the command's limiter spaces calls for now (the adaptive rate, fleet-wide with Redis).",
            ["command"],
            registry=r,
        )
        self.rate_waiting = Gauge(
            "recall_tim_rate_limit_waiting",
            "Calls of this process queued for their rate-limiter slot, as of the last call.",
            ["command"],
            registry=r,
        )

    # worker hooks

    def job_finished(self, result: JobResult, dead_reason: str | None) -> None:
        self.jobs.labels(result.status).inc()
        self.job_duration.observe(result.duration_s)
        if dead_reason:
            self.dead_lettered.labels(dead_reason).inc()
        conversation = str((result.conversation or {}).get("type", "unknown"))
        if result.recalled:
            self.recalls.labels(conversation, "recalled").inc(len(result.recalled))
        if result.already_recalled:
            self.recalls.labels(conversation, "already_recalled").inc(len(result.already_recalled))
        if result.failed:
            self.recalls.labels(conversation, "failed").inc(len(result.failed))
        for match in result.matches:
            self.rule_matches.labels(match.rule_id).inc()

    def job_retried(self) -> None:
        self.job_retries.inc()

    def result_repeated(self) -> None:
        self.results_repeated.inc()

    # credential gate hooks

    def credentials_checked(self, ok: bool) -> None:
        self.credentials_ok.set(1 if ok else 0)

    def credential_error(self, code: int) -> None:
        self.credential_errors.labels(str(code)).inc()

    # Chat REST client hooks (CallObserver)

    def attempt(self, command: str, outcome: str, latency_s: float) -> None:
        self.api_calls.labels(command, outcome).inc()
        self.api_latency.labels(command).observe(latency_s)

    def retry(self, command: str) -> None:
        self.api_retries.labels(command).inc()

    def rate_wait(self, command: str, seconds: float) -> None:
        if seconds > 0:
            self.rate_waited.labels(command).inc(seconds)

    def rate_limited(self, command: str) -> None:
        self.rate_limit_answers.labels(command).inc()

    def limiter_state(self, command: str, rate_per_s: float, waiting: int) -> None:
        self.rate_current.labels(command).set(rate_per_s)
        self.rate_waiting.labels(command).set(waiting)


def health(state: WorkerState) -> tuple[int, dict[str, Any]]:
    """Liveness: the loop ticked within ``STUCK_AFTER_S``."""
    age = time.monotonic() - state.last_tick
    ok = age < STUCK_AFTER_S
    return (200 if ok else 503), {"ok": ok, "loop_age_s": round(age, 3)}


def readiness(state: WorkerState) -> tuple[int, dict[str, Any]]:
    """Readiness: broker connected, rules loaded, credentials accepted, not stopping."""
    ok = state.connected and state.rules_loaded and state.credentials_ok is True and not state.stopping
    detail = {
        "ok": ok,
        "broker_connected": state.connected,
        "rules_loaded": state.rules_loaded,
        "credentials_accepted": state.credentials_ok,
        "stopping": state.stopping,
        "in_flight": state.in_flight,
    }
    return (200 if ok else 503), detail


def _handler(state: WorkerState, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                metrics.in_flight.set(state.in_flight)
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                status, body = health(state) if self.path == "/healthz" else readiness(state)
                self._send(status, orjson.dumps(body), "application/json")
            else:
                self._send(404, b'{"error":"not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # probes every few seconds would flood the log
            return

    return Handler


@contextmanager
def serve_operations(settings: Settings, state: WorkerState, metrics: Metrics) -> Iterator[int]:
    """Serve the health and metrics endpoints on a daemon thread; yields the bound port (0: disabled)."""
    if settings.http_port == 0:
        yield 0
        return
    server = ThreadingHTTPServer((settings.http_host, settings.http_port), _handler(state, metrics))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="operations", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def metrics_table() -> str:
    """The Markdown table of every metric (name, type, labels, meaning), as the README shows it."""
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    kinds = {Counter: "counter", Histogram: "histogram (seconds)", Gauge: "gauge"}
    for metric in vars(Metrics()).values():
        kind = next((name for cls, name in kinds.items() if isinstance(metric, cls)), None)
        if kind is None:
            continue
        described = next(iter(metric.describe()))
        name = described.name + ("_total" if kind == "counter" else "")
        labels = ", ".join(metric._labelnames) or "-"  # the client exposes them no other way
        lines.append(f"| `{name}` | {kind} | {labels} | {described.documentation} |")
    return "\n".join(lines)
