"""The worker process: consume jobs, run them concurrently, settle each delivery only once its outcome is
durably stored.

Threads: the main thread owns the kombu connections (deliveries, heartbeats, publishes, acks; kombu
channels are not thread-safe); jobs run as tasks on an asyncio loop in a second thread, so a long job
never starves heartbeats. A finished task hands its :class:`~worker.runner.Settlement` back through a
queue and the main thread publishes what it says (with confirms) and only then acks.

Bodies are decoded here, not by kombu: kombu's decode-error path acks and drops a bad message (or raises out
of ``drain_events``); here anything the worker cannot read (properties, compression, encoding, body) goes to
the dead-letter queue with the reason and an ``invalid`` result, and the worker keeps going. On SIGTERM the
worker stops taking jobs, gives those in flight ``shutdown_budget_s`` to finish, requeues the rest, and
exits 0. While the Chat API refuses the worker's credentials it consumes nothing (:mod:`worker.gate`).

Lanes (RabbitMQ): the worker consumes the urgent lane and the jobs queue, each with a prefetch of
``concurrency``, so an urgent job never waits for a slot behind the backlog of the other. While the urgent
lane fills its prefetch (a backlog of urgent jobs), and until it has been below that for
``LANE_GRACE_S``, the worker takes nothing from the jobs queue: the urgent lane goes first. A retry, a hold
and a dead letter keep the priority of the delivery they come from (so a retry stays in its lane).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import gc
import hashlib
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any, Protocol

import structlog
from kombu import Connection, Consumer
from kombu.exceptions import OperationalError

from worker.broker import headers as h
from worker.broker.topology import Publisher, QueueNames, Topology, connect, is_embedded
from worker.config import Settings
from worker.gate import CredentialGate, GateObserver
from worker.jobs import InvalidJob, Job, parse_job
from worker.ledger import open_ledger
from worker.media.fetch import MediaFetcher, fetcher_from_settings
from worker.pipeline import BreakerPolicy, Policy
from worker.redact import bounded
from worker.results import JobResult
from worker.retry import RetryPolicy
from worker.runner import Action, RuleSource, Settlement, execute
from worker.tim.adaptive import AdaptivePolicy
from worker.tim.client import RetryPolicy as CallRetryPolicy
from worker.tim.client import TimClient
from worker.tim.credentials import check_credentials

log = structlog.get_logger("worker.consumer")

#: How long the loop waits for a delivery. Finished jobs are settled between waits (a prefetch slot frees
#: only on ack), so the wait is short while jobs run; idle, a delivery ends the wait at once anyway.
IDLE_TICK_S = 0.25
BUSY_TICK_S = 0.01
#: The jobs queue is taken from only once the urgent lane has been below its prefetch this long: the broker
#: refills a busy lane as soon as a job is acked, so a backlog of urgent jobs keeps the jobs queue waiting.
LANE_GRACE_S = 1.0


class WorkerObserver(GateObserver, Protocol):
    """Told how each job ends, and what the credential checks say (metrics hook)."""

    def job_finished(self, result: JobResult, dead_reason: str | None) -> None: ...
    def job_retried(self) -> None: ...
    def result_repeated(self) -> None: ...


@dataclass(slots=True)
class WorkerState:
    """What the health endpoints and metrics read; written by the consumer."""

    connected: bool = False
    rules_loaded: bool = False
    #: None until the first credential check answered; then whether the Chat API accepted them.
    credentials_ok: bool | None = None
    last_tick: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    stopping: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class AsyncioThread:
    """An event loop running on its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    def submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@dataclass(slots=True)
class InFlight:
    """A delivery being worked on."""

    message: Any
    job: Job
    attempt: int
    started: float
    lane: str
    priority: int  # within the lane's range (Topology.priority_in): its retry goes back to the same lane


def policy_of(settings: Settings) -> Policy:
    """The safety policy the settings describe."""
    breaker = BreakerPolicy(
        factor=settings.breaker_factor,
        min_matches=settings.breaker_min_matches,
        min_jobs=settings.breaker_min_jobs,
        lookback_s=settings.breaker_lookback_s,
        cooldown_s=settings.breaker_cooldown_s,
    )
    return Policy(
        max_recalls=settings.max_recalls_per_job,
        protected=frozenset(settings.protected_accounts),
        verify=settings.verify_recalls,
        breaker=breaker,
        claim_lease_s=settings.job_timeout_s,
    )


def make_client(settings: Settings) -> TimClient:
    """The Chat REST client the settings describe."""
    options: dict[str, Any] = {
        "sdkappid": settings.tim_sdkappid,
        "key": settings.key(),
        "admin": settings.tim_admin,
        "timeout_s": settings.tim_timeout_s,
        "rate_per_command": settings.tim_rate_limit,
        "adaptive": AdaptivePolicy(
            ceiling=settings.tim_rate_limit,
            floor=min(settings.tim_rate_floor, settings.tim_rate_limit),
            probe_after_s=settings.tim_rate_probe_s,
        ),
        "retry": CallRetryPolicy(
            max_attempts=settings.tim_max_attempts, rate_limit_patience_s=settings.tim_rate_limit_patience_s
        ),
        "redis_url": settings.redis_url,
    }
    if settings.tim_base_url:
        return TimClient(base_url=settings.tim_base_url, **options)
    return TimClient.for_region(settings.tim_region, **options)


class Worker:
    """Consumes the jobs queue until stopped (SIGTERM/SIGINT) or, with ``exit_when_idle_s``, idle."""

    def __init__(
        self,
        settings: Settings,
        rules: RuleSource,
        *,
        exit_when_idle_s: float | None = None,
        client_factory: Callable[[Settings], TimClient] = make_client,
        state: WorkerState | None = None,
        observer: WorkerObserver | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.names = QueueNames(settings.queue_prefix)
        self.topology = Topology(self.names, embedded=is_embedded(settings.broker_url))
        self.retry = RetryPolicy(
            settings.max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s
        )
        self.state = state or WorkerState()
        self.policy = policy_of(settings)
        self.ledger = open_ledger(settings.database_url)
        self.exit_when_idle_s = exit_when_idle_s
        self._client_factory = client_factory
        self._observer = observer
        self._on_tick = on_tick
        self._done: queue.SimpleQueue[concurrent.futures.Future[Settlement]] = queue.SimpleQueue()
        self._in_flight: dict[concurrent.futures.Future[Settlement], InFlight] = {}
        #: How many of ``_in_flight`` came from each lane, kept with it (read every tick: never counted).
        self._lane_load: collections.Counter[str] = collections.Counter()
        self._stop_requested = threading.Event()
        self._last_activity = time.monotonic()
        self._jobs = AsyncioThread()
        self._client: TimClient | None = None
        self._media: MediaFetcher | None = None
        self._consumer_conn: Connection | None = None
        self._publisher: Publisher | None = None
        self._stop_deadline: float | None = None
        self.gate = CredentialGate(
            self._start_credential_check,
            recheck_s=settings.credential_recheck_s,
            observer=observer,
        )

    # lifecycle --------------------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Stop taking jobs and shut down gracefully (the SIGTERM handler)."""
        self.state.stopping = True
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: graceful stop."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("worker.stopping", signal=signal.Signals(signum).name, in_flight=len(self._in_flight))
        self.request_stop()

    def run(self) -> int:
        """Consume until stopped; returns the process exit code."""
        self._jobs.start()
        self._client = self._jobs.submit(self._make_client()).result()
        self._media = self._jobs.submit(self._make_media()).result()
        self.policy = dataclasses.replace(self.policy, media=self._media.fetch_many)
        # What start-up loaded (rules, compiled automata, clients) lives as long as the process: out of the
        # collector's sight, full collections stay short, and so do the event-loop stalls they cause.
        gc.collect()
        gc.freeze()
        try:
            self._consume_until_stopped()
        finally:
            self._shutdown()
        return 0

    async def _make_client(self) -> TimClient:
        return self._client_factory(self.settings)

    async def _make_media(self) -> MediaFetcher:
        # made on the jobs' loop, which it then serves; its metrics join the worker's, if it has them
        return fetcher_from_settings(self.settings, registry=getattr(self._observer, "registry", None))

    def _start_credential_check(self) -> concurrent.futures.Future[None]:
        if self._client is None:
            raise RuntimeError("the worker's client is not running")
        return self._jobs.submit(check_credentials(self._client, self.settings.tim_admin))

    def _consume_until_stopped(self) -> None:
        backoff = 1.0
        # kombu wraps a connection that cannot be made (ensure_connection) as OperationalError.
        lost_connection: tuple[type[BaseException], ...] = (
            OSError,
            OperationalError,
            *self._connection_errors(),
        )
        while not self._stop_requested.is_set():
            try:
                self._consume_session()
                backoff = 1.0
            except lost_connection as exc:
                self.state.connected = False
                self._abandon_in_flight("broker connection lost")
                log.warning("worker.broker_lost", error=str(exc), retry_in_s=backoff)
                self._stop_requested.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            if self._idle_long_enough():
                break

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = self._consumer_conn or connect(self.settings.broker_url)
        return tuple(conn.connection_errors) + tuple(conn.channel_errors)

    def _consume_session(self) -> None:
        """One connection's worth of consuming; returns on stop or idle, raises on connection loss."""
        settings = self.settings
        consumer_conn = connect(settings.broker_url, heartbeat_s=settings.heartbeat_s)
        publisher_conn = connect(settings.broker_url, heartbeat_s=settings.heartbeat_s, confirm=True)
        self._consumer_conn = consumer_conn
        try:
            consumer_conn.ensure_connection(max_retries=3)
            publisher_conn.ensure_connection(max_retries=3)
            self._publisher = Publisher(
                publisher_conn, self.topology, confirm_timeout_s=settings.confirm_timeout_s
            )
            channel = consumer_conn.channel()
            self.topology.declare(channel)
            lanes = _Lanes(
                [
                    Consumer(
                        channel,
                        queues=[self.topology.queue(lane)],
                        on_message=functools.partial(self._on_delivery, lane=lane),
                        on_decode_error=self._on_undecodable,
                        prefetch_count=settings.concurrency,
                        accept=[],  # bodies are decoded by _on_delivery, never by kombu
                    )
                    for lane in self.topology.lanes()  # the urgent lane first
                ],
                settings.concurrency,
            )
            self.state.connected = True
            while True:
                self._tick(consumer_conn)
                self.gate.poll()
                self.state.credentials_ok = self.gate.ok
                # Consume only while the credentials are accepted and no stop was asked for.
                wanted = self.gate.open and not self._stop_requested.is_set()
                lanes.steer(wanted, self._lane_load[lanes.names[0]])
                if self._stop_requested.is_set():
                    if not self._in_flight:
                        return
                    if self._shutdown_deadline_passed():
                        self._abandon_in_flight("shutdown budget spent", requeue=True)
                        return
                if self._idle_long_enough():
                    return
        finally:
            self.state.connected = False
            self._close(publisher_conn)
            self._close(consumer_conn)
            self._publisher = None

    def _tick(self, conn: Connection) -> None:
        self.state.last_tick = time.monotonic()
        if self._on_tick is not None:
            self._on_tick()
        try:
            conn.drain_events(timeout=BUSY_TICK_S if self._in_flight else IDLE_TICK_S)
        except TimeoutError:
            pass
        except socket.timeout:  # noqa: UP041 - amqp raises socket.timeout on older Pythons
            pass
        if not self.topology.embedded:
            conn.heartbeat_check()
        self._settle_finished()

    def _shutdown_deadline_passed(self) -> bool:
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.settings.shutdown_budget_s
        return time.monotonic() >= self._stop_deadline

    def _idle_long_enough(self) -> bool:
        if self.exit_when_idle_s is None or self._in_flight:
            return False
        return time.monotonic() - self._last_activity >= self.exit_when_idle_s

    def _shutdown(self) -> None:
        client = self._client
        if client is not None:
            self._jobs.submit(client.aclose()).result(timeout=10)
        if self._media is not None:
            self._jobs.submit(self._media.aclose()).result(timeout=10)
        self._jobs.stop()
        self.ledger.dispose()
        log.info("worker.stopped", **self.state.counts)

    @staticmethod
    def _close(conn: Connection) -> None:
        try:
            conn.release()
        except Exception as exc:  # noqa: BLE001 - closing a broken connection must not mask the real error
            log.debug("worker.close_failed", error=str(exc))

    # deliveries ------------------------------------------------------------------------------------

    def _on_delivery(self, message: Any, lane: str) -> None:
        self._last_activity = time.monotonic()
        try:
            self._accept(message, lane)
        except Exception as exc:  # a delivery the worker cannot read must never stop it
            log.exception("job.unreadable")
            error = f"the delivery could not be read: {type(exc).__name__}: {exc}"
            self._refuse(message, "undecodable", error)

    def _on_undecodable(self, message: Any, exc: BaseException) -> None:
        """kombu could not decode the delivery (its ``compression`` header, say): dead-letter it."""
        self._last_activity = time.monotonic()
        compression = h.plain(h.ORIGINAL_COMPRESSION, h.headers_of(message).get("compression"))
        what = f"compressed as {compression!r}" if compression else "as delivered"
        self._refuse(message, "undecodable", f"the body does not decode {what}: {type(exc).__name__}: {exc}")

    def _accept(self, message: Any, lane: str) -> None:
        headers = h.headers_of(message)
        problem = h.transport_problem(message)
        if problem is not None:
            self._refuse(message, "undecodable", problem)
            return
        attempt = h.attempt_of(headers)
        try:
            job = parse_job(h.raw_body(message))
        except InvalidJob as exc:
            self._refuse(message, "invalid_job", str(exc), job_id=exc.job_id, attempt=attempt)
            return
        if self._stop_requested.is_set() or not self.gate.open:
            self._requeue(message)
            return
        replayed_at, deliveries = h.replayed_at(headers), h.delivery_count(headers)
        future = self._jobs.submit(
            self._execute(job, attempt, replayed_at=replayed_at, deliveries=deliveries)
        )
        priority = self.topology.priority_in(lane, h.priority_of(message))
        self._in_flight[future] = InFlight(message, job, attempt, time.monotonic(), lane, priority)
        self._lane_load[lane] += 1
        self.state.in_flight = len(self._in_flight)
        future.add_done_callback(self._done.put)
        log.info(
            "job.started",
            job_id=job.job_id,
            attempt=attempt,
            conversation=job.conversation.type,
            priority=priority,
        )

    async def _execute(
        self, job: Job, attempt: int, *, replayed_at: datetime | None, deliveries: int
    ) -> Settlement:
        if self._client is None:
            raise RuntimeError("the worker's client is not running")
        # Every log line of this job's task, the client's included, carries these fields.
        structlog.contextvars.bind_contextvars(
            job_id=job.job_id, conversation=job.conversation.type, attempt=attempt
        )
        return await execute(
            job,
            attempt,
            client=self._client,
            rules=self.rules,
            ledger=self.ledger,
            policy=self.policy,
            retry=self.retry,
            timeout_s=self.settings.job_timeout_s,
            replayed_at=replayed_at,
            deliveries=deliveries,
        )

    def _refuse(
        self, message: Any, reason: str, error: str, *, job_id: str | None = None, attempt: int = 1
    ) -> None:
        """A delivery that holds no runnable job: dead-letter it with ``reason`` and an ``invalid`` result."""
        self._finish(message, Settlement.refused(None, h.valid_job_id(job_id), reason, error, attempt))

    def _settle_finished(self) -> None:
        while True:
            try:
                future = self._done.get_nowait()
            except queue.Empty:
                return
            flight = self._in_flight.pop(future, None)
            self.state.in_flight = len(self._in_flight)
            if flight is None:
                continue
            self._lane_load[flight.lane] -= 1
            if future.cancelled():
                continue
            self._last_activity = time.monotonic()
            settlement = future.result()
            if settlement.action is Action.FINISH:
                self._finish(flight.message, settlement, flight.priority)
            else:
                self._republish(flight, settlement)

    def _finish(self, message: Any, settlement: Settlement, priority: int | None = None) -> None:
        """Publish a settlement's dead letter, escalation and result, then ack; on failure, requeue.

        ``priority``: the job's, within its lane (a delivery never read as a job keeps its own)."""
        result = settlement.result
        if result is None:
            raise RuntimeError("a finishing settlement carries its result")
        job_id = h.valid_job_id(result.job_id) or ""
        try:
            publisher = self._current_publisher()
            if settlement.dead_reason is not None:
                dead, binary = _dead_letter(message, settlement, job_id)
                publisher.publish(
                    self.names.dead,
                    h.raw_body(message),
                    headers=dead,
                    binary=binary,
                    # what dlq replay puts it back with: the lane it was delivered from
                    priority=h.priority_of(message) if priority is None else priority,
                )
            if settlement.escalate:
                publisher.publish(self.names.escalations, settlement.body, headers={h.JOB_ID: job_id})
            publisher.publish(
                self.names.results, settlement.body, headers={h.JOB_ID: job_id, h.STATUS: result.status}
            )
        except Exception as exc:  # noqa: BLE001 - not stored means not acked: requeue and say why
            log.error("job.publish_failed", job_id=job_id, error=bounded(str(exc), 500))
            self._requeue(message)
            return
        _ack(message)
        if settlement.repeated:
            log.info("job.result_repeated", job_id=job_id, status=result.status)
            if self._observer is not None:
                self._observer.result_repeated()
            return
        self.state.count(result.status)
        log.info(
            "job.result", **_log_summary(result, self.settings.log_text_limit, self.settings.log_text_hash)
        )
        if self._observer is not None:
            self._observer.job_finished(result, settlement.dead_reason)

    def _republish(self, flight: InFlight, settlement: Settlement) -> None:
        """A retry (next attempt, after its delay) or a hold (same attempt, after the credential recheck)."""
        held = settlement.action is Action.HOLD
        headers = {
            **h.own(h.headers_of(flight.message)),
            h.JOB_ID: flight.job.job_id,
            h.ATTEMPT: flight.attempt if held else flight.attempt + 1,
            h.LAST_ERROR: bounded(settlement.error or "", 500),
        }
        delay_s = self.gate.recheck_s if held else settlement.retry_delay_s
        try:
            self._current_publisher().publish(
                self.names.jobs,
                h.raw_body(flight.message),
                headers=headers,
                delay_s=delay_s,
                priority=flight.priority,  # the same lane, and the same place in the embedded queue
            )
        except Exception as exc:  # noqa: BLE001 - not stored means not acked: requeue and say why
            log.error("job.retry_publish_failed", job_id=flight.job.job_id, error=bounded(str(exc), 500))
            self._requeue(flight.message)
            return
        _ack(flight.message)
        if held:
            self.gate.rejected(settlement.credential_code or 0, settlement.error or "")
            self.state.credentials_ok = self.gate.ok
            self.state.count("held")
            return
        self.state.count("retried")
        if self._observer is not None:
            self._observer.job_retried()

    def _current_publisher(self) -> Publisher:
        if self._publisher is None:
            raise RuntimeError("no publisher: not connected")
        return self._publisher

    @staticmethod
    def _requeue(message: Any) -> None:
        try:
            message.requeue()
        except Exception as exc:  # noqa: BLE001 - the broker redelivers unacked messages on reconnect anyway
            log.warning("job.requeue_failed", error=bounded(str(exc), 500))

    def _abandon_in_flight(self, why: str, *, requeue: bool = False) -> None:
        """Cancel running jobs; their deliveries go back to the queue (explicitly, or with the channel)."""
        for future, flight in list(self._in_flight.items()):
            future.cancel()
            if requeue:
                self._requeue(flight.message)
            log.warning("job.abandoned", job_id=flight.job.job_id, reason=why)
        self._in_flight.clear()
        self._lane_load.clear()
        self.state.in_flight = 0


class _Lanes:
    """The consumers of the lanes, the first served first: a later lane is consumed only while the first has
    not filled its prefetch for ``LANE_GRACE_S`` (one lane, embedded: just the gate and the stop). Whether a
    lane is being consumed is kombu's to know (``Consumer.consuming_from``)."""

    def __init__(self, consumers: list[Consumer], prefetch: int) -> None:
        self.consumers = consumers
        self.names = [consumer.queues[0].name for consumer in consumers]
        self.prefetch = prefetch
        self.first_busy_at = time.monotonic()  # when the first lane was last full (or not consumed)

    def steer(self, wanted: bool, first_in_flight: int) -> None:
        """Start or stop each lane's consumer: all of them only while ``wanted``."""
        now = time.monotonic()
        if not self.consumers[0].consuming_from(self.names[0]) or first_in_flight >= self.prefetch:
            self.first_busy_at = now
        for index, (consumer, name) in enumerate(zip(self.consumers, self.names, strict=True)):
            want = wanted and (index == 0 or now - self.first_busy_at >= LANE_GRACE_S)
            if want == consumer.consuming_from(name):
                continue
            if want:
                consumer.consume()
            else:
                consumer.cancel()  # no new deliveries; the ones in flight finish
            if index == 0 and want:
                log.info("worker.consuming", queues=self.names, concurrency=self.prefetch)
            elif index > 0 and wanted:  # held back, or let on, by the first lane: not news
                log.debug(
                    "worker.lane_resumed" if want else "worker.lane_paused", queue=name, behind=self.names[0]
                )


def _ack(message: Any) -> None:
    """Acknowledge a delivery, whether kombu could wrap it in its own message class or not."""
    if hasattr(message, "ack"):
        message.ack()
    else:  # a raw py-amqp message (kombu failed before wrapping it)
        message.channel.basic_ack(message.delivery_tag)


def _dead_letter(message: Any, settlement: Settlement, job_id: str) -> tuple[dict[str, Any], bool]:
    """The headers of a delivery's dead letter, and whether its body is opaque bytes rather than JSON.

    Only the worker's own headers are carried, bounded: a producer's oversized or oddly typed header can
    never make the dead letter unpublishable. What the body arrived as is kept for the record.
    """
    original = h.headers_of(message)
    result = settlement.result
    headers: dict[str, Any] = {
        **h.own(original),
        h.DEAD_REASON: settlement.dead_reason or "",
        h.DEAD_ERROR: bounded(settlement.error or "", 2000),
        h.ATTEMPTS: result.attempts if result is not None else 1,
        h.DEAD_AT: int(time.time()),
    }
    headers.pop(h.JOB_ID, None)
    if job_id:
        headers[h.JOB_ID] = job_id
    compression = h.plain(h.ORIGINAL_COMPRESSION, original.get("compression"))
    content_type = h.plain(h.ORIGINAL_CONTENT_TYPE, getattr(message, "content_type", None))
    if compression:
        headers[h.ORIGINAL_COMPRESSION] = compression
    if content_type:
        headers[h.ORIGINAL_CONTENT_TYPE] = content_type
    return headers, settlement.dead_reason == "undecodable"


def _shown_text(text: str, limit: int, hashed: bool) -> str:
    """Message text as a log line may carry it: a bounded excerpt, or only a hash of it."""
    if hashed:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return bounded(text, limit)


def _log_summary(result: JobResult, text_limit: int, text_hash: bool = False) -> dict[str, Any]:
    return {
        "job_id": result.job_id,
        "status": result.status,
        "attempts": result.attempts,
        "messages_scanned": result.messages_scanned,
        "pages_fetched": result.pages_fetched,
        "matches": [
            {
                "msg_key": m.msg_key,
                "rule_id": m.rule_id,
                "element_path": m.element_path,
                "evidence": _shown_text(m.evidence, text_limit, text_hash),
            }
            for m in result.matches[:20]
        ],
        "recalled": result.recalled,
        "already_recalled": result.already_recalled,
        "skipped": [s.model_dump() for s in result.skipped[:50]],
        "failed": [f.model_dump() for f in result.failed],
        "api_calls": result.api_calls,
        "duration_s": result.duration_s,
        "error": result.error,
        "reason": result.reason,
    }
