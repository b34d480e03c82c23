"""Serving an ASGI app with uvicorn on a background thread, on a free port (tests and the demo)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Self

import uvicorn


class ServerThread:
    """``server`` (configured with port 0) on a daemon thread; entering starts it and learns its port."""

    def __init__(self, server: uvicorn.Server, host: str = "127.0.0.1", *, what: str = "the server") -> None:
        self._server = server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        self._what = what
        self.host = host
        self.port = 0

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> Self:
        """Start serving (RuntimeError if it does not within ``timeout_s``); returns the thread."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self._what} did not start")
            time.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the server to finish and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)
