"""``recall-worker rules check|eval``, called as the worker's parser would, and as ``python -m rules.cli``."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules import DEFAULT_RULES_PATH
from rules.cli import add_rules_commands

RULES = """\
rulesets:
  default:
    rules:
      - id: spam
        type: keywords
        action: recall
        words: [free crypto, 赌博]
      - id: flood
        type: flood
        action: flag
        count: 2
        seconds: 60
  quiet:
    rules:
      - id: links
        type: links
        action: flag
        block: [bad.example]
"""


def _item(key: str, sender: str, ts: int, value: str) -> dict[str, object]:
    body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]
    return {"MsgKey": key, "From_Account": sender, "MsgTimeStamp": ts, "MsgBody": body}


ITEMS = [
    _item("k1", "u1", 100, "ＦＲＥＥ crypto"),
    _item("k2", "u1", 110, "free crypto!"),
    _item("k3", "u2", 120, "see bad.example"),
]
ROAM_REPLY = {"ActionStatus": "OK", "Complete": 1, "MsgList": ITEMS}


def run(argv: list[str], stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recall-worker")
    add_rules_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    result: int = args.func(args)
    return result


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


def _lines(out: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.splitlines()]


def test_check_reports_a_summary(rules_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["rules", "check", str(rules_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{rules_file}: OK (version ")
    assert out[1:] == ["  default: 2 rules (keywords 1, flood 1)", "  quiet: 1 rule (links 1)"]


def test_check_reports_every_problem_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        RULES.replace("action: recall", "action: nuke").replace("count: 2", "count: 1"), encoding="utf-8"
    )
    assert run(["rules", "check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:6: rule 'spam': action: Input should be 'recall', 'flag' or 'wipe'")
    assert err[1].startswith(f"{path}:11: rule 'flood': count: Input should be greater than or equal to 2")
    assert err[-1] == "2 problems"


def test_the_example_rule_file_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["rules", "check", str(DEFAULT_RULES_PATH)]) == 0
    assert "default: " in capsys.readouterr().out


@pytest.mark.parametrize(
    "shape",
    ["reply", "list", "object", "json-lines"],
)
def test_eval_reads_every_input_shape_from_stdin(
    shape: str, rules_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    items = ITEMS
    data = {
        "reply": json.dumps(ROAM_REPLY),
        "list": json.dumps(items),
        "object": json.dumps(items[0]),
        "json-lines": "\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n",
    }[shape]
    assert run(["rules", "eval", str(rules_file)], stdin=data, monkeypatch=monkeypatch) == 0
    found = _lines(capsys.readouterr().out)
    expected = (
        [("k1", "spam"), ("k2", "spam"), ("k1", "flood"), ("k2", "flood")]
        if shape != "object"
        else [("k1", "spam")]
    )
    assert [(m["msg_key"], m["rule_id"]) for m in found] == expected
    assert found[0] == {
        "msg_key": "k1",
        "rule_id": "spam",
        "rule_type": "keywords",
        "action": "recall",
        "element_path": "MsgBody[0].MsgContent.Text",
        "evidence": "ＦＲＥＥ crypto",
        "normalized": "free crypto",
    }


@pytest.mark.parametrize(
    "order", ["FILE --ruleset NAME MESSAGES", "--ruleset NAME FILE MESSAGES", "FILE MESSAGES --ruleset NAME"]
)
def test_eval_reads_a_file_and_picks_the_rule_set(
    order: str, rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = tmp_path / "page.json"
    messages.write_text(json.dumps(ROAM_REPLY), encoding="utf-8")
    values = {"FILE": str(rules_file), "NAME": "quiet", "MESSAGES": str(messages)}
    assert run(["rules", "eval", *(values.get(word, word) for word in order.split())]) == 0
    assert [(m["msg_key"], m["rule_id"], m["evidence"]) for m in _lines(capsys.readouterr().out)] == [
        ("k3", "links", "bad.example")
    ]


def test_eval_names_messages_without_a_key_by_position(
    rules_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.dumps(
        [{"MsgBody": []}, {"MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "赌博"}}]}]
    )
    assert run(["rules", "eval", str(rules_file)], stdin=data, monkeypatch=monkeypatch) == 0
    assert [m["msg_key"] for m in _lines(capsys.readouterr().out)] == ["#2"]


@pytest.mark.parametrize(
    ("argv_tail", "stdin", "message"),
    [
        (["--ruleset", "nope"], "[]", "no rule set named 'nope'"),
        ([], '{"foo": 1}', "an object without MsgBody"),
        ([], "{not json\n", "<stdin>:1: not JSON"),
        (["missing.json"], "", "cannot read messages"),
    ],
)
def test_eval_input_problems_exit_2(
    argv_tail: list[str],
    stdin: str,
    message: str,
    rules_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(["rules", "eval", str(rules_file), *argv_tail], stdin=stdin, monkeypatch=monkeypatch) == 2
    assert message in capsys.readouterr().err


def test_eval_with_a_broken_rule_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rulesets: [", encoding="utf-8")
    assert run(["rules", "eval", str(path), "-"]) == 1
    assert "bad.yaml:1: invalid YAML" in capsys.readouterr().err


def test_python_m_rules_cli(rules_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rules.cli", "rules", "eval", str(rules_file)],
        input=json.dumps(ITEMS[2]),
        capture_output=True,
        text=True,
        check=False,
        encoding="utf-8",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    done = subprocess.run(
        [sys.executable, "-m", "rules.cli", "rules", "check", str(rules_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout.split(":")[0]) == (0, str(rules_file))
