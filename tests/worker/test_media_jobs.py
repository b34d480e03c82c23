"""A job whose rule set examines pictures, end to end against the emulator: the suspect's pictures are
fetched through the allow-listed fetcher over HTTP, a QR code to a blocked site and a known spam picture
(posted again smaller and re-encoded) are recalled, an innocent photo is kept, nobody else's pictures are
fetched, and pictures the fetcher refuses are recorded as "not examined" while the job completes."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx

from rules.types.image_hash import parse_entry, pdq
from tests.conftest import make_client
from worker.config import load_settings
from worker.consumer import policy_of
from worker.demo_media import innocent_photo, known_spam_picture, qr_spam_picture, reposted_spam_picture
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.jobs import Job
from worker.ledger import open_ledger
from worker.media.fetch import fetcher_from_settings
from worker.pipeline import run_job
from worker.results import result_of
from worker.rulebook import Rulebook

T0 = int(time.time()) - 3600


def picture_at(url: str) -> dict:
    """An image element whose picture lives at ``url`` (not on the emulator)."""
    return {
        "MsgType": "TIMImageElem",
        "MsgContent": {
            "UUID": "elsewhere-" + str(abs(hash(url)) % 10**8),
            "ImageFormat": 1,
            "ImageInfoArray": [{"Type": 3, "Size": 900, "Width": 198, "Height": 198, "URL": url}],
        },
    }


async def test_a_job_recalls_picture_spam_keeps_the_photo_and_records_refused_fetches(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    def upload(picture: bytes) -> dict:
        answer = httpx.post(f"{emulator.url}/_emulator/media", content=picture)
        answer.raise_for_status()
        return dict(answer.json())

    photo, friends_photo = upload(innocent_photo()), upload(innocent_photo(seed=3))
    bodies = {
        "qr": ("mallet", [text("scan me"), upload(qr_spam_picture())]),
        "known": ("mallet", [upload(reposted_spam_picture())]),
        "photo": ("mallet", [text("from the beach"), photo]),
        "off_list": ("mallet", [picture_at("https://cdn.not-allowed.example/spam.png")]),
        "private": ("mallet", [picture_at("http://10.1.2.3/internal.png")]),
        "reporters_photo": ("rita", [friends_photo]),
    }
    async with make_client(emulator.url) as client:
        await import_accounts(client, ["mallet", "rita"])
        keys = {}
        for seq, (name, (sender, body)) in enumerate(bodies.items(), start=1):
            receiver = "rita" if sender == "mallet" else "mallet"
            keys[name] = await import_c2c(
                client, sender=sender, receiver=receiver, timestamp=T0 + seq, seq=seq, random=seq, body=body
            )
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path}/ledger.db",
            media_allowed_hosts="127.0.0.1,10.1.2.3",  # the host is allowed, its address is not
            media_allowed_networks="127.0.0.0/8",
        )
        job = Job.model_validate(
            {
                "version": 1,
                "job_id": "media-job-1",
                "conversation": {"type": "c2c", "operator": "rita", "peer": "mallet"},
                "suspect": "mallet",
                "window": {"since": T0, "until": T0 + 100},
            }
        )
        ledger = open_ledger(settings.database_url)
        rulebook = Rulebook()
        started = ledger.start_job(job, ruleset_version=rulebook.version)
        async with fetcher_from_settings(settings) as fetcher:
            served = []
            original = fetcher.fetch_many

            async def counting(refs):  # type: ignore[no-untyped-def]
                served.extend(ref.uuid for ref in refs)
                return await original(refs)

            policy = dataclasses.replace(policy_of(settings), media=counting)
            report = await run_job(
                job,
                client,
                rulebook.ruleset("default"),
                ledger=ledger,
                policy=policy,
                job_pk=started.pk,  # type: ignore[union-attr]
            )
        ledger.dispose()
    result = result_of(job, report, attempts=1, duration_s=0.0)
    assert result.status == "done"
    assert set(result.recalled) == {keys["qr"], keys["known"]}
    by_key = {}
    for match in result.matches:
        by_key.setdefault(match.msg_key, []).append(match)
    assert {m.rule_id for m in by_key[keys["qr"]]} == {"qr-scam-links"}
    assert "scam-example.com" in by_key[keys["qr"]][0].evidence
    assert {m.rule_id for m in by_key[keys["known"]]} == {"known-spam-images"}
    assert keys["photo"] not in by_key  # examined, nothing found
    for name, reason in (("off_list", "host not allowed"), ("private", "private address")):
        flagged = by_key[keys[name]]
        assert {m.action for m in flagged} == {"flag"}, name  # recorded, never recalled
        assert all(m.evidence.startswith("not examined: refused") and reason in m.evidence for m in flagged)
    assert keys["reporters_photo"] not in by_key
    assert friends_photo["MsgContent"]["UUID"] not in {uuid.split("#")[0] for uuid in served}
    messages = httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": "rita", "b": "mallet"}).json()
    recalled = {m["MsgKey"] for m in messages["messages"] if m["MsgFlagBits"] == 8}
    assert recalled == {keys["qr"], keys["known"]}


def test_the_demo_pictures_are_what_the_shipped_hash_list_knows() -> None:
    listed = Path(__file__).resolve().parents[2] / "rules" / "examples" / "known-spam-images.txt"
    entries = [e for line in listed.read_text().splitlines() if (e := parse_entry(line))]
    digest, _ = pdq(known_spam_picture())
    assert any(entry == digest for entry, _ in entries)
