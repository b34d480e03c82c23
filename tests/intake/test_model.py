"""A filed report, validated (worker/intake/model.py): pure, no services."""

from __future__ import annotations

import string
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.intake.model import (
    ACCOUNT_IS_SUSPECT,
    KEYS_OUTSIDE_GROUPS,
    MAX_MESSAGES,
    PEER_IS_SUSPECT,
    SEQS_IN_GROUPS,
    C2CReportConversation,
    InvalidReport,
    ReportIn,
    msg_key_time,
    parse_report,
)
from worker.jobs import GroupConversation, OfficialAccountConversation, parse_job

NOW = 1_800_000_000
GROUP = {"type": "group", "group_id": "@TGS#group1"}
TOPIC = {"type": "group", "group_id": "@TGS#group1", "topic_id": "@TGS#_@TGS#group1@TOPIC#_news"}
OA = {"type": "official_account", "account": "@TOA#_abc"}
KEY = "123_456_1700000000"


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reporter": "alice",
        "suspect": "mallory",
        "conversation": GROUP,
        "msg_seqs": [10],
        "category": "spam",
        "reported_at": NOW,
    }
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


def _parse(**fields: Any) -> ReportIn:
    return parse_report(orjson.dumps(_body(**fields)))


def _problems(body: bytes | dict[str, Any]) -> list[dict[str, str]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidReport) as exc:
        parse_report(raw)
    return exc.value.problems


def _fields(body: bytes | dict[str, Any]) -> list[str]:
    return [problem["field"] for problem in _problems(body)]


def _c2c(**fields: Any) -> ReportIn:
    return _parse(**{"conversation": {"type": "c2c"}, "msg_seqs": None, "msg_keys": [KEY], **fields})


def _oa(**fields: Any) -> ReportIn:
    return _parse(
        **{"conversation": OA, "suspect": "@TOA#_abc", "msg_seqs": None, "msg_keys": [KEY], **fields}
    )


def _job_of(report: ReportIn) -> dict[str, Any]:
    key = "msg_seqs" if isinstance(report.conversation, GroupConversation) else "msg_keys"
    return {
        "version": 1,
        "job_id": "intake-1",
        "conversation": report.job_conversation(),
        "suspect": report.suspect,
        "window": {"since": NOW - 60, "until": NOW},
        "report": {"reporter": report.reporter, key: report.msg_refs()},
    }


# --- each conversation type --------------------------------------------------------------------------------


def test_group_report() -> None:
    report = _parse(msg_seqs=[10, 11.0], description="line one\nline two", language="zh-CN")
    assert isinstance(report.conversation, GroupConversation)
    assert report.msg_seqs == [10, 11]  # a JSON integer may be written 11.0
    assert report.msg_refs() == [10, 11]
    assert report.conversation_key() == "group:@TGS#group1"
    assert report.job_conversation() == GROUP


def test_topic_report() -> None:
    report = _parse(conversation=TOPIC)
    assert report.conversation_key() == "group:@TGS#group1|topic:@TGS#_@TGS#group1@TOPIC#_news"
    assert report.job_conversation() == TOPIC


def test_c2c_report() -> None:
    report = _c2c()
    assert isinstance(report.conversation, C2CReportConversation)
    assert report.msg_refs() == [KEY]
    assert report.conversation_key() == "c2c:alice|mallory"
    assert report.job_conversation() == {"type": "c2c", "operator": "alice", "peer": "mallory"}


def test_c2c_report_naming_the_peer() -> None:
    report = _parse(conversation={"type": "c2c", "peer": "mallory"}, msg_seqs=None, msg_keys=[KEY])
    assert report.job_conversation() == {"type": "c2c", "operator": "alice", "peer": "mallory"}


def test_official_account_report() -> None:
    report = _oa()
    assert isinstance(report.conversation, OfficialAccountConversation)
    assert report.conversation_key() == "oa:@TOA#_abc"
    assert report.job_conversation() == OA
    assert report.msg_refs() == [KEY]


def test_report_without_messages_has_no_refs() -> None:
    assert _parse(msg_seqs=None).msg_refs() == []
    assert _c2c(msg_keys=[]).msg_refs() == []


@pytest.mark.parametrize("make", [_parse, _c2c, _oa, lambda: _parse(conversation=TOPIC)])
def test_job_conversation_makes_a_valid_job(make: Any) -> None:
    report: ReportIn = make()
    job = parse_job(orjson.dumps(_job_of(report)))
    assert job.conversation.model_dump(exclude_none=True) == report.job_conversation()
    assert job.suspect == report.suspect


_ACCOUNT = st.text(alphabet=string.ascii_letters + string.digits + "_-@#", min_size=1, max_size=32)


@given(a=_ACCOUNT, b=_ACCOUNT)
def test_c2c_key_is_the_same_from_either_side(a: str, b: str) -> None:
    one = _c2c(reporter=a, suspect=b)
    other = _c2c(reporter=b, suspect=a)
    assert one.conversation_key() == other.conversation_key()
    assert one.conversation_key() == "c2c:" + "|".join(sorted((a, b)))
    # but each side reads the history from its own view
    assert one.job_conversation()["operator"] == a
    assert other.job_conversation()["operator"] == b


def test_c2c_keys_of_different_pairs_differ() -> None:
    assert (
        _c2c(reporter="alice", suspect="bob").conversation_key()
        != _c2c(reporter="alice", suspect="carol").conversation_key()
    )


def test_conversation_keys_of_the_types_never_collide() -> None:
    keys = {
        _parse().conversation_key(),
        _parse(conversation=TOPIC).conversation_key(),
        _c2c().conversation_key(),
        _oa().conversation_key(),
    }
    assert len(keys) == 4


# --- msg_key_time ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "moment"),
    [
        ("123_456_1700000000", 1_700_000_000),
        ("1_2_0", 0),
        ("9999999999_9999999999_9999999999", 9_999_999_999),
        ("1_2", None),
        ("1_2_3_4", None),
        ("a_b_c", None),
        ("1_2_", None),
        ("_1_2", None),
        ("1_2_12345678901", None),
        ("1_2_3\n", None),
        (" 1_2_3", None),
        ("1_2_-3", None),
        ("", None),
    ],
)
def test_msg_key_time(key: str, moment: int | None) -> None:
    assert msg_key_time(key) == moment


@given(
    seq=st.integers(min_value=0, max_value=9_999_999_999),
    random=st.integers(min_value=0, max_value=9_999_999_999),
    moment=st.integers(min_value=0, max_value=9_999_999_999),
)
def test_msg_key_time_reads_the_third_part(seq: int, random: int, moment: int) -> None:
    assert msg_key_time(f"{seq}_{random}_{moment}") == moment


@given(key=st.text(max_size=40))
def test_msg_key_time_agrees_with_validation(key: str) -> None:
    """msg_key_time reads a time exactly from the keys a report may name."""
    try:
        _c2c(msg_keys=[key])
    except InvalidReport:
        accepted = False
    else:
        accepted = True
    if accepted:
        assert msg_key_time(key) is not None
    elif 5 <= len(key) <= 64:  # the length bounds are the validator's alone
        assert msg_key_time(key) is None


# --- problems ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"conversation": GROUP, "msg_seqs": None, "msg_keys": [KEY]}, "msg_keys", KEYS_OUTSIDE_GROUPS),
        ({"conversation": {"type": "c2c"}, "msg_seqs": [1]}, "msg_seqs", SEQS_IN_GROUPS),
        ({"conversation": OA, "suspect": "@TOA#_abc", "msg_seqs": [1]}, "msg_seqs", SEQS_IN_GROUPS),
        (
            {"conversation": {"type": "c2c", "peer": "bob"}, "msg_seqs": None},
            "conversation.peer",
            PEER_IS_SUSPECT,
        ),
        ({"conversation": OA, "msg_seqs": None}, "suspect", ACCOUNT_IS_SUSPECT),
    ],
)
def test_cross_field_problems_name_their_field(fields: dict[str, Any], field: str, message: str) -> None:
    assert _problems(_body(**fields)) == [{"field": field, "message": message}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"reporter": ""}, "reporter"),
        ({"reporter": "a" * 33}, "reporter"),
        ({"reporter": "al\x00ice"}, "reporter"),
        ({"suspect": "x" * 65}, "suspect"),
        ({"category": "rude"}, "category"),
        ({"reported_at": -1}, "reported_at"),
        ({"reported_at": "1800000000"}, "reported_at"),
        ({"reported_at": True}, "reported_at"),
        ({"msg_seqs": [0]}, "msg_seqs.0"),
        ({"msg_seqs": [1, "2"]}, "msg_seqs.1"),
        ({"msg_seqs": list(range(1, MAX_MESSAGES + 2))}, "msg_seqs"),
        ({"conversation": {"type": "group"}}, "conversation.group_id"),
        ({"conversation": {"type": "group", "group_id": "g", "extra": 1}}, "conversation.extra"),
        ({"conversation": {"type": "official_account", "account": "nope"}}, "conversation.account"),
        ({"conversation": {"type": "c2c", "peer": ""}}, "conversation.peer"),
        ({"conversation": {"type": "channel"}}, "conversation"),
        ({"description": "bell\x07"}, "description"),
        ({"description": "d" * 1001}, "description"),
        ({"language": "english!"}, "language"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_field_problems_name_their_field(fields: dict[str, Any], field: str) -> None:
    assert _fields(_body(**fields)) == [field]


def test_bad_msg_key_is_named_by_index() -> None:
    assert _fields(_body(conversation={"type": "c2c"}, msg_seqs=None, msg_keys=[KEY, "nope"])) == [
        "msg_keys.1"
    ]


def test_missing_fields_are_each_named() -> None:
    assert sorted(_fields({"conversation": GROUP})) == ["category", "reported_at", "reporter", "suspect"]


def test_messages_have_no_pydantic_prefix_and_are_bounded() -> None:
    problems = _problems(_body(conversation={"type": "c2c", "peer": "bob"}, msg_seqs=None, suspect="x" * 65))
    for problem in problems:
        assert not problem["message"].startswith("Value error")
        assert len(problem["message"]) <= 200


def test_invalid_report_says_every_problem() -> None:
    with pytest.raises(InvalidReport) as exc:
        parse_report(orjson.dumps(_body(reporter="", category="rude")))
    assert "reporter: " in str(exc.value)
    assert "category: " in str(exc.value)


def test_at_most_ten_problems_are_reported() -> None:
    body = _body(msg_seqs=[0] * MAX_MESSAGES, reporter="", category="rude")
    problems = _problems(body)
    assert len(problems) == 10
    assert all(set(problem) == {"field", "message"} for problem in problems)


@given(bad=st.integers(min_value=10, max_value=MAX_MESSAGES))
def test_problem_count_is_capped_however_many_there_are(bad: int) -> None:
    assert len(_problems(_body(msg_seqs=[0] * bad))) == 10


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b"1", b'"report"', b"null", b"true"])
def test_non_object_json_is_a_body_problem(raw: bytes) -> None:
    assert _problems(raw) == [{"field": "(body)", "message": "must be a JSON object"}]


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"\xff\xfe", b"{}garbage"])
def test_non_json_is_a_body_problem(raw: bytes) -> None:
    assert _problems(raw) == [{"field": "(body)", "message": "not JSON"}]


def test_empty_object_names_the_missing_fields_not_the_body() -> None:
    fields = _fields(b"{}")
    assert "(body)" not in fields
    assert "conversation" in fields
