"""A tiny third-party rule type, loaded through the ``recall_worker.rules`` entry-point group in the tests.

``shouting``: text written in capitals, at least ``min_letters`` of them. A real plugin package would declare
in its pyproject.toml::

    [project.entry-points."recall_worker.rules"]
    shouting = "tests.rules.plugin_example:ShoutingType"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rules import CompileContext, Match, Matcher, MessageMatcher, MessageView, RuleSpec


class ShoutingParams(BaseModel):
    """Parameters of a ``shouting`` rule."""

    model_config = ConfigDict(extra="forbid")

    min_letters: int = Field(default=10, ge=1)


class ShoutingMatcher(MessageMatcher):
    """Every shouting rule of a rule set."""

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self.rules = tuple(rules)

    def scan_message(self, view: MessageView) -> Iterable[Match]:
        for rule in self.rules:
            params = rule.params_as(ShoutingParams)
            for item in view.fields:
                letters = [c for c in item.text if c.isalpha()]
                if rule.selector.accepts(item) and len(letters) >= params.min_letters and item.text.isupper():
                    yield rule.match(view.msg_key, item.path, item.text, item.text.lower())


class ShoutingType:
    """The ``shouting`` rule type."""

    name = "shouting"
    params = ShoutingParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        for rule in rules:
            if rule.params_as(ShoutingParams).min_letters > 1000:
                context.report(rule, "min_letters above 1000 never matches a chat message", "min_letters")
        return ShoutingMatcher(rules)
