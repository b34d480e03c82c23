"""Run the emulator: in the foreground (the ``recall-worker emulator`` command) or on a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn

from worker.emulator.app import build_app
from worker.emulator.gateway import Emulator, EmulatorConfig


def _uvicorn_config(emulator: Emulator, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(emulator),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        http="httptools",
        loop="uvloop",
        timeout_keep_alive=30,
    )


def serve(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    log_level: str = "warning",
    emulator: Emulator | None = None,
) -> None:
    """Serve the emulator until interrupted (``emulator``: one already made, and seeded, from ``config``)."""
    uvicorn.Server(_uvicorn_config(emulator or Emulator(config), host, port, log_level)).run()


class EmulatorThread:
    """An emulator serving on a background thread, on a free port unless one is given.

    ``emulator`` is the live object, so a test in the same process can look at or seed its state
    between requests.
    """

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = Emulator(config)
        self._server = uvicorn.Server(_uvicorn_config(self.emulator, host, port, "warning"))
        self._thread = threading.Thread(target=self._run, name="chat-emulator", daemon=True)
        self.host = host
        self.port = port

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    @property
    def url(self) -> str:
        """Base URL of the running emulator."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmulatorThread:
        """Start serving; returns once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)
        sockets: list[Any] = [s for server in self._server.servers for s in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
