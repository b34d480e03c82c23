"""Group commit (worker/intake/batcher.py): asyncio only, no services."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

import pytest

from worker.intake.batcher import Batcher


class Store:
    """A ``write`` that records each batch and answers each item with its own result."""

    def __init__(self, *, fail_on: object = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate: asyncio.Event | None = None  # when set up, each write waits for it
        self.entered = asyncio.Event()

    async def write(self, items: Sequence[int]) -> list[str]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a commit takes a moment: others arrive meanwhile
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"commit failed on {self.fail_on}")
        self.batches.append(list(items))
        return [f"stored {item}" for item in items]


@pytest.fixture
async def store() -> Store:
    return Store()


@pytest.fixture
async def batcher(store: Store) -> AsyncIterator[Batcher[int, str]]:
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=50)
    batcher.start()
    yield batcher
    await batcher.stop()


async def test_a_lone_submit_is_stored_at_once(batcher: Batcher[int, str], store: Store) -> None:
    assert await asyncio.wait_for(batcher.submit(1), 1) == "stored 1"
    assert store.batches == [[1]]
    assert (batcher.batches, batcher.items) == (1, 1)


async def test_concurrent_submits_share_few_batches_and_get_their_own_results(
    store: Store,
) -> None:
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=1000)
    batcher.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(300))), 5)
    finally:
        await batcher.stop()
    assert results == [f"stored {n}" for n in range(300)]
    assert len(store.batches) <= 3
    assert [item for batch in store.batches for item in batch] == list(range(300))  # arrival order
    assert (batcher.batches, batcher.items) == (len(store.batches), 300)


async def test_what_arrives_during_a_commit_forms_the_next_batch(
    batcher: Batcher[int, str], store: Store
) -> None:
    store.gate = asyncio.Event()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(store.entered.wait(), 1)  # the first batch is being written
    rest = [asyncio.create_task(batcher.submit(n)) for n in range(1, 21)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 2)
    assert results == [f"stored {n}" for n in range(21)]
    assert store.batches == [[0], list(range(1, 21))]


@pytest.mark.parametrize(("max_batch", "count"), [(1, 10), (7, 50), (50, 50), (64, 200)])
async def test_max_batch_is_respected(store: Store, max_batch: int, count: int) -> None:
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=max_batch)
    batcher.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(count))), 5)
    finally:
        await batcher.stop()
    assert results == [f"stored {n}" for n in range(count)]
    assert all(1 <= len(batch) <= max_batch for batch in store.batches)
    assert len(store.batches) >= math.ceil(count / max_batch)
    assert [item for batch in store.batches for item in batch] == list(range(count))


async def test_a_failed_write_fails_every_caller_of_its_batch(store: Store) -> None:
    store.fail_on = 3
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=100)
    batcher.start()
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(n) for n in range(1, 6)), return_exceptions=True), 2
        )
        assert len(outcomes) == 5
        assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
        assert {str(outcome) for outcome in outcomes} == {"commit failed on 3"}
        assert store.batches == []
        assert (batcher.batches, batcher.items) == (0, 0)  # only stored batches count

        # the writer lives on: the next batch is stored
        assert await asyncio.wait_for(batcher.submit(10), 1) == "stored 10"
        assert store.batches == [[10]]
        assert (batcher.batches, batcher.items) == (1, 1)
    finally:
        await batcher.stop()


async def test_a_failed_batch_does_not_touch_the_batch_after_it(store: Store) -> None:
    store.fail_on = 0
    store.gate = asyncio.Event()
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=100)
    batcher.start()
    try:
        doomed = asyncio.create_task(batcher.submit(0))
        await asyncio.wait_for(store.entered.wait(), 1)
        fine = [asyncio.create_task(batcher.submit(n)) for n in range(1, 4)]
        await asyncio.sleep(0)
        store.gate.set()
        with pytest.raises(RuntimeError, match="commit failed on 0"):
            await asyncio.wait_for(doomed, 1)
        assert await asyncio.wait_for(asyncio.gather(*fine), 1) == ["stored 1", "stored 2", "stored 3"]
        assert store.batches == [[1, 2, 3]]
    finally:
        await batcher.stop()


async def test_a_failure_beyond_max_batch_fails_only_its_own_batch(store: Store) -> None:
    store.fail_on = 2
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=3)
    batcher.start()
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(n) for n in range(9)), return_exceptions=True), 2
        )
    finally:
        await batcher.stop()
    failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, RuntimeError)]
    stored = [n for n, outcome in enumerate(outcomes) if outcome == f"stored {n}"]
    assert failed == [0, 1, 2]  # all nine wait together: split 3 + 3 + 3, the first fails
    assert stored == list(range(3, 9))
    assert store.batches == [[3, 4, 5], [6, 7, 8]]


async def test_stop_stores_what_waits_before_returning(store: Store) -> None:
    store.gate = asyncio.Event()
    batcher: Batcher[int, str] = Batcher(store.write, max_batch=4)
    batcher.start()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(store.entered.wait(), 1)  # a commit is under way
    waiting = [asyncio.create_task(batcher.submit(n)) for n in range(1, 11)]
    await asyncio.sleep(0)  # they are all queued behind it
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    store.gate.set()
    await asyncio.wait_for(stopping, 2)
    assert all(task.done() for task in [first, *waiting])
    assert [task.result() for task in [first, *waiting]] == [f"stored {n}" for n in range(11)]
    assert [item for batch in store.batches for item in batch] == list(range(11))
    assert all(len(batch) <= 4 for batch in store.batches)


async def test_stop_with_nothing_waiting_returns(store: Store) -> None:
    batcher: Batcher[int, str] = Batcher(store.write)
    batcher.start()
    await asyncio.wait_for(batcher.stop(), 1)
    assert store.batches == []


async def test_stop_before_start_is_harmless(store: Store) -> None:
    batcher: Batcher[int, str] = Batcher(store.write)
    await asyncio.wait_for(batcher.stop(), 1)
    assert store.batches == []


async def test_submit_before_start_is_refused(store: Store) -> None:
    batcher: Batcher[int, str] = Batcher(store.write)
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.submit(1)
    assert store.batches == []


async def test_a_writer_answering_the_wrong_number_of_items_fails_that_batch_only() -> None:
    calls = []

    async def short(items: Sequence[int]) -> list[int]:
        calls.append(len(items))
        return list(items)[:-1] if len(calls) == 1 else list(items)

    batcher: Batcher[int, int] = Batcher(short)
    batcher.start()
    with pytest.raises(RuntimeError, match="answered 0 of 1"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2
    await batcher.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.submit(3)
