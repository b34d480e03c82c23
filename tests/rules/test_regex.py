"""``regex``: RE2 only (linear time), normalized or raw text, every field, one pass per batch."""

from __future__ import annotations

import time

import pytest

from rules import RulesError, load_text
from tests.rules.helpers import MakeMessage, msg, only, rule, ruleset, scan, text, text_field_cases

HANDLES = ruleset(rule("regex", "handles", action="flag", pattern=r"(?:wx|微信)\s*[:：]\s*[a-z0-9_]{5,}"))


def test_match_reports_original_evidence_and_normalized_form() -> None:
    found = only(scan(HANDLES, msg(text("加我 ＷＸ：Abc_123 谢谢"))))
    assert (found.rule_id, found.action, found.rule_type) == ("handles", "flag", "regex")
    assert (found.evidence, found.normalized) == ("ＷＸ：Abc_123", "wx:abc_123")


@pytest.mark.parametrize(("path", "make"), text_field_cases())
def test_regex_covers_every_text_bearing_field(path: str, make: MakeMessage) -> None:
    found = only(scan(HANDLES, make("contact wx: seller_99")))
    assert (found.element_path, found.evidence) == (path, "wx: seller_99")


def test_pathological_pattern_returns_at_once() -> None:
    # (a+)+$ backtracks exponentially in Python's re: on this text re.search would not return in our
    # lifetime. RE2 runs it in linear time.
    rs = ruleset(rule("regex", pattern=r"(a+)+$", ignore_case=False, normalize=False))
    hostile = "a" * 50_000 + "!"
    started = time.perf_counter()
    assert scan(rs, msg(text(hostile), text("x" + "a" * 40))) != []
    assert time.perf_counter() - started < 1.0


def test_nested_quantifiers_over_a_whole_page_stay_linear() -> None:
    rs = ruleset(rule("regex", patterns=[r"(x+x+)+y", r"(.*a){20}"], normalize=False))
    page = [msg(text("x" * 5_000)) for _ in range(100)]
    started = time.perf_counter()
    assert scan(rs, *page) == []
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "RE2 cannot run pattern"),  # backreference
        (r"foo(?=bar)", "RE2 cannot run pattern"),  # look-ahead
        (r"(?<!x)y", "RE2 cannot run pattern"),  # look-behind
        (r"a{2000}", "RE2 cannot run pattern"),  # repetition beyond RE2's limit
        (r"x*", "matches the empty string"),
        (r"\b", "matches the empty string"),
    ],
)
def test_patterns_re2_cannot_run_are_rejected_with_file_and_line(pattern: str, why: str) -> None:
    source = f"""rulesets:
  default:
    rules:
      - id: ok
        type: regex
        action: flag
        patterns:
          - 'fine'
          - '{pattern}'
"""
    with pytest.raises(RulesError) as caught:
        load_text(source, "policy.yaml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.line) == ("policy.yaml", 9)
    assert why in problem.message
    assert str(problem).startswith("policy.yaml:9: rule 'ok': ")


def test_raw_text_and_case_sensitive_matching() -> None:
    rs = ruleset(rule("regex", pattern="ＶＩＰ", normalize=False, ignore_case=False))
    assert only(scan(rs, msg(text("join ＶＩＰ")))).evidence == "ＶＩＰ"
    assert scan(rs, msg(text("join VIP"), text("join ｖｉｐ"))) == []


def test_normalized_text_is_lower_case_half_width_without_invisibles() -> None:
    rs = ruleset(rule("regex", pattern=r"vip\d+"))
    found = only(scan(rs, msg(text("ＶＩ\u200bＰ８８８"))))
    assert (found.evidence, found.normalized) == ("ＶＩ\u200bＰ８８８", "vip888")


def test_anchored_patterns_apply_to_each_field() -> None:
    rs = ruleset(rule("regex", pattern=r"^promo\b"))
    found = scan(rs, msg(text("hello"), text("promo code inside")), msg(text("no promo here")))
    assert [m.element_path for m in found] == ["MsgBody[1].MsgContent.Text"]


def test_allow_patterns_drop_matching_hits() -> None:
    rs = ruleset(rule("regex", pattern=r"1[3-9]\d{9}", allow=[r"13800138000"]))
    assert scan(rs, msg(text("call 13800138000"))) == []
    assert only(scan(rs, msg(text("13800138000 or 13912345678")))).normalized == "13912345678"


def test_a_page_finds_exactly_what_one_by_one_finds() -> None:
    rs = ruleset(
        rule("regex", "a", patterns=[r"wx:\s*\w{5,}", r"qq\d{5,}"]),
        rule("regex", "b", pattern=r"^spam$"),
    )
    page = [
        msg(text(t), key=f"m{n}")
        for n, t in enumerate(["hi", "wx: abcdef", "x", "qq12345", "spam", "ok"] * 20)
    ]
    one_by_one = []
    scanner = rs.scanner()
    for message in page:
        one_by_one.extend(scanner.feed(message))
    assert sorted(scan(rs, *page), key=repr) == sorted(one_by_one, key=repr)
    assert len(one_by_one) == 60


def test_several_patterns_of_a_rule_on_the_same_text_report_once() -> None:
    rs = ruleset(rule("regex", patterns=[r"free\s+crypto", r"free\scrypto", r"fre+ crypto"]))
    assert len(scan(rs, msg(text("free crypto")))) == 1
