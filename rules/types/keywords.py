"""``keywords``: large word and phrase lists, matched after full normalization.

Parameters: ``words`` and/or ``words_file`` (one entry a line, relative to the rule file); ``allow`` /
``allow_file`` for known false positives (a hit inside an allowed phrase is dropped: block ``sex``, allow
``sussex``); ``whole_word`` (default true) so that Latin-script words only match as whole words (``ass`` does
not match ``class``), while Chinese and Japanese match anywhere.

Every keyword rule of a rule set shares one pair of automata, so a message costs one prefilter pass
whatever the number of rules and words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules import normalize
from rules.api import CompileContext, Matcher, MessageMatcher
from rules.model import Match, RuleSpec, union
from rules.phrases import Phrase, PhraseIndex
from rules.types._lists import entries
from rules.view import Batch


class KeywordsParams(BaseModel):
    """Parameters of a ``keywords`` rule."""

    model_config = ConfigDict(extra="forbid")

    words: list[str] = Field(default_factory=list, description="Words and phrases to look for.")
    words_file: str | list[str] | None = Field(
        default=None, description="File(s) of words, one a line, relative to the rule file; '#' comments."
    )
    allow: list[str] = Field(default_factory=list, description="Phrases whose occurrences are never a match.")
    allow_file: str | list[str] | None = Field(default=None, description="File(s) of allowed phrases.")
    whole_word: bool = Field(default=True, description="Latin-script words only match as whole words.")

    @model_validator(mode="after")
    def _has_words(self) -> KeywordsParams:
        if not self.words and not self.words_file:
            raise ValueError("give words or words_file")
        return self


class KeywordsType:
    """The ``keywords`` rule type."""

    name = "keywords"
    params = KeywordsParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """One phrase index for every keyword rule of the rule set."""
        phrases: list[Phrase] = []
        for n, rule in enumerate(rules):
            params = rule.params_as(KeywordsParams)
            for allow, (inline, files, name) in (
                (False, (params.words, params.words_file, "words")),
                (True, (params.allow, params.allow_file, "allow")),
            ):
                listed = entries(context, rule, inline, files, f"{name}_file")
                for k, word in enumerate(listed):
                    if not normalize.full(word):
                        loc: tuple[str | int, ...] = (name, k) if k < len(inline) else (f"{name}_file",)
                        context.report(rule, f"{word!r} has no letters or digits to match", *loc)
                        continue
                    phrases.append(Phrase(word, n, params.whole_word, allow))
        return KeywordsMatcher(rules, PhraseIndex(phrases))


class KeywordsMatcher(MessageMatcher):
    """Every keyword rule of a rule set."""

    def __init__(self, rules: Sequence[RuleSpec], index: PhraseIndex) -> None:
        self.rules = tuple(rules)
        self.index = index
        self.selection = union(r.selector for r in rules)

    def scan(self, batch: Batch) -> Iterable[Match]:
        """Prefilter the whole batch, then match the fields it points at."""
        if self.index.empty:
            return ()
        joined = batch.joined(self.selection)
        starts = self.index.prefilter(joined.compact())
        if not starts:
            return ()
        out: list[Match] = []
        for i in joined.fields_of_compact(starts):
            item = joined.field(i)
            msg_key = batch.msg_key(joined.owners[i])
            for hit in self.index.find(item.text, joined.field_light(i)):
                rule = self.rules[hit.payload]
                if rule.selector.accepts(item):
                    out.append(rule.match(msg_key, item.path, hit.evidence, hit.normalized))
        return out
