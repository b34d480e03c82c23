"""The rule engine: pluggable content rules over every element of a message.

Load a rule file once (:func:`load_file`, or keep it fresh with :class:`RuleStore`), pick a rule set
(:meth:`RuleBook.get`), and for each job make a scanner (:meth:`RuleSet.scanner`): ``feed`` it messages, then
``finish`` it. See ``rules/examples/default.yaml`` for the rule file format and the built-in rule types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from rules.api import CompileContext, Matcher, MessageMatcher, RuleType, Window
from rules.config import load_file, load_text
from rules.engine import RuleBook, RuleSet, Scanner
from rules.errors import Problem, RulesError
from rules.model import EVIDENCE_LIMIT, Match, RuleSpec, Selector
from rules.plugins import ENTRY_POINT_GROUP
from rules.store import RuleStore
from rules.view import Batch, MessageView

#: The example rule file shipped with the package (a demo policy, documented in place).
DEFAULT_RULES_PATH: Final = Path(__file__).parent / "examples" / "default.yaml"

__all__ = [
    "DEFAULT_RULES_PATH",
    "ENTRY_POINT_GROUP",
    "EVIDENCE_LIMIT",
    "Batch",
    "CompileContext",
    "Match",
    "Matcher",
    "MessageMatcher",
    "MessageView",
    "Problem",
    "RuleBook",
    "RuleSet",
    "RuleSpec",
    "RuleStore",
    "RuleType",
    "RulesError",
    "Scanner",
    "Selector",
    "Window",
    "load_file",
    "load_text",
]
