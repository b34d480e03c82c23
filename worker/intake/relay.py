"""The outbox relay: the intake's background loop.

Each pass, in order: turn due cases into jobs (in the outbox, with their cases, in one transaction); publish
the outbox's unpublished jobs with publisher confirms and only then mark them published, each with the
priority its case's reporters give it (:func:`worker.intake.trust.case_priority`); follow the active cases'
jobs in the ledger and settle the finished ones; deliver the due outcome webhooks and reporter notices.

A crash anywhere loses nothing: a job stored but not yet confirmed is published again by the next pass (of
this process or another replica), and the worker treats a job id it has seen as the same job; a delivery
claimed but never recorded is claimed again once its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import httpx
import structlog

from worker.intake.metrics import IntakeMetrics
from worker.intake.notices import Templates, render, send_notice
from worker.intake.store import Delivery, IntakeStore
from worker.intake.trust import Policy
from worker.intake.webhooks import Attempt, backoff_s, post_webhook
from worker.tim.history import ApiCaller

log = structlog.get_logger("recall.intake")

#: Publishes (job id, body, priority) triples, confirmed by the broker, or raises.
Publish = Callable[[Sequence[tuple[str, bytes, int]]], None]


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where report outcomes are POSTed, and the key that signs them."""

    url: str
    secret: str
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Notices:
    """Reporter notices: the Chat client, the admin account sending them, and their wording."""

    client: ApiCaller
    admin: str
    templates: Templates


@dataclass(frozen=True, slots=True)
class JobMaking:
    """How cases become jobs."""

    policy: Policy
    lookback_s: int = 86400
    ruleset: str = "default"


class Relay:
    """One intake process's background loop (see the module docstring)."""

    def __init__(
        self,
        store: IntakeStore,
        publish: Publish,
        making: JobMaking,
        *,
        webhook: Webhook | None = None,
        notices: Notices | None = None,
        max_attempts: int = 8,
        metrics: IntakeMetrics | None = None,
        interval_s: float = 0.5,
        signature_ttl_s: float = 900.0,
    ) -> None:
        self.store = store
        self.publish = publish
        self.making = making
        self.webhook = webhook
        self.notices = notices
        self.max_attempts = max_attempts
        self.metrics = metrics or IntakeMetrics()
        self.interval_s = interval_s
        self.signature_ttl_s = signature_ttl_s
        self._http: httpx.AsyncClient | None = None
        self._last_forget = 0.0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Pass after pass until ``stop`` is set (or the task is cancelled); a failed pass is logged."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception as exc:  # noqa: BLE001 - the loop outlives a database or broker outage
                    log.warning("intake_relay_failed", error=type(exc).__name__, detail=str(exc)[:200])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
        finally:
            with anyio.CancelScope(shield=True):  # ended by cancellation: close all the same
                await self.aclose()

    async def aclose(self) -> None:
        """Close the webhook client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def run_once(self) -> None:
        """One pass: close due cases, publish, follow jobs, deliver."""
        making = self.making
        made = await asyncio.to_thread(
            self.store.close_due, making.policy, lookback_s=making.lookback_s, ruleset=making.ruleset
        )
        if made:
            log.info("intake_jobs_made", jobs=made)
        await self.publish_outbox()
        tracked = await asyncio.to_thread(
            self.store.track, webhook=self.webhook is not None, notices=self.notices is not None
        )
        for state, count in tracked.settled.items():
            self.metrics.cases_settled.labels(state).inc(count)
        await self.deliver_due()
        if time.monotonic() - self._last_forget > 60:
            await asyncio.to_thread(self.store.forget_signatures, self.signature_ttl_s)
            for what, count in (await asyncio.to_thread(self.store.counts)).items():
                self.metrics.backlog.labels(what).set(count)
            self._last_forget = time.monotonic()

    async def publish_outbox(self) -> int:
        """Publish every unpublished job (confirmed), then mark them; returns how many."""
        total = 0
        while rows := await asyncio.to_thread(self.store.unpublished):
            ids = [pk for pk, _, _ in rows]
            priorities = await asyncio.to_thread(
                self.store.priorities, [job_id for _, job_id, _ in rows], self.making.policy
            )
            jobs = [(job_id, body, priorities[job_id]) for _, job_id, body in rows]
            try:
                await asyncio.to_thread(self.publish, jobs)
            except Exception as exc:
                self.metrics.publish_failures.inc()
                await asyncio.to_thread(self.store.publish_failed, ids, f"{type(exc).__name__}: {exc}")
                raise
            await asyncio.to_thread(self.store.mark_published, ids)
            self.metrics.jobs_published.inc(len(rows))
            log.info(
                "intake_jobs_published",
                jobs=[job_id for job_id, _, _ in jobs],
                priorities=[priority for _, _, priority in jobs],
            )
            total += len(rows)
        return total

    async def deliver_due(self) -> int:
        """Deliver what is due; returns how many deliveries were tried."""
        tried = 0
        while deliveries := await asyncio.to_thread(self.store.claim_deliveries):
            await asyncio.gather(*(self._deliver(d) for d in deliveries))
            tried += len(deliveries)
        return tried

    async def _deliver(self, delivery: Delivery) -> None:
        sender: Callable[[Delivery], Awaitable[Attempt]]
        sender = self._send_webhook if delivery.kind == "webhook" else self._send_notice
        attempt = await sender(delivery)
        error = attempt.error
        if attempt.ok:
            await asyncio.to_thread(self.store.delivered, delivery.id)
            self.metrics.deliveries.labels(delivery.kind, "delivered").inc()
            return
        if attempt.retryable and delivery.attempts < self.max_attempts:
            delay = max(backoff_s(delivery.attempts), attempt.retry_after_s or 0.0)
            await asyncio.to_thread(self.store.delivery_failed, delivery.id, error, retry_in_s=delay)
            self.metrics.deliveries.labels(delivery.kind, "retry").inc()
            return
        await asyncio.to_thread(self.store.delivery_failed, delivery.id, error, retry_in_s=None)
        self.metrics.deliveries.labels(delivery.kind, "dead").inc()
        log.warning(
            "intake_delivery_dead",
            kind=delivery.kind,
            delivery=delivery.id,
            attempts=delivery.attempts,
            error=error,
        )

    async def _send_webhook(self, delivery: Delivery) -> Attempt:
        if self.webhook is None:
            return Attempt(ok=False, status=None, error="no webhook configured", retryable=True)
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return await post_webhook(
            self._http,
            self.webhook.url,
            self.webhook.secret,
            delivery.payload,
            timeout_s=self.webhook.timeout_s,
        )

    async def _send_notice(self, delivery: Delivery) -> Attempt:
        """Send a reporter's notice; an :class:`Attempt` as a webhook's (any failure may be retried)."""
        if self.notices is None:
            return Attempt(ok=False, status=None, error="notices are off", retryable=True)
        payload = delivery.payload
        text = render(
            self.notices.templates,
            payload.get("language"),
            str(payload["outcome"]),
            {"report_id": payload["report_id"], "category": payload.get("category", "")},
        )
        try:
            await send_notice(
                self.notices.client,
                admin=self.notices.admin,
                reporter=str(payload["reporter"]),
                text=text,
                # the same delivery sent twice (a lost answer) is the same message to the service
                random=zlib.crc32(str(payload["delivery_id"]).encode()),
            )
        except Exception as exc:  # noqa: BLE001 - recorded on the delivery and retried
            return Attempt(
                ok=False, status=None, error=f"{type(exc).__name__}: {str(exc)[:200]}", retryable=True
            )
        return Attempt(ok=True, status=None)
