"""The intake benchmark's baseline: ``POST /v1/reports`` reads the body and answers 202, nothing else.

``python -m tests.bench.bare_endpoint --port N`` serves it with the uvicorn settings the intake runs with
(:data:`UVICORN_OPTIONS`), so the intake's figures next to this one show what its own work costs over bare
HTTP handling in Starlette and uvicorn. ``GET /healthz`` answers 200, as the intake's does, to wait on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

#: The intake's uvicorn configuration.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "log_level": "warning",
    "lifespan": "off",
}


async def report(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"report_id": "x"}, status_code=202)


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app() -> Starlette:
    return Starlette(
        routes=[Route("/v1/reports", report, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bare_endpoint", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(app(), host=args.host, port=args.port, **UVICORN_OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
