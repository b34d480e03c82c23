"""The emulator as one ASGI app: ``/v4/...`` is the Chat API, ``/_emulator/...`` the control surface."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from worker.emulator.control import build_control_app
from worker.emulator.gateway import Emulator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_app(emulator: Emulator) -> ASGIApp:
    """Route API calls straight to the gateway (the hot path stays free of framework overhead)."""
    control = build_control_app(emulator)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v4/"):
            await control(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            event = await receive()
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        answer = await emulator.handle(
            scope["method"], scope["path"], scope["query_string"], b"".join(chunks)
        )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", answer.content_type),
                    (b"content-length", str(len(answer.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    return app
