"""Group commit: reports that arrive together are stored in one transaction.

A request hands its report to the batcher and waits. One writer takes everything waiting (up to
``max_batch``), stores it in one transaction, and answers each request with its own outcome;
what arrives meanwhile forms the next batch. Under load a transaction serves many requests, so the rate is
bounded by the database's commits per second times the batch size rather than by commits alone; when idle
a report is stored at once, with no timer to wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Awaits ``write(batch)`` for whatever waits; ``write`` returns one result per item."""

    def __init__(
        self, write: Callable[[Sequence[In]], Awaitable[Sequence[Out]]], *, max_batch: int = 200
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        """Start the writer on the running loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="intake-writer")

    async def stop(self) -> None:
        """Store what waits, then stop the writer."""
        if self._task is None or self._wake is None:
            return
        self._closing = True
        self._wake.set()
        await self._task
        self._task = None

    async def submit(self, item: In) -> Out:
        """Store ``item`` with the next batch; its outcome, or the batch's exception."""
        if self._wake is None or self._closing:
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        wake = self._wake
        if wake is None:  # pragma: no cover - start() sets it before creating this task
            return
        while not self._closing:
            await wake.wait()
            wake.clear()
            while self._waiting:
                await self._flush()

    async def _flush(self) -> None:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        try:
            results = await self._write([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the writer answered {len(results)} of {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure, none is lost
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
