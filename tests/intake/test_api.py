"""The intake's HTTP API over a real socket: signatures, validation of every field, refusals, replays, the
reporter limit, status reads, and 100 concurrent reports on one conversation becoming one job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.intake.reports import KEY_ID, NEXT_KEY_ID, NEXT_SECRET, SECRET, report_body, signed
from worker.config import Settings, load_settings
from worker.intake.server import IntakeThread, build_intake
from worker.intake.store import IntakeStore
from worker.ledger.engine import make_engine
from worker.queues import Queues


def intake_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": f"sqlite:///{tmp_path}/queue.db",
        "intake_keys": f"{KEY_ID}:{SECRET}",
        "intake_quiet_s": 600,
        "intake_reporter_limit": 5,
        "protected_accounts": "administrator,ceo",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def intake(database_url: str, tmp_path: Path) -> Iterator[IntakeThread]:
    with IntakeThread(build_intake(intake_settings(database_url, tmp_path))) as running:
        yield running


def post(intake: IntakeThread, body: dict[str, Any] | bytes, **signing: Any) -> httpx.Response:
    raw, headers = signed(body, **signing)
    return httpx.post(f"{intake.url}/v1/reports", content=raw, headers=headers)


def get_status(intake: IntakeThread, report_id: str, **signing: Any) -> httpx.Response:
    path = f"/v1/reports/{report_id}"
    _, headers = signed(b"", path=path, method="GET", **signing)
    return httpx.get(f"{intake.url}{path}", headers=headers)


def now_report(**fields: Any) -> dict[str, Any]:
    return report_body(reported_at=int(time.time()), **fields)


def test_a_signed_report_is_stored_and_its_status_can_be_read(intake: IntakeThread) -> None:
    answer = post(intake, now_report())
    assert answer.status_code == 202, answer.text
    report_id = answer.json()["report_id"]
    assert answer.headers["location"] == f"/v1/reports/{report_id}"
    status = get_status(intake, report_id)
    assert status.status_code == 200
    assert status.json()["status"] == "queued" and status.json()["case"]["reports"] == 1
    assert get_status(intake, "rpt_unknown").status_code == 404
    assert httpx.get(f"{intake.url}/v1/reports/{report_id}").status_code == 401


@pytest.mark.parametrize(
    ("signing", "says"),
    [
        ({"secret": "a-wrong-secret-of-some-length"}, "does not match"),
        ({"offset_s": -310}, "more than 300 s"),
        ({"offset_s": 310}, "more than 300 s"),
        ({"key_id": "nobody"}, "unknown key id"),
    ],
    ids=["wrong", "stale", "future", "unknown-key"],
)
def test_a_bad_signature_is_refused_and_nothing_is_stored(
    intake: IntakeThread, signing: dict[str, Any], says: str
) -> None:
    if "offset_s" in signing:
        signing = {"now": time.time() + signing["offset_s"]}
    answer = post(intake, now_report(), **signing)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized" and says in answer.json()["message"]
    assert SECRET not in answer.text
    assert intake.intake.store.counts()["open_cases"] == 0


def test_an_unsigned_or_altered_request_is_refused(intake: IntakeThread) -> None:
    raw, headers = signed(now_report())
    assert httpx.post(f"{intake.url}/v1/reports", content=raw).status_code == 401
    tampered = raw.replace(b"spammer", b"someone")
    assert httpx.post(f"{intake.url}/v1/reports", content=tampered, headers=headers).status_code == 401


def test_a_replayed_request_is_refused_and_names_the_first_report(intake: IntakeThread) -> None:
    raw, headers = signed(now_report())
    first = httpx.post(f"{intake.url}/v1/reports", content=raw, headers=headers)
    again = httpx.post(f"{intake.url}/v1/reports", content=raw, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 409
    assert again.json() == {
        "error": "replayed",
        "message": again.json()["message"],
        "report_id": first.json()["report_id"],
    }


def test_during_a_key_rotation_both_keys_sign_and_afterwards_only_the_new_one(
    database_url: str, tmp_path: Path
) -> None:
    both = f"{KEY_ID}:{SECRET},{NEXT_KEY_ID}:{NEXT_SECRET}"
    with IntakeThread(build_intake(intake_settings(database_url, tmp_path, intake_keys=both))) as rotating:
        assert post(rotating, now_report(msg_seqs=[1])).status_code == 202
        assert (
            post(rotating, now_report(msg_seqs=[2]), key_id=NEXT_KEY_ID, secret=NEXT_SECRET).status_code
            == 202
        )
    rotated = intake_settings(database_url, tmp_path, intake_keys=f"{NEXT_KEY_ID}:{NEXT_SECRET}")
    with IntakeThread(build_intake(rotated)) as after:
        assert post(after, now_report(msg_seqs=[3])).status_code == 401
        assert (
            post(after, now_report(msg_seqs=[4]), key_id=NEXT_KEY_ID, secret=NEXT_SECRET).status_code == 202
        )


BAD_FIELDS = [
    ({"reporter": ""}, "reporter"),
    ({"reporter": "x" * 33}, "reporter"),
    ({"reporter": "bad\nname"}, "reporter"),
    ({"reporter": 7}, "reporter"),
    ({"suspect": None}, "suspect"),
    ({"suspect": "s" * 65}, "suspect"),
    ({"conversation": {"type": "channel"}}, "conversation"),
    ({"conversation": {"type": "group"}}, "conversation.group_id"),
    ({"conversation": {"type": "group", "group_id": "g", "extra": 1}}, "conversation.extra"),
    ({"conversation": {"type": "group", "group_id": "g", "topic_id": ""}}, "conversation.topic_id"),
    ({"conversation": {"type": "official_account", "account": "nope"}}, "conversation.account"),
    ({"conversation": {"type": "c2c", "peer": "someone-else"}, "msg_seqs": []}, "conversation.peer"),
    ({"conversation": {"type": "c2c"}}, "msg_seqs"),
    ({"msg_keys": ["1_2_3"]}, "msg_keys"),
    ({"conversation": {"type": "c2c"}, "msg_seqs": [], "msg_keys": ["not-a-key"]}, "msg_keys.0"),
    ({"msg_seqs": [0]}, "msg_seqs.0"),
    ({"msg_seqs": ["5"]}, "msg_seqs.0"),
    ({"msg_seqs": list(range(1, 102))}, "msg_seqs"),
    ({"category": "rude"}, "category"),
    ({"category": None}, "category"),
    ({"description": "d" * 1001}, "description"),
    ({"description": "bell\x07"}, "description"),
    ({"reported_at": -1}, "reported_at"),
    ({"reported_at": "yesterday"}, "reported_at"),
    ({"reported_at": 4_102_444_800}, "reported_at"),
    ({"language": "not a language"}, "language"),
    ({"unknown": 1}, "unknown"),
]


@pytest.mark.parametrize(("change", "field"), BAD_FIELDS, ids=[f for _, f in BAD_FIELDS])
def test_each_invalid_field_is_named_and_nothing_is_stored(
    intake: IntakeThread, change: dict[str, Any], field: str
) -> None:
    answer = post(intake, {**now_report(), **change})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_report"
    assert body["field"] == field, body
    assert intake.intake.store.counts()["open_cases"] == 0


def test_a_missing_field_is_named(intake: IntakeThread) -> None:
    body = now_report()
    del body["reporter"]
    answer = post(intake, body)
    assert answer.status_code == 422 and answer.json()["field"] == "reporter"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", "\u00e9".encode("latin-1")])
def test_a_body_that_is_no_json_object_is_a_400(intake: IntakeThread, raw: bytes) -> None:
    answer = post(intake, raw)
    assert answer.status_code == 400 and answer.json()["field"] == "(body)"


def test_a_body_over_the_limit_is_a_413(intake: IntakeThread) -> None:
    answer = post(intake, now_report(description="x" * 40_000))
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"


@pytest.mark.parametrize(
    ("change", "says"),
    [({"reporter": "spammer"}, "self-reports"), ({"suspect": "ceo"}, "protected")],
    ids=["self-report", "protected"],
)
def test_self_reports_and_reports_against_protected_accounts_are_refused(
    intake: IntakeThread, change: dict[str, Any], says: str
) -> None:
    answer = post(intake, now_report(**change))
    assert answer.status_code == 422
    assert answer.json()["error"] == "refused" and says in answer.json()["message"]
    assert intake.intake.store.counts()["open_cases"] == 0


def test_a_reporter_over_the_limit_gets_429_with_retry_after(intake: IntakeThread) -> None:
    codes = [post(intake, now_report(msg_seqs=[n + 1])).status_code for n in range(6)]
    assert codes == [202] * 5 + [429]
    limited = post(intake, now_report(msg_seqs=[99]))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert post(intake, now_report(reporter="someone-else")).status_code == 202


def test_an_unreachable_database_is_a_503_and_the_intake_stays_up(tmp_path: Path) -> None:
    settings = intake_settings(f"sqlite:///{tmp_path}/ledger.db", tmp_path)
    intake = build_intake(settings)
    # the same app over a database that cannot be reached
    dead = IntakeStore(make_engine("postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"))
    intake.store.write_batch = dead.write_batch  # type: ignore[method-assign]
    with IntakeThread(intake) as running:
        answer = post(running, now_report())
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert "postgres" not in answer.text
        assert httpx.get(f"{running.url}/healthz").status_code == 200


def test_100_concurrent_reports_from_30_reporters_over_http_make_one_job_naming_all(
    database_url: str, tmp_path: Path
) -> None:
    settings = intake_settings(database_url, tmp_path, intake_quiet_s=2, intake_reporter_limit=20)
    bodies = [now_report(reporter=f"reporter{n % 30}", msg_seqs=[1000 + n]) for n in range(100)]

    async def file_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
            requests = []
            for body in bodies:
                raw, headers = signed(body)
                requests.append(client.post(f"{url}/v1/reports", content=raw, headers=headers))
            return await asyncio.gather(*requests)

    queues = Queues(settings)
    with IntakeThread(build_intake(settings, relay_interval_s=0.2)) as running:
        answers = asyncio.run(file_all(running.url))
        assert [a.status_code for a in answers] == [202] * 100
        report_ids = {a.json()["report_id"] for a in answers}
        # the case goes quiet for 2 s, then its job is made and published
        jobs = [orjson.loads(e.body) for e in queues.read(queues.names.jobs, take=True, wait_s=20)]
    assert queues.read(queues.names.jobs) == []  # nor any other job by the time the intake stopped
    assert len(jobs) == 1
    assert set(jobs[0]["report"]["reports"]) == report_ids


def test_the_probes_and_metrics_answer(intake: IntakeThread) -> None:
    assert httpx.get(f"{intake.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{intake.url}/readyz").json() == {"status": "ready"}
    post(intake, now_report())
    metrics = httpx.get(f"{intake.url}/metrics").text
    assert 'recall_intake_reports_total{outcome="stored"} 1.0' in metrics
