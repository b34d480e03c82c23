"""Keeping the last good rule book while the file changes under it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from rules.config import load_file, version_of
from rules.engine import RuleBook
from rules.errors import RulesError

_log = structlog.get_logger(__name__)

Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode), None when the file is gone


def _stamps(paths: Sequence[Path]) -> tuple[Stamp, ...]:
    out: list[Stamp] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class RuleStore:
    """The current :class:`RuleBook` of a rule file, reloaded on request.

    A reload that fails (syntax error, bad regex, missing list file, ...) keeps the previous book and logs
    every problem; jobs already running keep the rule set they started with either way, since a rule set
    never changes once compiled. Safe to use from several threads. The first load must succeed: there is
    no previous book to fall back on, so the constructor raises :class:`RulesError`.
    """

    def __init__(self, path: str | Path, *, loader: Callable[[Path], RuleBook] = load_file) -> None:
        self.path = Path(path)
        self._loader = loader
        self._lock = threading.Lock()
        self._book = loader(self.path)
        self._stamps = _stamps(self._watched())

    @property
    def current(self) -> RuleBook:
        """The last rule book that loaded without problems."""
        return self._book

    def _watched(self) -> tuple[Path, ...]:
        return self._book.sources or (self.path,)

    def reload(self) -> bool:
        """Load the file again; True if the new book is in place, False (previous book kept) if broken."""
        with self._lock:
            return self._reload()

    def reload_if_changed(self) -> bool:
        """Reload when the file (or a list file it reads) changed; cheap when nothing did (a few ``stat``s).

        Returns True when a new book was put in place. A file that changed but is broken is reported once,
        not on every call, until it changes again.
        """
        with self._lock:
            watched = self._watched()
            stamps = _stamps(watched)
            if stamps == self._stamps:
                return False
            self._stamps = stamps
            if self._unchanged_content(watched):
                return False
            return self._reload()

    def _unchanged_content(self, watched: Sequence[Path]) -> bool:
        try:
            data = watched[0].read_bytes()
            lists = {path: path.read_bytes() for path in watched[1:]}
        except OSError:
            return False
        return version_of(data, lists) == self._book.version

    def _reload(self) -> bool:
        previous = self._book
        try:
            book = self._loader(self.path)
        except RulesError as exc:
            _log.warning(
                "rules.reload_failed",
                path=str(self.path),
                problems=[str(p) for p in exc.problems],
                keeping_version=previous.version,
            )
            return False
        self._book = book
        self._stamps = _stamps(self._watched())
        if book.version != previous.version:
            _log.info(
                "rules.reloaded", path=str(self.path), version=book.version, previous_version=previous.version
            )
        return True
