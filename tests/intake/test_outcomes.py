"""What a finished job means for its reports (worker/intake/outcomes.py), from real result records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.intake.outcomes import Outcome, outcome_of
from worker.results import FailedRecall, JobResult, MatchRecord, Skipped

T0 = 1_700_000_000


def _match(msg_key: str, rule_id: str = "spam-link") -> MatchRecord:
    return MatchRecord(msg_key=msg_key, sender="mallory", time=T0, rule_id=rule_id, evidence="http://x")


def _published(**fields: Any) -> dict[str, Any]:
    """A result as published (JSON round trip), like the store reads it back."""
    result = JobResult(
        job_id="intake-7",
        conversation={"type": "group", "group_id": "@TGS#g"},
        suspect="mallory",
        mode="recall",
        **fields,
    )
    record: dict[str, Any] = orjson.loads(orjson.dumps(result.model_dump(mode="json")))
    return record


def _counts(
    scanned: int = 0, matched: int = 0, recalled: int = 0, already: int = 0, proposed: int = 0
) -> dict[str, int]:
    return {
        "scanned": scanned,
        "matched": matched,
        "recalled": recalled,
        "already_recalled": already,
        "proposed": proposed,
    }


def test_recalled_messages_are_actioned_and_upheld() -> None:
    result = _published(
        status="done",
        messages_scanned=120,
        matches=[_match("1_1_1"), _match("2_2_2")],
        recalled=["1_1_1", "2_2_2"],
    )
    assert outcome_of(result) == Outcome("done", _counts(120, 2, 2), True, "actioned")


def test_already_recalled_messages_are_actioned() -> None:
    result = _published(
        status="done", messages_scanned=40, matches=[_match("1_1_1")], already_recalled=["1_1_1"]
    )
    assert outcome_of(result) == Outcome("done", _counts(40, 1, already=1), True, "actioned")


def test_wiped_messages_count_as_recalled() -> None:
    result = _published(status="done", messages_scanned=5, wiped=["1_1_1", "2_2_2", "3_3_3"])
    assert outcome_of(result) == Outcome("done", _counts(5, recalled=3), True, "actioned")


def test_recalled_and_wiped_add_up() -> None:
    result = _published(status="done", recalled=["1_1_1"], wiped=["2_2_2"])
    assert outcome_of(result).counts["recalled"] == 2


def test_dry_run_plan_is_reviewing() -> None:
    result = _published(
        status="dry_run",
        messages_scanned=80,
        matches=[_match("1_1_1"), _match("2_2_2")],
        planned=["1_1_1", "2_2_2"],
        plan_ids={"dry_run": 3},
    )
    assert outcome_of(result) == Outcome("done", _counts(80, 2, proposed=2), True, "reviewing")


def test_escalated_plan_is_reviewing() -> None:
    keys = [f"{n}_1_1" for n in range(1, 6)]
    result = _published(
        status="escalated",
        messages_scanned=500,
        matches=[_match(key) for key in keys],
        planned=keys,
        plan_ids={"over_cap": 9},
    )
    outcome = outcome_of(result)
    assert (outcome.state, outcome.notice, outcome.upheld) == ("done", "reviewing", True)
    assert outcome.counts == _counts(500, 5, proposed=5)


def test_proposed_wipe_is_reviewing_and_counts_as_one_proposal() -> None:
    result = _published(
        status="dry_run", messages_scanned=30, wipe_proposed="flood of 300 messages", plan_ids={"wipe": 4}
    )
    assert outcome_of(result) == Outcome("done", _counts(30, proposed=1), True, "reviewing")


def test_matches_without_recall_or_plan_are_reviewing() -> None:
    """The rules found something (e.g. only protected or too-old messages): the report held up."""
    result = _published(
        status="done",
        messages_scanned=12,
        matches=[_match("1_1_1")],
        skipped=[Skipped(msg_key="1_1_1", reason="protected_account")],
    )
    assert outcome_of(result) == Outcome("done", _counts(12, 1), True, "reviewing")


def test_several_rules_on_one_message_count_one_match() -> None:
    result = _published(
        status="done",
        matches=[_match("1_1_1", "a"), _match("1_1_1", "b"), _match("2_2_2", "a")],
        recalled=["1_1_1", "2_2_2"],
    )
    assert outcome_of(result).counts["matched"] == 2


def test_nothing_found_is_dismissed_as_baseless() -> None:
    result = _published(status="done", messages_scanned=250, pages_fetched=3)
    assert outcome_of(result) == Outcome("dismissed", _counts(250), False, "no_action")


def test_an_empty_window_is_dismissed() -> None:
    assert outcome_of(_published(status="dry_run")) == Outcome("dismissed", _counts(), False, "no_action")


@pytest.mark.parametrize("status", ["failed", "invalid"])
def test_a_job_that_gave_up_without_recalling_is_failed(status: str) -> None:
    result = _published(status=status, error="attempts exhausted", reason="attempts_exhausted")
    assert outcome_of(result) == Outcome("failed", _counts(), None, None)


def test_failed_job_with_matches_but_no_recall_is_failed() -> None:
    """Refused recalls: the job gave up; nothing is said to or about the reporters."""
    result = _published(
        status="failed",
        messages_scanned=60,
        matches=[_match("1_1_1")],
        failed=[FailedRecall(msg_key="1_1_1", code=20004, info="refused")],
        already_recalled=["2_2_2"],
        error="1 recall(s) refused by the service",
    )
    outcome = outcome_of(result)
    assert (outcome.state, outcome.upheld, outcome.notice) == ("failed", None, None)
    assert outcome.counts == _counts(60, 1, already=1)


def test_failed_job_that_recalled_something_is_done() -> None:
    """Some recalls went through before others were refused: the report held up and was acted on."""
    result = _published(
        status="failed",
        messages_scanned=60,
        matches=[_match("1_1_1"), _match("2_2_2")],
        recalled=["1_1_1"],
        failed=[FailedRecall(msg_key="2_2_2", code=20004)],
        error="1 recall(s) refused by the service",
    )
    assert outcome_of(result) == Outcome("done", _counts(60, 2, 1), True, "actioned")


def test_a_bare_record_is_dismissed() -> None:
    """Missing lists and counts read as empty and zero."""
    assert outcome_of({"status": "done"}) == Outcome("dismissed", _counts(), False, "no_action")
    assert outcome_of({"status": "done", "matches": None, "recalled": None}).state == "dismissed"


_KEYS = st.lists(st.sampled_from([f"{n}_1_1" for n in range(1, 9)]), max_size=6)


@given(
    status=st.sampled_from(["done", "dry_run", "escalated", "invalid", "failed"]),
    scanned=st.integers(min_value=0, max_value=10_000),
    matched=_KEYS,
    recalled=_KEYS,
    already=_KEYS,
    planned=_KEYS,
    wiped=_KEYS,
    wipe=st.none() | st.just("flood"),
)
def test_outcome_follows_the_rules_for_any_result(
    status: str,
    scanned: int,
    matched: list[str],
    recalled: list[str],
    already: list[str],
    planned: list[str],
    wiped: list[str],
    wipe: str | None,
) -> None:
    result = _published(
        status=status,
        messages_scanned=scanned,
        matches=[_match(key) for key in matched],
        recalled=recalled,
        already_recalled=already,
        planned=planned,
        wiped=wiped,
        wipe_proposed=wipe,
    )
    outcome = outcome_of(result)
    assert outcome.counts == _counts(
        scanned,
        len(set(matched)),
        len(recalled) + len(wiped),
        len(already),
        len(planned) + (wipe is not None),
    )
    acted = bool(recalled or wiped)
    if status in ("failed", "invalid") and not acted:
        assert (outcome.state, outcome.upheld, outcome.notice) == ("failed", None, None)
    elif acted or already:
        assert (outcome.state, outcome.upheld, outcome.notice) == ("done", True, "actioned")
    elif matched or planned or wipe:
        assert (outcome.state, outcome.upheld, outcome.notice) == ("done", True, "reviewing")
    else:
        assert (outcome.state, outcome.upheld, outcome.notice) == ("dismissed", False, "no_action")
    # a settled case upholds its reports exactly when it is done
    assert (outcome.upheld is True) == (outcome.state == "done")
