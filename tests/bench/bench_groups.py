"""Group scanning throughput against the service's ceiling, with the emulator's rate limit on.

``group_msg_get_simple`` returns at most 20 messages a call and the service allows 200 calls/s per command
per app, so one app can read at most 20 x 200 = 4,000 group messages/s; the target is >= 90 % of that from
one worker process. The emulator runs as its own process on its own core with its default limit (200
calls/s per command, sliding one-second window); this process is pinned to the other core(s) while it
measures.

Seeding: ``GROUPS`` groups are created while the emulator clock is set back (so old history can be
imported), then filled through ``import_group_msg`` with chat text and about 3 % spam from one member (the
job's suspect), with the emulator limit lifted; it is restored before anything limited is measured. Each
group holds exactly ``PAGES_PER_GROUP`` full pages (its join tip and the imported messages). The seed
helpers go through a bare keep-alive HTTP caller, not :class:`TimClient`, only to keep seeding short.

Measured in this run, against the same groups (every job is a dry run, so the history never changes):

- ``worker``: the whole worker (:class:`ThreadWorker`: on-disk queue, ledger, the shipped rules) at
  concurrency ``GROUPS`` running ``JOBS_PER_GROUP`` dry-run jobs per group, so that jobs finish and start
  while others walk, as under a steady queue; the rate over the jobs' first start to last finish, from
  submitting the jobs to the last result (adds queue pick-up), and over the first to the last history call
  (leaves out the ledger work after the last page);
- ``scan``: the pipeline's scan (``worker.pipeline.scan``: the history walk with the shipped rules run on
  every page) over every group at once through one :class:`TimClient`, limit on: group scanning itself,
  without the queue and the ledger;
- ``bare walk``: ``iter_group_history`` over every group at once through one :class:`TimClient`, limit on:
  what the API client and its pacing allow without queue, ledger and rules;
- ``one at a time``: the same walk group after group: the serial page dependency within one group (each
  request needs the previous page's lowest seq), here against a local emulator answering in ~0.5 ms;
- ``client limiter alone``: the client's limiter handing out slots to ``GROUPS`` callers that make no
  call: the most its pacing (200 starts per 1.05 s, 95.2 % of the ceiling) lets through on this machine;
- ``limit lifted``: the walk with both limits off: how fast walk + emulator go when CPU is all that limits.

The worker and the bare walk run ``ATTEMPTS`` times, interleaved, and the best run counts: the machine is
shared, and noise only ever slows a run down. Rates are shown against the 4,000 msg/s ceiling (the ratio
is the fraction of the ceiling); costs (CPU ms per 20-message page in this process and in the emulator,
the CPU this process used and could get) are shown next to the bare walk's or next to one core, and the
longest garbage-collector pause (it stops the event loop) next to one limiter slot. Raises if
any walk or job did not read exactly the seeded messages, or a dry run did not plan exactly the suspect's
spam.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.bench import Row
from tests.bench.harness import cores, emulator_process
from tests.conftest import ADMIN, KEY, SDKAPPID, make_client
from tests.worker.harness import ThreadWorker, wait_results, wait_until, worker_settings
from worker.config import Settings
from worker.consumer import make_client as make_worker_client
from worker.emulator.limits import DEFAULT_LIMIT
from worker.emulator.seed import create_group, import_accounts, import_group_messages, text
from worker.jobs import Job
from worker.pipeline import scan
from worker.queues import Queues
from worker.rulebook import Rulebook
from worker.tim.client import TimClient
from worker.tim.history import GROUP_MAX_PAGE, HistoryStats, iter_group_history
from worker.tim.ratelimit import DEFAULT_WINDOW_S, RateLimiter
from worker.tim.usersig import UserSigProvider

GROUPS = 16
PAGES_PER_GROUP = 50
MESSAGES_PER_GROUP = PAGES_PER_GROUP * GROUP_MAX_PAGE  # the join tip (seq 1) + imported messages
MEMBERS = 8
SPAM_EVERY = 33  # about 3 % of a group's messages are the suspect's spam
SERIAL_GROUPS = 4  # groups walked one at a time (a quarter, to keep the run short)
JOBS_PER_GROUP = 2  # each group is reported twice: the worker turns jobs over as a queue keeps coming
ATTEMPTS = 2  # the worker and the bare walk run this many times, interleaved; the best run counts
CEILING = GROUP_MAX_PAGE * DEFAULT_LIMIT  # 4,000 messages/s
BACK_S = 2 * 86400  # groups are created this long ago
GROUP_HISTORY = "group_msg_get_simple"
_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)

_PLACES = ["the canteen", "Bay 4", "the usual place", "Wudaokou", "the café downstairs", "Nanshan"]
_NAMES = ["Wei", "Lina", "Tom", "Priya", "Chen", "Sam", "小王", "阿杰"]
_CHAT = [
    "morning all, anyone up for lunch at {place} today?",
    "the build on main is green again, thanks {name}",
    "can someone review my PR before Friday? it's the one touching the billing export",
    "lol that's exactly what happened last time",
    "I'll be 10 minutes late, the train is stuck outside the station again",
    "photos from the trip are in the shared album 📸",
    "does anyone know a good dentist near {place}?",
    "👍",
    "ok",
    "sounds good to me",
    "happy birthday {name}! 🎉🎂",
    "the meeting moved to 3pm, same room",
    "did you see the new release notes? the search is finally fast",
    "早上好，今天在{place}见？",
    "收到，谢谢{name}",
    "周末有人去爬山吗？天气预报说是晴天",
    "我晚点把文件发到群里",
    "haha 😂",
    "who's bringing the projector tomorrow?",
    "reminder: rent for the room is due on the 5th, send it to {name}",
    "can we move the standup to 10:15? I have a clash",
    "the wifi at {place} is down again",
    "thanks everyone, great session today 🙏",
    "anyone selling a bike? mine got stolen at {place}",
]
#: Each matches a ``recall`` rule of the shipped rule set (rules/examples/default.yaml).
_SPAM = [
    "FREE CRYPTO giveaway!!! claim yours now before it's gone",
    "buy followers cheap, 10k for $5, DM me",
    "Double your Bitcoin in 24h, guaranteed, ask me how",
    "best deals at http://scam-example.com/promo click now",
    "代开发票，价格优惠，欢迎咨询",
    "f.r.e.e c.r.y.p.t.o for the first 100 members",
]


@dataclass(slots=True)
class Seeded:
    """One seeded group."""

    group_id: str
    suspect: str
    spam_seqs: set[str]


@dataclass(slots=True)
class Measured:
    """One timed scan of every group it covered."""

    messages: int
    pages: int
    elapsed_s: float
    cpu_s: float  # used by this process (every thread) ...
    cpu_wall_s: float  # ... over this wall time
    emulator_cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed_s

    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu_s / self.pages

    def cores(self) -> float:
        """The CPU this process used, in cores."""
        return self.cpu_s / self.cpu_wall_s

    def cpu_bound_rate(self) -> float:
        """Messages/s this process could scan with one whole core and no pacing, at this CPU cost."""
        return GROUP_MAX_PAGE * 1000 / self.cpu_ms_per_page()

    def emulator_ms_per_page(self) -> float:
        return 1000 * self.emulator_cpu_s / self.pages


# -- seeding --------------------------------------------------------------------------------------------


def _history(rng: random.Random, members: list[str], suspect: str, start: int) -> tuple[list[Any], set[int]]:
    """The imported messages of one group, and the indexes of the suspect's spam among them."""
    messages = []
    spam = set()
    when = start
    for n in range(MESSAGES_PER_GROUP - 1):  # seq 1 is the join tip
        when += rng.randint(1, 12)
        if n % SPAM_EVERY == SPAM_EVERY // 2:
            sender, body = suspect, [text(rng.choice(_SPAM))]
            spam.add(n)
        else:
            sender = rng.choice([*members, suspect]) if rng.random() < 0.9 else members[0]
            line = rng.choice(_CHAT).format(place=rng.choice(_PLACES), name=rng.choice(_NAMES))
            body = [text(line)]
            if rng.random() < 0.05:
                body.append({"MsgType": "TIMFaceElem", "MsgContent": {"Index": 1, "Data": "smile"}})
        messages.append((sender, when, rng.getrandbits(32), body))
    return messages, spam


class _RawCaller:
    """The seed helpers' :class:`ApiCaller` over a few keep-alive HTTP/1.1 connections.

    Seeding makes thousands of calls, and through :class:`TimClient` (httpx) each costs this process about
    15 times the CPU of a bare request: seeding would take longer than everything measured.
    """

    def __init__(self, url: str, connections: int = GROUPS) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        sig = UserSigProvider(SDKAPPID, KEY, ADMIN).get()
        self.query = f"sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig}&random=1&contenttype=json"
        self.connections = connections  # still to open
        self.opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def __aenter__(self) -> _RawCaller:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for _, writer in self.opened:
            writer.close()

    async def call(self, path: str, body: Any) -> dict[str, Any]:
        if self.idle.empty() and self.connections > 0:
            self.connections -= 1
            connection = await asyncio.open_connection(self.host, self.port)
            self.opened.append(connection)
        else:
            connection = await self.idle.get()
        reader, writer = connection
        payload = orjson.dumps(body)
        writer.write(
            f"POST /v4/{path}?{self.query} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(head)
        reply = orjson.loads(await reader.readexactly(int(length.group(1)) if length else 0))
        self.idle.put_nowait(connection)
        if reply.get("ErrorCode") != 0:
            raise RuntimeError(f"{path} failed: {reply}")
        return reply


async def _seed(url: str) -> tuple[list[Seeded], int]:
    """Create and fill the groups; returns them and the earliest time in any of them."""
    rng = random.Random(20240607)
    async with _RawCaller(url) as client:
        members = {g: [f"g{g}u{k}" for k in range(MEMBERS)] for g in range(GROUPS)}
        suspects = {g: f"g{g}spam" for g in range(GROUPS)}
        accounts = ["owner", *(u for g in range(GROUPS) for u in [*members[g], suspects[g]])]
        await import_accounts(client, accounts)
        clock = httpx.post(f"{url}/_emulator/clock", json={"advance": -BACK_S})
        created = int(clock.raise_for_status().json()["now"])
        try:
            group_ids = await asyncio.gather(
                *(
                    create_group(
                        client,
                        owner="owner",
                        group_type="Public",
                        name=f"bench group {g}",
                        members=[*members[g], suspects[g]],
                    )
                    for g in range(GROUPS)
                )
            )
        finally:
            httpx.post(f"{url}/_emulator/clock", json={"advance": BACK_S}).raise_for_status()

        async def fill(g: int) -> Seeded:
            messages, spam = _history(rng, members[g], suspects[g], created + 5)
            seqs = await import_group_messages(client, group_id=group_ids[g], messages=messages)
            if seqs[-1] != MESSAGES_PER_GROUP:
                raise RuntimeError(f"group {g} holds {seqs[-1]} messages, not {MESSAGES_PER_GROUP}")
            return Seeded(group_ids[g], suspects[g], {str(seqs[n]) for n in spam})

        return list(await asyncio.gather(*(fill(g) for g in range(GROUPS)))), created - 1


def _set_limit(url: str, limit: int | None) -> None:
    """Set the emulator's default per-command limit (None lifts it); every window starts afresh."""
    httpx.post(f"{url}/_emulator/limits", json={"default": limit or 0}).raise_for_status()
    answer = httpx.get(f"{url}/_emulator/limits").raise_for_status().json()
    if answer["default"] != limit:
        raise RuntimeError(f"the emulator limit is {answer['default']}, not {limit}")


# -- measuring ------------------------------------------------------------------------------------------


def _children_cpu_s() -> float:
    """CPU seconds used so far by this process's children (the emulator): Linux /proc, else 0."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            children = listing.read().split()
        total = 0
        for child in children:
            with open(f"/proc/{child}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    except OSError:
        return 0.0
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class _Timing:
    """Wall time and CPU (this process's, the emulator's) from its creation to :meth:`stop`."""

    cpu_s: float = field(default_factory=time.process_time)
    emulator_cpu_s: float = field(default_factory=_children_cpu_s)
    started: float = field(default_factory=time.perf_counter)

    def stop(self, walked: Sequence[HistoryStats]) -> Measured:
        elapsed = time.perf_counter() - self.started
        return Measured(
            messages=sum(s.messages for s in walked),
            pages=sum(s.pages for s in walked),
            elapsed_s=elapsed,
            cpu_s=time.process_time() - self.cpu_s,
            cpu_wall_s=elapsed,
            emulator_cpu_s=_children_cpu_s() - self.emulator_cpu_s,
        )


@contextmanager
def _pinned_away_from(core: int | None) -> Iterator[None]:
    """Run this process on every allowed core but ``core`` (the emulator's), if there is one left."""
    before = os.sched_getaffinity(0)
    if core is None or len(before) < 2:
        yield
        return
    os.sched_setaffinity(0, before - {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _emulator_stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_emulator/stats").raise_for_status().json()


def _breaches(url: str) -> int:
    return int(_emulator_stats(url)["limit_breaches"].get(GROUP_HISTORY, 0))


async def _walk_one(client: TimClient, group: Seeded, since: int, until: int) -> HistoryStats:
    stats = HistoryStats()
    async for _ in iter_group_history(client, group_id=group.group_id, since=since, until=until, stats=stats):
        pass
    if stats.messages != MESSAGES_PER_GROUP or stats.pages != PAGES_PER_GROUP:
        raise RuntimeError(
            f"the walk of {group.group_id} read {stats.messages} messages in {stats.pages} pages, "
            f"not {MESSAGES_PER_GROUP} in {PAGES_PER_GROUP}"
        )
    return stats


async def _walk(url: str, groups: list[Seeded], since: int, *, serial: bool, rate: int) -> Measured:
    """Walk every group's history through one client (concurrently, or one group after another)."""
    until = int(time.time()) + 60
    async with make_client(url, rate_per_command=rate, max_connections=GROUPS) as client:
        timing = _Timing()
        if serial:
            walked = [await _walk_one(client, g, since, until) for g in groups]
        else:
            walked = await asyncio.gather(*(_walk_one(client, g, since, until) for g in groups))
        return timing.stop(walked)


async def _scan(url: str, groups: list[Seeded], since: int) -> Measured:
    """Scan every group at once with the shipped rules (``pipeline.scan``), through one client."""
    ruleset = Rulebook().ruleset("default")
    scans = [_group_job(n, group, since) for n, group in enumerate(groups)]
    async with make_client(url, rate_per_command=DEFAULT_LIMIT, max_connections=GROUPS) as client:
        timing = _Timing()
        walked = [HistoryStats() for _ in scans]
        found = await asyncio.gather(
            *(scan(job, client, ruleset, stats) for job, stats in zip(scans, walked, strict=True))
        )
        measured = timing.stop(walked)
    for job, group, stats, matched in zip(scans, groups, walked, found, strict=True):
        spam = {m.ref.msg_key for m in matched.matched if m.ref.sender == group.suspect}
        if stats.messages != MESSAGES_PER_GROUP or spam != group.spam_seqs:
            raise RuntimeError(
                f"{job.job_id}: scanned {stats.messages} messages, matched {len(spam)} of the suspect's "
                f"{len(group.spam_seqs)} spam messages"
            )
    return measured


async def _limiter_alone(seconds: float = 2.0) -> float:
    """Messages/s the client's limiter alone hands out (GROUPS callers taking 200/s slots, no calls)."""
    limiter = RateLimiter(DEFAULT_LIMIT, DEFAULT_WINDOW_S)
    starts = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal starts
        while time.perf_counter() < deadline:
            await limiter.acquire()
            starts += 1
            await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(GROUPS)))
    return GROUP_MAX_PAGE * starts / (time.perf_counter() - started)


def _group_job(n: int, group: Seeded, since: int) -> Job:
    return Job.model_validate(
        {
            "version": 1,
            "job_id": f"bench-group-{n}",
            "conversation": {"type": "group", "group_id": group.group_id},
            "suspect": group.suspect,
            "window": {"since": since, "until": int(time.time()) + 60},
            "mode": "dry_run",
        }
    )


def _check_results(results: list[dict[str, Any]], groups: list[Seeded]) -> None:
    by_group = {g.group_id: g for g in groups}
    for result in results:
        group = by_group[result["conversation"]["group_id"]]
        scanned, pages = result["messages_scanned"], result["pages_fetched"]
        if result["status"] != "dry_run" or scanned != MESSAGES_PER_GROUP or pages != PAGES_PER_GROUP:
            raise RuntimeError(
                f"job {result['job_id']}: {result['status']}, {scanned} messages in {pages} pages "
                f"(expected dry_run, {MESSAGES_PER_GROUP} in {PAGES_PER_GROUP}); error: {result['error']}"
            )
        if set(result["planned"]) != group.spam_seqs:
            raise RuntimeError(
                f"job {result['job_id']} planned {len(result['planned'])} messages, "
                f"not the suspect's {len(group.spam_seqs)} spam messages"
            )


class _HistoryCalls:
    """A :class:`CallObserver` noting when the worker's client made each history call."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def attempt(self, command: str, outcome: str, latency_s: float) -> None:
        if command == GROUP_HISTORY:
            self.times.append(time.perf_counter())

    def retry(self, command: str) -> None:
        pass

    def rate_wait(self, command: str, seconds: float) -> None:
        pass

    def rate_limited(self, command: str) -> None:
        pass

    def limiter_state(self, command: str, rate_per_s: float, waiting: int) -> None:
        pass


class _GcPauses:
    """The longest garbage-collector pause while installed (it stops every thread, the event loop too)."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest_s = max(self.longest_s, time.perf_counter() - self._started)

    def __enter__(self) -> _GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)


@dataclass(slots=True)
class WorkerRun:
    """One worker run: the jobs' span, and what else it showed."""

    jobs: Measured  # over the first job's start to the last job's finish
    end_to_end: float  # messages/s from submitting the jobs to the last result
    walking: float  # messages/s from the first history call to the last
    longest_gc_s: float
    client_stats: dict[str, Any]


def _worker(url: str, groups: list[Seeded], since: int) -> WorkerRun:
    """Run ``JOBS_PER_GROUP`` dry-run jobs per group through one worker at concurrency ``GROUPS``."""
    calls = _HistoryCalls()

    def client_factory(settings: Settings) -> TimClient:
        client = make_worker_client(settings)
        client.observers.append(calls)
        return client

    with tempfile.TemporaryDirectory() as tmp:
        settings = worker_settings(f"sqlite:///{tmp}/queue.db", url, concurrency=GROUPS)
        queues = Queues(settings)
        jobs = [_group_job(n, groups[n % GROUPS], since) for n in range(JOBS_PER_GROUP * GROUPS)]
        with ThreadWorker(settings, Rulebook(), client_factory=client_factory) as runner, _GcPauses() as gcs:
            state = runner.worker.state
            wait_until(lambda: state.connected and state.credentials_ok is True, 30, "the worker to start")
            cpu, emulator_cpu = time.process_time(), _children_cpu_s()
            submitted = time.time()
            queues.submit(jobs)
            results = wait_results(queues, len(jobs), timeout_s=120)
            cpu_s, emulator_cpu_s = time.process_time() - cpu, _children_cpu_s() - emulator_cpu
            cpu_wall_s = time.time() - submitted
            client = runner.worker._client
            client_stats = client.stats.snapshot() if client is not None else {}
    _check_results(results, groups)
    first_start = min(r["finished_at"] - r["duration_s"] for r in results)
    last_finish = max(r["finished_at"] for r in results)
    messages = sum(r["messages_scanned"] for r in results)
    span = Measured(
        messages=messages,
        pages=sum(r["pages_fetched"] for r in results),
        elapsed_s=last_finish - first_start,
        cpu_s=cpu_s,
        cpu_wall_s=cpu_wall_s,
        emulator_cpu_s=emulator_cpu_s,
    )
    walking = GROUP_MAX_PAGE * (len(calls.times) - 1) / (calls.times[-1] - calls.times[0])
    return WorkerRun(span, messages / (last_finish - submitted), walking, gcs.longest_s, client_stats)


# -- the benchmark --------------------------------------------------------------------------------------


def run() -> list[Row]:
    available = cores()
    server_core = available[0] if len(available) > 1 else None
    with emulator_process(core=server_core) as url:
        _set_limit(url, None)
        groups, since = asyncio.run(_seed(url))
        with _pinned_away_from(server_core):
            _set_limit(url, None)
            unlimited = asyncio.run(_walk(url, groups, since, serial=False, rate=1_000_000))
            limiter = asyncio.run(_limiter_alone())
            _set_limit(url, DEFAULT_LIMIT)
            serial = asyncio.run(_walk(url, groups[:SERIAL_GROUPS], since, serial=True, rate=DEFAULT_LIMIT))
            walks, scans, workers = [], [], []
            for _ in range(ATTEMPTS):  # interleaved, so that all see the machine alike
                walks.append(asyncio.run(_walk(url, groups, since, serial=False, rate=DEFAULT_LIMIT)))
                scans.append(asyncio.run(_scan(url, groups, since)))
                workers.append(_worker(url, groups, since))
        breaches = _breaches(url)
    walk = max(walks, key=lambda m: m.rate)
    scanned = max(scans, key=lambda m: m.rate)
    best_worker = max(workers, key=lambda w: w.jobs.rate)
    worker = best_worker.jobs
    retries = sum(best_worker.client_stats.get("retries", {}).values())
    # What the client's pacing allows at best: ``rate`` starts per ``window`` seconds, 20 messages each.
    paced = GROUP_MAX_PAGE * DEFAULT_LIMIT / DEFAULT_WINDOW_S
    slot_ms = 1000 * DEFAULT_WINDOW_S / DEFAULT_LIMIT
    ceiling = "API ceiling 20 x 200/s"
    best = f"best of {ATTEMPTS}"
    jobs = f"{JOBS_PER_GROUP * GROUPS} dry-run jobs on {GROUPS} groups x {MESSAGES_PER_GROUP} msgs"

    def vs_ceiling(figure: str, value: float) -> Row:
        return Row("groups", figure, value, "msg/s", CEILING, ceiling)

    def vs_walk(figure: str, value: float, baseline: float, unit: str) -> Row:
        return Row("groups", figure, value, unit, baseline, "bare walk")

    def vs_core(figure: str, value: float) -> Row:
        return Row("groups", figure, value, "cores", 1.0, "one core")

    return [
        vs_ceiling(f"scan (walk + shipped rules): {GROUPS} groups at once, one client, {best}", scanned.rate),
        vs_ceiling(f"worker: {jobs}, concurrency {GROUPS}, {best}", worker.rate),
        vs_ceiling("worker: same run, submit to last result", best_worker.end_to_end),
        vs_ceiling("worker: same run, first to last history call", best_worker.walking),
        vs_ceiling(f"bare walk: {GROUPS} groups at once, one client, {best}", walk.rate),
        vs_ceiling(f"bare walk: {SERIAL_GROUPS} groups one at a time", serial.rate),
        vs_ceiling(f"client limiter alone, no calls (at best {paced:,.0f})", limiter),
        vs_ceiling("bare walk: limit lifted (emulator + client)", unlimited.rate),
        vs_walk("worker vs bare walk", worker.rate, walk.rate, "msg/s"),
        vs_walk("CPU per page, scan", scanned.cpu_ms_per_page(), walk.cpu_ms_per_page(), "ms"),
        vs_walk("CPU per page, worker process", worker.cpu_ms_per_page(), walk.cpu_ms_per_page(), "ms"),
        vs_ceiling("worker if CPU-bound on one whole core", worker.cpu_bound_rate()),
        vs_core("CPU used: worker", worker.cores()),
        vs_core("CPU got when it wants it all: walk, limit lifted", unlimited.cores()),
        Row(
            "groups",
            "longest GC pause in the worker run",
            1000 * best_worker.longest_gc_s,
            "ms",
            slot_ms,
            "one limiter slot",
        ),
        vs_walk(
            "CPU per page, emulator: worker", worker.emulator_ms_per_page(), walk.emulator_ms_per_page(), "ms"
        ),
        Row("groups", "emulator limit breaches (all runs)", breaches, "calls"),
        Row("groups", "client retries (worker)", retries, "calls"),
    ]
