"""The demo's front door: group members report the spammer over the intake's signed HTTP API.

Four members report mallory's spam within a few seconds; the intake stores each report, gathers the four
into one case and, once the reports have gone quiet, makes one job of it and publishes it through its
outbox. After the worker has run that job, the intake settles the case and each reporter gets a notice,
as a chat message from the admin account, which the demo reads back from the reporter's own history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from worker.config import Settings
from worker.consumer import make_client
from worker.intake.server import IntakeThread
from worker.intake.signing import signed_headers
from worker.tim.history import iter_c2c_history

KEY_ID = "demo"
#: Who reports mallory, and which of the planted spam messages (by their place in GROUP_SPAM) each names.
REPORTERS = {"carol": [0], "alice": [0, 1], "henry": [2], "grace": [1, 3]}


def _wait_for(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {timeout_s:.0f} s for {what}")
        time.sleep(0.1)


def _signed(settings: Settings, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    secret = settings.intake_key_map()[KEY_ID]
    return {"Content-Type": "application/json", **signed_headers(KEY_ID, secret, method, path, body)}


def status_of(intake: IntakeThread, settings: Settings, report_id: str) -> dict[str, Any]:
    """``GET /v1/reports/{id}``, signed."""
    path = f"/v1/reports/{report_id}"
    answer = httpx.get(intake.url + path, headers=_signed(settings, "GET", path), timeout=10)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def file_reports(intake: IntakeThread, settings: Settings, seeded: dict[str, Any]) -> list[str]:
    """Each reporter files a report on mallory over HTTP; returns the report ids."""
    seqs = [int(key[4:-1]) for key in seeded["group_planted"]]  # "seq 123:" -> 123
    print(f"\n=== {len(REPORTERS)} group members report mallory through the intake ({intake.url}) ===")
    report_ids = []
    for reporter, picks in REPORTERS.items():
        body = orjson.dumps(
            {
                "reporter": reporter,
                "suspect": "mallory",
                "conversation": {"type": "group", "group_id": seeded["group"]},
                "msg_seqs": [seqs[i] for i in picks],
                "category": "spam",
                "description": "keeps posting casino and crypto links",
                "reported_at": int(time.time()),
                "language": "zh-CN" if reporter == "henry" else "en",
            }
        )
        answer = httpx.post(
            f"{intake.url}/v1/reports", content=body, headers=_signed(settings, "POST", "/v1/reports", body)
        )
        answer.raise_for_status()
        filed = answer.json()
        report_ids.append(filed["report_id"])
        print(
            f"POST /v1/reports by {reporter} (seqs {[seqs[i] for i in picks]}): {answer.status_code} "
            f"{filed['report_id']}, case {filed['case_id']}"
        )
    return report_ids


def wait_for_the_job(intake: IntakeThread, settings: Settings, report_ids: list[str]) -> str:
    """Wait until the reports' case is a published job; print it; returns the job id."""
    _wait_for(
        lambda: (
            status_of(intake, settings, report_ids[0]).get("job_id") is not None
            and intake.intake.store.counts()["unpublished"] == 0
        ),
        "the intake to publish the job",
    )
    status = status_of(intake, settings, report_ids[0])
    print(
        f"{status['case']['reports']} reports, one case: job {status['job_id']} ({status['mode']}: "
        f"{status['why']}), published to the queue by the intake's outbox"
    )
    return str(status["job_id"])


async def _notices(settings: Settings, since: int) -> dict[str, list[str]]:
    async with make_client(settings) as client:
        return {
            reporter: [
                str(m.body[0]["MsgContent"]["Text"])
                async for m in iter_c2c_history(
                    client,
                    operator=reporter,
                    peer=settings.tim_admin,
                    since=since,
                    until=int(time.time()) + 5,
                )
            ]
            for reporter in REPORTERS
        }


def print_outcome(intake: IntakeThread, settings: Settings, report_ids: list[str], since: int) -> None:
    """Wait for the intake to settle the case and notify the reporters; print both."""
    store = intake.intake.store
    _wait_for(
        lambda: len(store.deliveries(state="delivered")) >= len(report_ids),
        "the reporters' notices",
    )
    status = status_of(intake, settings, report_ids[0])
    print(f"\n=== the reports' outcome (GET /v1/reports/{report_ids[0]}) ===")
    print(orjson.dumps({k: status[k] for k in ("status", "job_id", "counts")}).decode())
    print("the reporters' notices, read back from each reporter's chat history with the admin account:")
    for reporter, texts in asyncio.run(_notices(settings, since)).items():
        for text in texts:
            print(f"- to {reporter}: {text}")
