"""Group jobs end to end, on the embedded queue with the SQLite ledger and on RabbitMQ with PostgreSQL:
what the worker recalls in a group or a community topic, what it leaves and why, refusals, and wipes
(proposed, approved, carried out, and what a wipe misses recalled by seq), checked against the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import make_client
from tests.keyword_rules import KeywordRuleSet, StaticRules
from tests.ledger.conftest import fresh_pg_schema
from tests.services import RABBITMQ, require
from tests.worker.conftest import AMQP_URL
from tests.worker.groups import (
    HOLE,
    group_job,
    group_messages,
    join_at,
    new_group,
    recalled_seqs,
    sent_by,
    seqs,
)
from tests.worker.harness import ThreadWorker, wait_results, worker_settings
from worker import consumer, plans
from worker.config import Settings
from worker.emulator.seed import import_accounts, import_group_messages, send_group, text
from worker.emulator.server import EmulatorThread
from worker.ledger import open_ledger
from worker.queues import Queues
from worker.tim.client import TimClient
from worker.tim.errors import TimApiError
from worker.tim.recall import recall_group

T0 = int(time.time()) - 3600
WINDOW = (T0, T0 + 600)
WIPE_WORDS = ("vip signals group", "guaranteed profit")

MakeSettings = Callable[..., Settings]


@pytest.fixture(params=["embedded", "rabbitmq"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(broker URL, ledger URL): the on-disk queue with SQLite, or RabbitMQ with a fresh PostgreSQL schema."""
    if request.param == "embedded":
        yield f"sqlite:///{tmp_path}/queue.db", f"sqlite:///{tmp_path}/ledger.db"
        return
    require(RABBITMQ)
    with fresh_pg_schema() as database_url:
        yield AMQP_URL, database_url


@pytest.fixture
def make_settings(stack: tuple[str, str], emulator: EmulatorThread) -> Iterator[MakeSettings]:
    """Worker settings on the stack (with overrides); every queue they made is deleted afterwards."""
    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        broker_url, database_url = stack
        settings = worker_settings(broker_url, emulator.url, database_url=database_url, **overrides)
        made.append(settings)
        return settings

    yield make
    for settings in made:
        Queues(settings).delete_all()


def rules(*window: int) -> StaticRules:
    """``spam`` recalls, the scam-invite words wipe; the ``window`` rule set also names ``window`` seqs."""
    return StaticRules(
        KeywordRuleSet(wipe=WIPE_WORDS),
        KeywordRuleSet("window", wipe=WIPE_WORDS, window=tuple(str(seq) for seq in window)),
    )


def reasons(result: dict[str, Any]) -> dict[int, str]:
    return {int(s["msg_key"]): s["reason"] for s in result["skipped"]}


async def seed_reported_group(url: str) -> tuple[str, dict[str, int]]:
    """mallory's spam among a group's chatter, and every kind of message a job must leave alone."""
    async with make_client(url) as client:
        await import_accounts(client, ["carol", "henry", "mallory", "newbie"])
        group, _ = await new_group(
            client, url, owner="carol", members=["henry", "mallory"], created_at=T0 - 300
        )
        before_tip = [
            ("before_window", "mallory", T0 - 100, [text("old spam before the window")]),
            ("spam", "mallory", T0 + 10, [text("Buy SPAM now, cheap!")]),
            ("quoted_by_henry", "henry", T0 + 20, [text("mallory, stop the spam")]),
            ("clean", "mallory", T0 + 30, [text("see you tomorrow")]),
            ("recalled_before", "mallory", T0 + 40, [text("more spam here")]),
            ("hole", "mallory", T0 + 50, [text("spam spam spam")]),
            ("second_element", "mallory", T0 + 60, [text("hello"), text("and spam again")]),
        ]
        after_tip = [
            ("last", "mallory", T0 + 80, [text("last spam")]),
            ("after_window", "mallory", T0 + 700, [text("later spam")]),
        ]
        first = await import_group_messages(
            client, group_id=group, messages=[(s, at, n, b) for n, (_, s, at, b) in enumerate(before_tip)]
        )
        await join_at(client, url, group, ["newbie"], T0 + 70)  # a system message inside the window
        second = await import_group_messages(
            client, group_id=group, messages=[(s, at, 50 + n, b) for n, (_, s, at, b) in enumerate(after_tip)]
        )
        seq = {name: s for (name, *_), s in zip(before_tip + after_tip, first + second, strict=True)}
        seq["join_tip"] = first[-1] + 1
        await recall_group(client, group_id=group, seqs=[seq["recalled_before"]])
    holes = httpx.post(f"{url}/_emulator/group/holes", json={"GroupId": group, "MsgSeqList": [seq["hole"]]})
    assert holes.json()["holes"] == [seq["hole"]]
    stored = group_messages(url, group)
    assert stored[seq["join_tip"]]["IsSystemMsg"] == 1 and stored[seq["join_tip"]]["MsgTimeStamp"] == T0 + 70
    return group, seq


async def test_a_group_job_recalls_exactly_the_suspects_matches_in_the_window(
    make_settings: MakeSettings, emulator: EmulatorThread
) -> None:
    group, seq = await seed_reported_group(emulator.url)
    settings = make_settings()
    queues = Queues(settings)
    reported = [seq["spam"], seq["second_element"]]
    report = {"reporter": "henry", "reason": "spam", "msg_seqs": reported}
    # A window rule names the hole and the system message (and two messages outside the window): matched
    # whatever their body, each must still be left for its own reason.
    named = (seq["hole"], seq["join_tip"], seq["before_window"], seq["after_window"])
    queues.submit(
        [group_job("g-1", group, suspect="mallory", ruleset="window", report=report, window=WINDOW)]
    )
    with ThreadWorker(settings, rules(*named)):
        [result] = wait_results(queues, 1)

    expected = {seq["spam"], seq["second_element"], seq["last"]}
    assert recalled_seqs(emulator.url, group) == expected | {seq["recalled_before"]}
    stored = group_messages(emulator.url, group)
    assert stored[seq["hole"]]["IsPlaceMsg"] == HOLE
    assert result["status"] == "done", result
    assert result["conversation"] == {"type": "group", "group_id": group, "topic_id": None}
    assert result["report"]["msg_seqs"] == reported
    assert seqs(result["recalled"]) == sorted(expected)
    assert result["already_recalled"] == [str(seq["recalled_before"])]
    assert reasons(result) == {
        seq["quoted_by_henry"]: "not_sent_by_suspect",
        seq["recalled_before"]: "already_recalled",
        seq["hole"]: "deleted_or_expired",
        seq["join_tip"]: "system_message",
    }
    matched = {int(m["msg_key"]) for m in result["matches"]}
    assert matched == expected | {seq[k] for k in ("quoted_by_henry", "recalled_before", "hole", "join_tip")}
    second = next(m for m in result["matches"] if m["msg_key"] == str(seq["second_element"]))
    assert (second["element_path"], second["evidence"], second["sender"]) == (
        "MsgBody[1].MsgContent.Text",
        "spam",
        "mallory",
    )
    assert second["time"] == T0 + 60
    assert result["messages_scanned"] == 8, "from the first spam to the last: the hole and the tip too"
    assert result["failed"] == [] and result["unverified"] == []
    assert result["plan_ids"] == {} and result["wipe_proposed"] is None and result["wiped"] == []
    assert result["api_calls"]["group_msg_recall"] == 1, "three seqs, one batch"
    assert "delete_group_msg_by_sender" not in result["api_calls"]
    ledger = open_ledger(settings.database_url)
    try:
        audit = ledger.audit("g-1")
    finally:
        ledger.dispose()
    recalls = {int(m["msg_key"]): m["recall"] for m in audit["messages"]}
    for key in expected:
        assert recalls[key] is not None
        assert (recalls[key]["state"], recalls[key]["verified"], recalls[key]["by_job"]) == (
            "recalled",
            True,
            "g-1",
        )
    assert recalls[seq["quoted_by_henry"]] is None


async def test_a_topic_job_recalls_and_wipes_only_in_its_topic(
    make_settings: MakeSettings, emulator: EmulatorThread
) -> None:
    async with make_client(emulator.url) as client:
        await import_accounts(client, ["carol", "henry", "mallory"])
        group, (news, chat) = await new_group(
            client,
            emulator.url,
            owner="carol",
            members=["henry", "mallory"],
            created_at=T0 - 300,
            topics=["news", "chat"],
        )
        spam = [("mallory", T0 + n, n, [text(f"spam #{n}")]) for n in range(1, 12)]
        in_news = await import_group_messages(
            client,
            group_id=group,
            topic_id=news,
            messages=[
                *spam,
                ("henry", T0 + 20, 20, [text("enough spam")]),
                ("mallory", T0 + 21, 21, [text("nice photos")]),
                ("mallory", T0 + 22, 22, [text("Join my VIP signals group today")]),
            ],
        )
        # the group's own log and another topic number their messages from 1 too: the same seqs
        in_main = await import_group_messages(client, group_id=group, messages=spam[:5])
        in_chat = await import_group_messages(client, group_id=group, topic_id=chat, messages=spam[:5])
    assert set(in_chat) <= set(in_news) and set(in_main) <= set(in_news)
    spam_seqs, henry, unmatched, invite = set(in_news[:11]), in_news[11], in_news[12], in_news[13]
    settings = make_settings()
    queues = Queues(settings)
    ledger = open_ledger(settings.database_url)
    try:
        queues.submit([group_job("g-topic", group, topic_id=news, suspect="mallory", window=WINDOW)])
        with ThreadWorker(settings, rules()):
            [result] = wait_results(queues, 1)
            assert result["status"] == "done", result
            assert set(seqs(result["recalled"])) == spam_seqs | {invite}
            assert reasons(result) == {henry: "not_sent_by_suspect"}
            assert result["api_calls"]["group_msg_recall"] == 2, "twelve seqs: batches of ten"
            assert result["wipe_proposed"] == "rule kw-vip signals group"
            assert recalled_seqs(emulator.url, group, news) == spam_seqs | {invite}
            assert recalled_seqs(emulator.url, group) == set()
            assert recalled_seqs(emulator.url, group, chat) == set()
            wipe = ledger.plan(result["plan_ids"]["wipe"])
            assert {int(i.msg_key) for i in wipe.items} == spam_seqs | {unmatched, invite}
            assert wipe.job["conversation"]["topic_id"] == news
            apply = plans.approve(ledger, queues, wipe.id, by="ann", note="scam account")
            [applied] = wait_results(queues, 1)
        assert applied["job_id"] == apply.job_id == f"plan-{wipe.id}-apply"
        assert applied["status"] == "done", applied
        assert applied["wiped"] == [str(unmatched)]
        assert applied["recalled"] == []
        assert applied["api_calls"]["delete_group_msg_by_sender"] == 1
        assert recalled_seqs(emulator.url, group, news) == sent_by(emulator.url, group, "mallory", news)
        assert henry not in recalled_seqs(emulator.url, group, news)
        assert recalled_seqs(emulator.url, group) == set(), "the wipe of a topic leaves the group's log"
        assert recalled_seqs(emulator.url, group, chat) == set(), "and every other topic"
        [record] = ledger.audit(apply.job_id)["wipes"]
        assert record["conversation_key"] == f"group:{group}|topic:{news}"
        assert (record["listed"], record["recalled"], record["missed"]) == (1, 1, 0)
    finally:
        ledger.dispose()


async def test_refused_group_recalls_end_the_job_failed_with_the_code_and_why(
    make_settings: MakeSettings, emulator: EmulatorThread
) -> None:
    async with make_client(emulator.url) as client:
        await import_accounts(client, ["carol", "mallory"])
        groups = []
        for _ in range(2):
            group, _ = await new_group(
                client, emulator.url, owner="carol", members=["mallory"], created_at=T0
            )
            [old] = await import_group_messages(
                client, group_id=group, messages=[("mallory", T0 + 10, 1, [text("old spam")])]
            )
            new = await send_group(
                client, group_id=group, sender="mallory", random=2, body=[text("new spam")]
            )
            groups.append((group, old, new))
    settings = make_settings()
    queues = Queues(settings)
    window = (T0, int(time.time()) + 60)
    control = f"{emulator.url}/_emulator/settings"
    with ThreadWorker(settings, rules()):
        httpx.post(control, json={"refuse_group_recall": True}).raise_for_status()
        (refusing, old, new) = groups[0]
        queues.submit([group_job("g-refused", refusing, suspect="mallory", window=window)])
        [refused] = wait_results(queues, 1)
        assert recalled_seqs(emulator.url, refusing) == set()
        # the app refuses no more, but only messages younger than a minute may be recalled now
        httpx.post(
            control, json={"refuse_group_recall": False, "group_recall_limit_s": 60}
        ).raise_for_status()
        (limited, too_old, recent) = groups[1]
        queues.submit([group_job("g-too-old", limited, suspect="mallory", window=window)])
        [partly] = wait_results(queues, 1)
    assert refused["status"] == "failed" and refused["reason"] == "recall_refused"
    assert refused["recalled"] == []
    assert sorted(refused["failed"], key=lambda f: int(f["msg_key"])) == [
        {"msg_key": str(old), "code": 10041, "info": "the app refuses group recall"},
        {"msg_key": str(new), "code": 10041, "info": "the app refuses group recall"},
    ]
    assert refused["error"] == "2 recall(s) refused by the service"
    assert partly["status"] == "failed" and partly["reason"] == "recall_refused"
    assert partly["recalled"] == [str(recent)]
    assert partly["failed"] == [
        {"msg_key": str(too_old), "code": 10031, "info": "past the recall time limit"}
    ]
    assert recalled_seqs(emulator.url, limited) == {recent}
    dead = {d.headers["x-job-id"]: d.headers for d in queues.read(queues.names.dead, take=True, wait_s=5)}
    assert set(dead) == {"g-refused", "g-too-old"}
    assert {headers["x-dead-reason"] for headers in dead.values()} == {"recall_refused"}


async def seed_invite_group(url: str) -> tuple[str, dict[str, int]]:
    """mallory invites the group into a scam group; henry quotes it; both also chat."""
    async with make_client(url) as client:
        await import_accounts(client, ["carol", "henry", "mallory"])
        group, _ = await new_group(
            client, url, owner="carol", members=["henry", "mallory"], created_at=T0 - 300
        )
        messages = [
            ("before_window", "mallory", T0 - 100, [text("hi all, new here")]),
            ("spam", "mallory", T0 + 10, [text("cheap spam, DM me")]),
            ("invite", "mallory", T0 + 20, [text("Join my VIP signals group: guaranteed profit every day")]),
            ("quote", "henry", T0 + 30, [text("a vip signals group? no thanks")]),
            ("chat", "mallory", T0 + 40, [text("nice weather today")]),
            ("henry_chat", "henry", T0 + 50, [text("it is")]),
            ("chat_2", "mallory", T0 + 60, [text("see you"), text("on saturday")]),
            ("after_window", "mallory", T0 + 700, [text("bye")]),
        ]
        sent = await import_group_messages(
            client, group_id=group, messages=[(s, at, n, b) for n, (_, s, at, b) in enumerate(messages)]
        )
    return group, {name: s for (name, *_), s in zip(messages, sent, strict=True)}


async def test_a_wipe_rule_proposes_a_wipe_that_runs_only_once_approved(
    make_settings: MakeSettings, emulator: EmulatorThread
) -> None:
    group, seq = await seed_invite_group(emulator.url)
    settings = make_settings()
    queues = Queues(settings)
    ledger = open_ledger(settings.database_url)
    try:
        queues.submit([group_job("g-invite", group, suspect="mallory", window=WINDOW)])
        with ThreadWorker(settings, rules()):
            [result] = wait_results(queues, 1)
            assert result["status"] == "done", result
            assert seqs(result["recalled"]) == [seq["spam"], seq["invite"]]
            assert reasons(result) == {seq["quote"]: "not_sent_by_suspect"}
            assert result["wipe_proposed"] == "rule kw-guaranteed profit, kw-vip signals group"
            assert set(result["plan_ids"]) == {"wipe"}
            assert recalled_seqs(emulator.url, group) == {seq["spam"], seq["invite"]}, "no wipe yet"
            wipe = ledger.plan(result["plan_ids"]["wipe"])
            assert (wipe.reason, wipe.status, wipe.job["suspect"]) == ("wipe", "pending", "mallory")
            items = {int(item.msg_key): item for item in wipe.items}
            assert set(items) == {seq[k] for k in ("spam", "invite", "chat", "chat_2")}
            assert wipe.missing_evidence == []
            assert items[seq["chat_2"]].body == [text("see you"), text("on saturday")], "evidence kept"
            assert items[seq["chat"]].matches == [], "a message no rule matched is in the wipe plan too"
            apply = plans.approve(ledger, queues, wipe.id, by="ann", note="scam account")
            [applied] = wait_results(queues, 1)
        assert applied["job_id"] == apply.job_id == f"plan-{wipe.id}-apply"
        assert applied["status"] == "done", applied
        assert seqs(applied["wiped"]) == [seq["chat"], seq["chat_2"]]
        assert applied["recalled"] == []
        assert seqs(applied["already_recalled"]) == [seq["spam"], seq["invite"]]
        assert applied["api_calls"]["delete_group_msg_by_sender"] == 1
        assert "group_msg_recall" not in applied["api_calls"], "the wipe missed nothing"
        mallory = sent_by(emulator.url, group, "mallory")
        assert {seq["before_window"], seq["after_window"]} <= mallory
        assert recalled_seqs(emulator.url, group) == mallory, "the wipe is broad: outside the window too"
        audit = ledger.audit(apply.job_id)
        [record] = audit["wipes"]
        assert (record["plan"], record["sender"], record["conversation_key"]) == (
            wipe.id,
            "mallory",
            f"group:{group}",
        )
        assert (record["listed"], record["recalled"], record["missed"]) == (2, 2, 0)
        assert record["finished_at"] is not None
        after = ledger.plan(wipe.id)
        assert (after.status, after.decided_by) == ("applied", "ann")
        states = {int(i.msg_key): i.recall_state for i in after.items}
        assert states == dict.fromkeys(items, "recalled")
    finally:
        ledger.dispose()


async def seed_long_group(url: str, base: int, fillers: int) -> tuple[str, int, list[int]]:
    """mallory's spam, then ``fillers`` messages of others, then more of mallory's: (group, the first
    spam's seq, the last three of mallory's seqs)."""
    async with make_client(url) as client:
        await import_accounts(client, ["carol", "henry", "mallory"])
        group, _ = await new_group(
            client, url, owner="carol", members=["henry", "mallory"], created_at=base - 10
        )
        chatter = [
            ("henry" if n % 2 else "carol", base + 2 + n, n, [text(f"chatter {n}")]) for n in range(fillers)
        ]
        last = base + 2 + fillers
        sent = await import_group_messages(
            client,
            group_id=group,
            messages=[
                ("mallory", base + 1, 90_000, [text("spam #0")]),
                *chatter,
                ("mallory", last + 1, 90_001, [text("spam #1")]),
                ("mallory", last + 2, 90_002, [text("spam #2")]),
                ("mallory", last + 3, 90_003, [text("hello again")]),
            ],
        )
    return group, sent[0], sent[-3:]


async def test_over_the_cap_a_wipe_is_proposed_and_what_it_misses_is_recalled_by_seq(
    make_settings: MakeSettings, emulator: EmulatorThread
) -> None:
    base = int(time.time()) - 7200
    # 1,000 messages of others after mallory's first spam: the wipe reaches only the group's last 1,000
    group, first, recent = await seed_long_group(emulator.url, base, 1000)
    settings = make_settings(max_recalls_per_job=2)
    queues = Queues(settings)
    ledger = open_ledger(settings.database_url)
    try:
        window = (base, base + 1200)
        queues.submit([group_job("g-cap", group, suspect="mallory", window=window)])
        with ThreadWorker(settings, rules()):
            [result] = wait_results(queues, 1)
            assert result["status"] == "escalated", result
            assert seqs(result["planned"]) == [first, *recent[:2]]
            assert result["recalled"] == []
            assert result["wipe_proposed"] == "over_cap"
            assert set(result["plan_ids"]) == {"over_cap", "wipe"}
            assert recalled_seqs(emulator.url, group) == set()
            [escalation] = queues.read(queues.names.escalations, take=True, wait_s=5)
            assert orjson.loads(escalation.body)["job_id"] == "g-cap"
            wipe = ledger.plan(result["plan_ids"]["wipe"])
            assert {int(i.msg_key) for i in wipe.items} == {first, *recent}
            apply = plans.approve(ledger, queues, wipe.id, by="ann")
            [applied] = wait_results(queues, 1)
        assert applied["status"] == "done", applied
        assert seqs(applied["wiped"]) == recent
        assert applied["recalled"] == [str(first)], "older than the group's last 1,000: recalled by seq"
        assert applied["unverified"] == []
        assert applied["api_calls"]["delete_group_msg_by_sender"] == 1
        assert applied["api_calls"]["group_msg_recall"] == 1
        assert (
            recalled_seqs(emulator.url, group) == sent_by(emulator.url, group, "mallory") == {first, *recent}
        )
        [record] = ledger.audit(apply.job_id)["wipes"]
        assert (record["listed"], record["recalled"], record["missed"]) == (4, 3, 1)
    finally:
        ledger.dispose()


async def test_a_wipe_the_service_drops_is_made_good_by_seq(
    make_settings: MakeSettings, emulator: EmulatorThread
) -> None:
    group, seq = await seed_invite_group(emulator.url)
    settings = make_settings()
    queues = Queues(settings)
    ledger = open_ledger(settings.database_url)
    try:
        queues.submit([group_job("g-dropped", group, suspect="mallory", window=WINDOW)])
        with ThreadWorker(settings, rules()):
            [result] = wait_results(queues, 1)
            # the wipe call answers OK and changes nothing
            faults = {"commands": {"delete_group_msg_by_sender": {"drop_recall_rate": 1.0}}}
            httpx.post(f"{emulator.url}/_emulator/faults", json=faults).raise_for_status()
            apply = plans.approve(ledger, queues, result["plan_ids"]["wipe"], by="ann")
            [applied] = wait_results(queues, 1)
        assert applied["status"] == "done", applied
        assert applied["wiped"] == []
        assert seqs(applied["recalled"]) == [seq["chat"], seq["chat_2"]]
        assert applied["api_calls"]["delete_group_msg_by_sender"] == 1
        in_window = {seq[k] for k in ("spam", "invite", "chat", "chat_2")}
        assert recalled_seqs(emulator.url, group) == in_window, "by seq, only what the plan listed"
        [record] = ledger.audit(apply.job_id)["wipes"]
        assert (record["listed"], record["recalled"], record["missed"]) == (2, 0, 2)
    finally:
        ledger.dispose()


def failing_the_read_after_the_recall(settings: Settings) -> TimClient:
    """The worker's client, but the second history read (the first attempt's verification, right after
    its recall) fails with a retryable error, once: the job is retried after it has recalled."""
    client = consumer.make_client(settings)
    real = client.call
    reads = 0

    async def call(path: str, body: Any) -> Any:
        nonlocal reads
        if path.endswith("/group_msg_get_simple"):
            reads += 1
            if reads == 2:
                raise TimApiError("group_msg_get_simple", 91000, "injected: the read after the recall")
        return await real(path, body)

    client.call = call  # type: ignore[method-assign]
    return client


async def test_a_job_retried_after_its_recall_still_proposes_the_wipe(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    group, seq = await seed_invite_group(emulator.url)
    settings = worker_settings(
        f"sqlite:///{tmp_path}/queue.db", emulator.url, database_url=f"sqlite:///{tmp_path}/ledger.db"
    )
    queues = Queues(settings)
    queues.submit([group_job("g-retried", group, suspect="mallory", window=WINDOW)])
    with ThreadWorker(settings, rules(), client_factory=failing_the_read_after_the_recall):
        [result] = wait_results(queues, 1)
    assert result["attempts"] == 2
    assert recalled_seqs(emulator.url, group) == {seq["spam"], seq["invite"]}, "the first attempt recalled"
    assert result["status"] == "done", result
    assert result["wipe_proposed"] == "rule kw-guaranteed profit, kw-vip signals group", result
    assert set(result["plan_ids"]) == {"wipe"}
