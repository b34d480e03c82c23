"""Run the emulator: in the foreground (the ``recall-worker emulator`` command) or on a background thread."""

from __future__ import annotations

import uvicorn

from worker.emulator.app import build_app
from worker.emulator.gateway import Emulator, EmulatorConfig
from worker.serving import ServerThread


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


class EmulatorThread(ServerThread):
    """An emulator serving on a background thread, on a free port unless one is given.

    ``emulator`` is the live object, so a test in the same process can look at or seed its state
    between requests.
    """

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = Emulator(config)
        super().__init__(
            uvicorn.Server(_uvicorn_config(self.emulator, host, port, "warning")), host, what="the emulator"
        )
        self.port = port

    def __enter__(self) -> EmulatorThread:
        return self.start(timeout_s=10)

    def __exit__(self, *exc_info: object) -> None:
        self.stop(timeout_s=10)
