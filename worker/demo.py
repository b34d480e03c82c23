"""``recall-worker demo`` (``make demo``): the whole job end to end on the embedded defaults.

Starts the emulator on a free local port, seeds realistic conversations through the documented APIs
(a one-to-one chat long enough to need many history pages, a false report, an official account, a group
with one spammer among its members), submits
report jobs to the on-disk queue, has four group members report the group's spammer over the intake's signed
HTTP API (one job for the four), runs the worker until the queue is drained, and prints what was recalled,
by which rule, and what was left and why, and the notices the reporters got. Needs no service and no
network.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from worker.config import Settings
from worker.consumer import Worker
from worker.demo_intake import KEY_ID, file_reports, print_outcome, wait_for_the_job
from worker.demo_media import innocent_photo, qr_spam_picture, reposted_spam_picture
from worker.emulator.gateway import EmulatorConfig
from worker.emulator.seed import (
    add_subscribers,
    create_group,
    create_official_account,
    import_accounts,
    import_c2c,
    import_group_messages,
    send_official_account,
    text,
)
from worker.emulator.server import EmulatorThread
from worker.intake.server import IntakeThread, build_intake
from worker.jobs import Job
from worker.ledger import Ledger
from worker.logs import configure_logging
from worker.plans import approve
from worker.queues import Queues
from worker.results import JobResult
from worker.rulebook import Rulebook
from worker.scan import rule_text, summary_lines
from worker.tim.client import TimClient
from worker.tim.models import JsonObject

CLEAN_EN = [
    "hey, are we still on for lunch tomorrow?",
    "sure, 12:30 at the usual place",
    "did you see the game last night",
    "sending you the slides in a minute",
    "thanks! looks great",
    "can you review my pull request",
    "lol that's hilarious",
    "running 10 minutes late, sorry",
    "happy birthday!! 🎉",
    "what time is the meeting",
    "ok, see you there",
]
CLEAN_ZH = [
    "明天一起吃午饭吗",
    "好的，老地方见",
    "我把文件发给你了",
    "谢谢，辛苦了",
    "周末有什么安排",
    "这个方案我觉得可以",
]


def custom(data: str, desc: str = "", ext: str = "") -> JsonObject:
    return {"MsgType": "TIMCustomElem", "MsgContent": {"Data": data, "Desc": desc, "Ext": ext, "Sound": ""}}


def image(url: str) -> JsonObject:
    return {
        "MsgType": "TIMImageElem",
        "MsgContent": {
            "UUID": "img-" + secrets.token_hex(4),
            "ImageFormat": 1,
            "ImageInfoArray": [{"Type": 1, "Size": 2048, "Width": 640, "Height": 480, "URL": url}],
        },
    }


def file(name: str) -> JsonObject:
    return {
        "MsgType": "TIMFileElem",
        "MsgContent": {
            "Url": f"https://files.example.net/{name}",
            "UUID": "f-1",
            "FileSize": 123456,
            "FileName": name,
            "Download_Flag": 2,
        },
    }


def forwarded(title: str, inner: list[JsonObject], sender: str) -> JsonObject:
    return {
        "MsgType": "TIMRelayElem",
        "MsgContent": {
            "Title": title,
            "MsgNum": len(inner),
            "CompatibleText": "[Chat history]",
            "AbstractList": [title],
            "MsgList": [
                {
                    "From_Account": sender,
                    "To_Account": "someone",
                    "MsgSeq": 1,
                    "MsgRandom": 1,
                    "MsgTimeStamp": int(time.time()) - 86400,
                    "MsgBody": [element],
                }
                for element in inner
            ],
        },
    }


# (label, body) of what the spammer sends among ordinary chat; the labels show up in the summary.
OFFENDING: list[tuple[str, list[JsonObject]]] = [
    ("plain keyword", [text("FREE CRYPTO giveaway, claim yours today")]),
    ("spaced-out keyword", [text("f.r.e.e c.r.y.p.t.o for the first 100 people")]),
    ("full-width keyword", [text("ｂｕｙ ｆｏｌｌｏｗｅｒｓ cheap, 10k for $5")]),
    ("Chinese keyword", [text("专业代开发票，联系我")]),
    (
        "link in a custom element",
        [custom(json.dumps({"type": "card", "url": "https://scam-example.com/win"}), desc="You won!")],
    ),
    ("obfuscated link", [text("check out hxxp://login.bad[.]example now")]),
    ("forwarded spam", [forwarded("great deal", [text("join our 赌博 group, daily bonus")], "bob")]),
]


#: What mallory, the group's spammer, posts among ordinary chat (by message index in the group).
GROUP_SPAM: dict[int, tuple[str, list[JsonObject]]] = {
    9: ("group spam", [text("FREE CRYPTO for everyone in this group, DM me")]),
    23: ("group spam (Chinese)", [text("网络赌场 新人注册送彩金")]),
    37: ("scam-group invite: a wipe rule", [text("Join my VIP signals group: guaranteed profit every day")]),
    51: ("group spam (link)", [text("hiking gear 90% off https://scam-example.com/gear")]),
}


async def upload(emulator_url: str, picture: bytes) -> JsonObject:
    """Store a picture in the emulator as a client would send it; its ``TIMImageElem``."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{emulator_url}/_emulator/media", content=picture)
        answer.raise_for_status()
        element: JsonObject = answer.json()
        return element


def chat_body(i: int, photo: JsonObject | None = None) -> list[JsonObject]:
    line = CLEAN_EN[i % len(CLEAN_EN)] if i % 3 else CLEAN_ZH[i % len(CLEAN_ZH)]
    body = [text(f"{line} ({i})")]
    if i % 17 == 0:
        body.append(photo or image(f"https://cdn.example.net/photo-{i}.jpg"))
    return body


async def chat(
    client: TimClient,
    a: str,
    b: str,
    start: int,
    count: int,
    *,
    spam: dict[int, list[JsonObject]],
    step_s: int = 30,
    photo: JsonObject | None = None,
) -> dict[int, str]:
    """``count`` messages alternating a -> b (even) and b -> a (odd); ``spam`` replaces some bodies.

    Returns the MsgKey of each replaced message by its index.
    """
    keys = {}
    for i in range(count):
        sender, receiver = (b, a) if i % 2 else (a, b)
        key = await import_c2c(
            client,
            sender=sender,
            receiver=receiver,
            timestamp=start + i * step_s,
            seq=i + 1,
            random=1000 + i,
            body=spam.get(i, chat_body(i, photo)),
        )
        if i in spam:
            keys[i] = key
    return keys


async def seed(client: TimClient, emulator_url: str, now: int) -> dict[str, Any]:
    """Every conversation of the demo; returns what the summary needs to know."""
    await import_accounts(
        client, ["alice", "bob", "carol", "dave", "eve", "frank", "ivan", "judy", "newsdesk"]
    )
    start = now - 2 * 3600
    photo = await upload(emulator_url, innocent_photo(seed=3))  # what friends share now and then
    # alice <-> bob: 240 messages over two hours; bob (odd indexes) mixes spam into ordinary chat, and alice
    # quotes it back once: the same words, but she is not the suspect.
    spam = {31 + 30 * n: body for n, (_, body) in enumerate(OFFENDING)}
    spam[100] = [text("bob why do you keep sending me this free crypto stuff??")]
    keys = await chat(client, "alice", "bob", start, 240, spam=spam, photo=photo)
    planted = {keys[31 + 30 * n]: label for n, (label, _) in enumerate(OFFENDING)}
    quote = keys[100]
    # bob sent spam long before the report window too: outside the window, it stays.
    old_key = await import_c2c(
        client,
        sender="bob",
        receiver="alice",
        timestamp=start - 3 * 3600,
        seq=9999,
        random=9999,
        body=[text("free crypto, last chance")],
    )
    # carol <-> dave: a false report; nothing breaks the rules.
    await chat(client, "dave", "carol", start, 40, spam={}, step_s=60, photo=photo)
    # eve <-> frank: a report a moderator wants to preview first (dry run).
    preview_spam = {9: [text("专业代开发票，量大从优")], 21: [text("join now: https://scam-example.com/vip")]}
    preview = await chat(client, "frank", "eve", start, 30, spam=preview_spam, photo=photo)
    # judy <-> ivan: ivan posts pictures: a QR code to a blocked site, a known spam picture posted again
    # smaller and re-encoded, and a holiday photo (which stays).
    pictures = {
        5: ("QR code to a blocked site", await upload(emulator_url, qr_spam_picture())),
        11: ("known spam picture, re-encoded at 75 %", await upload(emulator_url, reposted_spam_picture())),
        15: ("holiday photo", await upload(emulator_url, innocent_photo())),
    }
    shown = await chat(
        client,
        "judy",
        "ivan",
        start,
        20,
        spam={i: [text("look"), element] for i, (_, element) in pictures.items()},
        photo=photo,
    )
    media_planted = {shown[i]: label for i, (label, _) in pictures.items() if i != 15}
    innocent = shown[15]
    previewed = {preview[9]: "Chinese keyword (preview)", preview[21]: "link (preview)"}
    # an official account: 45 news posts over the last 90 minutes, three of them bad
    account = await create_official_account(
        client, owner="newsdesk", name="Daily News", user_id="@TOA#_DEMO_NEWS"
    )
    await add_subscribers(client, account, ["alice", "carol"])
    oa_planted: dict[str, str] = {}
    bad_posts = {
        12: ("official-account spam", [text("限时优惠：代开发票，加微信 (12)")]),
        30: ("official-account spam", [text("限时优惠：代开发票，加微信 (30)")]),
        40: ("official-account link", [text("big sale at https://www.scam-example.com/deal")]),
    }
    async with httpx.AsyncClient(base_url=emulator_url) as control:
        for i in range(45):
            await control.post(
                "/_emulator/clock", json={"set": now - 5400 + i * 120}
            )  # the post's server time
            label, body = bad_posts.get(
                i, ("", [text(f"News bulletin #{i}: markets are calm. 今日新闻第{i}条")])
            )
            key = await send_official_account(client, account=account, random=i, body=body)
            if label:
                oa_planted[key] = label
        await control.post("/_emulator/clock", json={"set": time.time()})
        group = await seed_group(client, control, start)
    return {
        **group,
        "planted": planted,
        "quote": quote,
        "previewed": previewed,
        "old_key": old_key,
        "account": account,
        "oa_planted": oa_planted,
        "media_planted": media_planted,
        "innocent_photo": innocent,
        "start": start,
    }


async def seed_group(client: TimClient, control: httpx.AsyncClient, start: int) -> dict[str, Any]:
    """A public group of five: 60 messages over the window, mallory's spam among them, carol quoting it."""
    await import_accounts(client, ["grace", "henry", "mallory"])
    await control.post("/_emulator/clock", json={"set": start - 60})  # imported history must follow creation
    group = await create_group(
        client,
        owner="grace",
        group_type="Public",
        name="Weekend hikers",
        members=["alice", "carol", "henry", "mallory"],
    )
    await control.post("/_emulator/clock", json={"set": time.time()})
    members = ["grace", "alice", "carol", "henry"]
    messages = []
    for i in range(60):
        sender = "mallory" if i in GROUP_SPAM or i % 8 == 5 else members[i % 4]
        body = GROUP_SPAM[i][1] if i in GROUP_SPAM else chat_body(i)
        if i == 40:
            sender, body = "carol", [text("@mallory stop posting free crypto and casino links here")]
        messages.append((sender, start + 60 + i * 110, 5000 + i, body))
    seqs = await import_group_messages(client, group_id=group, messages=messages)
    return {
        "group": group,
        "group_planted": {f"seq {seqs[i]}:": label for i, (label, _) in GROUP_SPAM.items()},
        "group_quote": f"seq {seqs[40]}:",
        "group_mallory": sum(sender == "mallory" for sender, *_ in messages),
    }


def jobs_for(seeded: dict[str, Any], now: int) -> list[Job]:
    window = {"since": seeded["start"], "until": now}
    specs = [
        {
            "job_id": "demo-alice-reports-bob",
            "conversation": {"type": "c2c", "operator": "alice", "peer": "bob"},
            "suspect": "bob",
            "window": window,
            "report": {"reporter": "alice", "reason": "spam"},
        },
        {
            "job_id": "demo-judy-reports-ivan",
            "conversation": {"type": "c2c", "operator": "judy", "peer": "ivan"},
            "suspect": "ivan",
            "window": window,
            "report": {"reporter": "judy", "reason": "spam"},
        },
        {
            "job_id": "demo-dave-reports-carol",
            "conversation": {"type": "c2c", "operator": "dave", "peer": "carol"},
            "suspect": "carol",
            "window": window,
            "report": {"reporter": "dave", "reason": "harassment"},
        },
        {
            "job_id": "demo-news-account",
            "conversation": {"type": "official_account", "account": seeded["account"]},
            "suspect": seeded["account"],
            "window": {"lookback_s": 3 * 3600},
            "report": {"reporter": "carol", "reason": "fraud", "reported_at": now},
        },
        {
            "job_id": "demo-frank-reports-eve-preview",
            "conversation": {"type": "c2c", "operator": "frank", "peer": "eve"},
            "suspect": "eve",
            "window": window,
            "mode": "dry_run",
            "report": {"reporter": "frank", "reason": "spam"},
        },
    ]
    return [Job.model_validate({"version": 1, **spec}) for spec in specs]


def shorten(value: Any, limit: int) -> Any:
    """``value`` with every string longer than ``limit`` characters cut, with an ellipsis."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    if isinstance(value, dict):
        return {key: shorten(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [shorten(item, limit) for item in value]
    return value


def body_excerpt(body: Any, limit: int = 300) -> str:
    """A message body as JSON in about ``limit`` characters: its strings are cut (with an ellipsis), never
    the JSON itself, so what is printed is whole JSON."""
    text = json.dumps(body, ensure_ascii=False)
    for cut in (120, 60, 30, 15, 8):
        if len(text) <= limit:
            break
        text = json.dumps(shorten(body, cut), ensure_ascii=False)
    return text


#: Where a hint's command line is: ``  $ COMMAND`` (the test runs every such line as printed).
HINT_PREFIX = "  $ "


def cli_command() -> str:
    """How to run ``recall-worker`` from the directory the demo runs in: the project's venv, else PATH."""
    if Path(".venv/bin/recall-worker").is_file():
        return ".venv/bin/recall-worker"
    if shutil.which("recall-worker"):
        return "recall-worker"
    return f"{shlex.quote(sys.executable)} -m worker.cli"


def hint(workdir: Path, arguments: str) -> str:
    """A ledger command that works when pasted: it names the demo's ledger (not the default ``.recall/``)
    and the CLI by a path that works from here."""
    database = f"sqlite:///{workdir.as_posix()}/ledger.db"
    return f"{HINT_PREFIX}RECALL_DATABASE_URL={shlex.quote(database)} {cli_command()} {arguments}"


def print_summary(results: list[JobResult], seeded: dict[str, Any], emulator_url: str) -> None:
    labels = {
        **seeded["planted"],
        **seeded["previewed"],
        **seeded["oa_planted"],
        **seeded["group_planted"],
        **seeded["media_planted"],
        seeded["innocent_photo"]: "a holiday photo",
        seeded["quote"]: "reporter quoting the spam",
        seeded["group_quote"]: "a member quoting the spam",
        seeded["old_key"]: "spam from before the window",
    }
    print("\n=== what the worker did ===")
    for result in sorted(results, key=lambda r: r.job_id or ""):
        print()
        for line in summary_lines(result):
            notes = [f"   <- planted: {label}" for key, label in labels.items() if key in line]
            print(line + "".join(notes))
    state = httpx.get(f"{emulator_url}/_emulator/c2c", params={"a": "alice", "b": "bob"}).json()["messages"]
    recalled = {m["MsgKey"] for m in state if m["MsgFlagBits"] == 8}
    hits = sum(key in recalled for key in seeded["planted"])
    print("\n=== checked against the emulator's state ===")
    print(
        f"alice/bob: {len(recalled)} of {len(state)} messages show as recalled (MsgFlagBits 8); "
        f"bob's planted spam recalled: {hits}/{len(seeded['planted'])}"
    )
    print(
        f"alice quoting the spam: {'RECALLED' if seeded['quote'] in recalled else 'kept'}; "
        f"bob's spam from before the window: {'RECALLED' if seeded['old_key'] in recalled else 'kept'}"
    )
    pictures = httpx.get(f"{emulator_url}/_emulator/c2c", params={"a": "judy", "b": "ivan"}).json()[
        "messages"
    ]
    gone_pictures = {m["MsgKey"] for m in pictures if m["MsgFlagBits"] == 8}
    print(
        f"judy/ivan: ivan's picture spam recalled: "
        f"{sum(key in gone_pictures for key in seeded['media_planted'])}/{len(seeded['media_planted'])}; "
        f"his holiday photo: {'RECALLED' if seeded['innocent_photo'] in gone_pictures else 'kept'}"
    )
    group = httpx.get(f"{emulator_url}/_emulator/group", params={"id": seeded["group"]}).json()["messages"]
    gone = {f"seq {m['MsgSeq']}:" for m in group if m["IsPlaceMsg"] == 2}
    group_hits = sum(key in gone for key in seeded["group_planted"])
    print(
        f"group {seeded['group']}: {len(gone)} of {len(group)} messages show as recalled (IsPlaceMsg 2); "
        f"mallory's planted spam recalled: {group_hits}/{len(seeded['group_planted'])}; carol quoting it: "
        f"{'RECALLED' if seeded['group_quote'] in gone else 'kept'}; mallory's other "
        f"{seeded['group_mallory'] - len(seeded['group_planted'])} messages wait for the wipe plan"
    )


def print_audit(ledger: Ledger, job_id: str, workdir: Path) -> None:
    """The ledger's audit trail of one job: what it removed, why, by which rule version, and what it said."""
    trail = ledger.audit(job_id)
    report = trail["report"]
    print(f"\n=== audit trail of {job_id} (from the ledger) ===")
    print(
        f"reported by {report.get('reporter')} for {report.get('reason')}; suspect {trail['suspect']}; "
        f"rule set {trail['ruleset']} version {trail['ruleset_version'][:12]}; status {trail['status']} "
        f"after {trail['attempts']} attempt(s); finished {trail['finished_at']}"
    )
    for message in trail["messages"][:3]:
        recall = message["recall"] or {}
        evidence = message["evidence"] or {}
        rules = ", ".join(
            sorted({rule_text(m["rule_id"], m.get("action", "recall")) for m in message["matches"]})
        )
        print(
            f"- {message['msg_key']} from {message['sender']}: {recall.get('state', 'not recalled')}"
            f" (verified: {recall.get('verified')}) by {recall.get('by_job')}; rules {rules}"
        )
        print(
            f"  evidence sha256 {evidence.get('content_hash', '')[:16]}..., "
            f"captured {evidence.get('captured_at')}:"
        )
        print(f"  {body_excerpt(evidence.get('MsgBody'))}")
    if len(trail["messages"]) > 3:
        print(f"... and {len(trail['messages']) - 3} more, each with its evidence in full:")
        print(hint(workdir, f"audit {job_id}"))


def approve_the_wipe(  # noqa: PLR0917 - the demo's state, passed on whole
    settings: Settings,
    rulebook: Rulebook,
    queues: Queues,
    ledger: Ledger,
    plan_id: int,
    seeded: dict[str, Any],
    emulator_url: str,
) -> list[JobResult]:
    """A moderator approves the group job's wipe plan; the worker carries it out. Returns its result."""
    plan = ledger.plan(plan_id)
    suspect = plan.job["suspect"]
    print(
        f"\n=== a moderator approves plan {plan_id}: wipe {suspect}'s group messages "
        f"({len(plan.items)} seen in the window, every one with its evidence) ==="
    )
    approve(ledger, queues, plan_id, by="demo-moderator", note="spam account, seen the evidence")
    Worker(settings, rulebook, exit_when_idle_s=1.5).run()
    results = [
        JobResult.model_validate(orjson.loads(e.body)) for e in queues.read(queues.names.results, take=True)
    ]
    for result in results:
        for line in summary_lines(result):
            print(line)
    group = httpx.get(f"{emulator_url}/_emulator/group", params={"id": seeded["group"]}).json()["messages"]
    sent = [m for m in group if m["From_Account"] == suspect and not m["IsSystemMsg"]]
    others = [m for m in group if m["From_Account"] != suspect]
    print(
        f"group {seeded['group']}: {sum(m['IsPlaceMsg'] == 2 for m in sent)} of {suspect}'s {len(sent)} "
        f"messages show as recalled; other members' messages recalled: "
        f"{sum(m['IsPlaceMsg'] == 2 for m in others)} of {len(others)}"
    )
    return results


def print_afterwards(ledger: Ledger, workdir: Path, wipe_plan: int | None) -> None:
    """What a reader can look at once the demo is over: ledger commands only, as they work when pasted."""
    print(
        f"\n=== afterwards: the demo's queue and ledger stay in {workdir.as_posix()}/ "
        "(its emulator has stopped) ==="
    )
    for plan in ledger.list_plans("pending"):
        print(
            f"plan {plan.id} ({plan.reason}, job {plan.job_id}) waits for a moderator. Approving it queues "
            "the recall of its messages for a worker, which needs the Chat API (the demo's emulator has "
            "stopped), so here it can only be read:"
        )
        print(hint(workdir, f"plans show {plan.id}"))
    print("every plan, the audit trail of a report, and of the wipe the moderator approved:")
    print(hint(workdir, "plans list --status all"))
    print(hint(workdir, "audit demo-alice-reports-bob"))
    if wipe_plan is not None:
        print(hint(workdir, f"audit plan-{wipe_plan}-apply"))


def run_demo(workdir: Path) -> int:
    """Run the demo; returns the exit code."""
    configure_logging("console", "warning")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    key = secrets.token_hex(32)
    rulebook = Rulebook()
    print(f"rule file: {rulebook.path} (version {rulebook.version[:12]})")
    with EmulatorThread(EmulatorConfig(key=key)) as emulator:
        print(f"emulator: {emulator.url} (temporary: it stops when the demo ends)")
        settings = Settings.model_validate(
            {
                "broker_url": f"sqlite:///{workdir.resolve()}/queue.db",
                "database_url": f"sqlite:///{workdir.resolve()}/ledger.db",
                "tim_base_url": emulator.url,
                "tim_key": key,
                "http_port": 0,
                "retry_base_delay_s": 0.5,
                "intake_keys": f"{KEY_ID}:{secrets.token_hex(16)}",
                "intake_quiet_s": 1,
                "intake_notices": True,
                # the emulator serves the pictures, on this machine
                "media_allowed_hosts": "127.0.0.1",
                "media_allowed_networks": "127.0.0.0/8",
            }
        )
        now = int(time.time())

        async def seed_all() -> dict[str, Any]:
            async with TimClient(sdkappid=settings.tim_sdkappid, key=key, base_url=emulator.url) as client:
                return await seed(client, emulator.url, now)

        seeded = asyncio.run(seed_all())
        stats = httpx.get(f"{emulator.url}/_emulator/stats").json()["state"]
        print(
            f"seeded {stats['messages']} one-to-one messages in {stats['conversations']} conversations, "
            f"45 official-account posts and {stats['group_messages']} group messages, through the Chat REST "
            "API"
        )
        queues = Queues(settings)
        jobs = jobs_for(seeded, now)
        queues.submit(jobs)
        print(f"submitted {len(jobs)} report jobs to {settings.broker_url} directly")
        with IntakeThread(build_intake(settings, relay_interval_s=0.2)) as intake:
            report_ids = file_reports(intake, settings, seeded)
            wait_for_the_job(intake, settings, report_ids)
            print("running the worker ...")
            worker = Worker(settings, rulebook, exit_when_idle_s=1.5)
            worker.run()
            results = [
                JobResult.model_validate(orjson.loads(e.body))
                for e in queues.read(queues.names.results, take=True)
            ]
            print_summary(results, seeded, emulator.url)
            print_outcome(intake, settings, report_ids, now - 5)
        print_audit(worker.ledger, "demo-alice-reports-bob", workdir)
        expected = len(jobs) + 1  # and the intake's job
        wipe = next((p for p in worker.ledger.list_plans("pending") if p.is_wipe), None)
        if wipe is not None:
            expected += 1
            results += approve_the_wipe(
                settings, rulebook, queues, worker.ledger, wipe.id, seeded, emulator.url
            )
        print_afterwards(worker.ledger, workdir, wipe.id if wipe is not None else None)
        dead = queues.read(queues.names.dead)
        if dead or len(results) != expected:
            print(
                f"\nunexpected: {len(results)} results for {expected} jobs, {len(dead)} dead letters",
                file=sys.stderr,
            )
            return 1
    return 0
