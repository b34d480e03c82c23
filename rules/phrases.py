"""Matching many phrases at once, after full normalization, with word boundaries and allow lists.

Two Aho-Corasick automata (``ahocorasick_rs``, picked by measurement: see ``rules/README.md``):

* the **prefilter** runs once per batch over the joined *compact* form (light form with every separator
  removed, as UTF-8 bytes). A phrase can only match a field if its compact form occurs in the field's compact
  form, so a page of messages without a prefilter hit is done with after one pass;
* the **exact** automaton runs over the full form of the fields the prefilter pointed at, and its hits are
  checked for word boundaries and allow-list phrases before becoming matches.

A phrase of several Latin words (``free crypto``) also matches written as one word (``freecrypto``, or
``f.r.e.e.c.r.y.p.t.o`` once collapsed). Phrases and text are folded alike (``normalize.full``: Traditional
Chinese made Simplified, among the rest), so ``網絡賭場`` matches ``网络赌场`` and the other way round.

Whole-word phrases are also looked for in the *glued* form of a field (``normalize.glued_light``:
``fr~ee``, ``fr_ee``, ``fr🔥ee`` → ``free``), where a hit must still be whole words; allow-list phrases found
in either form hide hits of either form, compared by the letters they cover (both forms have the same
letters in the same order). Phrases with ``whole_word`` off never look at the glued form: gluing
``js_camera`` would put ``scam`` inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ahocorasick_rs

from rules import normalize

# Above this many bytes of patterns the DFA gets too big; the default (an NFA) is slower but small.
_DFA_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase to look for; ``payload`` says whose it is (e.g. the index of the rule)."""

    text: str
    payload: int
    whole_word: bool = True
    allow: bool = False  # an allow-list phrase: hides the payload's hits inside it


@dataclass(frozen=True, slots=True)
class PhraseHit:
    """A phrase found in a text."""

    payload: int
    phrase: str  # as configured
    normalized: str  # the full form that matched
    evidence: str  # the original text that produced it


def automaton(patterns: Sequence[str]) -> ahocorasick_rs.AhoCorasick:
    """An Aho-Corasick automaton over str patterns (indexes are in characters)."""
    size = sum(len(p) for p in patterns) * 3
    impl = ahocorasick_rs.Implementation.DFA if size < _DFA_LIMIT else None
    return ahocorasick_rs.AhoCorasick(list(patterns), implementation=impl)


def bytes_automaton(patterns: Sequence[bytes]) -> ahocorasick_rs.BytesAhoCorasick:
    """An Aho-Corasick automaton over bytes patterns."""
    size = sum(len(p) for p in patterns)
    impl = ahocorasick_rs.Implementation.DFA if size < _DFA_LIMIT else None
    return ahocorasick_rs.BytesAhoCorasick(list(patterns), implementation=impl)


def _letters(form: str, start: int, end: int) -> tuple[int, int]:
    """``form[start:end]`` as a span of letters and digits (a full form's other characters are spaces)."""
    return start - form.count(" ", 0, start), end - form.count(" ", 0, end)


def _is_latin_word(char: str) -> bool:
    # In the full form every character but the single spaces is part of a word.
    return char != " " and not normalize.is_cjk(char)


class PhraseIndex:
    """Phrases compiled for matching; build once, use from any thread."""

    def __init__(self, phrases: Sequence[Phrase]) -> None:
        by_form: dict[str, list[Phrase]] = {}
        compact: set[bytes] = set()
        for phrase in phrases:
            form = normalize.full(phrase.text)
            if not form:
                raise ValueError(f"{phrase.text!r} has no letters or digits left after normalization")
            forms = [form]
            if " " in form:
                forms.append(form.replace(" ", ""))
            for f in forms:
                by_form.setdefault(f, []).append(phrase)
            if not phrase.allow:
                compact.add(form.replace(" ", "").encode())
        self._forms = list(by_form)
        self._entries = [tuple(by_form[f]) for f in self._forms]
        self._exact = automaton(self._forms) if self._forms else None
        self._prefilter = bytes_automaton(sorted(compact)) if compact else None

    @property
    def empty(self) -> bool:
        """True when there is nothing to block."""
        return self._prefilter is None

    def prefilter(self, compact: bytes) -> list[int]:
        """Byte offsets (starts) in ``compact`` where some phrase may match; empty means none can."""
        if self._prefilter is None:
            return []
        return [start for _, start, _ in self._prefilter.find_matches_as_indexes(compact, overlapping=True)]

    def find(self, text: str, light: str | None = None, limit: int = 100) -> list[PhraseHit]:
        """The phrases found in ``text`` (raw, as the user wrote it), at most ``limit`` of them.

        ``light`` is ``normalize.light(text)``, if the caller has it already (and has prefiltered).
        """
        if self._exact is None:
            return []
        if light is None:
            light = normalize.light(text)
            if not self.prefilter(normalize.compact_form(light.encode())):
                return []
        forms = [normalize.full_from_light(light)]
        glued = normalize.glued_light(text, light)
        if glued is not None:
            forms.append(normalize.full_from_light(glued))
        found: list[tuple[int, int, int, Phrase]] = []
        seen: set[tuple[int, str]] = set()
        for k, start, end, phrase in self._blocked(forms):
            if (phrase.payload, forms[k][start:end]) not in seen and len(found) < limit:
                seen.add((phrase.payload, forms[k][start:end]))
                found.append((k, start, end, phrase))
        if not found:
            return []
        mapped = normalize.light_mapped(text, light)
        if mapped.text != light:  # pragma: no cover - the two paths agree (tested); never show a wrong span
            return [PhraseHit(p.payload, p.text, forms[k][a:b], forms[k][a:b]) for k, a, b, p in found]
        where: dict[tuple[int, int], int] = {}  # (form, offset) -> index in light
        for k, form in enumerate(forms):
            ends = sorted({e for f, a, b, _ in found if f == k for e in (a, b - 1)})
            if ends:
                indexes = normalize.light_indexes_of_full(light, form, ends)
                where.update(((k, e), i) for e, i in zip(ends, indexes, strict=True))
        return [
            PhraseHit(
                p.payload, p.text, forms[k][a:b], mapped.original_text(where[k, a], where[k, b - 1] + 1)
            )
            for k, a, b, p in found
        ]

    def _blocked(self, forms: Sequence[str]) -> list[tuple[int, int, int, Phrase]]:
        """``(form index, start, end, phrase)`` of the hits in full forms (the plain one, then the glued one)
        that respect word boundaries and fall outside their rule's allowed phrases."""
        if self._exact is None:
            return []
        blocked: list[tuple[int, int, int, Phrase]] = []
        allowed: dict[int, list[tuple[int, int]]] = {}  # payload -> spans, in letters (same in every form)
        for k, form in enumerate(forms):
            for index, start, end in self._exact.find_matches_as_indexes(form, overlapping=True):
                for phrase in self._entries[index]:
                    if k and not phrase.whole_word:
                        continue
                    if phrase.whole_word and not self._bounded(form, start, end):
                        continue
                    if phrase.allow:
                        allowed.setdefault(phrase.payload, []).append(_letters(form, start, end))
                    else:
                        blocked.append((k, start, end, phrase))
        out: list[tuple[int, int, int, Phrase]] = []
        plain: dict[int, list[tuple[int, int]]] = {}  # payload -> spans (letters) of its plain-form hits
        for k, start, end, phrase in blocked:
            first, last = _letters(forms[k], start, end)
            if any(a <= first and last <= b for a, b in allowed.get(phrase.payload, ())):
                continue
            if k and any(a < last and first < b for a, b in plain.get(phrase.payload, ())):
                continue  # the same place, already found in the plain form
            if not k:
                plain.setdefault(phrase.payload, []).append((first, last))
            out.append((k, start, end, phrase))
        return out

    @staticmethod
    def _bounded(form: str, start: int, end: int) -> bool:
        # Word boundaries only matter next to Latin-script (non-CJK) letters; CJK matches anywhere.
        if start > 0 and _is_latin_word(form[start]) and _is_latin_word(form[start - 1]):
            return False
        return not (end < len(form) and _is_latin_word(form[end - 1]) and _is_latin_word(form[end]))
