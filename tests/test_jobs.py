"""Job schema v1: validation with a readable error per field, and the published JSON Schema."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from worker.jobs import (
    CROSS_FIELD_PROBLEMS,
    SCHEMA_PATH,
    GroupConversation,
    InvalidJob,
    job_json_schema,
    parse_job,
    parse_jobs_document,
)

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
        ({"job_id": "has space"}, "job_id: String should hold only ASCII letters, digits and _ . : -"),
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
        (
            {"conversation": {"type": "group", "group_id": "@TGS#1"}},
            "(job): report.msg_keys names messages of a one-to-one or official-account conversation",
        ),
        ({"report": {"msg_seqs": [5]}}, "(job): report.msg_seqs names messages of a group conversation only"),
        (
            {"conversation": {"type": "group", "group_id": "@TGS#1"}, "report": {"msg_seqs": [0]}},
            "report.msg_seqs.0: Input should be greater than or equal to 1",
        ),
        (
            {"conversation": {"type": "group", "group_id": "@TGS#1", "topic_id": ""}, "report": {}},
            "conversation.group.topic_id",
        ),
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


# --- the parser is exactly as strict as the published schema ------------------------------------------


def schema_verdict(document: Any) -> bool:
    """Whether the published schema (not the generated one) accepts ``document``."""
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    return validator.is_valid(document)


def verdicts(document: dict[str, Any]) -> tuple[bool, bool]:
    """(parser accepts, published schema accepts) for ``document``."""
    try:
        parse_job(json.dumps(document))
    except InvalidJob:
        parsed = False
    else:
        parsed = True
    return parsed, schema_verdict(document)


def with_window(**window: Any) -> dict[str, Any]:
    return {**GOOD, "window": window}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({**GOOD, "version": True}, id="version-true"),
        pytest.param({**GOOD, "version": "1"}, id="version-string"),
        pytest.param({**GOOD, "version": 1.5}, id="version-fraction"),
        pytest.param(with_window(since="1584669600", until=1584673200), id="since-string"),
        pytest.param(with_window(since=1584669600, until="1584673200"), id="until-string"),
        pytest.param(with_window(since=False, until=1584673200), id="since-false"),
        pytest.param(with_window(since=1, until=True), id="until-true"),
        pytest.param(with_window(since=1584669600, until=1584673200.5), id="until-fraction"),
        pytest.param(
            {**with_window(lookback_s="600"), "report": {"reported_at": 10**6}}, id="lookback-string"
        ),
        pytest.param({**with_window(lookback_s=True), "report": {"reported_at": 10**6}}, id="lookback-true"),
        pytest.param(
            {**with_window(lookback_s=60), "report": {"reported_at": "1000000"}}, id="reported-at-str"
        ),
        pytest.param({**GOOD, "apply_plan": True}, id="apply-plan-true"),
        pytest.param({**GOOD, "apply_plan": "7"}, id="apply-plan-string"),
        pytest.param({**GOOD, "job_id": 123}, id="job-id-int"),
        pytest.param({**GOOD, "suspect": 1}, id="suspect-int"),
        pytest.param({**GOOD, "report": {"msg_keys": [1]}}, id="msg-key-int"),
        pytest.param({**GOOD, "report": {"msg_keys": "abc"}}, id="msg-keys-string"),
    ],
)
def test_type_confusions_are_refused_like_the_schema_does(document: dict[str, Any]) -> None:
    assert verdicts(document) == (False, False)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({**GOOD, "version": 1.0}, id="version"),
        pytest.param(with_window(since=1584669600.0, until=1584673200.0), id="since-until"),
        pytest.param(
            {**with_window(lookback_s=600.0), "report": {"reported_at": 1e6}}, id="lookback-reported"
        ),
        pytest.param({**GOOD, "apply_plan": 7.0}, id="apply-plan"),
    ],
)
def test_integral_floats_are_integers_as_in_json_schema(document: dict[str, Any]) -> None:
    assert verdicts(document) == (True, True)
    job = parse_job(json.dumps(document))
    assert type(job.version) is int
    assert type(job.since) is int
    assert type(job.until) is int
    assert job.apply_plan is None or type(job.apply_plan) is int


@pytest.mark.parametrize(
    "job_id",
    [
        pytest.param("r-é", id="latin-letter"),
        pytest.param("١٢٣", id="arabic-digits"),
        pytest.param("r_１", id="full-width-digit"),
        pytest.param("r-1\n", id="final-newline"),
        pytest.param("r-1\r", id="carriage-return"),
        pytest.param("r 1", id="space"),
        pytest.param("r/1", id="slash"),
        pytest.param("x" * 129, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_job_ids_are_short_ascii_in_parser_and_schema_alike(job_id: str) -> None:
    assert verdicts({**GOOD, "job_id": job_id}) == (False, False)


@pytest.mark.parametrize("job_id", ["x" * 128, "a", "r-2026_01.02:03", "A-Z.a-z:0-9_"])
def test_job_ids_that_are_accepted(job_id: str) -> None:
    assert verdicts({**GOOD, "job_id": job_id}) == (True, True)


def strings_of(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every ``type: string`` sub-schema of ``schema`` with where it is."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "string":
            found.append((path, schema))
        for key, value in schema.items():
            found += strings_of(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for n, value in enumerate(schema):
            found += strings_of(value, f"{path}/{n}")
    return found


def test_every_string_in_the_schema_is_bounded() -> None:
    strings = strings_of(json.loads(SCHEMA_PATH.read_text()))
    assert len(strings) > 10
    unbounded = [path for path, s in strings if "const" not in s and "enum" not in s and "maxLength" not in s]
    assert unbounded == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"conversation": {"type": "group", "group_id": "@TGS#" + "2" * 44}}, "group_id"),
        ({"conversation": {"type": "group", "group_id": ""}}, "group_id"),
        ({"conversation": {"type": "c2c", "operator": "user2\n", "peer": "user1"}}, "operator"),
        ({"conversation": {"type": "c2c", "operator": "user2", "peer": "user1\x00"}}, "peer"),
        ({"conversation": {"type": "official_account", "account": "@TOA#_\r"}}, "account"),
        ({"conversation": {"type": "official_account", "account": "@TOA#_"}}, "account"),
        ({"conversation": {"type": "official_account", "account": "@TOA#_" + "N" * 59}}, "account"),
        ({"report": {"reporter": "user2\t"}}, "reporter"),
        ({"report": {"msg_keys": ["549396494_2578554\x1b"]}}, "msg_keys"),
        ({"report": {"reason": "x" * 501}}, "reason"),
        ({"ruleset": "default\x7f"}, "ruleset"),
        ({"ruleset": "r" * 65}, "ruleset"),
    ],
)
def test_identifiers_are_bounded_and_free_of_control_characters(
    change: dict[str, Any], expected: str
) -> None:
    document = {**GOOD, **change}
    assert schema_verdict(document) is False
    problems = problems_of(document)
    assert any(expected in problem.split(":")[0] for problem in problems), problems


def test_free_text_may_hold_any_character() -> None:
    reason = "spam\nline two\ttab \u2028 ζ 赌博 🔥 " + "x" * 460
    assert verdicts({**GOOD, "report": {"reason": reason[:500]}}) == (True, True)


def test_a_group_job_as_long_as_tencent_allows_is_valid() -> None:
    group = {
        "type": "group",
        "group_id": "@TGS#" + "2" * 43,
        "topic_id": "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_" + "t" * 97,
    }
    document = {**GOOD, "conversation": group, "report": {"msg_seqs": [1, 2**32 - 1], "reporter": "u"}}
    assert verdicts(document) == (True, True)
    job = parse_job(json.dumps(document))
    assert job.report.msg_seqs == [1, 2**32 - 1]
    assert isinstance(job.conversation, GroupConversation)
    assert job.conversation.topic_id == group["topic_id"]


def test_an_official_account_of_any_allowed_length_can_be_the_suspect() -> None:
    account = "@TOA#_" + "N" * 58
    document = {**GOOD, "conversation": {"type": "official_account", "account": account}, "suspect": account}
    assert verdicts(document) == (True, True)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"window": {}}, "window: give since and until, or lookback_s"),
        ({"window": {"since": None, "until": None}}, "window: give since and until, or lookback_s"),
        ({"window": {"since": 5}}, "window: since and until go together"),
        ({"window": {"until": 5, "lookback_s": None}}, "window: since and until go together"),
        (
            {"window": {"since": 1, "until": 2, "lookback_s": 3}},
            "window: give either since/until or lookback_s",
        ),
        ({"window": {"lookback_s": 60}}, "(job): window.lookback_s needs report.reported_at"),
        (
            {"window": {"lookback_s": 60}, "report": {"reported_at": None}},
            "(job): window.lookback_s needs report.reported_at",
        ),
        ({"apply_plan": 3, "mode": "dry_run"}, "(job): an apply_plan job recalls; it cannot be a dry run"),
    ],
)
def test_the_schema_states_the_window_forms_and_field_dependencies(
    change: dict[str, Any], expected: str
) -> None:
    document = {**GOOD, **change}
    assert schema_verdict(document) is False
    problems = problems_of(document)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "change",
    [
        {"window": {"since": 1, "until": 2, "lookback_s": None}},
        {"window": {"since": None, "until": None, "lookback_s": 60}, "report": {"reported_at": 100}},
        {"apply_plan": 3, "mode": "recall"},
        {"apply_plan": 3},
        {"apply_plan": None, "mode": "dry_run"},
    ],
)
def test_nulls_stand_for_absent_fields_in_both(change: dict[str, Any]) -> None:
    assert verdicts({**GOOD, **change}) == (True, True)


def test_the_schema_names_the_rules_it_cannot_check() -> None:
    description = job_json_schema()["description"]
    assert len(CROSS_FIELD_PROBLEMS) >= 5
    for message in CROSS_FIELD_PROBLEMS:
        assert message in description


def test_the_published_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


# --- what an invalid job carries into results and headers stays small --------------------------------

BIG = 200_000


@pytest.mark.parametrize(
    "job_id",
    [
        pytest.param("r" * BIG, id="200k-characters"),
        pytest.param("r" * 129, id="129-characters"),
        pytest.param("r-1\nx-evil: 1", id="newline"),
        pytest.param("r-1\n", id="final-newline"),
        pytest.param("r-ü", id="non-ascii"),
        pytest.param("r 1", id="space"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_job_carries_only_a_valid_job_id(job_id: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_job(json.dumps({**GOOD, "job_id": job_id}))
    assert caught.value.job_id is None
    assert len(str(caught.value)) < 2000


def test_an_invalid_job_id_that_is_not_a_string_is_dropped() -> None:
    for job_id in (12, None, ["r-1"], {"id": "r-1"}, True):
        with pytest.raises(InvalidJob) as caught:
            parse_job(json.dumps({**GOOD, "job_id": job_id}))
        assert caught.value.job_id is None


def test_invalid_job_itself_drops_a_bad_job_id() -> None:
    assert InvalidJob(["x: y"], "r" * 129).job_id is None
    assert InvalidJob(["x: y"], "r-1\n").job_id is None
    assert InvalidJob(["x: y"], "r-1").job_id == "r-1"


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


MEGA = 1_000_000
HUGE_DOCUMENTS = {
    "huge-job-id-and-bad-mode": json.dumps({**GOOD, "job_id": "r" * MEGA, "mode": "x"}),
    "huge-unknown-field-name": json.dumps({**GOOD, "k" * MEGA: 1}),
    "huge-unknown-field-name-with-controls": json.dumps({**GOOD, "\n\x00" * (MEGA // 2): 1}),
    "huge-conversation-type": json.dumps({**GOOD, "conversation": {"type": "t" * MEGA}}),
    "huge-mode": json.dumps({**GOOD, "mode": "m" * MEGA}),
    "huge-version": json.dumps({**GOOD, "version": "9" * MEGA}),
    "huge-number": json.dumps(GOOD)[:-1] + ', "apply_plan": ' + "9" * MEGA + "}",
    "huge-fraction": json.dumps(GOOD)[:-1] + ', "apply_plan": 1.' + "5" * MEGA + "}",
    "many-unknown-fields": json.dumps({**GOOD, **{f"x{n}": n for n in range(100_000)}}),
    "many-bad-msg-keys": json.dumps({**GOOD, "report": {"msg_keys": ["\x00"] * 100_000}}),
    "many-bad-problems-everywhere": json.dumps(
        {
            "version": "x" * 100_000,
            "job_id": "y" * 100_000,
            "conversation": {"type": "c2c", "operator": "o" * 100_000, "peer": "p" * 100_000, "z" * 1000: 1},
            "suspect": "s" * 100_000,
            "window": {"since": "a" * 100_000, "until": "b" * 100_000, "w" * 1000: 1},
            "report": {"reason": "r" * 100_000, "msg_keys": ["m" * 10_000] * 50},
            "ruleset": "u" * 100_000,
        }
    ),
    "not-json-1mb": '{"job_id": "' + "x" * MEGA,
    "not-json-1mb-control": '{"job_id": "' + "x" * MEGA + '\x00"}',
    "nested-10000-lists": deep(10_000),
    "nested-10000-lists-in-a-field": json.dumps(GOOD)[:-1] + ', "mode": ' + deep(10_000) + "}",
    "nested-1000-lists-in-a-field": json.dumps(GOOD)[:-1] + ', "mode": ' + deep(1000) + "}",
    "nested-1000-objects-in-an-unknown-field": json.dumps(GOOD)[:-1]
    + ', "extra": '
    + '{"a":' * 1000
    + "1"
    + "}" * 1000
    + "}",
    "deep-list-of-1mb": "[" * MEGA,
}


@pytest.mark.parametrize("document", list(HUGE_DOCUMENTS.values()), ids=list(HUGE_DOCUMENTS))
def test_problems_never_echo_a_huge_input(document: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_job(document)
    text = str(caught.value)
    assert len(text) < 2000, text[:3000]
    assert caught.value.problems
    assert all(len(problem) <= 300 for problem in caught.value.problems)
    assert "\x00" not in text
    assert caught.value.job_id in (None, GOOD["job_id"])


def test_problems_say_how_many_were_left_out() -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_job(json.dumps({**GOOD, **{f"x{n}": n for n in range(100)}}))
    assert caught.value.problems[0] == "x0: Extra inputs are not permitted"
    left_out = re.fullmatch(r"\(job\): and (\d+) more problems", caught.value.problems[-1])
    assert left_out is not None, caught.value.problems
    assert len(caught.value.problems) - 1 + int(left_out[1]) == 100


def test_a_document_of_many_bad_jobs_stays_bounded() -> None:
    bad = json.dumps({**GOOD, "mode": "m" * 1000, "job_id": "j" * 1000})
    with pytest.raises(InvalidJob) as caught:
        parse_jobs_document("[" + ",".join([bad] * 1000) + "]")
    assert len(str(caught.value)) < 20_000
    assert caught.value.problems[0].startswith("item 1: ")
    assert "more problems" in caught.value.problems[-1]


def test_a_document_with_a_deeply_nested_item_is_an_invalid_job() -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_jobs_document("[" + json.dumps(GOOD) + ", " + deep(600) + "]")
    assert caught.value.problems == ["item 2: (job): a job is a JSON object, not a list"]
    nested_field = json.dumps(GOOD)[:-1] + ', "mode": ' + deep(600) + "}"
    with pytest.raises(InvalidJob) as caught:
        parse_jobs_document("[" + nested_field + "]")
    assert caught.value.problems[0].startswith("item 1: mode: ")


def numbers_of(schema: Any) -> list[dict[str, Any]]:
    """Every ``type: integer`` sub-schema of ``schema`` that is not a constant."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "integer" and "const" not in schema:
            found.append(schema)
        for value in schema.values():
            found += numbers_of(value)
    elif isinstance(schema, list):
        for value in schema:
            found += numbers_of(value)
    return found


def test_every_integer_bound_is_published_in_json_schema_words() -> None:
    text = SCHEMA_PATH.read_text()
    # pydantic writes a bound it cannot fold into the type as "ge"/"le", which JSON Schema ignores
    assert not re.search(r'"(ge|le|gt|lt|multiple_of)":', text)
    bounded = [s for s in numbers_of(json.loads(text)) if "minimum" in s and "maximum" in s]
    assert len(bounded) == 6  # since, until, lookback_s, reported_at, msg_seqs items, apply_plan


def test_a_lone_surrogate_is_refused_as_json_though_the_schema_has_no_say() -> None:
    # JSON's grammar allows "\ud800"; it is no Unicode text, and orjson (so the worker) refuses the document.
    document = {**GOOD, "report": {"reason": "\ud800"}}
    assert schema_verdict(document) is True
    with pytest.raises(InvalidJob, match="not valid JSON") as caught:
        parse_job(json.dumps(document))
    assert caught.value.job_id is None
