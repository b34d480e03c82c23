"""Group scanning throughput against the service's ceiling, with the emulator's rate limit on.

``group_msg_get_simple`` returns at most 20 messages a call and the service allows 200 calls/s per command
per app, so one app can read at most 20 x 200 = 4,000 group messages/s; the target is >= 90 % of that from
one worker process. The emulator runs as its own process on its own core with its default limit (200
calls/s per command, sliding one-second window); this process is pinned to the other core(s) while it
measures.

Seeding: ``GROUPS`` groups are created while the emulator clock is set back (so old history can be
imported), then filled through ``import_group_msg`` with chat text and about 3 % spam from one member (the
job's suspect), with the emulator limit lifted; it is restored before anything limited is measured. Each
group holds exactly ``PAGES_PER_GROUP`` full pages (its join tip and the imported messages).

Measured in this run, against the same groups (every job is a dry run, so the history never changes):

- ``worker``: the whole worker (:class:`ThreadWorker`: on-disk queue, ledger, the shipped rules) running one
  dry-run job per group at concurrency ``GROUPS``; the rate over the jobs' own first start to last finish,
  and from submitting the jobs to the last result (adds queue pick-up);
- ``bare walk``: ``iter_group_history`` over every group at once through one :class:`TimClient`, limit on:
  what the API client and its pacing allow without queue, ledger and rules;
- ``one at a time``: the same walk group after group: the serial page dependency within one group (each
  request needs the previous page's lowest seq), here with the emulator's sub-millisecond latency;
- ``client limiter alone``: the client's limiter handing out slots to ``GROUPS`` callers that make no
  call: the most its pacing (200 starts per 1.05 s, 95.2 % of the ceiling) lets through on this machine;
- ``limit lifted``: the walk with both limits off: how fast walk + emulator go when CPU is all that limits.

The worker and the bare walk run ``ATTEMPTS`` times, interleaved, and the best run counts: the machine is
shared, and noise only ever slows a run down. Rates are shown against the 4,000 msg/s ceiling (the ratio
is the fraction of the ceiling); costs (CPU ms per 20-message page in this process and in the emulator,
the CPU this process used and could get) are shown next to the bare walk's or next to one core. Raises if
any walk or job did not read exactly the seeded messages, or a dry run did not plan exactly the suspect's
spam.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tests.bench import Row
from tests.bench.harness import cores, emulator_process
from tests.conftest import ADMIN, KEY, SDKAPPID, make_client
from tests.worker.harness import ThreadWorker, wait_results, wait_until, worker_settings
from worker.emulator.limits import DEFAULT_LIMIT
from worker.emulator.seed import create_group, import_accounts, import_group_messages, text
from worker.jobs import Job
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
    rate_wait_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed_s

    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu_s / self.pages

    def cores(self) -> float:
        """The CPU this process got, in cores."""
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
        cpu, emulator_cpu = time.process_time(), _children_cpu_s()
        started = time.perf_counter()
        if serial:
            walked = [await _walk_one(client, g, since, until) for g in groups]
        else:
            walked = await asyncio.gather(*(_walk_one(client, g, since, until) for g in groups))
        elapsed = time.perf_counter() - started
        return Measured(
            messages=sum(s.messages for s in walked),
            pages=sum(s.pages for s in walked),
            elapsed_s=elapsed,
            cpu_s=time.process_time() - cpu,
            cpu_wall_s=elapsed,
            emulator_cpu_s=_children_cpu_s() - emulator_cpu,
            rate_wait_s=client.stats.rate_wait_s,
        )


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


def _worker(url: str, groups: list[Seeded], since: int) -> tuple[Measured, float, dict[str, Any]]:
    """Run one dry-run job per group in one worker; returns the jobs' span, the submit-to-last-result
    rate, and the worker client's stats."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = worker_settings(f"sqlite:///{tmp}/queue.db", url, concurrency=GROUPS)
        queues = Queues(settings)
        jobs = [_group_job(n, g, since) for n, g in enumerate(groups)]
        with ThreadWorker(settings, Rulebook()) as runner:
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
        rate_wait_s=float(client_stats.get("rate_wait_s", 0.0)),
    )
    return span, messages / (last_finish - submitted), client_stats


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
            walks, workers = [], []
            for _ in range(ATTEMPTS):  # interleaved, so that both see the machine alike
                walks.append(asyncio.run(_walk(url, groups, since, serial=False, rate=DEFAULT_LIMIT)))
                workers.append(_worker(url, groups, since))
        breaches = _breaches(url)
    walk = max(walks, key=lambda m: m.rate)
    worker, end_to_end, client_stats = max(workers, key=lambda w: w[0].rate)
    retries = sum(client_stats.get("retries", {}).values())
    # What the client's pacing allows at best: ``rate`` starts per ``window`` seconds, 20 messages each.
    paced = GROUP_MAX_PAGE * DEFAULT_LIMIT / DEFAULT_WINDOW_S
    ceiling = "API ceiling 20 x 200/s"
    best = f"best of {ATTEMPTS}"

    def held_back(run: Measured) -> float:
        return 100 * run.rate_wait_s / run.elapsed_s

    def vs_ceiling(figure: str, value: float) -> Row:
        return Row("groups", figure, value, "msg/s", CEILING, ceiling)

    return [
        vs_ceiling(f"worker: {GROUPS} dry-run group jobs x {MESSAGES_PER_GROUP} msgs, {best}", worker.rate),
        vs_ceiling("worker: submit to last result, same run", end_to_end),
        vs_ceiling(f"bare walk: {GROUPS} groups at once, one client, {best}", walk.rate),
        vs_ceiling(f"bare walk: {SERIAL_GROUPS} groups one at a time", serial.rate),
        vs_ceiling(f"client limiter alone, no calls (at best {paced:,.0f})", limiter),
        vs_ceiling("bare walk: limit lifted (emulator + client)", unlimited.rate),
        Row("groups", "worker vs bare walk", worker.rate, "msg/s", walk.rate, "bare walk"),
        Row(
            "groups",
            "CPU per page, worker process",
            worker.cpu_ms_per_page(),
            "ms",
            walk.cpu_ms_per_page(),
            "bare walk",
        ),
        vs_ceiling("worker if CPU-bound on 1 whole core", worker.cpu_bound_rate()),
        Row("groups", "CPU used: worker", worker.cores(), "cores", 1.0, "one core"),
        Row(
            "groups",
            "CPU got when it wants it all: walk, limit lifted",
            unlimited.cores(),
            "cores",
            1.0,
            "one core",
        ),
        Row(
            "groups",
            "CPU per page, emulator: worker",
            worker.emulator_ms_per_page(),
            "ms",
            walk.emulator_ms_per_page(),
            "bare walk",
        ),
        Row(
            "groups",
            "client limiter holding calls back: worker",
            held_back(worker),
            "% of run",
            held_back(walk),
            "bare walk",
        ),
        Row("groups", "emulator limit breaches (all runs)", breaches, "calls"),
        Row("groups", "client retries (worker)", retries, "calls"),
    ]
