"""Serving the review page: ``recall-worker review`` in the foreground, or on a thread (tests)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import uvicorn

from worker.config import Settings
from worker.ledger import open_ledger
from worker.queues import Queues
from worker.review.app import build_review_app


def _server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    if settings.review_token is None:
        raise ValueError("set RECALL_REVIEW_TOKEN to serve the review page")
    app = build_review_app(
        open_ledger(settings.database_url),
        Queues(settings),
        settings.review_token.get_secret_value(),
        secure_cookie=settings.review_secure_cookie,
    )
    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    )


def serve_review(settings: Settings, *, host: str = "127.0.0.1", port: int = 9103) -> int:
    """Serve until interrupted; returns the exit code."""
    try:
        server = _server(settings, host, port)
    except ValueError as exc:
        print(f"recall-worker review: {exc}", file=sys.stderr)
        return 2
    print(f"review page on http://{host}:{port}/", flush=True)
    server.run()
    return 0


class ReviewThread:
    """The review page on a background thread, on a free port."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1") -> None:
        self._server = _server(settings, host, 0)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True)
        self.host = host
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ReviewThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the review page did not start")
            time.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
