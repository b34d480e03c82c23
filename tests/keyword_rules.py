"""A small keyword rule set for worker tests: exercises the pipeline without the full rule engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from worker.tim.models import Message


@dataclass(frozen=True)
class KeywordMatch:
    msg_key: str
    rule_id: str
    action: str
    element_path: str
    evidence: str
    rule_type: str = "keywords"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KeywordRuleSet:
    """Matches lower-cased words in text elements; each word is its own rule."""

    def __init__(
        self,
        name: str = "default",
        *,
        recall: tuple[str, ...] = ("spam",),
        flag: tuple[str, ...] = (),
        wipe: tuple[str, ...] = (),
        window: tuple[str, ...] = (),
    ) -> None:
        """``wipe`` words match with the action ``wipe`` (recall, and in a group propose a wipe).

        ``window`` names messages (MsgKeys; in a group, seqs) that a window rule reports after the walk
        whatever their body, as the engine's flood rule may: one way to have a hole or a system message
        matched.
        """
        self.name = name
        self.words = {
            **dict.fromkeys(recall, "recall"),
            **dict.fromkeys(flag, "flag"),
            **dict.fromkeys(wipe, "wipe"),
        }
        self.window = window

    def scanner(self) -> KeywordRuleSet:
        return self

    def feed(self, message: Message) -> list[KeywordMatch]:
        matches = []
        for index, element in enumerate(message.body):
            text = str(element.get("MsgContent", {}).get("Text", ""))
            for word, action in self.words.items():
                at = text.lower().find(word)
                if at >= 0:
                    span = text[
                        at : at + len(word)
                    ]  # the original text that matched, as the engine reports it
                    path = f"MsgBody[{index}].MsgContent.Text"
                    matches.append(KeywordMatch(message.msg_key, f"kw-{word}", action, path, span))
        return matches

    def feed_many(self, messages: Sequence[Message]) -> list[KeywordMatch]:
        return [match for message in messages for match in self.feed(message)]

    def finish(self) -> list[KeywordMatch]:
        return [KeywordMatch(key, "window-rule", "recall", "", "", "window") for key in self.window]


class StaticRules:
    """A fixed set of rule sets, by name."""

    version = "static-test-rules"

    def __init__(self, *rulesets: KeywordRuleSet) -> None:
        self.rulesets = {r.name: r for r in rulesets} or {"default": KeywordRuleSet()}

    def ruleset(self, name: str) -> KeywordRuleSet:
        try:
            return self.rulesets[name]
        except KeyError:
            raise LookupError(f"no rule set {name!r}") from None
