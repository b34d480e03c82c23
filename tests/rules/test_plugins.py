"""Plugins: third-party rule types found through the ``recall_worker.rules`` entry points."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rules import ENTRY_POINT_GROUP, RulesError, load_text
from rules.plugins import load_registry
from tests.rules.helpers import msg, only, scan, text

RULES = """\
rulesets:
  default:
    rules:
      - id: caps
        type: shouting
        action: flag
        min_letters: 5
"""


def _install(site: Path, name: str, entry_points: str) -> None:
    """Install a distribution's metadata (only: its code is importable already) into a sys.path entry."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n", encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_example_plugin_loads_through_its_entry_point(site: Path) -> None:
    _install(site, "shouting_rules", "shouting = tests.rules.plugin_example:ShoutingType")
    registry = load_registry()
    assert "shouting" in registry.plugins
    book = load_text(RULES)
    found = only(scan(book.get("default"), msg(text("hello"), text("BUY NOW!!!"))))
    assert (found.rule_id, found.rule_type, found.action) == ("caps", "shouting", "flag")
    assert (found.element_path, found.evidence, found.normalized) == (
        "MsgBody[1].MsgContent.Text",
        "BUY NOW!!!",
        "buy now!!!",
    )


def test_plugin_parameters_and_problems_come_with_lines(site: Path) -> None:
    _install(site, "shouting_rules", "shouting = tests.rules.plugin_example:ShoutingType")
    with pytest.raises(RulesError) as caught:
        load_text(RULES.replace("min_letters: 5", "min_letter: 5"), "p.yaml")
    assert str(caught.value).startswith("p.yaml:7: rule 'caps': min_letter: Extra inputs are not permitted")
    with pytest.raises(RulesError) as caught:
        load_text(RULES.replace("min_letters: 5", "min_letters: 5000"), "p.yaml")
    assert str(caught.value).startswith("p.yaml:7: rule 'caps': min_letters above 1000")


def test_without_the_plugin_the_type_is_unknown() -> None:
    with pytest.raises(RulesError, match="unknown rule type 'shouting'"):
        load_text(RULES)


def test_a_broken_plugin_is_reported_where_it_is_used(site: Path) -> None:
    _install(site, "broken_rules", "shouting = tests.rules.no_such_module:Nothing")
    with (
        capture_logs() as logs,
        pytest.raises(
            RulesError, match="rule type 'shouting' is a plugin that failed to load: ModuleNotFound"
        ),
    ):
        load_text(RULES)
    assert any(e["event"] == "rules.plugin_failed" for e in logs)


def test_a_plugin_cannot_replace_a_builtin_type(site: Path) -> None:
    _install(site, "evil_rules", "keywords = tests.rules.plugin_example:ShoutingType")
    with capture_logs():
        registry = load_registry()
    assert type(registry.types["keywords"]).__name__ == "KeywordsType"
    assert "would replace the built-in type" in registry.failures["keywords"]


def test_an_entry_point_that_is_not_a_rule_type_is_refused(site: Path) -> None:
    _install(site, "odd_rules", "odd = tests.rules.plugin_example:ShoutingParams")
    with capture_logs():
        registry = load_registry()
    assert "odd" not in registry.types
    assert "is not a rule type" in registry.failures["odd"]
