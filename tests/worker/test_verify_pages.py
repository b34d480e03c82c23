"""Verifying recalls reads again only the history pages that held recalled messages, in one narrow window
per page (a group's by seq), on the SQLite and the PostgreSQL ledger; and it still catches a recall the
service answered OK but silently dropped.

Jobs run in process (``run_job`` against the in-process emulator); the emulator's call counts tell how many
history pages the scan and the verification read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from tests.keyword_rules import KeywordRuleSet
from tests.worker.groups import group_job, new_group, recalled_seqs
from tests.worker.harness import job as c2c_job
from worker.emulator.seed import (
    add_subscribers,
    create_official_account,
    import_accounts,
    import_c2c,
    import_group_messages,
    send_official_account,
    text,
)
from worker.emulator.server import EmulatorThread
from worker.jobs import Job
from worker.ledger.store import Ledger, Started
from worker.pipeline import JobReport, MessageRef, Policy, history_of, run_job
from worker.plans import apply_job_for
from worker.tim.client import TimClient
from worker.tim.history import GROUP_HISTORY_PATH, OA_HISTORY_PATH, ROAM_PATH, HistoryStats
from worker.tim.recall import C2C_RECALL_PATH, GROUP_RECALL_PATH, OA_RECALL_PATH

T0 = int(time.time()) - 7200
#: One-to-one history: 150 messages of ~200 bytes on 4 KB pages (about ten pages).
C2C_MESSAGES = 150
C2C_SPAM = (10, 75, 140)  # oldest first: far apart, on three pages


def command(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def calls(url: str, path: str) -> int:
    """How many calls of ``path``'s command the emulator answered since its reset."""
    outcomes = httpx.get(f"{url}/_emulator/stats").json()["calls"].get(command(path), {})
    return sum(outcomes.values())


def faults(url: str, path: str, seed: int = 7, **fault: Any) -> None:
    """Inject ``fault`` into ``path``'s command, drawn from a generator seeded with ``seed``."""
    body = {"commands": {command(path): fault}, "seed": seed}
    httpx.post(f"{url}/_emulator/faults", json=body).raise_for_status()


async def pages_of(job: Job, client: TimClient) -> dict[str, int]:
    """The page of the job's history walk that holds each message (as the scan records it)."""
    stats = HistoryStats()
    return {
        message.msg_key: MessageRef.of(message, stats.pages).page
        async for message in history_of(job, client, stats)
    }


async def run(job: Job, client: TimClient, ledger: Ledger) -> JobReport:
    started = ledger.start_job(job, ruleset_version="v1")
    assert isinstance(started, Started)
    return await run_job(job, client, KeywordRuleSet(), ledger=ledger, policy=Policy(), job_pk=started.pk)


def audit_recalls(ledger: Ledger, job_id: str) -> dict[str, tuple[str, bool | None]]:
    """MsgKey -> (recall state, verified) of each message the job matched."""
    return {
        m["msg_key"]: (m["recall"]["state"], m["recall"]["verified"])
        for m in ledger.audit(job_id)["messages"]
        if m["recall"] is not None
    }


async def seed_c2c(client: TimClient, url: str) -> list[str]:
    """eve's and bob's long conversation, eve's spam at :data:`C2C_SPAM`; the spam's MsgKeys."""
    httpx.post(f"{url}/_emulator/settings", json={"roam_page_bytes": 4096}).raise_for_status()
    await import_accounts(client, ["eve", "bob"])
    spam = []
    for n in range(C2C_MESSAGES):
        sender, receiver = ("eve", "bob") if n % 2 else ("bob", "eve")
        body = f"ordinary message number {n}, " * 4
        if n in C2C_SPAM:
            sender, receiver, body = "eve", "bob", "cheap spam, click now"
        key = await import_c2c(
            client,
            sender=sender,
            receiver=receiver,
            timestamp=T0 + 10 * n,
            seq=n + 1,
            random=n + 1,
            body=[text(body)],
        )
        if n in C2C_SPAM:
            spam.append(key)
    return spam


def eve_job(job_id: str, **extra: Any) -> Job:
    return c2c_job(
        job_id, operator="bob", peer="eve", suspect="eve", since=T0 - 1, until=T0 + 10 * C2C_MESSAGES, **extra
    )


async def test_a_c2c_job_verifies_by_reading_only_the_pages_of_its_recalls(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    spam = await seed_c2c(client, emulator.url)
    job = eve_job("verify-c2c")
    pages = await pages_of(job, client)
    held = sorted({pages[key] for key in spam})
    assert len(held) == 3, "the spam lies on three pages"
    span = held[-1] - held[0] + 1  # what reading the window between the recalls again would take
    assert span >= 6
    httpx.post(f"{emulator.url}/_emulator/stats/reset").raise_for_status()

    report = await run(job, client, ledger)

    assert sorted(r.msg_key for r in report.recalls) == sorted(spam) and report.unverified == []
    verification = calls(emulator.url, ROAM_PATH) - report.history.pages
    assert verification == len(held) < span, "one page read again per page holding a recall"
    assert audit_recalls(ledger, "verify-c2c") == dict.fromkeys(spam, ("recalled", True))


async def test_a_recall_the_service_dropped_still_shows_up_unverified(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    spam = await seed_c2c(client, emulator.url)
    faults(emulator.url, C2C_RECALL_PATH, drop_recall_rate=1.0)
    httpx.post(f"{emulator.url}/_emulator/stats/reset").raise_for_status()

    report = await run(eve_job("verify-dropped"), client, ledger)

    assert sorted(r.msg_key for r in report.recalls) == sorted(spam), "every call was answered OK"
    assert report.unverified == sorted(spam)
    assert calls(emulator.url, ROAM_PATH) - report.history.pages == 3, "each page read again once, whole"
    assert audit_recalls(ledger, "verify-dropped") == dict.fromkeys(spam, ("unverified", False))


async def test_only_the_recalls_the_service_dropped_are_unverified(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    spam = await seed_c2c(client, emulator.url)
    faults(emulator.url, C2C_RECALL_PATH, seed=1, drop_recall_rate=0.5)  # drops some, not all

    report = await run(eve_job("verify-some-dropped"), client, ledger)

    messages = httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": "eve", "b": "bob"}).json()["messages"]
    really = {m["MsgKey"] for m in messages if m["MsgFlagBits"] == 8}
    assert 0 < len(really) < len(spam), "the fault's seed drops some of the recalls, not all"
    assert report.unverified == sorted(set(spam) - really)
    states = audit_recalls(ledger, "verify-some-dropped")
    assert states == {key: ("recalled", True) if key in really else ("unverified", False) for key in spam}


async def test_an_approved_plans_apply_job_verifies_only_the_pages_of_its_recalls(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    spam = await seed_c2c(client, emulator.url)
    dry = await run(eve_job("verify-dry", mode="dry_run"), client, ledger)
    assert dry.recalls == [] and set(dry.plans) == {"dry_run"}
    apply = apply_job_for(ledger.decide_plan(dry.plans["dry_run"], approve=True, by="moderator"))
    httpx.post(f"{emulator.url}/_emulator/stats/reset").raise_for_status()

    report = await run(apply, client, ledger)

    assert sorted(r.msg_key for r in report.recalls) == sorted(spam) and report.unverified == []
    assert calls(emulator.url, ROAM_PATH) - report.history.pages == 3


async def seed_group(client: TimClient, url: str) -> tuple[str, list[int]]:
    """A group with 100 messages (five pages of 20), mallory's spam on three of them; the spam's seqs."""
    await import_accounts(client, ["carol", "mallory"])
    group, _ = await new_group(client, url, owner="carol", members=["mallory"], created_at=T0 - 60)
    spam_at = (5, 50, 95)
    messages = [
        ("mallory", T0 + 10 * n, n, [text("spam offer" if n in spam_at else f"chatter {n}")])
        if n in spam_at or n % 3 == 0
        else ("carol", T0 + 10 * n, n, [text(f"chatter {n}")])
        for n in range(100)
    ]
    seqs = await import_group_messages(client, group_id=group, messages=messages)
    return group, [seqs[n] for n in spam_at]


async def test_a_group_job_verifies_each_recalls_page_by_seq(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    group, spam = await seed_group(client, emulator.url)
    job = group_job("verify-group", group, suspect="mallory", window=(T0, T0 + 1000))
    pages = await pages_of(job, client)
    held = sorted({pages[str(seq)] for seq in spam})
    assert len(held) == 3 and held[-1] - held[0] + 1 >= 5
    httpx.post(f"{emulator.url}/_emulator/stats/reset").raise_for_status()

    report = await run(job, client, ledger)

    assert sorted(int(r.msg_key) for r in report.recalls) == spam and report.unverified == []
    assert calls(emulator.url, GROUP_HISTORY_PATH) - report.history.pages == 3
    assert recalled_seqs(emulator.url, group) == set(spam)


async def test_a_group_recall_the_service_dropped_shows_up_unverified(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    group, spam = await seed_group(client, emulator.url)
    faults(emulator.url, GROUP_RECALL_PATH, drop_recall_rate=1.0)
    httpx.post(f"{emulator.url}/_emulator/stats/reset").raise_for_status()

    report = await run(
        group_job("verify-group-dropped", group, suspect="mallory", window=(T0, T0 + 1000)), client, ledger
    )

    assert report.unverified == sorted(str(seq) for seq in spam)
    assert recalled_seqs(emulator.url, group) == set()
    # Each walk stops below the page's lowest recalled seq, shown or not.
    assert calls(emulator.url, GROUP_HISTORY_PATH) - report.history.pages == 3
    assert set(audit_recalls(ledger, "verify-group-dropped").values()) == {("unverified", False)}


async def seed_official_account(client: TimClient, texts: Sequence[str]) -> tuple[str, list[str]]:
    """An official account that broadcast ``texts`` in order; its id and the MsgKeys."""
    await import_accounts(client, ["owner", "reader"])
    account = await create_official_account(client, owner="owner", name="News")
    await add_subscribers(client, account, ["reader"])
    keys = [
        await send_official_account(client, account=account, random=n + 1, body=[text(t)])
        for n, t in enumerate(texts)
    ]
    return account, keys


def account_job(job_id: str, account: str) -> Job:
    now = int(time.time())
    return Job.model_validate(
        {
            "version": 1,
            "job_id": job_id,
            "conversation": {"type": "official_account", "account": account},
            "suspect": account,
            "window": {"since": now - 3600, "until": now + 60},
        }
    )


async def test_an_official_account_job_verifies_in_one_walk_that_stops_at_its_oldest_recall(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    spam_at = (3, 25, 55)  # oldest first, among 60: pages 3, 2 and 1 of the newest-first walk
    account, keys = await seed_official_account(
        client, ["spam deal" if n in spam_at else f"news {n}" for n in range(60)]
    )
    spam = [keys[n] for n in spam_at]
    job = account_job("verify-account", account)
    pages = await pages_of(job, client)
    assert sorted({pages[key] for key in spam}) == [1, 2, 3]
    httpx.post(f"{emulator.url}/_emulator/stats/reset").raise_for_status()

    report = await run(job, client, ledger)

    assert sorted(r.msg_key for r in report.recalls) == sorted(spam) and report.unverified == []
    # The API takes no time bound: the one walk reads from the newest page down to the oldest recall's.
    assert calls(emulator.url, OA_HISTORY_PATH) - report.history.pages == 3


async def test_an_official_account_recall_the_service_dropped_shows_up_unverified(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger
) -> None:
    account, keys = await seed_official_account(client, ["spam deal", "news", "more spam"])
    faults(emulator.url, OA_RECALL_PATH, drop_recall_rate=1.0)

    report = await run(account_job("verify-account-dropped", account), client, ledger)

    assert report.unverified == sorted([keys[0], keys[2]])
    assert set(audit_recalls(ledger, "verify-account-dropped").values()) == {("unverified", False)}
