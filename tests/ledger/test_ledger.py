"""The moderation ledger, on SQLite and on the real PostgreSQL: evidence before recall, once-only recalls,
plans, protected accounts, the circuit breaker, verification, replay, audit and retention."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from tests.conftest import KEY, make_client
from tests.keyword_rules import KeywordRuleSet, StaticRules
from tests.worker.harness import ProcessWorker, ThreadWorker, job, wait_results, wait_until, worker_settings
from worker import plans
from worker.cli import main
from worker.config import Settings
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.ledger import open_ledger
from worker.ledger.models import EvidenceRow, RecallRow
from worker.ledger.store import Ledger, content_hash
from worker.queues import Queues
from worker.replay import replay
from worker.rulebook import Rulebook

T0 = int(time.time()) - 3600


@pytest.fixture
def settings(emulator: EmulatorThread, database_url: str, tmp_path: Path) -> Settings:
    return worker_settings(f"sqlite:///{tmp_path}/queue.db", emulator.url, database_url=database_url)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    ledger = open_ledger(settings.database_url)
    yield ledger
    ledger.dispose()


def seed(
    url: str, pairs: list[tuple[str, str]], messages: list[tuple[int, str, str]], first_seq: int = 1
) -> list[str]:
    """Accounts of ``pairs``; ``messages`` are (pair index, sender side "a"/"b", text), a second apart."""

    async def go() -> list[str]:
        async with make_client(url) as client:
            await import_accounts(client, sorted({u for pair in pairs for u in pair}))
            keys = []
            for n, (pair, side, body) in enumerate(messages):
                sender, receiver = pairs[pair] if side == "a" else pairs[pair][::-1]
                keys.append(
                    await import_c2c(
                        client,
                        sender=sender,
                        receiver=receiver,
                        timestamp=T0 + n,
                        seq=first_seq + n,
                        random=first_seq + n,
                        body=[text(body)],
                    )
                )
            return keys

    return asyncio.run(go())


def stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_emulator/stats").json()["calls"]


def recalled(url: str, a: str, b: str) -> set[str]:
    messages = httpx.get(f"{url}/_emulator/c2c", params={"a": a, "b": b}).json()["messages"]
    return {m["MsgKey"] for m in messages if m["MsgFlagBits"] == 8}


def c2c_job(job_id: str, suspect: str, reporter: str, **extra: Any) -> Any:
    return job(
        job_id, operator=reporter, peer=suspect, suspect=suspect, since=T0 - 10, until=T0 + 1000, **extra
    )


def test_two_reports_of_the_same_messages_recall_each_once(
    settings: Settings, emulator: EmulatorThread
) -> None:
    keys = seed(emulator.url, [("eve", "bob")], [(0, "a", f"spam #{n}") for n in range(4)])
    httpx.post(
        f"{emulator.url}/_emulator/faults", json={"commands": {"admin_getroammsg": {"latency_ms": 300}}}
    ).raise_for_status()
    queues = Queues(settings)
    queues.submit([c2c_job("report-1", "eve", "bob"), c2c_job("report-2", "eve", "bob")])
    with ThreadWorker(settings.model_copy(update={"concurrency": 2}), StaticRules()):
        results = {r["job_id"]: r for r in wait_results(queues, 2)}
    assert {r["status"] for r in results.values()} == {"done"}
    first, second = results["report-1"], results["report-2"]
    assert sorted(first["recalled"] + second["recalled"]) == sorted(keys)
    assert not set(first["recalled"]) & set(second["recalled"])
    assert stats(emulator.url)["admin_msgwithdraw"] == {"0": 4}, (
        "the ledger let each message be recalled once"
    )
    queues.submit([c2c_job("report-3", "eve", "bob")])
    with ThreadWorker(settings, StaticRules()):
        [third] = wait_results(queues, 1)
    assert third["recalled"] == [] and sorted(third["already_recalled"]) == sorted(keys)
    assert stats(emulator.url)["admin_msgwithdraw"] == {"0": 4}


def test_an_approved_plan_recalls_exactly_its_messages_and_a_rejected_one_nothing(
    settings: Settings, emulator: EmulatorThread, ledger: Ledger
) -> None:
    keys = seed(
        emulator.url,
        [("eve", "bob"), ("mallory", "carol")],
        [(0, "a", "spam one"), (0, "a", "spam two"), (0, "a", "hello"), (1, "a", "spam three")],
    )
    queues = Queues(settings)
    queues.submit(
        [
            c2c_job("preview-eve", "eve", "bob", mode="dry_run"),
            c2c_job("preview-mallory", "mallory", "carol", mode="dry_run"),
        ]
    )
    with ThreadWorker(settings, StaticRules()):
        results = {r["job_id"]: r for r in wait_results(queues, 2)}
    eve_plan, mallory_plan = (
        results["preview-eve"]["plan_ids"]["dry_run"],
        results["preview-mallory"]["plan_ids"]["dry_run"],
    )
    assert [i.msg_key for i in ledger.plan(eve_plan).items] == keys[:2]
    # eve spams again after the preview: the approved plan must not touch the new message
    [late] = seed(emulator.url, [("eve", "bob")], [(0, "a", "more spam")], first_seq=99)
    apply_job = plans.approve(ledger, queues, eve_plan, by="moderator-ann", note="clear spam")
    plans.reject(ledger, mallory_plan, by="moderator-ann", note="a joke between friends")
    with pytest.raises(Exception, match="not pending"):
        plans.approve(ledger, queues, mallory_plan, by="someone")
    with ThreadWorker(settings, StaticRules()):
        [applied] = wait_results(queues, 1)
    assert applied["job_id"] == apply_job.job_id == f"plan-{eve_plan}-apply"
    assert sorted(applied["recalled"]) == sorted(keys[:2])
    assert recalled(emulator.url, "eve", "bob") == set(keys[:2]), "nothing beyond the plan"
    assert late not in recalled(emulator.url, "eve", "bob")
    assert recalled(emulator.url, "mallory", "carol") == set()
    assert ledger.plan(eve_plan).status == "applied"
    assert ledger.plan(mallory_plan).status == "rejected"
    assert ledger.plan(mallory_plan).decided_by == "moderator-ann"


def test_protected_accounts_are_never_recalled(
    emulator: EmulatorThread, database_url: str, tmp_path: Path
) -> None:
    settings = worker_settings(
        f"sqlite:///{tmp_path}/q.db", emulator.url, database_url=database_url, protected_accounts=["staff"]
    )
    keys = seed(emulator.url, [("staff", "bob")], [(0, "a", "spam announcement")])
    queues = Queues(settings)
    queues.submit([c2c_job("report-staff", "staff", "bob")])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert result["status"] == "done"
    assert result["recalled"] == []
    assert {"msg_key": keys[0], "reason": "protected_account"} in result["skipped"]
    assert "admin_msgwithdraw" not in stats(emulator.url)


def test_the_breaker_trips_on_a_spike_and_plans_instead_of_recalling(
    emulator: EmulatorThread, database_url: str, tmp_path: Path
) -> None:
    settings = worker_settings(
        f"sqlite:///{tmp_path}/q.db",
        emulator.url,
        database_url=database_url,
        breaker_min_jobs=3,
        breaker_min_matches=5,
        breaker_factor=5,
    )
    pairs = [(f"s{i}", f"r{i}") for i in range(5)]
    messages = []
    for i in range(4):  # the usual: one spam in twenty messages
        messages += [(i, "a", "spam" if n == 0 else f"hello {n}") for n in range(20)]
    messages += [(4, "a", "spam" if n % 2 else f"hi {n}") for n in range(20)]  # the spike: half of it
    keys = seed(emulator.url, pairs, messages)
    queues = Queues(settings)
    queues.submit([c2c_job(f"usual-{i}", f"s{i}", f"r{i}") for i in range(4)])
    with ThreadWorker(settings, StaticRules()):
        usual = wait_results(queues, 4)
    assert sum(len(r["recalled"]) for r in usual) == 4
    queues.submit([c2c_job("spike", "s4", "r4")])
    with ThreadWorker(settings, StaticRules()):
        [spike] = wait_results(queues, 1)
    assert set(spike["breakers"]) == {"kw-spam"}
    assert spike["recalled"] == []
    assert "rule_breaker_tripped" in spike["plan_ids"]
    assert recalled(emulator.url, "s4", "r4") == set()
    spike_keys = {k for k, m in zip(keys, messages, strict=True) if m[0] == 4 and m[2] == "spam"}
    assert {s["msg_key"] for s in spike["skipped"] if s["reason"] == "rule_breaker_tripped"} == spike_keys


def test_verification_catches_a_recall_the_service_silently_dropped(
    settings: Settings, emulator: EmulatorThread, ledger: Ledger
) -> None:
    keys = seed(emulator.url, [("eve", "bob")], [(0, "a", "spam"), (0, "a", "more spam")])
    httpx.post(
        f"{emulator.url}/_emulator/faults",
        json={"commands": {"admin_msgwithdraw": {"drop_recall_rate": 1.0}}, "seed": 1},
    ).raise_for_status()
    queues = Queues(settings)
    queues.submit([c2c_job("report-dropped", "eve", "bob")])
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    assert result["status"] == "failed"
    assert sorted(result["unverified"]) == sorted(keys)
    assert "not visible in the history afterwards" in result["error"]
    [dead] = queues.read(queues.names.dead, take=True, wait_s=5)
    assert dead.headers["x-dead-reason"] == "verification_failed"
    audit = ledger.audit("report-dropped")
    assert {m["recall"]["state"] for m in audit["messages"]} == {"unverified"}
    assert {m["recall"]["verified"] for m in audit["messages"]} == {False}


def test_evidence_is_the_original_content_and_purging_keeps_its_hash(
    settings: Settings, emulator: EmulatorThread, ledger: Ledger
) -> None:
    keys = seed(emulator.url, [("eve", "bob")], [(0, "a", "spam with a story")])
    queues = Queues(settings)
    queues.submit([c2c_job("report-evidence", "eve", "bob")])
    with ThreadWorker(settings, StaticRules()):
        wait_results(queues, 1)
    [message] = ledger.audit("report-evidence")["messages"]
    body = [text("spam with a story")]
    assert message["msg_key"] == keys[0]
    assert message["evidence"]["MsgBody"] == body
    assert message["evidence"]["content_hash"] == content_hash(body, "")
    assert message["recall"]["state"] == "recalled" and message["recall"]["verified"] is True
    assert message["matches"][0]["rule_id"] == "kw-spam"
    assert ledger.purge_evidence(datetime.now(UTC) - timedelta(days=1)).purged == []
    assert len(ledger.purge_evidence(datetime.now(UTC) + timedelta(seconds=1)).purged) == 1
    [purged] = ledger.audit("report-evidence")["messages"]
    assert purged["evidence"]["MsgBody"] is None and purged["evidence"]["purged"] is True
    assert purged["evidence"]["content_hash"] == content_hash(body, "")


def test_replay_reports_what_a_candidate_rule_set_adds_and_drops(
    settings: Settings, emulator: EmulatorThread, ledger: Ledger
) -> None:
    keys = seed(
        emulator.url,
        [("eve", "bob"), ("mallory", "carol")],
        [(0, "a", "buy spam now"), (0, "a", "spam and eggs"), (1, "a", "cheap spam")],
    )
    queues = Queues(settings)
    queues.submit([c2c_job("job-1", "eve", "bob")])
    with ThreadWorker(settings, StaticRules()):
        wait_results(queues, 1)
    queues.submit([c2c_job("job-2", "mallory", "carol")])
    with ThreadWorker(settings, StaticRules()):
        wait_results(queues, 1)
    candidate = KeywordRuleSet(recall=("now", "eggs", "spam and"))
    report = replay(ledger, candidate, since=datetime.now(UTC) - timedelta(hours=1), until=datetime.now(UTC))
    # By hand: kw-spam matched all three; the candidate matches "now" in #1, "eggs" and "spam and" in #2.
    assert report.as_dict() == {
        "jobs": 2,
        "messages": 3,
        "rules": {
            "kw-eggs": {"kept": 0, "added": [["job-1", keys[1]]], "dropped": []},
            "kw-now": {"kept": 0, "added": [["job-1", keys[0]]], "dropped": []},
            "kw-spam": {
                "kept": 0,
                "added": [],
                "dropped": [["job-1", keys[0]], ["job-1", keys[1]], ["job-2", keys[2]]],
            },
            "kw-spam and": {"kept": 0, "added": [["job-1", keys[1]]], "dropped": []},
        },
    }


RULES_IN_FORCE = """version: 1
rulesets:
  default:
    rules:
      - {id: spam, type: keywords, action: recall, words: [buy followers]}
      - {id: pharma, type: keywords, action: recall, words: [cheap pills]}
"""
CANDIDATE = """version: 1
rulesets:
  default:
    rules:
      - {id: spam, type: keywords, action: recall, words: [buy followers]}
      - {id: news, type: keywords, action: recall, words: [news bulletin]}
"""


def _ledger_state(ledger: Ledger) -> dict[str, Any]:
    with ledger.session() as session:
        recalls = [(r.message_pk, r.state, r.finished_at) for r in session.scalars(select(RecallRow))]
        evidence = len(session.scalars(select(EvidenceRow)).all())
    return {
        "recalls": recalls,
        "evidence": evidence,
        "plans": ledger.list_plans(None),
        "audit": ledger.audit("job-1"),
    }


def test_replay_reread_reads_the_windows_again_and_shows_what_a_candidate_adds(
    settings: Settings,
    emulator: EmulatorThread,
    ledger: Ledger,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    news = [(0, "a", f"News bulletin #{n}: the weather") for n in range(42)]
    spam = [(0, "a", "buy followers here"), (0, "a", "cheap pills, buy followers"), (0, "a", "cheap pills")]
    keys = seed(emulator.url, [("eve", "bob")], [*news, *spam, (0, "b", "hello")])
    in_force, candidate = tmp_path / "rules.yaml", tmp_path / "candidate.yaml"
    in_force.write_text(RULES_IN_FORCE)
    candidate.write_text(CANDIDATE)
    settings = settings.model_copy(update={"rules_path": in_force})
    queues = Queues(settings)
    queues.submit([c2c_job("job-1", "eve", "bob")])
    with ThreadWorker(settings, Rulebook(in_force)):
        [result] = wait_results(queues, 1)
    assert result["status"] == "done"
    assert recalled(emulator.url, "eve", "bob") == set(keys[42:45]), "the job recalled the spam only"
    history = httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": "eve", "b": "bob"}).json()
    withdrawals = stats(emulator.url)["admin_msgwithdraw"]
    before = _ledger_state(ledger)
    config = tmp_path / "recall.env"
    config.write_text(
        f"RECALL_DATABASE_URL={settings.database_url}\nRECALL_TIM_BASE_URL={emulator.url}\n"
        f"RECALL_TIM_KEY={KEY}\nRECALL_RULES_PATH={in_force}\n"
    )
    since = str(int(time.time()) - 3600)
    argv = ["--config", str(config), "replay", "--rules", str(candidate), "--since", since, "--reread"]

    capsys.readouterr()  # the worker's log
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "", "no progress line when stderr is not a terminal"
    assert orjson.loads(out) == {
        "jobs": 1,
        "messages": 46,
        "rules": {
            "news": {"kept": 0, "added": [["job-1", key] for key in keys[:42]], "dropped": []},
            "pharma": {"kept": 0, "added": [], "dropped": [["job-1", keys[43]], ["job-1", keys[44]]]},
            "spam": {"kept": 2, "added": [], "dropped": []},
        },
    }
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "replayed 46 messages of 1 jobs"
    assert [line.split() for line in table[3:6]] == [
        ["news", "0", "42", "0"],
        ["pharma", "0", "0", "2"],
        ["spam", "2", "0", "0"],
    ]
    # Dry: nothing recalled, planned or written by the replay.
    assert httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": "eve", "b": "bob"}).json() == history
    assert stats(emulator.url)["admin_msgwithdraw"] == withdrawals
    assert _ledger_state(ledger) == before
    # The evidence-only replay cannot see the news bulletins: no rule matched them, nothing was kept.
    assert main(argv[:-1]) == 0
    assert "news" not in capsys.readouterr().out


def test_replay_reread_names_an_unreachable_chat_api(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "recall.env"
    config.write_text(
        f"RECALL_DATABASE_URL={settings.database_url}\nRECALL_TIM_BASE_URL=http://127.0.0.1:9\n"
        f"RECALL_TIM_KEY={KEY}\nRECALL_TIM_MAX_ATTEMPTS=1\n"
    )
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    code = main(["--config", str(config), "replay", "--rules", str(candidate), "--since", "0", "--reread"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    [line] = err.splitlines()
    assert "cannot reach the Chat API" in line and "RECALL_TIM_BASE_URL" in line


def test_a_worker_killed_between_evidence_and_recall_neither_loses_evidence_nor_recalls_twice(
    settings: Settings, emulator: EmulatorThread, ledger: Ledger, tmp_path: Path
) -> None:
    keys = seed(emulator.url, [("eve", "bob")], [(0, "a", "FREE CRYPTO giveaway"), (0, "a", "hello")])
    httpx.post(
        f"{emulator.url}/_emulator/faults", json={"commands": {"admin_msgwithdraw": {"latency_ms": 3000}}}
    ).raise_for_status()
    queues = Queues(settings)
    queues.submit([c2c_job("report-killed", "eve", "bob")])

    def claimed() -> bool:
        with ledger.session() as session:
            return session.scalar(select(RecallRow.state)) == "planned"

    worker = ProcessWorker(settings, tmp_path / "first.log").start()
    try:
        wait_until(claimed, 60, "the recall to be claimed in the ledger")
        with ledger.session() as session:
            evidence = session.scalars(select(EvidenceRow)).all()
        assert [e.body for e in evidence] == [[text("FREE CRYPTO giveaway")]], "evidence is committed first"
        worker.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait(10)
    finally:
        worker.stop()
    httpx.delete(f"{emulator.url}/_emulator/faults").raise_for_status()
    again = ProcessWorker(settings, tmp_path / "second.log").start()
    try:
        [result] = wait_results(queues, 1)
    finally:
        again.stop()
    assert result["status"] == "done", again.log()[-2000:]
    assert recalled(emulator.url, "eve", "bob") == {keys[0]}
    assert stats(emulator.url)["admin_msgwithdraw"].get("0", 0) == 1, "recalled exactly once"
    [message] = ledger.audit("report-killed")["messages"]
    assert message["evidence"]["MsgBody"] == [text("FREE CRYPTO giveaway")]
    assert message["recall"]["state"] in ("recalled", "already_recalled")
    assert message["recall"]["verified"] is True, "the history showing it recalled verifies the recall"
    # The dead worker's call is still in the emulator for the injected 3 s; let it land here, not in the
    # next test (which seeds the same keys).
    time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))
    assert stats(emulator.url)["admin_msgwithdraw"].get("0", 0) == 1
