"""The worker's view of the rule sets: the current, hot-reloadable rule file."""

from __future__ import annotations

from pathlib import Path

from rules import DEFAULT_RULES_PATH, RulesError, RuleSet, RuleStore


class Rulebook:
    """Serves rule sets by name from a :class:`rules.RuleStore` (the last good version of the file)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or DEFAULT_RULES_PATH
        self.store = RuleStore(self.path)

    def ruleset(self, name: str) -> RuleSet:
        """The compiled rule set ``name``; :class:`LookupError` if the file has none of that name."""
        try:
            return self.store.current.get(name)
        except RulesError as exc:
            raise LookupError(str(exc)) from None

    @property
    def version(self) -> str:
        """Hash of the rule file in force."""
        return self.store.current.version

    def reload_if_changed(self) -> bool:
        """Pick up an edited file (a broken one keeps the last good rules)."""
        return self.store.reload_if_changed()

    def reload(self) -> bool:
        """Reload now (SIGHUP)."""
        return self.store.reload()
