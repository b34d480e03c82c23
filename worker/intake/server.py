"""Assembling and serving the intake: ``recall-worker intake`` (and on a thread, for tests)."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import redis.asyncio
import uvicorn
from starlette.applications import Starlette

from worker.config import Settings
from worker.consumer import make_client
from worker.intake.app import Gatekeeping, build_intake_app
from worker.intake.callbacks import tencent_callback_endpoint
from worker.intake.metrics import IntakeMetrics
from worker.intake.notices import load_templates
from worker.intake.relay import JobMaking, Notices, Relay, Webhook
from worker.intake.store import IntakeStore, Timing
from worker.intake.trust import Policy
from worker.ledger import open_ledger
from worker.ledger.engine import make_async_engine, make_engine
from worker.queues import Queues
from worker.serving import ServerThread
from worker.tim.budget import MemoryBudget, RedisBudget
from worker.tim.ratelimit import namespace_for

#: The GIL switch interval of the intake process (see serve_intake).
SWITCH_INTERVAL_S = 0.0005


class IntakeNotConfigured(ValueError):
    """A setting the intake needs is missing; the message names it."""


@dataclass
class Intake:
    """An assembled intake: its app, store and relay."""

    app: Starlette
    store: IntakeStore
    relay: Relay

    def close(self) -> None:
        """Close the database connections."""
        self.store.engine.dispose()


def _notices(settings: Settings) -> Notices | None:
    if not settings.intake_notices:
        return None
    return Notices(
        make_client(settings), settings.tim_admin, load_templates(settings.intake_notice_templates)
    )


def _tencent_callback(settings: Settings, redis_client: Any) -> Any:
    budget: Any
    if redis_client is not None:
        budget = RedisBudget(redis_client, namespace_for(settings.tim_sdkappid))
    else:
        budget = MemoryBudget()
    token = settings.tim_callback_token.get_secret_value() if settings.tim_callback_token else None
    return tencent_callback_endpoint(
        sdkappid=settings.tim_sdkappid,
        token=token,
        budget=budget,
        hold_s=settings.intake_alarm_hold_s,
        configured_rate=settings.tim_rate_limit,
    )


def build_intake(
    settings: Settings, *, clock: Callable[[], float] = time.time, relay_interval_s: float = 0.5
) -> Intake:
    """The intake the settings describe; :class:`IntakeNotConfigured` names what is missing."""
    keys = settings.intake_key_map()
    if not keys:
        raise IntakeNotConfigured("set RECALL_INTAKE_KEYS (or RECALL_INTAKE_KEYS_FILE) to serve the intake")
    webhook = None
    if settings.intake_webhook_url:
        if settings.intake_webhook_secret is None:
            raise IntakeNotConfigured(
                "RECALL_INTAKE_WEBHOOK_URL needs RECALL_INTAKE_WEBHOOK_SECRET to sign with"
            )
        webhook = Webhook(
            settings.intake_webhook_url,
            settings.intake_webhook_secret.get_secret_value(),
            settings.intake_webhook_timeout_s,
        )
    trusted = frozenset(settings.intake_trusted_reporters)
    open_ledger(settings.database_url).dispose()  # brings the schema up to date
    store = IntakeStore(
        # no pre-ping: a round trip per batch would cost more than the batch; the store retries a batch
        # whose pooled connection turns out dropped
        make_engine(settings.database_url, pre_ping=False),
        async_engine=make_async_engine(settings.database_url),
        timing=Timing(settings.intake_quiet_s, settings.intake_max_wait_s),
        reporter_limit=settings.intake_reporter_limit,
        trusted=trusted,
        clock=clock,
    )
    metrics = IntakeMetrics()
    notices = _notices(settings)
    relay = Relay(
        store,
        Queues(settings).publish_jobs,
        JobMaking(
            Policy(trusted, settings.intake_low_trust, settings.intake_agree),
            settings.intake_lookback_s,
            settings.intake_ruleset,
        ),
        webhook=webhook,
        notices=notices,
        max_attempts=settings.intake_webhook_attempts,
        metrics=metrics,
        interval_s=relay_interval_s,
    )

    redis_client = redis.asyncio.from_url(settings.redis_url) if settings.redis_url else None

    async def background() -> None:
        try:
            await relay.run()
        finally:
            with anyio.CancelScope(shield=True):  # the relay ends by cancellation: close all the same
                if notices is not None:
                    await notices.client.aclose()  # type: ignore[attr-defined]
                if redis_client is not None:
                    await redis_client.aclose()

    app = build_intake_app(
        store,
        Gatekeeping(keys, frozenset(settings.protected_accounts)),
        metrics=metrics,
        tencent_callback=_tencent_callback(settings, redis_client),
        background=background,
        clock=clock,
    )
    return Intake(app, store, relay)


def _server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )


def serve_intake(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    # The writer thread gives up the GIL at each database round trip and must win it back from the event
    # loop's thread, which under load holds it for up to the whole switch interval (5 ms by default) each
    # time: a batch of a handful of round trips would wait tens of ms. A shorter interval bounds that.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    intake = build_intake(settings)
    # Everything built so far lives as long as the process: out of the collector's sight, a full collection
    # no longer walks the whole of SQLAlchemy, pydantic and Starlette (a pause of tens of ms under load).
    gc.collect()
    gc.freeze()
    host, port = settings.intake_host, settings.intake_port
    print(f"report intake on http://{host}:{port}/v1/reports", flush=True)
    try:
        _server(intake.app, host, port).run()
    finally:
        intake.close()
    return 0


class IntakeThread(ServerThread):
    """The intake on a background thread, on a free port (tests, the demo)."""

    def __init__(self, intake: Intake, host: str = "127.0.0.1") -> None:
        super().__init__(_server(intake.app, host, 0), host, what="the intake")
        self.intake = intake

    def __enter__(self) -> IntakeThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.intake.close()
