"""A case's job and window, and follow-up coverage (worker/intake/cases.py): pure, no services."""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.intake.cases import (
    MAX_NAMED_MESSAGES,
    CaseReport,
    Window,
    build_job,
    covered,
    job_id_of,
    window_of,
)
from worker.intake.model import CATEGORIES, ReportIn, parse_report
from worker.intake.trust import Decision
from worker.jobs import MAX_REPORTS_PER_JOB, MAX_TIMESTAMP, MAX_WINDOW_S, is_valid_job_id, parse_job

DAY = 86400
T0 = 1_700_000_000
RECALL = Decision("recall", "reporter trust 0.50")
DRY_RUN = Decision("dry_run", "low-trust reporters only")
GROUP = {"type": "group", "group_id": "@TGS#group1"}
C2C = {"type": "c2c", "operator": "alice", "peer": "mallory"}
OA = {"type": "official_account", "account": "@TOA#_abc"}


def _report(
    n: int,
    *,
    refs: Sequence[str | int] = (),
    reported_at: int = T0,
    reporter: str | None = None,
    category: str = "spam",
) -> CaseReport:
    return CaseReport(f"rpt_{n:024x}", reporter or f"reporter{n}", category, list(refs), reported_at)


def _key(seq: int, moment: int, random: int = 42) -> str:
    return f"{seq}_{random}_{moment}"


def _job(
    reports: Sequence[CaseReport],
    *,
    conversation: dict[str, Any] | None = None,
    suspect: str = "mallory",
    decision: Decision = RECALL,
    case_id: int = 7,
    closed_at: int = T0 + 3600,
) -> dict[str, Any]:
    window = window_of(reports, closed_at=closed_at, lookback_s=DAY)
    return build_job(
        case_id,
        conversation or GROUP,
        suspect,
        reports,
        decision=decision,
        window=window,
        ruleset="default",
    )


# --- job_id_of ---------------------------------------------------------------------------------------------


def test_job_id_of_is_fixed_per_case() -> None:
    assert job_id_of(7) == "intake-7"
    assert job_id_of(7) == job_id_of(7)


@given(a=st.integers(min_value=1, max_value=2**63), b=st.integers(min_value=1, max_value=2**63))
def test_job_ids_are_valid_and_distinct_per_case(a: int, b: int) -> None:
    assert is_valid_job_id(job_id_of(a))
    assert (job_id_of(a) == job_id_of(b)) == (a == b)


# --- window_of ---------------------------------------------------------------------------------------------


def test_window_looks_back_from_the_earliest_report_to_the_close() -> None:
    reports = [_report(1, reported_at=T0 + 500), _report(2, reported_at=T0)]
    assert window_of(reports, closed_at=T0 + 3600, lookback_s=100) == Window(T0 - 100, T0 + 3600, None)


def test_window_looks_back_from_an_earlier_msg_key_time() -> None:
    reports = [_report(1, refs=[_key(5, T0 - 7200), _key(6, T0 - 60)], reported_at=T0)]
    window = window_of(reports, closed_at=T0 + 10, lookback_s=100)
    assert window == Window(T0 - 7200 - 100, T0 + 10, None)


def test_msg_key_later_than_the_report_does_not_move_the_start() -> None:
    reports = [_report(1, refs=[_key(5, T0 + 50)], reported_at=T0)]
    assert window_of(reports, closed_at=T0 + 100, lookback_s=10).since == T0 - 10


def test_malformed_msg_key_is_ignored_by_the_window() -> None:
    reports = [_report(1, refs=["not-a-key", "1_2"], reported_at=T0)]
    assert window_of(reports, closed_at=T0, lookback_s=10) == Window(T0 - 10, T0, None)


def test_msg_key_sent_at_time_zero_still_counts() -> None:
    """A MsgKey's time of 0 is a time like any other (not "no time")."""
    reports = [_report(1, refs=[_key(1, 0)], reported_at=1000)]
    assert window_of(reports, closed_at=1000, lookback_s=10).since == 0


def test_window_ends_at_the_latest_report_when_it_is_after_the_close() -> None:
    """A report stamped after the case closed (a reporter's clock ahead) still lies in the window."""
    reports = [_report(1, reported_at=T0), _report(2, reported_at=T0 + 900)]
    assert window_of(reports, closed_at=T0 + 60, lookback_s=10).until == T0 + 900


def test_window_never_starts_before_zero() -> None:
    reports = [_report(1, reported_at=50)]
    assert window_of(reports, closed_at=60, lookback_s=DAY) == Window(0, 60, None)


def test_window_is_capped_at_the_longest_allowed() -> None:
    reports = [_report(1, refs=[_key(1, T0 - 200 * DAY)], reported_at=T0)]
    window = window_of(reports, closed_at=T0 + DAY, lookback_s=DAY)
    assert window.until == T0 + DAY
    assert window.until - window.since == MAX_WINDOW_S


def test_window_exactly_the_longest_allowed_is_kept() -> None:
    until = T0 + DAY
    earliest = until - MAX_WINDOW_S + 10
    reports = [_report(1, refs=[_key(1, earliest)], reported_at=T0)]
    assert window_of(reports, closed_at=until, lookback_s=10).since == until - MAX_WINDOW_S


def test_max_seq_is_the_newest_named_seq() -> None:
    reports = [_report(1, refs=[5, 90, 7]), _report(2, refs=[40]), _report(3)]
    assert window_of(reports, closed_at=T0, lookback_s=10).max_seq == 90


def test_max_seq_is_none_without_seqs() -> None:
    reports = [_report(1, refs=[_key(3, T0)]), _report(2)]
    assert window_of(reports, closed_at=T0, lookback_s=10).max_seq is None


_MOMENT = st.integers(min_value=0, max_value=MAX_TIMESTAMP)


@given(
    moments=st.lists(st.tuples(_MOMENT, st.lists(_MOMENT, max_size=3)), min_size=1, max_size=6),
    closed_at=_MOMENT,
    lookback_s=st.integers(min_value=0, max_value=MAX_WINDOW_S),
)
def test_window_properties(moments: list[tuple[int, list[int]]], closed_at: int, lookback_s: int) -> None:
    reports = [
        _report(n, refs=[_key(1, t) for t in key_times], reported_at=at)
        for n, (at, key_times) in enumerate(moments)
    ]
    window = window_of(reports, closed_at=closed_at, lookback_s=lookback_s)
    assert 0 <= window.since <= window.until
    assert window.until - window.since <= MAX_WINDOW_S
    assert window.until == max(closed_at, *(at for at, _ in moments))
    every = [at for at, _ in moments] + [t for _, key_times in moments for t in key_times]
    for moment in every:
        # each reported moment is looked back from, unless the window would grow too long
        if window.until - (moment - lookback_s) <= MAX_WINDOW_S:
            assert window.since <= max(0, moment - lookback_s)
    assert window.since >= max(0, min(every) - lookback_s)


# --- build_job ---------------------------------------------------------------------------------------------


def test_job_of_a_group_case() -> None:
    reports = [
        _report(1, refs=[10, 11], reported_at=T0, reporter="alice"),
        _report(2, refs=[12], reported_at=T0 + 60, reporter="bob", category="scam"),
    ]
    job = _job(reports, case_id=42, decision=DRY_RUN)
    assert job == {
        "version": 1,
        "job_id": "intake-42",
        "conversation": GROUP,
        "suspect": "mallory",
        "window": {"since": T0 - DAY, "until": T0 + 3600},
        "report": {
            "reporter": "alice",
            "reason": "scam",  # one each: the tie goes to the first by name
            "reported_at": T0,
            "reports": [reports[0].report_id, reports[1].report_id],
            "msg_seqs": [12, 10, 11],
        },
        "ruleset": "default",
        "mode": "dry_run",
    }
    parsed = parse_job(orjson.dumps(job))
    assert parsed.dry_run
    assert (parsed.since, parsed.until) == (T0 - DAY, T0 + 3600)


def test_job_of_a_c2c_case_names_msg_keys() -> None:
    keys = [_key(1, T0 - 30), _key(2, T0 - 20)]
    job = _job([_report(1, refs=keys, reporter="alice")], conversation=C2C)
    assert job["report"]["msg_keys"] == keys
    assert "msg_seqs" not in job["report"]
    parsed = parse_job(orjson.dumps(job))
    assert parsed.report.msg_keys == keys
    assert parsed.mode == "recall"


def test_job_of_an_official_account_case() -> None:
    job = _job([_report(1, refs=[_key(1, T0)])], conversation=OA, suspect="@TOA#_abc")
    parsed = parse_job(orjson.dumps(job))
    assert parsed.suspect == "@TOA#_abc"
    assert parsed.conversation.model_dump() == OA


def test_job_without_named_messages_has_neither_list() -> None:
    job = _job([_report(1), _report(2)])
    assert "msg_keys" not in job["report"]
    assert "msg_seqs" not in job["report"]
    parse_job(orjson.dumps(job))


def test_job_names_every_report_in_order() -> None:
    reports = [_report(n, reported_at=T0 + n) for n in range(25)]
    job = _job(reports)
    assert job["report"]["reports"] == [r.report_id for r in reports]
    assert parse_job(orjson.dumps(job)).report.reports == [r.report_id for r in reports]


def test_job_names_at_most_the_contract_limit_of_reports() -> None:
    reports = [_report(n, reported_at=T0) for n in range(MAX_REPORTS_PER_JOB + 5)]
    job = _job(reports)
    assert job["report"]["reports"] == [r.report_id for r in reports[:MAX_REPORTS_PER_JOB]]
    assert len(parse_job(orjson.dumps(job)).report.reports) == MAX_REPORTS_PER_JOB


def test_job_keeps_the_newest_msg_seqs_under_the_cap() -> None:
    old = _report(1, refs=list(range(1, 61)), reported_at=T0)
    middle = _report(2, refs=list(range(101, 161)), reported_at=T0 + 10)
    new = _report(3, refs=list(range(201, 261)), reported_at=T0 + 20)
    seqs = _job([old, middle, new])["report"]["msg_seqs"]
    assert len(seqs) == MAX_NAMED_MESSAGES
    assert set(new.msg_refs) <= set(seqs)
    assert not set(old.msg_refs) & set(seqs)
    assert seqs[:60] == list(new.msg_refs)


def test_job_keeps_the_newest_msg_keys_under_the_cap() -> None:
    old = _report(1, refs=[_key(n, T0) for n in range(1, 81)], reported_at=T0)
    new = _report(2, refs=[_key(n, T0 + 5) for n in range(1, 81)], reported_at=T0 + 10)
    job = _job([old, new], conversation=C2C)
    keys = job["report"]["msg_keys"]
    assert len(keys) == MAX_NAMED_MESSAGES
    assert keys[:80] == list(new.msg_refs)
    assert keys[80:] == list(old.msg_refs)[:20]
    parse_job(orjson.dumps(job))


def test_job_names_a_message_reported_twice_once() -> None:
    reports = [_report(1, refs=[10, 11]), _report(2, refs=[11, 12]), _report(3, refs=[10])]
    assert sorted(_job(reports)["report"]["msg_seqs"]) == [10, 11, 12]


@pytest.mark.parametrize(
    ("categories", "reason"),
    [
        (["spam"], "spam"),
        (["spam", "scam", "spam"], "spam"),
        (["spam", "scam"], "scam"),
        (["violence", "other", "other", "violence", "harassment"], "other"),
        (["sexual", "harassment", "sexual", "harassment", "sexual"], "sexual"),
    ],
)
def test_job_reason_is_the_most_reported_category(categories: list[str], reason: str) -> None:
    reports = [_report(n, category=category) for n, category in enumerate(categories)]
    assert _job(reports)["report"]["reason"] == reason
    assert _job(list(reversed(reports)))["report"]["reason"] == reason


def test_job_reporter_and_time_are_the_first_reports() -> None:
    reports = [_report(1, reporter="first", reported_at=T0 + 99), _report(2, reported_at=T0)]
    report = _job(reports)["report"]
    assert (report["reporter"], report["reported_at"]) == ("first", T0 + 99)


# --- build_job over random reports -------------------------------------------------------------------------

_ACCOUNT = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=32)
_SEQ = st.integers(min_value=1, max_value=MAX_TIMESTAMP)
_MSG_KEY = st.builds(
    "{}_{}_{}".format,
    st.integers(min_value=0, max_value=9_999_999_999),
    st.integers(min_value=0, max_value=9_999_999_999),
    st.integers(min_value=0, max_value=9_999_999_999),
)
_ID_TAIL = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[ReportIn], int, int]:
    """Reports (as filed, validated) that one case gathers, with the close time and the lookback."""
    kind = draw(st.sampled_from(["group", "c2c", "official_account"]))
    count = draw(st.integers(min_value=1, max_value=5))
    refs_of = st.lists(_SEQ if kind == "group" else _MSG_KEY, max_size=60)
    if kind == "group":
        conversation: dict[str, Any] = {"type": "group", "group_id": "@TGS#" + draw(_ID_TAIL)}
        if draw(st.booleans()):
            conversation["topic_id"] = "@TGS#_" + conversation["group_id"] + "@TOPIC#_" + draw(_ID_TAIL)
        suspect = draw(_ACCOUNT)
        reporters = draw(st.lists(_ACCOUNT.filter(lambda a: a != suspect), min_size=count, max_size=count))
    elif kind == "c2c":
        suspect = draw(_ACCOUNT)
        # one conversation between two parties: only the other party reports the suspect in it
        reporter = draw(_ACCOUNT.filter(lambda a: a != suspect))
        conversation = {"type": "c2c"}
        if draw(st.booleans()):
            conversation["peer"] = suspect
        reporters = [reporter] * count
    else:
        suspect = "@TOA#_" + draw(_ID_TAIL)
        conversation = {"type": "official_account", "account": suspect}
        reporters = draw(st.lists(_ACCOUNT, min_size=count, max_size=count))
    reports = []
    for reporter in reporters:
        refs = draw(refs_of)
        body: dict[str, Any] = {
            "reporter": reporter,
            "suspect": suspect,
            "conversation": conversation,
            "category": draw(st.sampled_from(CATEGORIES)),
            "reported_at": draw(_MOMENT),
            ("msg_seqs" if kind == "group" else "msg_keys"): refs,
        }
        reports.append(parse_report(orjson.dumps(body)))
    closed_at = draw(_MOMENT)
    lookback_s = draw(st.integers(min_value=1, max_value=MAX_WINDOW_S))
    return reports, closed_at, lookback_s


@settings(max_examples=150, deadline=None)
@given(case=_cases(), case_id=st.integers(min_value=1, max_value=2**40), dry_run=st.booleans())
def test_built_jobs_always_parse(case: tuple[list[ReportIn], int, int], case_id: int, dry_run: bool) -> None:
    filed, closed_at, lookback_s = case
    reports = [
        CaseReport(f"rpt_{n:024x}", r.reporter, r.category, r.msg_refs(), r.reported_at)
        for n, r in enumerate(filed)
    ]
    decision = DRY_RUN if dry_run else RECALL
    window = window_of(reports, closed_at=closed_at, lookback_s=lookback_s)
    conversation = filed[0].job_conversation()
    job = build_job(
        case_id,
        conversation,
        filed[0].suspect,
        reports,
        decision=decision,
        window=window,
        ruleset="default",
    )

    parsed = parse_job(orjson.dumps(job))

    assert parsed.job_id == job_id_of(case_id)
    assert parsed.mode == decision.mode
    assert parsed.suspect == filed[0].suspect
    assert parsed.conversation.model_dump(exclude_none=True) == conversation
    assert (parsed.since, parsed.until) == (window.since, window.until)
    assert parsed.report.reports == [r.report_id for r in reports][:MAX_REPORTS_PER_JOB]
    assert parsed.report.reporter == filed[0].reporter
    assert parsed.report.reported_at == filed[0].reported_at

    counts = Counter(r.category for r in reports)
    top = max(counts.values())
    assert parsed.report.reason == min(c for c, n in counts.items() if n == top)

    named: list[str | int] = [*parsed.report.msg_keys, *parsed.report.msg_seqs]
    every = {ref for r in reports for ref in r.msg_refs}
    assert len(named) <= MAX_NAMED_MESSAGES
    assert len(named) == len(set(named))  # each message once
    assert set(named) <= every
    if len(every) <= MAX_NAMED_MESSAGES:
        assert set(named) == every
    assert set(reports[-1].msg_refs) <= set(named)  # the newest report's messages are always kept


# --- covered -----------------------------------------------------------------------------------------------

SINCE, UNTIL = T0 - DAY, T0 + 3600


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        ([_key(1, SINCE)], True),
        ([_key(1, UNTIL)], True),
        ([_key(1, T0), _key(2, T0 + 1)], True),
        ([_key(1, SINCE - 1)], False),
        ([_key(1, UNTIL + 1)], False),
        ([_key(1, T0), _key(2, UNTIL + 1)], False),
        (["not-a-msg-key"], False),
        ([_key(1, T0), "1_2"], False),
    ],
)
def test_msg_keys_are_covered_when_their_time_is_in_the_window(refs: list[str], expected: bool) -> None:
    assert covered(SINCE, UNTIL, None, msg_refs=refs, reported_at=T0) is expected


@pytest.mark.parametrize(
    ("refs", "max_seq", "expected"),
    [
        ([50], 50, True),
        ([1, 49, 50], 50, True),
        ([51], 50, False),
        ([10, 51], 50, False),
        ([1], None, False),
    ],
)
def test_seqs_are_covered_up_to_the_newest_named(
    refs: list[int], max_seq: int | None, expected: bool
) -> None:
    assert covered(SINCE, UNTIL, max_seq, msg_refs=refs, reported_at=T0) is expected


def test_seq_coverage_ignores_the_report_time() -> None:
    assert covered(SINCE, UNTIL, 50, msg_refs=[5], reported_at=UNTIL + 10 * DAY)


@pytest.mark.parametrize(
    ("reported_at", "expected"),
    [(SINCE, True), (UNTIL, True), (T0, True), (SINCE - 1, False), (UNTIL + 1, False)],
)
def test_report_without_messages_is_covered_when_made_in_the_window(reported_at: int, expected: bool) -> None:
    assert covered(SINCE, UNTIL, 99, msg_refs=[], reported_at=reported_at) is expected


@pytest.mark.parametrize(("since", "until"), [(None, UNTIL), (SINCE, None), (None, None)])
def test_unknown_window_covers_nothing(since: int | None, until: int | None) -> None:
    assert not covered(since, until, 99, msg_refs=[], reported_at=T0)
    assert not covered(since, until, 99, msg_refs=[1], reported_at=T0)
    assert not covered(since, until, 99, msg_refs=[_key(1, T0)], reported_at=T0)


@given(
    reports=st.lists(
        st.tuples(st.integers(min_value=0, max_value=MAX_TIMESTAMP), st.lists(_SEQ, max_size=5)),
        min_size=1,
        max_size=5,
    ),
    closed_at=_MOMENT,
)
def test_a_case_covers_the_reports_it_was_built_from(
    reports: list[tuple[int, list[int]]], closed_at: int
) -> None:
    """Every report of a case (group messages or none, window not capped) is covered by its own job."""
    case = [_report(n, refs=seqs, reported_at=at) for n, (at, seqs) in enumerate(reports)]
    window = window_of(case, closed_at=closed_at, lookback_s=DAY)
    for report in case:
        if window.since <= report.reported_at:  # the cap may cut off an old report's moment
            assert covered(
                window.since,
                window.until,
                window.max_seq,
                msg_refs=report.msg_refs,
                reported_at=report.reported_at,
            )
