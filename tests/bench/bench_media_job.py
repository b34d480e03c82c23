"""What the media rules add to one job: the same dry-run job with the example rule set, with and without its
media rules (``qr-scam-links``, ``known-spam-images``), measured in the same run.

The emulator runs as its own process (on its own core when there are two), its rate limit lifted. It holds
one one-to-one conversation of ``MESSAGES`` messages, half of them the suspect's; ``WITH_PICTURES`` of the
suspect's carry a picture uploaded to the emulator (``POST /_emulator/media``): ``DISTINCT_PHOTOS`` innocent
photos, each posted several times, plus the QR-code spam poster and the known spam picture (re-encoded at
75 %) of :mod:`worker.demo_media`. The pictures are served by the emulator over HTTP at their rendition URLs.

Each job goes the way the worker runs one (:func:`worker.runner.execute`: started in the ledger, a temporary
SQLite file, then :func:`worker.pipeline.run_job`, then settled), through the worker's own Chat client and
its allow-listed :class:`~worker.media.fetch.MediaFetcher` (``fetcher_from_settings``, in-process cache,
the emulator's address allowed). Every job has a fresh job id and is a dry run, so the history and the
ledger's state that matters never change. Three ways, interleaved round after round:

- ``baseline``: the example rule set without its media rules (no picture is fetched);
- ``cold``: with them, the fetcher's cache emptied first: every distinct picture is downloaded once;
- ``warm``: with them, right after a cold job, cache kept: no picture is downloaded, the rules still
  decode and examine every one.

The scan hands the rules a page of 100 messages at a time and asks the fetcher for that page's pictures:
each distinct picture of a page is fetched (or taken from the cache) and examined once per page, so a
picture posted on both pages is examined twice in a job. Rows: each job's time against the baseline's; the
time spent in the fetcher against the whole job's; pictures asked for, examined and downloaded; and the
rules' own cost per picture examined (warm job less baseline, over the pictures examined).

The best of ``ROUNDS`` rounds counts (the machine is shared; noise only ever slows a job down). Raises if a
job did not end as a dry run that plans exactly what the rules should find: the two spam pictures with the
media rules, nothing without.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rules import DEFAULT_RULES_PATH
from rules.media import Media, MediaRef
from tests.bench import Row
from tests.bench.harness import cores, emulator_process
from tests.conftest import make_client as make_seed_client
from tests.worker.harness import job, worker_settings
from worker.config import Settings
from worker.consumer import make_client, policy_of
from worker.demo import upload
from worker.demo_media import innocent_photo, qr_spam_picture, reposted_spam_picture
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.jobs import Job
from worker.ledger import open_ledger
from worker.ledger.store import Ledger
from worker.media.cache import MemoryCache
from worker.media.fetch import MediaFetcher, fetcher_from_settings
from worker.media.metrics import MediaMetrics
from worker.pipeline import Policy
from worker.retry import RetryPolicy
from worker.rulebook import Rulebook
from worker.runner import Action, execute
from worker.tim.client import TimClient
from worker.tim.models import JsonObject

BENCH = "media_job"
MESSAGES = 200
WITH_PICTURES = 20  # of the suspect's messages
DISTINCT_PHOTOS = 5
ROUNDS = 7
MEDIA_TYPES = frozenset({"qr", "image_hash"})
SUSPECT, REPORTER = "spammer", "reporter"
T0 = int(time.time()) - 3 * 3600
STEP_S = 20

_CHAT = [
    "are we still on for dinner on friday?",
    "sure, 7pm at the usual place",
    "sending you the photos from the weekend",
    "haha that one is great",
    "明天一起吃午饭吗",
    "好的，老地方见",
    "did you see the match last night",
    "running 10 minutes late, sorry",
]


@dataclass(slots=True)
class Seeded:
    """The conversation: the MsgKeys of the spam pictures, and how many picture messages there are."""

    spam_keys: set[str]
    pictures: int
    distinct: int


@dataclass(slots=True)
class Counted:
    """Wraps the fetcher's ``fetch_many``: pictures asked for and time spent in it, per job."""

    fetcher: MediaFetcher
    refs: int = 0  # picture references the scan asked for
    asked: int = 0  # pictures (UUIDs) answered: one per distinct picture of each page
    seconds: float = 0.0

    async def fetch_many(self, refs: Sequence[MediaRef]) -> Mapping[str, Media]:
        self.refs += len(refs)
        started = time.perf_counter()
        try:
            found = await self.fetcher.fetch_many(refs)
        finally:
            self.seconds += time.perf_counter() - started
        self.asked += len(found)
        missing = {u: m.reason for u, m in found.items() if not m.examined}
        if missing:
            raise RuntimeError(f"the benchmark's pictures were not all fetched: {missing}")
        return found

    def reset(self) -> None:
        self.refs, self.asked, self.seconds = 0, 0, 0.0


@dataclass(slots=True)
class Timings:
    """One way's job times (seconds), and what its jobs fetched."""

    jobs: list[float] = field(default_factory=list)
    in_fetcher: list[float] = field(default_factory=list)
    refs: list[int] = field(default_factory=list)  # picture references asked of the fetcher
    asked: list[int] = field(default_factory=list)  # pictures handed to the rules
    downloads: list[float] = field(default_factory=list)  # pictures downloaded (not from the cache)
    kilobytes: list[float] = field(default_factory=list)  # downloaded

    def best_ms(self) -> float:
        return 1000 * min(self.jobs)

    def median_ms(self) -> float:
        return 1000 * statistics.median(self.jobs)


# -- seeding --------------------------------------------------------------------------------------------


async def seed(url: str) -> Seeded:
    """The conversation, its pictures uploaded to the emulator first."""
    photos = [await upload(url, innocent_photo(seed=100 + n)) for n in range(DISTINCT_PHOTOS)]
    qr = await upload(url, qr_spam_picture())
    known = await upload(url, reposted_spam_picture())
    suspect_turns = [i for i in range(MESSAGES) if i % 2]  # the suspect sends every other message
    carrying = suspect_turns[:: len(suspect_turns) // WITH_PICTURES][:WITH_PICTURES]
    spam_at = {carrying[len(carrying) // 3]: qr, carrying[2 * len(carrying) // 3]: known}
    innocent_at = [i for i in carrying if i not in spam_at]
    pictures = {i: photos[n % DISTINCT_PHOTOS] for n, i in enumerate(innocent_at)} | spam_at
    async with make_seed_client(url, rate_per_command=100_000) as client:
        await import_accounts(client, [SUSPECT, REPORTER])
        calls = []
        for i in range(MESSAGES):
            sender, receiver = (SUSPECT, REPORTER) if i % 2 else (REPORTER, SUSPECT)
            body: list[JsonObject] = [text(f"{_CHAT[i % len(_CHAT)]} ({i})")]
            if i in pictures:
                body.append(pictures[i])
            calls.append(
                import_c2c(
                    client,
                    sender=sender,
                    receiver=receiver,
                    timestamp=T0 + i * STEP_S,
                    seq=i + 1,
                    random=5000 + i,
                    body=body,
                )
            )
        keys = await asyncio.gather(*calls)
    spam_keys = {keys[i] for i in spam_at}
    return Seeded(spam_keys, len(pictures), DISTINCT_PHOTOS + len(spam_at))


# -- the jobs -------------------------------------------------------------------------------------------


def _settings(url: str, database_url: str) -> Settings:
    return worker_settings(
        "sqlite:///unused-queue.db",
        url,
        database_url=database_url,
        redis_url=None,  # the fetcher's cache in process: "cold" is an emptied cache
        media_allowed_hosts=["127.0.0.1"],
        media_allowed_networks=["127.0.0.0/8"],
    )


def rules_without_media(directory: Path) -> Rulebook:
    """The example rule file with its media rules left out, as a rule book of its own."""
    document = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    dropped = 0
    for ruleset in document["rulesets"].values():
        kept = [r for r in ruleset.get("rules", []) if r.get("type") not in MEDIA_TYPES]
        dropped += len(ruleset.get("rules", [])) - len(kept)
        ruleset["rules"] = kept
    if not dropped:
        raise RuntimeError(f"{DEFAULT_RULES_PATH} has no media rule to leave out")
    path = directory / "default-without-media.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Rulebook(path)


async def one_job(
    the_job: Job, client: TimClient, rules: Rulebook, ledger: Ledger, policy: Policy
) -> tuple[float, set[str]]:
    """Run ``the_job`` as the worker does; its seconds and the MsgKeys it planned."""
    started = time.perf_counter()
    settlement = await execute(
        the_job,
        1,
        client=client,
        rules=rules,
        ledger=ledger,
        policy=policy,
        retry=RetryPolicy(max_attempts=1),
        timeout_s=120,
    )
    elapsed = time.perf_counter() - started
    result = settlement.result
    if settlement.action is not Action.FINISH or result is None or result.status != "dry_run":
        raise RuntimeError(f"a benchmark job did not end as a dry run: {settlement}")
    if result.messages_scanned != MESSAGES:
        raise RuntimeError(f"a benchmark job scanned {result.messages_scanned} of {MESSAGES} messages")
    return elapsed, set(result.planned)


async def measure(url: str, seeded: Seeded, directory: Path) -> dict[str, Timings]:
    settings = _settings(url, f"sqlite:///{directory}/ledger.db")
    with_media = Rulebook(DEFAULT_RULES_PATH)
    if not with_media.ruleset("default").wants_media:
        raise RuntimeError("the example rule set has no media rule")
    without_media = rules_without_media(directory)
    ledger = open_ledger(settings.database_url)
    timings = {way: Timings() for way in ("baseline", "cold", "warm")}
    try:
        async with make_client(settings) as client, fetcher_from_settings(settings) as fetcher:
            counted = Counted(fetcher)
            policy = dataclasses.replace(policy_of(settings), media=counted.fetch_many)

            async def run(way: str, rules: Rulebook, *, record: bool = True) -> None:
                if way == "cold":
                    fetcher.cache = MemoryCache()
                counted.reset()
                before = _downloaded(fetcher.metrics)
                the_job = job(
                    f"bench-media-{way}-{uuid.uuid4().hex[:12]}",
                    operator=REPORTER,
                    peer=SUSPECT,
                    suspect=SUSPECT,
                    since=T0 - 1,
                    until=T0 + MESSAGES * STEP_S,
                    mode="dry_run",
                )
                seconds, planned = await one_job(the_job, client, rules, ledger, policy)
                want = set() if way == "baseline" else seeded.spam_keys
                if planned != want:
                    raise RuntimeError(f"the {way} job planned {sorted(planned)}, not {sorted(want)}")
                if not record:
                    return
                timing = timings[way]
                timing.jobs.append(seconds)
                timing.in_fetcher.append(counted.seconds)
                timing.refs.append(counted.refs)
                timing.asked.append(counted.asked)
                after = _downloaded(fetcher.metrics)
                timing.downloads.append(after[0] - before[0])
                timing.kilobytes.append((after[1] - before[1]) / 1000)

            # warm-up: connections, the rule sets' first scans, the QR reader's first call
            await run("baseline", without_media, record=False)
            await run("cold", with_media, record=False)
            for _ in range(ROUNDS):
                await run("baseline", without_media)
                await run("cold", with_media)
                await run("warm", with_media)
    finally:
        ledger.dispose()
    for way, want in (("baseline", 0), ("cold", seeded.distinct), ("warm", 0)):
        if set(timings[way].downloads) != {want}:
            raise RuntimeError(f"{way} jobs downloaded {timings[way].downloads} pictures, not {want} each")
    return timings


def _downloaded(metrics: MediaMetrics) -> tuple[float, float]:
    """Pictures downloaded (fetched, not answered from the cache) and bytes downloaded, so far."""
    registry = metrics.registry
    fetched = registry.get_sample_value("recall_media_fetches_total", {"outcome": "ok"}) or 0.0
    hits = registry.get_sample_value("recall_media_cache_hits_total", {"cache": "memory"}) or 0.0
    return fetched - hits, registry.get_sample_value("recall_media_bytes_total") or 0.0


def run() -> list[Row]:
    available = cores()
    with (
        emulator_process("--no-rate-limit", core=available[0] if len(available) > 1 else None) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        seeded = asyncio.run(seed(url))
        timings = asyncio.run(measure(url, seeded, Path(tmp)))
    base, cold, warm = timings["baseline"], timings["cold"], timings["warm"]
    for way, timing in timings.items():
        print(
            f"  {way:8} job ms: best {timing.best_ms():.1f}, median {timing.median_ms():.1f}; "
            f"in the fetcher: best {1000 * min(timing.in_fetcher):.1f}",
            file=sys.stderr,
        )
    conversation = (
        f"{MESSAGES} messages, {seeded.pictures} pictures ({seeded.distinct} distinct) from the suspect"
    )
    without = "example rules without media rules"
    refs, asked = max(cold.refs), max(cold.asked)
    examined_ms = (warm.best_ms() - base.best_ms()) / asked  # the rules' own cost: no download when warm
    rows = [
        (
            f"dry-run job, {conversation}: media rules, cold cache",
            cold.best_ms(),
            "ms",
            base.best_ms(),
            without,
        ),
        ("dry-run job, same: media rules, warm cache", warm.best_ms(), "ms", base.best_ms(), without),
        (
            "time in the media fetcher per job, cold cache",
            min(cold.in_fetcher) * 1000,
            "ms",
            cold.best_ms(),
            "the whole cold job",
        ),
        (
            "time in the media fetcher per job, warm cache",
            min(warm.in_fetcher) * 1000,
            "ms",
            warm.best_ms(),
            "the whole warm job",
        ),
        (
            "pictures the scan asked the fetcher for, per job",
            refs,
            "pictures",
            seeded.pictures,
            "picture messages of the suspect",
        ),
        ("pictures examined by the rules per job (distinct per page)", asked, "pictures", refs, "asked for"),
        ("pictures downloaded per job, cold cache", max(cold.downloads), "pictures", asked, "examined"),
        ("pictures downloaded per job, warm cache", max(warm.downloads), "pictures", asked, "examined"),
        ("kB downloaded per job, cold cache", max(cold.kilobytes), "kB", None, ""),
        ("media rules' cost per picture examined, (warm - baseline) / examined", examined_ms, "ms", None, ""),
    ]
    return [Row(BENCH, *row) for row in rows]
