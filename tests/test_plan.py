"""The recall plan and the circuit breaker: pure rules about what a job may recall."""

from __future__ import annotations

from dataclasses import dataclass

from worker.jobs import Job
from worker.pipeline import (
    BreakerPolicy,
    Matched,
    MessageRef,
    Policy,
    SkipReason,
    breaker_trips,
    plan_recalls,
)
from worker.tim.models import MessageState

JOB = Job.model_validate(
    {
        "version": 1,
        "job_id": "j",
        "conversation": {"type": "c2c", "operator": "bob", "peer": "eve"},
        "suspect": "eve",
        "window": {"since": 100, "until": 200},
    }
)
POLICY = Policy(max_recalls=50)


@dataclass(frozen=True)
class M:
    msg_key: str
    rule_id: str = "r"
    action: str = "recall"


def matched(
    key: str,
    sender: str = "eve",
    at: int = 150,
    state: MessageState = MessageState.NORMAL,
    action: str = "recall",
    rule_id: str = "r",
) -> Matched:
    return Matched(MessageRef(key, sender, "bob", at, state), [M(key, rule_id=rule_id, action=action)])


def test_only_the_suspects_live_messages_in_the_window_are_recalled() -> None:
    plan = plan_recalls(
        JOB,
        [
            matched("ok"),
            matched("reporter", sender="bob"),
            matched("early", at=99),
            matched("late", at=201),
            matched("edge", at=200),
            matched("gone", state=MessageState.RECALLED),
            matched("hole", state=MessageState.HOLE),
            matched("review", action="flag"),
        ],
        POLICY,
    )
    assert [r.msg_key for r in plan.to_recall] == ["ok", "edge"]
    assert dict(plan.skipped) == {
        "reporter": SkipReason.NOT_SUSPECT,
        "early": SkipReason.OUTSIDE_WINDOW,
        "late": SkipReason.OUTSIDE_WINDOW,
        "gone": SkipReason.ALREADY_RECALLED,
        "hole": SkipReason.HOLE,
        "review": SkipReason.FLAG_ONLY,
    }
    assert plan.review() == {SkipReason.FLAG_ONLY: ["review"]}
    assert not plan.over_cap


def test_a_recall_match_beside_a_flag_match_recalls() -> None:
    item = matched("both")
    item.matches.append(M("both", action="flag"))
    assert [r.msg_key for r in plan_recalls(JOB, [item], POLICY).to_recall] == ["both"]


def test_protected_accounts_are_never_recalled() -> None:
    plan = plan_recalls(JOB, [matched("staff")], Policy(protected=frozenset({"eve"})))
    assert plan.to_recall == ()
    assert dict(plan.skipped) == {"staff": SkipReason.PROTECTED}
    assert plan.review() == {}, "a protected account's message is not even offered for review"


def test_rules_behind_a_tripped_breaker_go_to_review() -> None:
    held = matched("held", rule_id="noisy")
    other = matched("other", rule_id="noisy")
    other.matches.append(M("other", rule_id="calm"))
    plan = plan_recalls(JOB, [held, other], POLICY, open_breakers={"noisy"})
    assert [r.msg_key for r in plan.to_recall] == ["other"], "another rule still justifies the recall"
    assert plan.review() == {SkipReason.BREAKER: ["held"]}


def test_over_the_cap_is_flagged_with_the_full_plan() -> None:
    plan = plan_recalls(JOB, [matched(f"k{i}", at=100 + i) for i in range(4)], Policy(max_recalls=3))
    assert plan.over_cap
    assert len(plan.to_recall) == 4
    assert not plan_recalls(
        JOB, [matched(f"k{i}", at=100 + i) for i in range(3)], Policy(max_recalls=3)
    ).over_cap


BREAKER = BreakerPolicy(factor=10, min_matches=5, min_jobs=3, floor_rate=0.001)


def test_breaker_trips_on_a_spike_over_the_baseline() -> None:
    # baseline: 10 matches over 5,000 messages in 8 jobs = 0.2%; now 30 of 100 = 30%
    trips = breaker_trips({"spam": 30}, 100, {"spam": (10, 5000, 8)}, BREAKER)
    assert set(trips) == {"spam"}
    assert "30 of 100 messages" in trips["spam"]


def test_breaker_holds_at_the_usual_rate() -> None:
    assert breaker_trips({"spam": 6}, 1000, {"spam": (100, 20000, 40)}, BREAKER) == {}


def test_breaker_needs_enough_matches_and_history() -> None:
    assert breaker_trips({"spam": 4}, 10, {"spam": (0, 5000, 8)}, BREAKER) == {}, "too few matches"
    assert breaker_trips({"spam": 30}, 100, {"spam": (0, 500, 2)}, BREAKER) == {}, "too little history"


def test_a_new_rule_with_no_baseline_trips_against_the_floor() -> None:
    assert set(breaker_trips({"new": 50}, 100, {"new": (0, 10000, 20)}, BREAKER)) == {"new"}


GROUP_JOB = Job.model_validate(
    {
        "version": 1,
        "job_id": "g",
        "conversation": {"type": "group", "group_id": "@TGS#2C5SZEAEF"},
        "suspect": "eve",
        "window": {"since": 100, "until": 200},
    }
)


def group_matched(seq: int, *, sender: str = "eve", action: str = "recall", system: bool = False) -> Matched:
    key = str(seq)
    ref = MessageRef(key, sender, None, 150, MessageState.NORMAL, system)
    return Matched(ref, [M(key, rule_id=f"{action}-rule", action=action)])


def test_a_system_message_is_never_recalled_whoever_it_names() -> None:
    plan = plan_recalls(GROUP_JOB, [group_matched(1, system=True), group_matched(2)], POLICY)
    assert [r.msg_key for r in plan.to_recall] == ["2"]
    assert dict(plan.skipped) == {"1": SkipReason.SYSTEM}
    assert plan.review() == {}, "a system message is not offered for review either"


def test_a_wipe_rule_recalls_and_proposes_a_wipe_in_a_group() -> None:
    plan = plan_recalls(GROUP_JOB, [group_matched(1, action="wipe"), group_matched(2)], POLICY)
    assert [r.msg_key for r in plan.to_recall] == ["1", "2"]
    assert plan.wipe == "rule wipe-rule"
    assert not plan.over_cap


def test_in_a_group_over_the_cap_proposes_a_wipe() -> None:
    plan = plan_recalls(GROUP_JOB, [group_matched(seq) for seq in range(1, 5)], Policy(max_recalls=3))
    assert plan.over_cap
    assert plan.wipe == "over_cap"


def test_no_wipe_is_proposed_without_cause_or_outside_groups() -> None:
    assert plan_recalls(GROUP_JOB, [group_matched(1)], POLICY).wipe == ""
    one_to_one = plan_recalls(JOB, [matched("k", action="wipe")], POLICY)
    assert [r.msg_key for r in one_to_one.to_recall] == ["k"], "outside groups, a wipe rule recalls"
    assert one_to_one.wipe == ""


def test_a_wipe_needs_a_message_the_job_may_recall() -> None:
    other_member = group_matched(1, sender="bob", action="wipe")
    flagged_only = group_matched(2, action="flag")
    assert plan_recalls(GROUP_JOB, [other_member, flagged_only], POLICY).wipe == ""
    held = plan_recalls(GROUP_JOB, [group_matched(3, action="wipe")], POLICY, open_breakers={"wipe-rule"})
    assert held.wipe == "", "a wipe rule behind a tripped breaker proposes nothing"
    assert held.review() == {SkipReason.BREAKER: ["3"]}
    rejected = plan_recalls(GROUP_JOB, [group_matched(4, action="wipe")], POLICY, rejected={"4"})
    assert rejected.wipe == "", "a message a moderator decided to keep proposes nothing"


def test_a_protected_account_is_never_proposed_for_a_wipe() -> None:
    over = [group_matched(seq, action="wipe") for seq in range(1, 5)]
    plan = plan_recalls(GROUP_JOB, over, Policy(max_recalls=3, protected=frozenset({"eve"})))
    assert plan.wipe == ""
    assert plan.to_recall == ()
