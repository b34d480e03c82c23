"""Errors of rule files, each naming the file and line of the problem."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rule file."""

    source: str  # the file name, or "<string>"
    line: int | None  # 1-based; None when the problem has no single place
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


class RulesError(Exception):
    """A rule file (or a request for a rule set) that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid rules")

    @classmethod
    def single(cls, source: str, message: str, line: int | None = None) -> RulesError:
        """An error with one problem."""
        return cls([Problem(source, line, message)])
