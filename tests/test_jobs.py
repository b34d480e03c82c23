"""Job schema v1: validation with a readable error per field, and the published JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.jobs import SCHEMA_PATH, InvalidJob, job_json_schema, parse_job, parse_jobs_document

GOOD: dict[str, Any] = {
    "version": 1,
    "job_id": "r-2026-000123",
    "conversation": {"type": "c2c", "operator": "user2", "peer": "user1"},
    "suspect": "user1",
    "window": {"since": 1584669600, "until": 1584673200},
    "report": {"reporter": "user2", "reason": "spam", "msg_keys": ["549396494_2578554_1584669680"]},
    "ruleset": "default",
    "mode": "recall",
}


def problems_of(job: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidJob) as caught:
        parse_job(json.dumps(job))
    return caught.value.problems


def test_the_architecture_example_is_valid() -> None:
    job = parse_job(json.dumps(GOOD))
    assert (job.since, job.until, job.dry_run) == (1584669600, 1584673200, False)


def test_lookback_counts_back_from_the_report_time() -> None:
    job = parse_job(json.dumps({**GOOD, "window": {"lookback_s": 600}, "report": {"reported_at": 1_000_000}}))
    assert (job.since, job.until) == (999_400, 1_000_000)


def test_official_account_job() -> None:
    job = parse_job(
        json.dumps(
            {
                **GOOD,
                "conversation": {"type": "official_account", "account": "@TOA#_NEWS"},
                "suspect": "@TOA#_NEWS",
            }
        )
    )
    assert job.conversation.type == "official_account"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": 2}, "version: Input should be 1"),
        ({"job_id": ""}, "job_id: String should have at least 1 character"),
        ({"job_id": "has space"}, "job_id: String should match pattern"),
        ({"mode": "delete"}, "mode: Input should be 'recall' or 'dry_run'"),
        ({"unexpected": 1}, "unexpected: Extra inputs are not permitted"),
        ({"suspect": "mallory"}, "(job): suspect must be one of the conversation's two parties"),
        ({"window": {"since": 5, "until": 1}}, "window: since is after until"),
        ({"window": {"since": 5}}, "window: since and until go together"),
        ({"window": {}}, "window: give since and until, or lookback_s"),
        (
            {"window": {"since": 1, "until": 2, "lookback_s": 3}},
            "window: give either since/until or lookback_s",
        ),
        ({"window": {"since": 0, "until": 100 * 86400}}, "window: the window is longer than 90 days"),
        ({"window": {"lookback_s": 60}}, "(job): window.lookback_s needs report.reported_at"),
        (
            {"conversation": {"type": "c2c", "operator": "a", "peer": "a"}},
            "operator and peer must be two different",
        ),
        ({"conversation": {"type": "group", "group_id": "@TGS#1"}}, "group conversations are not supported"),
        (
            {"conversation": {"type": "sms"}},
            "conversation: Input tag 'sms' found using 'type' does not match",
        ),
        (
            {"conversation": {"type": "official_account", "account": "news"}},
            "conversation.official_account.account",
        ),
        ({"report": {"msg_keys": ["k"] * 101}}, "report.msg_keys: List should have at most 100 items"),
    ],
)
def test_each_problem_is_named_with_its_field(change: dict[str, Any], expected: str) -> None:
    problems = problems_of({**GOOD, **change})
    assert any(expected in p for p in problems), problems


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(InvalidJob, match="not valid JSON"):
        parse_job(b"{oops")
    with pytest.raises(InvalidJob, match="a job is a JSON object, not a list"):
        parse_job(b"[]")


def test_invalid_job_keeps_its_id_for_the_result() -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_job(json.dumps({**GOOD, "mode": "delete"}))
    assert caught.value.job_id == "r-2026-000123"


def test_documents_of_jobs_in_every_accepted_shape() -> None:
    one = json.dumps(GOOD)
    two = json.dumps({**GOOD, "job_id": "r-2"})
    assert [j.job_id for j in parse_jobs_document(one)] == ["r-2026-000123"]
    assert [j.job_id for j in parse_jobs_document(f"[{one}, {two}]")] == ["r-2026-000123", "r-2"]
    assert [j.job_id for j in parse_jobs_document(f"{one}\n\n{two}\n")] == ["r-2026-000123", "r-2"]
    with pytest.raises(InvalidJob) as caught:
        parse_jobs_document(f"{one}\n{{broken\n{json.dumps({**GOOD, 'mode': 'x'})}")
    assert caught.value.problems[0].startswith("line 2: (job): not valid JSON")
    assert caught.value.problems[1].startswith("line 3: mode:")


def test_the_published_schema_file_is_current() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == job_json_schema(), (
        "run: python -c 'from worker.jobs import write_json_schema; write_json_schema()'"
    )


def test_the_schema_refuses_unknown_fields_everywhere() -> None:
    schema = job_json_schema()
    assert schema["additionalProperties"] is False
    assert all(
        d.get("additionalProperties") is False for d in schema["$defs"].values() if d.get("type") == "object"
    )
