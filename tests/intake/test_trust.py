"""Reporter trust and the job-mode policy (worker/intake/trust.py): pure, no services."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.intake.trust import Decision, Policy, Record, decide, trust_score

_COUNTS = st.integers(min_value=0, max_value=10_000)
#: A record bad enough that its trust (1/5 = 0.2) is below the default low-trust threshold (0.35).
BAD = Record(upheld=0, baseless=3)


# --- trust_score -------------------------------------------------------------------------------------------


def test_new_reporter_scores_one_half() -> None:
    assert trust_score(Record()) == 0.5


@pytest.mark.parametrize(
    ("record", "score"),
    [
        (Record(upheld=8), 0.9),
        (Record(baseless=8), 0.1),
        (Record(upheld=1), 2 / 3),
        (Record(baseless=1), 1 / 3),
        (Record(upheld=3, baseless=3), 0.5),
        (Record(upheld=2, baseless=1), 0.6),
    ],
)
def test_documented_scores(record: Record, score: float) -> None:
    assert trust_score(record) == pytest.approx(score)


def test_all_upheld_trends_to_one_and_all_baseless_to_zero() -> None:
    upheld = [trust_score(Record(upheld=n)) for n in (0, 1, 10, 100, 10_000)]
    baseless = [trust_score(Record(baseless=n)) for n in (0, 1, 10, 100, 10_000)]
    assert upheld == sorted(upheld)
    assert baseless == sorted(baseless, reverse=True)
    assert upheld[-1] > 0.999
    assert baseless[-1] < 0.001
    assert all(score < 1 for score in upheld)
    assert all(score > 0 for score in baseless)


@given(upheld=_COUNTS, baseless=_COUNTS)
def test_score_is_strictly_between_zero_and_one(upheld: int, baseless: int) -> None:
    assert 0 < trust_score(Record(upheld, baseless)) < 1


@given(upheld=_COUNTS, baseless=_COUNTS, more=st.integers(min_value=1, max_value=1000))
def test_score_rises_with_upheld_and_falls_with_baseless(upheld: int, baseless: int, more: int) -> None:
    score = trust_score(Record(upheld, baseless))
    assert trust_score(Record(upheld + more, baseless)) > score
    assert trust_score(Record(upheld, baseless + more)) < score


@given(upheld=_COUNTS, baseless=_COUNTS)
def test_score_is_symmetric_about_one_half(upheld: int, baseless: int) -> None:
    assert trust_score(Record(upheld, baseless)) + trust_score(Record(baseless, upheld)) == pytest.approx(1)


# --- decide ------------------------------------------------------------------------------------------------


def test_trusted_reporter_recalls_and_is_named() -> None:
    policy = Policy(trusted=frozenset({"mod-bot"}))
    decision = decide(policy, ["stranger", "mod-bot"], {"stranger": BAD, "mod-bot": BAD})
    assert decision.mode == "recall"
    assert "trusted reporter mod-bot" in decision.why


def test_the_first_trusted_reporter_by_name_is_named() -> None:
    policy = Policy(trusted=frozenset({"zed", "amy"}))
    assert decide(policy, ["zed", "amy"], {}).why == "trusted reporter amy"


def test_enough_distinct_reporters_agree() -> None:
    reporters = ["a", "b", "c"]
    decision = decide(Policy(agree=3), reporters, dict.fromkeys(reporters, BAD))
    assert decision == Decision("recall", "3 reporters agree")


def test_one_short_of_agreement_with_low_trust_is_a_dry_run() -> None:
    reporters = ["a", "b"]
    decision = decide(Policy(agree=3), reporters, dict.fromkeys(reporters, BAD))
    assert decision.mode == "dry_run"


def test_duplicate_reporters_count_once() -> None:
    decision = decide(Policy(agree=3), ["a", "a", "a", "a"], {"a": BAD})
    assert decision.mode == "dry_run"
    assert "fewer than 3 agree" in decision.why


def test_duplicates_do_not_inflate_the_agreeing_count() -> None:
    reporters = ["a", "b", "c", "c", "a"]
    decision = decide(Policy(agree=3), reporters, dict.fromkeys(reporters, BAD))
    assert decision == Decision("recall", "3 reporters agree")


def test_new_reporter_is_trusted_enough_by_default() -> None:
    decision = decide(Policy(), ["newcomer"], {})
    assert decision == Decision("recall", "reporter trust 0.50")


def test_best_reporter_trust_decides() -> None:
    records = {"bad": BAD, "good": Record(upheld=8)}
    assert decide(Policy(), ["bad", "good"], records) == Decision("recall", "reporter trust 0.90")


def test_trust_exactly_at_the_threshold_recalls() -> None:
    policy = Policy(low_trust=0.5)
    assert decide(policy, ["even"], {"even": Record(upheld=2, baseless=2)}).mode == "recall"
    assert decide(policy, ["below"], {"below": Record(upheld=2, baseless=3)}).mode == "dry_run"


def test_low_trust_reporters_only_is_a_dry_run_with_a_reason() -> None:
    decision = decide(Policy(low_trust=0.35, agree=3), ["bad"], {"bad": BAD})
    assert decision.mode == "dry_run"
    assert decision.why == (
        "low-trust reporters only (best 0.20 < 0.35) and fewer than 3 agree: planned for review"
    )


def test_no_reporters_is_a_dry_run() -> None:
    assert decide(Policy(), [], {}).mode == "dry_run"


def test_trusted_list_beats_a_bad_record() -> None:
    terrible = Record(upheld=0, baseless=1000)
    policy = Policy(trusted=frozenset({"ops"}))
    assert decide(policy, ["ops"], {"ops": terrible}).mode == "recall"
    assert decide(Policy(), ["ops"], {"ops": terrible}).mode == "dry_run"


_NAMES = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=8)
_RECORDS = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]), st.builds(Record, _COUNTS, _COUNTS), max_size=5
)


@given(
    reporters=_NAMES,
    records=_RECORDS,
    low_trust=st.floats(min_value=0.01, max_value=1.0),
    agree=st.integers(min_value=1, max_value=6),
)
def test_decision_matches_the_stated_rules(
    reporters: list[str], records: dict[str, Record], low_trust: float, agree: int
) -> None:
    decision = decide(Policy(low_trust=low_trust, agree=agree), reporters, records)
    best = max((trust_score(records.get(r, Record())) for r in reporters), default=0.0)
    should_recall = len(set(reporters)) >= agree or best >= low_trust
    assert decision.mode == ("recall" if should_recall else "dry_run")
    assert decision.why
    # the same reporters in another order, or repeated, give the same decision
    assert decide(Policy(low_trust=low_trust, agree=agree), [*reversed(reporters), *reporters], records) == (
        decision
    )


@given(reporters=_NAMES, records=_RECORDS, extra=st.integers(min_value=1, max_value=50))
def test_a_better_record_never_turns_recall_into_dry_run(
    reporters: list[str], records: dict[str, Record], extra: int
) -> None:
    before = decide(Policy(), reporters, records)
    improved = {
        name: Record(records.get(name, Record()).upheld + extra, records.get(name, Record()).baseless)
        for name in reporters
    }
    after = decide(Policy(), reporters, improved)
    if before.mode == "recall":
        assert after.mode == "recall"
