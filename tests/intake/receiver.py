"""A local app backend that receives the intake's outcome webhooks: it verifies each delivery's signature,
records it, and answers as the last segment of the path says (ok, fail, refuse, busy, hang, ...)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from worker.intake.signing import BadSignature
from worker.intake.webhooks import verify_webhook
from worker.serving import ServerThread

SECRET = "whsec-3f9a1c7e5b2d4f6a8c0e"


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    problem: str = ""


@dataclass
class Receiver:
    """An app backend on a thread: verifies every delivery, records it, answers as the path says."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        try:
            verify_webhook(SECRET, request.headers, path, body)
        except BadSignature as exc:
            self.received.append(Received(path, dict(request.headers), body, False, str(exc)))
            return PlainTextResponse(str(exc), status_code=401)
        self.received.append(Received(path, dict(request.headers), body, True))
        return await self.answer(request.path_params["behaviour"])

    async def answer(self, behaviour: str) -> Response:
        if behaviour == "hang":
            await asyncio.to_thread(self.release.wait, 10)
            return PlainTextResponse("too late")
        make = ANSWERS.get(behaviour)
        return make() if make else PlainTextResponse("no such behaviour", status_code=404)


def _maintenance() -> Response:
    when = formatdate(time.time() + 30, usegmt=True)
    return PlainTextResponse("back soon", status_code=503, headers={"Retry-After": when})


#: What the receiver answers, by the last segment of the path.
ANSWERS: dict[str, Callable[[], Response]] = {
    "ok": lambda: PlainTextResponse("stored"),
    "no-content": lambda: Response(status_code=204),
    # A misconfigured receiver that dumps its settings, secret included, into its error page.
    "fail": lambda: PlainTextResponse(f"Traceback ... WEBHOOK_SECRET={SECRET!r}", status_code=500),
    "refuse": lambda: PlainTextResponse("unknown outcome field\n\nrejected", status_code=400),
    "busy": lambda: PlainTextResponse("slow down", status_code=429, headers={"Retry-After": "7"}),
    "maintenance": _maintenance,
    "moved": lambda: Response(status_code=302, headers={"Location": "/hooks/ok"}),
}


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    app = Starlette(routes=[Route("/hooks/{behaviour}", state.handle, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host=state.host, port=0, log_level="warning", access_log=False, lifespan="off")
    )
    running = ServerThread(server, state.host, what="the receiver").start(timeout_s=10)
    state.port = running.port
    yield state
    state.release.set()
    running.stop(timeout_s=10)
