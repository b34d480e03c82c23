"""Serving the review page: ``recall-worker review`` in the foreground, or on a thread (tests)."""

from __future__ import annotations

import sys

import uvicorn

from worker.config import Settings
from worker.ledger import open_ledger
from worker.queues import Queues
from worker.review.app import build_review_app
from worker.serving import ServerThread


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


class ReviewThread(ServerThread):
    """The review page on a background thread, on a free port."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1") -> None:
        super().__init__(_server(settings, host, 0), host, what="the review page")

    def __enter__(self) -> ReviewThread:
        return self.start(timeout_s=10)

    def __exit__(self, *exc_info: object) -> None:
        self.stop(timeout_s=10)
