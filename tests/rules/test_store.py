"""RuleStore: the last good book survives a broken file; reloads are cheap when nothing changed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rules import RulesError, RuleStore
from tests.rules.helpers import msg, scan, text

GOOD = "rulesets:\n  default:\n    rules:\n      - {id: a, type: keywords, action: recall, words: [first]}\n"
BETTER = GOOD.replace("[first]", "[second]")
BROKEN = GOOD.replace("type: keywords", "type: keywordz")


def _write(path: Path, content: str, *, bump: int = 0) -> None:
    path.write_text(content, encoding="utf-8")
    if bump:  # make the change visible even on file systems with coarse timestamps
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump))


def _words(store: RuleStore) -> list[str]:
    found = scan(store.current.get("default"), msg(text("first second")))
    return [m.normalized for m in found]


def test_the_first_load_must_succeed(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, BROKEN)
    with pytest.raises(RulesError):
        RuleStore(path)


def test_a_broken_file_keeps_the_previous_book_and_logs_why(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    store = RuleStore(path)
    before = store.current
    _write(path, BROKEN)
    with capture_logs() as logs:
        assert store.reload() is False
    assert store.current is before
    assert _words(store) == ["first"]
    (event,) = [e for e in logs if e["event"] == "rules.reload_failed"]
    assert event["log_level"] == "warning"
    assert event["keeping_version"] == before.version
    assert any("rules.yaml:4: rule 'a': unknown rule type 'keywordz'" in p for p in event["problems"])


def test_reload_swaps_in_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    store = RuleStore(path)
    scanner = store.current.get("default").scanner()  # a job in progress keeps its rules
    _write(path, BETTER)
    with capture_logs() as logs:
        assert store.reload() is True
    assert _words(store) == ["second"]
    assert [m.normalized for m in scanner.feed(msg(text("first second")))] == ["first"]
    assert [e["event"] for e in logs] == ["rules.reloaded"]


def test_reload_if_changed_is_cheap_and_precise(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    store = RuleStore(path)
    assert store.reload_if_changed() is False  # nothing changed
    _write(path, GOOD, bump=10_000_000)  # touched, same bytes: no recompile
    first = store.current
    assert store.reload_if_changed() is False
    assert store.current is first
    _write(path, BETTER, bump=20_000_000)
    assert store.reload_if_changed() is True
    assert _words(store) == ["second"]
    assert store.reload_if_changed() is False


def test_a_broken_change_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    store = RuleStore(path)
    _write(path, BROKEN, bump=10_000_000)
    with capture_logs() as logs:
        assert store.reload_if_changed() is False
        assert store.reload_if_changed() is False
    assert [e["event"] for e in logs] == ["rules.reload_failed"]
    _write(path, BETTER, bump=20_000_000)
    assert store.reload_if_changed() is True


def test_a_changed_list_file_triggers_a_reload(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("first\n", encoding="utf-8")
    path = tmp_path / "rules.yaml"
    _write(path, GOOD.replace("words: [first]", "words_file: words.txt"))
    store = RuleStore(path)
    _write(tmp_path / "words.txt", "second\n", bump=10_000_000)
    assert store.reload_if_changed() is True
    assert _words(store) == ["second"]


def test_a_deleted_file_keeps_the_previous_book(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    store = RuleStore(path)
    path.unlink()
    with capture_logs():
        assert store.reload_if_changed() is False
    assert _words(store) == ["first"]


def test_readers_and_reloaders_on_several_threads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    store = RuleStore(path)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                assert _words(store) in (["first"], ["second"])
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reload() -> None:
        for n in range(20):
            _write(path, GOOD if n % 2 else BETTER, bump=n + 1)
            store.reload()

    threads = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=reload)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
