"""The published JSON Schema and the parser give the same verdict on the same document.

Documents are valid jobs, then near misses of them: a few mutations each (type confusions, integral and
fractional floats, boundary values and lengths, odd and control characters, nulls, missing and unknown fields,
one field's value put in another). JSON Schema cannot compare two fields, so the parser may refuse a
document the schema accepts, but only for the cross-field rules listed in
:data:`worker.jobs.CROSS_FIELD_PROBLEMS`; it never accepts a document the schema refuses.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from worker.jobs import CROSS_FIELD_PROBLEMS, MAX_WINDOW_S, SCHEMA_PATH, InvalidJob, parse_job

VALIDATOR = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
MAX_TIME = 2**32 - 1
MAX_PLAN = 2**31 - 1
JOB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
ODD_CHARACTERS = list("\n\r\t\x00\x1f\x7f\x85\x9f \u00a0\u2028\u2029\u200béÉ١１ß赌🔥_.:-/#@$^\\")
# lengths just inside and outside every bound of the schema
LENGTHS = [0, 1, 6, 7, 31, 32, 33, 47, 48, 49, 63, 64, 65, 127, 128, 129, 500, 501]
NUMBERS = [-1, 0, 1, MAX_WINDOW_S, MAX_WINDOW_S + 1, MAX_PLAN, MAX_PLAN + 1, MAX_TIME, MAX_TIME + 1]
NUMBERS += [2**53, 2**64, -(2**63), 10**30]

ID_CHARACTERS = st.sampled_from(list("abcXYZ019_-.@#"))
JOB_ID_CHARACTERS = st.sampled_from(list("AZaz09_.:-"))
PRINTABLE = st.characters(exclude_categories=["Cc", "Cs"])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Jobs that meet every rule, the cross-field ones included."""
    user = st.text(ID_CHARACTERS, min_size=1, max_size=32)
    kind = draw(st.sampled_from(["c2c", "official_account", "group"]))
    if kind == "c2c":
        operator, peer = draw(st.lists(user, min_size=2, max_size=2, unique=True))
        conversation = {"type": "c2c", "operator": operator, "peer": peer}
        suspect = draw(st.sampled_from([operator, peer]))
    elif kind == "official_account":
        suspect = "@TOA#_" + draw(st.text(PRINTABLE, min_size=1, max_size=58))
        conversation = {"type": "official_account", "account": suspect}
    else:
        conversation = {"type": "group", "group_id": draw(st.text(PRINTABLE, min_size=1, max_size=48))}
        if draw(st.booleans()):
            conversation["topic_id"] = draw(st.text(PRINTABLE, min_size=1, max_size=128))
        suspect = draw(user)
    reported = (
        {"msg_seqs": st.lists(st.integers(1, MAX_TIME), max_size=100)}
        if kind == "group"
        else {"msg_keys": st.lists(st.text(PRINTABLE, min_size=1, max_size=64), max_size=100)}
    )
    report: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "reporter": user | st.none(),
                "reason": st.text(max_size=500) | st.none(),
                **reported,
                "reported_at": st.integers(0, MAX_TIME) | st.none(),
            },
        )
    )
    if draw(st.booleans()):
        since = draw(st.integers(0, MAX_TIME))
        until = draw(st.integers(since, min(MAX_TIME, since + MAX_WINDOW_S)) | st.just(since))
        window: dict[str, Any] = {"since": since, "until": until}
        if draw(st.booleans()):  # JSON Schema's integers include 1.0
            window = {name: float(value) for name, value in window.items()}
        if draw(st.booleans()):
            window["lookback_s"] = None
    else:
        window = {"lookback_s": draw(st.integers(1, MAX_WINDOW_S))}
        window |= draw(st.fixed_dictionaries({}, optional={"since": st.none(), "until": st.none()}))
        report["reported_at"] = draw(st.integers(0, MAX_TIME))
    document: dict[str, Any] = {
        "version": draw(st.sampled_from([1, 1.0])),
        "job_id": draw(st.text(JOB_ID_CHARACTERS, min_size=1, max_size=128)),
        "conversation": conversation,
        "suspect": suspect,
        "window": window,
    }
    document |= draw(
        st.fixed_dictionaries(
            {},
            optional={
                "report": st.just(report),
                "ruleset": st.text(PRINTABLE, min_size=1, max_size=64),
                "mode": st.sampled_from(["recall", "dry_run"]),
                "apply_plan": st.none(),
            },
        )
    )
    if window.get("lookback_s") is not None:
        document["report"] = report  # which has reported_at
    if document.get("mode", "recall") == "recall" and draw(st.booleans()):
        document["apply_plan"] = draw(st.integers(1, MAX_PLAN) | st.sampled_from([1.0, float(MAX_PLAN)]))
    return document


def places(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The path of every value inside ``value``, its own included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*path, key))
    elif isinstance(value, list):
        for n, item in enumerate(value[:3]):
            found += places(item, (*path, n))
    return found


def _at(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def leaves(value: Any) -> list[Any]:
    """Every string and number in ``value``, to put one field's value in another."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value[:3] for leaf in leaves(item)]
    return [value]


def replacements(value: Any, document: Any) -> st.SearchStrategy[Any]:
    """Near misses of ``value``: what a careless producer might send instead."""
    found = leaves(document)
    elsewhere = st.sampled_from(found) if found else st.none()
    common = st.none() | json_values | elsewhere
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), str(value).lower()]) | common
    if isinstance(value, int | float):
        whole = int(value)
        near = [whole - 1, whole + 1, whole + MAX_WINDOW_S, whole - MAX_WINDOW_S, whole + MAX_WINDOW_S + 1]
        return (
            st.sampled_from(near + NUMBERS)
            | st.sampled_from(near + NUMBERS).map(float)
            | st.sampled_from([str(whole), str(value), True, False, [whole], {"value": whole}])
            | st.sampled_from([str(whole), True, False])  # the confusions lax parsers let through
            | st.sampled_from([value + 0.5, -0.0, 1e300, -1e300])
            | st.floats(allow_nan=False, allow_infinity=False)
            | common
        )
    if isinstance(value, str):
        padding = value[-1:] or "x"
        return (
            st.sampled_from(ODD_CHARACTERS).flatmap(
                lambda odd: st.sampled_from([value + odd, odd + value, value[:1] + odd + value[1:]])
            )
            | st.sampled_from(LENGTHS).map(lambda n: (value + padding * n)[:n])
            | st.sampled_from(
                [value.upper(), value.strip("@#_"), value[:-1], 0, 1, [value], {"value": value}]
            )
            | st.text(max_size=12)
            | common
        )
    if isinstance(value, list):
        return (
            st.sampled_from(
                [
                    [*value, "k"],
                    ["k"] * 100,
                    ["k"] * 101,
                    [*value, None],
                    [*value, 1],
                    ",".join(map(str, value)),
                ]
            )
            | common
        )
    return st.sampled_from([[value], list(value) if isinstance(value, dict) else 0, "{}"]) | common


def mutate(document: Any, draw: st.DrawFn) -> Any:
    """``document`` with one change somewhere: a value replaced, a field left out or an unknown one added."""
    everywhere = places(document)
    scalars = [path for path in everywhere if not isinstance(_at(document, path), dict | list)]
    path = draw(
        st.sampled_from(scalars) | st.sampled_from(everywhere) if scalars else st.sampled_from(everywhere)
    )
    parent: Any = None
    target = document
    for part in path:
        parent, target = target, target[part]
    action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
    if action == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(target, dict):
        name = draw(
            st.sampled_from(["extra", "Type", "since ", "jobId", "é", "", "lookback_s", "reported_at"])
        )
        target.setdefault(name, draw(json_values | st.integers(0, 100)))
    else:
        value = draw(replacements(target, document))
        if parent is None:
            return value
        parent[path[-1]] = value
    return document


@st.composite
def near_misses(draw: st.DrawFn, changes: tuple[int, ...] = (0, 1, 1, 1, 1, 2, 3)) -> Any:
    """A valid job with as many changes as one of ``changes`` says."""
    document: Any = draw(valid_documents())
    for _ in range(draw(st.sampled_from(changes))):
        document = mutate(document, draw)
    return document


def parser_verdict(document: Any, ensure_ascii: bool) -> InvalidJob | None:
    """None when the parser accepts ``document`` (sent as JSON), else what it said."""
    try:
        parse_job(json.dumps(document, ensure_ascii=ensure_ascii))
    except InvalidJob as exc:
        return exc
    return None


def only_cross_field(problems: list[str]) -> bool:
    """True when every problem is one of the rules the schema cannot express."""
    return all(any(p.endswith(": " + rule) for rule in CROSS_FIELD_PROBLEMS) for p in problems)


def verdict(document: Any, ensure_ascii: bool) -> str:
    """Check the two verdicts agree as far as they can; say which case this was."""
    schema_accepts = VALIDATOR.is_valid(document)
    error = parser_verdict(document, ensure_ascii)
    if error is None:
        assert schema_accepts, [e.message[:200] for e in VALIDATOR.iter_errors(document)]
        return "both accept"
    if schema_accepts:
        assert only_cross_field(error.problems), error.problems
    # what a refused job carries into results and headers stays small and clean
    assert len(str(error)) < 2000
    assert error.job_id is None or JOB_ID.fullmatch(error.job_id)
    assert error.job_id is None or error.job_id == document.get("job_id")
    return "only the parser refuses (cross-field)" if schema_accepts else "both refuse"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_misses(), st.booleans())
def test_the_schema_and_the_parser_agree(document: Any, ensure_ascii: bool) -> None:
    event(verdict(document, ensure_ascii))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_misses(changes=(1,)), st.booleans())
def test_one_change_from_valid_gets_the_same_verdict(document: Any, ensure_ascii: bool) -> None:
    event(verdict(document, ensure_ascii))


def confusions(value: Any) -> list[Any]:
    """Every kind of wrong-typed, edge or null value a field of ``value``'s type can be confused with."""
    found: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, -0.0, "", "1", [], {}]
    found += [[value], {"value": value}]
    if isinstance(value, int | float) and not isinstance(value, bool):
        found += [str(value), str(int(value)), float(value), int(value) + 0.5, int(value) - 1, int(value) + 1]
        found += NUMBERS + [float(n) for n in NUMBERS]
    if isinstance(value, str):
        found += [value + odd for odd in ODD_CHARACTERS] + [value.upper(), value * 200]
        found += [(value + "x" * n)[:n] for n in LENGTHS]
    return found


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_every_field_confused_in_turn_gets_the_same_verdict(document: dict[str, Any]) -> None:
    for path in places(document)[1:]:
        for value in confusions(_at(document, path)):
            changed = json.loads(json.dumps(document))
            parent = _at(changed, path[:-1])
            parent[path[-1]] = value
            verdict(changed, ensure_ascii=True)
        dropped = json.loads(json.dumps(document))
        del _at(dropped, path[:-1])[path[-1]]
        verdict(dropped, ensure_ascii=True)


@settings(max_examples=150, deadline=None)
@given(valid_documents(), st.booleans())
def test_valid_documents_are_accepted_by_both(document: dict[str, Any], ensure_ascii: bool) -> None:
    assert VALIDATOR.is_valid(document), [e.message[:200] for e in VALIDATOR.iter_errors(document)]
    error = parser_verdict(document, ensure_ascii)
    assert error is None, error.problems


def test_near_misses_cover_every_case() -> None:
    """The generator is not vacuous: it yields documents both accept, both refuse, and cross-field ones."""
    seen: Counter[str] = Counter()

    @seed(20260501)
    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(near_misses())
    def record(document: Any) -> None:
        seen[verdict(document, ensure_ascii=True)] += 1

    record()
    assert seen["both accept"] >= 20, seen
    assert seen["both refuse"] >= 100, seen
    assert seen["only the parser refuses (cross-field)"] >= 5, seen
