"""Building jobs and scanned messages for ledger-level tests (no emulator, no broker)."""

from __future__ import annotations

import subprocess
from typing import Any

from rules.model import Match
from tests.cli import cli_env, run_cli
from tests.worker.harness import job
from worker.jobs import Job
from worker.ledger.store import Ledger, ScannedMessage, Started

T0 = 1_800_000_000


def make_job(
    job_id: str, *, operator: str = "bob", peer: str = "eve", suspect: str = "eve", **extra: Any
) -> Job:
    """A one-to-one job on ``operator``/``peer``'s conversation, over the hour from ``T0``."""
    return job(job_id, operator=operator, peer=peer, suspect=suspect, since=T0, until=T0 + 3600, **extra)


def scanned(
    msg_key: str,
    *,
    sender: str = "eve",
    text: str = "buy spam",
    rule: str = "kw-spam",
    action: str = "recall",
) -> ScannedMessage:
    """A matched text message sent by ``sender``."""
    body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}]
    match = Match(msg_key, rule, "keyword", action, "MsgBody[0].MsgContent.Text", "spam", "spam")  # type: ignore[arg-type]
    return ScannedMessage(msg_key, sender, "bob", T0 + 1, body, "", [match])


def start(ledger: Ledger, job: Job) -> int:
    """Start ``job`` in the ledger; its row id."""
    started = ledger.start_job(job, ruleset_version="v1")
    assert isinstance(started, Started), started
    return started.pk


def record(ledger: Ledger, job: Job, keys: list[str], **kwargs: Any) -> tuple[int, dict[str, int]]:
    """Start ``job`` and record ``keys`` as its matched messages: its row id, and MsgKey -> message row id."""
    job_pk = start(ledger, job)
    return job_pk, ledger.record_scan(job_pk, job, [scanned(key, **kwargs) for key in keys])


def cli(database_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``recall-worker ARGS`` on the ledger at ``database_url`` (and ``RECALL_<NAME>`` = each setting)."""
    named = {f"RECALL_{name.upper()}": value for name, value in settings.items()}
    return run_cli(*args, env=cli_env({"RECALL_DATABASE_URL": database_url, **named}))
