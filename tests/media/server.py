"""A local picture host on a thread (uvicorn + Starlette, http or https): serves pictures and every kind of
misbehaviour the media fetcher must survive, and counts what it is asked."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from worker.serving import ServerThread


def picture(fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A small picture in ``fmt`` (PNG, JPEG, GIF, WEBP, BMP)."""
    image = Image.new("RGB", size, (200, 40, 90))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed): a decompression
    bomb's header at no cost."""
    data = bytearray(picture("PNG", (8, 8)))
    ihdr = bytearray(data[12:29])  # type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def one_bit_png(side: int) -> bytes:
    """A real ``side`` x ``side`` 1-bit PNG: many pixels, few bytes."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG", optimize=True)
    return out.getvalue()


PNG = picture("PNG")
HTML = b"<!doctype html><html><body><h1>Not a picture</h1></body></html>"


@dataclass
class MediaServer:
    """The picture host: ``hits`` counts requests by path; ``max_in_flight`` is the most ``/slow`` requests
    it served at once; ``headers`` keeps each path's last request headers."""

    host: str = "127.0.0.1"
    port: int = 0
    scheme: str = "http"
    hits: Counter[str] = field(default_factory=Counter)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def reset_in_flight(self) -> None:
        self.in_flight = self.max_in_flight = 0

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.hits[path] += 1
        self.headers[path] = dict(request.headers)
        parts = path.strip("/").split("/")
        return await self.answer(parts[0], parts[1:], request)

    async def answer(self, what: str, rest: list[str], request: Request) -> Response:  # noqa: PLR0911
        if what == "png":
            return Response(PNG, media_type="image/png")
        if what == "image":  # /image/<FORMAT>/<name>, served as octet-stream: the bytes decide
            return Response(picture(rest[0].upper()), media_type="application/octet-stream")
        if what == "slow":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(0.2)
            finally:
                self.in_flight -= 1
            return Response(PNG, media_type="image/png")
        if what == "redirect":  # /redirect/<n>/<name>: n hops, then the picture
            hops = int(rest[0])
            if hops == 0:
                return Response(PNG, media_type="image/png")
            return Response(status_code=302, headers={"Location": f"/redirect/{hops - 1}/{rest[1]}"})
        if what == "to":  # /to/<name>?location=...: one redirect, anywhere
            return Response(status_code=302, headers={"Location": request.query_params["location"]})
        if what == "big":  # /big/<bytes>: PNG magic and zeros, with Content-Length
            return Response(PNG[:8] + bytes(int(rest[0])), media_type="image/png")
        if what == "big-chunked":  # /big-chunked/<bytes>: the same, streamed without Content-Length
            return StreamingResponse(_chunks(PNG[:8] + bytes(int(rest[0]))), media_type="image/png")
        if what == "bomb":
            return Response(png_claiming(100_000, 100_000), media_type="image/png")
        if what == "bomb-1bit":
            return Response(one_bit_png(2000), media_type="image/png")
        if what == "drip":
            return StreamingResponse(_drip(PNG), media_type="image/png")
        if what == "html":
            return Response(HTML, media_type="image/png")
        if what == "status":
            return PlainTextResponse("no", status_code=int(rest[0]))
        return PlainTextResponse("no such thing", status_code=404)


async def _chunks(data: bytes, size: int = 16384) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def _drip(data: bytes) -> AsyncIterator[bytes]:
    """A byte every 0.3 s: under any per-read timeout, forever in total."""
    for byte in data[:40]:
        yield bytes([byte])
        await asyncio.sleep(0.3)


@contextmanager
def serve(certfile: Path | None = None, keyfile: Path | None = None) -> Iterator[MediaServer]:
    """Run a :class:`MediaServer` on 127.0.0.1 (https with the given certificate) until the block ends."""
    state = MediaServer(scheme="https" if certfile else "http")
    app = Starlette(routes=[Route("/{path:path}", state.handle)])
    config = uvicorn.Config(
        app,
        host=state.host,
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
    )
    server = uvicorn.Server(config)
    running = ServerThread(server, state.host, what="the picture host").start(timeout_s=10)
    state.port = running.port
    try:
        yield state
    finally:
        running.stop(timeout_s=10)
