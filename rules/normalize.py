"""Text normalization for matching, with a map back to the original text.

Two levels, both defined one input character at a time so that every normalized character comes from exactly
one original character (which is what lets evidence show the span the user actually wrote):

``light``
    Each character ``c`` becomes ``fold(c)``: lower-cased, NFKC-normalized (full-width → half-width,
    ligatures, math letters, circled letters, Kangxi radicals and CJK compatibility ideographs → the usual
    characters), case-folded, with diacritics stripped from Latin, Greek and Cyrillic letters, common
    homoglyphs mapped to the Latin letter they imitate (Cyrillic ``а`` → ``a``, Greek ``ο`` → ``o``, ...),
    invisible characters removed (zero-width spaces and joiners, bidi controls, soft hyphen, variation
    selectors, control characters, Hangul fillers, tag characters), and every other non-ASCII punctuation
    mark, symbol, emoji or space turned into ASCII (``。`` → ``.``, ``、`` → ``,``, anything else → space).
    Afterwards the only separators left are ASCII, and every non-ASCII character is a letter or a digit.
    Regex rules see this level.

``full``
    ``light``, then: every run of separators (ASCII characters other than ``a-z0-9``) becomes one space and
    leading/trailing ones go; spaces between two CJK characters go (Chinese and Japanese are written without
    spaces, so ``赌 博`` and ``赌.博`` are ``赌博``); separators inside words are collapsed by this rule:

        a run of **three or more single-letter tokens** (a Latin, Greek, Cyrillic or Armenian letter, or
        a digit, standing alone between separators) is joined into one word: ``f r e e`` / ``f.r.e.e`` /
        ``f-r-e-e`` / ``f🔥r🔥e🔥e`` → ``free``;

    and Traditional Chinese characters become Simplified (:func:`simplified`: ``網絡賭場`` → ``网络赌场``).
    Words of two or more letters are never glued together, so ``a bit of reeds`` stays as it is and cannot
    match ``free``; the price is that ``fr ee`` is not caught either. Keyword rules see this level.

``glued`` (:func:`glued_light`, then ``full``)
    A second full form, made only for the fields a keyword prefilter points at, in which a *joiner* standing
    between two letters or digits with no space around it is dropped: ``-``, ``_``, ``~``, ``*`` (and what
    the light form turns into them: full-width forms, dashes, ``～``) and symbols or emoji. ``fr~ee``,
    ``fr_ee``, ``fr🔥ee`` → ``free``; ``fr ee`` and ``fr - ee`` stay apart. Keyword rules with ``whole_word``
    also match this form (so ``snake_case`` could only ever match a keyword ``snakecase`` as a whole word).

``compact``
    ``light`` with every separator removed and Traditional Chinese made Simplified: what keyword (and domain)
    prefilters run over. Every hit of the full or glued forms is a hit of the compact one.

Traditional → Simplified is character by character, with OpenCC's own ``t2s`` conversion of each character
standing alone (its phrase table is not used: a conversion that depends on the neighbours would make a
keyword fold one way alone and another way inside a sentence). Every such conversion is one character for
one, so the map back to the original text is unchanged and evidence shows the Traditional text as written.
Regex rules and domains see the light form, in the script the user wrote.

The cheap path stays cheap: pure ASCII text only pays for ``str.lower`` (and a control-character check),
and other text only calls back into Python for the characters that actually change. The Simplified fold
costs ASCII text an ``isascii`` check and other text one RE2 scan for a Traditional character (about 1.6 ns
a byte), converting only when there is one. The map back to the original text (:func:`light_mapped`,
slower) is built only for an actual match; :func:`full_mapped` is the plain, slow statement of the full
form with its map, which the fast paths are tested against.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import opencc
import re2

#: Separates fields in joined text. Never produced by normalization: it is removed from user text first.
SENTINEL = "\x00"

# Letters that imitate a Latin letter, after lower-casing. Not the full Unicode confusables table: the
# characters people actually use to dodge filters (Cyrillic, Greek, Armenian, IPA look-alikes).
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "ў": "y", "х": "x", "ѕ": "s", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɩ": "i", "ѵ": "v", "ү": "y", "ҫ": "c", "ԍ": "g", "ь": "b",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j", "ς": "σ",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q",
    # Latin look-alikes outside ASCII
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ʟ": "l", "ɴ": "n", "ʀ": "r",
    "ʏ": "y", "ᴀ": "a", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴊ": "j", "ᴋ": "k", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p",
    "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ꜱ": "s", "ƅ": "b", "ɾ": "r",
}  # fmt: skip

# Letters (category Lo) that render as nothing.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u17b4\u17b5")

# Non-ASCII punctuation with an obvious ASCII equivalent; other punctuation and symbols become a space.
_PUNCTUATION = {
    "。": ".", "｡": ".", "・": ".", "·": ".", "‧": ".", "•": ".", "、": ",", "､": ",", "‚": ",",
    "「": '"', "」": '"', "『": '"', "』": '"', "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "‘": "'", "’": "'", "‹": "'", "›": "'", "【": "[", "】": "]", "〔": "[", "〕": "]", "〖": "[",
    "〗": "]", "《": "<", "》": ">", "〈": "<", "〉": ">", "‐": "-", "‑": "-", "‒": "-", "–": "-",
    "—": "-", "―": "-", "−": "-", "～": "~", "〜": "~",
}  # fmt: skip

# Scripts whose letters lose their diacritics (é → e, ё → е → e); elsewhere marks carry meaning (が ≠ か).
_STRIP_MARKS_BELOW = 0x0530

# Code point ranges computed character by character; everything else is either kept (big blocks of letters
# that normalization never changes: CJK, Hangul) or, for unassigned and private-use planes, a space.
_KEPT_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x20000, 0x2F7FF), (0x2FA20, 0x3FFFF))
_COMPUTED_RANGES = ((0x80, 0x1FFFF), (0x2F800, 0x2FA1F), (0xE0000, 0xE0FFF))
_SPACE_RANGES = ((0x40000, 0xDFFFF), (0xE1000, 0x10FFFF))

_ASCII_CONTROLS = dict.fromkeys((*range(1, 9), 11, 12, *range(14, 32), 127))
_ASCII_CONTROL_BYTES = bytes(_ASCII_CONTROLS)


def _fold_one(d: str) -> str:
    """The light form of one already NFKC-normalized, case-folded character."""
    if d.isascii():
        return "" if ord(d) in _ASCII_CONTROLS or d == SENTINEL else d
    if d in _HOMOGLYPHS:
        return _fold_one(_HOMOGLYPHS[d])
    category = unicodedata.category(d)
    if d in _INVISIBLE_LETTERS or category in ("Mn", "Me", "Cf", "Cc"):
        return ""
    if category[0] in "ZPS" or category in ("Co", "Cn", "Cs"):
        return _PUNCTUATION.get(d, " ")
    if ord(d) < _STRIP_MARKS_BELOW:
        decomposed = unicodedata.normalize("NFD", d)
        base = "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Me"))
        if base != decomposed:
            return "".join(_fold_one(ch) for ch in unicodedata.normalize("NFC", base))
    return d


def fold_char(c: str) -> str:
    """The light form of one character (see the module docstring)."""
    if c.isascii():
        return "" if ord(c) in _ASCII_CONTROLS or c == SENTINEL else c.lower()
    cp = ord(c)
    for lo, hi in _SPACE_RANGES:
        if lo <= cp <= hi:
            return " "
    for lo, hi in _KEPT_RANGES:
        if lo <= cp <= hi:
            return c
    return _fold_computed(c)


def _fold_computed(c: str) -> str:
    out = []
    for lowered in c.lower():
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", lowered).casefold())
        out.append("".join([_fold_one(d) for d in folded]))
    return "".join(out)


def _computed_points() -> list[int]:
    """The code points of the computed ranges, minus the kept ones and surrogates."""
    skip = sorted((*_KEPT_RANGES, (0xD800, 0xDFFF)))
    points: list[int] = []
    for lo, hi in _COMPUTED_RANGES:
        cp = lo
        for s_lo, s_hi in skip:
            if s_hi < cp or s_lo > hi:
                continue
            points.extend(range(cp, s_lo))
            cp = s_hi + 1
        points.extend(range(cp, hi + 1))
    return points


def _escaped(cp: int) -> str:
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _class_ranges(points: Sequence[int], char: Callable[[int], str] = _escaped) -> str:
    """A character class body listing ``points`` (ascending) as ranges, each code point written by
    ``char``: escaped (Python's ``re``) by default, or literally (``chr``, for RE2 and CJK points, none of
    which needs escaping)."""
    parts: list[str] = []
    start = prev = points[0]
    for cp in (*points[1:], -2):
        if cp == prev + 1:
            prev = cp
            continue
        parts.append(char(start) if start == prev else f"{char(start)}-{char(prev)}")
        start = prev = cp
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Tables:
    table: dict[str, str]  # character -> light form, for every non-ASCII character whose form differs
    needs: re.Pattern[str]  # matches the characters of ``table`` (and every astral character)
    special: re.Pattern[str]  # the same, plus the ASCII characters removed (controls and the sentinel)
    uneven: re.Pattern[str]  # the characters whose light form is not one character (and every astral one)


@functools.cache
def _tables() -> _Tables:
    # About 0.1 s, once per process: computing the table beats shipping one tied to a Unicode version.
    table: dict[str, str] = {}
    cased: list[int] = []  # unchanged by folding, yet changed by lower() (Cherokee folds to upper case)
    for cp in _computed_points():
        c = chr(cp)
        folded = _fold_computed(c)
        if folded != c:
            table[c] = folded
        elif c.lower() != c:
            cased.append(cp)
    table.update((chr(c), "") for c in _ASCII_CONTROLS)  # left by the non-ASCII path's lower()
    # Only BMP characters are listed one by one: ``re`` turns that into a bitmap, where a long list of
    # astral ranges would be scanned linearly for every character. Astral characters (emoji, math letters,
    # rare CJK) all take the callback, which sorts them out with the table.
    points = sorted(ord(c) for c in table if ord(c) < 0x10000)
    needs = f"{_class_ranges(points)}\\U00010000-\\U0010ffff"
    special = _class_ranges(sorted({0, *_ASCII_CONTROLS, *cased}))
    uneven = _class_ranges(
        sorted({0, *(ord(c) for c, f in table.items() if len(f) != 1 and ord(c) < 0x10000)})
    )
    return _Tables(
        table,
        re.compile(f"[{needs}]"),
        re.compile(f"[{special}{needs}]"),
        re.compile(f"[{uneven}\\U00010000-\\U0010ffff]"),
    )


_COMMON = tuple((c, fold_char(c)) for c in "，。！？：；（）、～“”《》【】")


def _astral(c: str) -> str:
    """The light form of a character missing from the table (or mapped to nothing)."""
    if c in _tables().table:
        return ""
    cp = ord(c)
    return " " if any(lo <= cp <= hi for lo, hi in _SPACE_RANGES) else c


def light(text: str) -> str:
    """The light form of ``text`` (see the module docstring)."""
    if SENTINEL in text:
        text = text.replace(SENTINEL, "")
    return light_bytes(text).decode() if _COMPILED else light_joined(text)


def join_fields(texts: Sequence[str]) -> str:
    """``texts`` joined by ``SENTINEL``; a ``SENTINEL`` inside a text is dropped (it would split a field)."""
    joined = SENTINEL.join(texts)
    if texts and joined.count(SENTINEL) != len(texts) - 1:
        joined = SENTINEL.join(t.replace(SENTINEL, "") for t in texts)
    return joined


def light_joined(text: str) -> str:
    """:func:`light` of text whose only ``SENTINEL`` characters are field separators, which are kept."""
    s = text.lower()
    if s.isascii():
        return s if s.isprintable() else s.translate(_ASCII_CONTROLS)
    tables = _tables()
    # Chinese punctuation is everywhere in Chinese text: str.replace beats re.sub's callback by far.
    for char, light_char in _COMMON:
        if char in s:
            s = s.replace(char, light_char)
    if tables.needs.search(s) is None:
        return s
    table = tables.table
    return tables.needs.sub(lambda m: table.get(m.group()) or _astral(m.group()), s)


# 1 at the bytes that may start a character whose light form differs: ASCII controls, and the lead bytes of
# non-ASCII characters, except E4-E9 (U+4000-U+9FFF: CJK ideographs, kept as they are; the Yijing hexagrams
# U+4DC0-U+4DFF, lead E4 B7, are the one exception and take the slow path).
_FLAGS = bytes(
    1 if (b < 0x20 and b not in (0, 9, 10, 13)) or b == 0x7F or (b >= 0xC0 and not 0xE4 <= b <= 0xE9) else 0
    for b in range(256)
)
_UTF8_LENGTH = bytes(1 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4 for b in range(256))
_LIGHT_CHARS: dict[bytes, bytes] = {}  # UTF-8 character -> its light form, memoized
_LIGHT_CHARS_LIMIT = 1 << 16


def bytes_finder(needle: bytes) -> Callable[[bytes], object]:
    """``needle in data``, faster: RE2 over Latin-1 beats ``bytes.__contains__`` about threefold on a page."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return cast(Callable[[bytes], object], re2.compile(re.escape(needle), options).search)


_has_hexagram = bytes_finder("\u4dc0".encode()[:2])


def light_bytes_python(text: str) -> bytes:
    """``light_joined(text).encode()``, computed mostly on the UTF-8 bytes (the fast path for joined pages).

    The light form is defined one character at a time, so: the common CJK punctuation is replaced with
    ``str.replace``, ASCII is lower-cased with ``bytes.lower``, and only the characters ``_FLAGS`` points at
    (the odd emoji, full-width letter, zero-width space) go through Python, one by one, memoized. Text dense
    in those (Cyrillic, kana, accented Latin) takes :func:`light_joined` instead. :func:`light_bytes` is the
    same, compiled where ``rules._speedups`` is built.
    """
    if text.isascii():
        return text.encode().lower().translate(None, _ASCII_CONTROL_BYTES)
    for char, light_char in _COMMON:
        if char in text:
            text = text.replace(char, light_char)
    data = text.encode().lower()
    if _has_hexagram(data):
        return light_joined(text).encode()
    flags = data.translate(_FLAGS)
    at = flags.find(1)
    budget = len(data) // 64  # past one such character in 64 bytes or so, re.sub over the str is faster
    memo, pieces, pos, find = _LIGHT_CHARS, list[bytes](), 0, flags.find
    while at >= 0:
        if budget <= 0:
            return light_joined(text).encode()
        budget -= 1
        end = at + _UTF8_LENGTH[data[at]]
        utf8 = data[at:end]
        light_utf8 = memo.get(utf8)
        if light_utf8 is None:
            light_utf8 = light_joined(utf8.decode()).encode()
            if len(memo) < _LIGHT_CHARS_LIMIT:
                memo[utf8] = light_utf8
        if light_utf8 != utf8:
            pieces += (data[pos:at], light_utf8)
            pos = end
        at = find(1, end)
    if not pieces:
        return data
    pieces.append(data[pos:])
    return b"".join(pieces)


#: The ASCII separators of the light form (everything but letters, digits and the field sentinel).
SEPARATOR_BYTES = bytes(b for b in range(1, 128) if not chr(b).isalnum())


def compact_form(light: bytes) -> bytes:
    """The compact form of UTF-8 light text: every separator removed, Traditional Chinese made Simplified
    (what keyword prefilters run over)."""
    return simplified_bytes(light.translate(None, SEPARATOR_BYTES))


def light_and_compact_python(text: str) -> tuple[bytes, bytes]:
    """``(light_bytes(text), that with every separator removed)``: the definition of the compiled twin.

    :func:`light_and_compact` is the same (compiled, one pass for both, where ``rules._speedups`` is built),
    then :func:`simplified_bytes` on the second: ``(light_bytes(text), compact_form(light_bytes(text)))``.
    """
    light = light_bytes(text)
    return light, light.translate(None, SEPARATOR_BYTES)


def light_and_compact(text: str) -> tuple[bytes, bytes]:
    """``(light_bytes(text), compact_form(light_bytes(text)))``: both forms of (joined) text."""
    light, compact = light_and_compact_unfolded(text)
    return light, simplified_bytes(compact)


# ---- Traditional → Simplified Chinese ----------------------------------------------------------------------

# Where OpenCC's t2s changes a character standing alone (a test checks every code point): CJK radicals to
# the unified ideographs, the compatibility ideographs, and the astral ideographs.
_T2S_RANGES = ((0x2E80, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))


def opencc_characters(ranges: Sequence[tuple[int, int]] = _T2S_RANGES) -> dict[str, str]:
    """What OpenCC's ``t2s`` makes of each character of ``ranges`` standing alone, where it changes it.

    One conversion call: the characters one a line (no entry of its dictionaries spans a line break; the
    line break itself, and surrogates, are left out).
    """
    points = [
        cp for lo, hi in ranges for cp in range(lo, hi + 1) if cp != 0x0A and not 0xD800 <= cp <= 0xDFFF
    ]
    converted = str(opencc.OpenCC("t2s").convert("\n".join(map(chr, points)))).split("\n")
    if len(converted) != len(points):  # pragma: no cover - a line break went missing: never guess
        raise RuntimeError("OpenCC t2s did not convert the characters one a line")
    return {chr(cp): out for cp, out in zip(points, converted, strict=True) if out != chr(cp)}


# From this many characters on, a numpy lookup table beats str.translate (whose dict lookups cost ~20 ns a
# character, ASCII ones included): 2.4 µs against 5.9 µs at 128 characters, 6.9 against 106 at 2,048.
_ARRAY_FROM = 64
# From this length on, the search for a Traditional character is RE2's (~1.6 ns a byte, but ~1.5 µs a call
# through its Python wrapper); below, re's (a bitmap of the BMP characters: 0.2-0.6 µs for a chat message).
_RE2_FROM = 512


@dataclass(frozen=True, slots=True)
class _Simplified:
    table: dict[int, str]  # code point -> its Simplified character (str.translate's table)
    finder: Callable[[str | bytes], object]  # RE2 search for a character of ``table`` (str, or UTF-8)
    candidates: re.Pattern[str]  # the BMP characters of ``table``, and every astral CJK one (then checked)
    codes: npt.NDArray[np.uint32]  # code point -> the code point it folds to, below len(codes)


@functools.cache
def _simplified() -> _Simplified:
    # About 0.1 s, once per process (OpenCC converts 160,000 characters): no table to ship or to go stale.
    converted = opencc_characters()
    table: dict[int, str] = {}
    for c, out in converted.items():
        # One character for one (all of them today): the map back to the original text relies on it.
        if len(out) != 1:  # pragma: no cover
            continue
        seen, end = {c}, out
        # 薴 → 苧 → 苎: follow the chain to its end, so that folding twice changes nothing.
        while end in converted and end not in seen and len(converted[end]) == 1:
            seen.add(end)
            end = converted[end]
        table[ord(c)] = end
    options = re2.Options()
    options.max_mem = 32 << 20
    finder = re2.compile(f"[{_class_ranges(sorted(table), chr)}]", options).search
    # re scans a class's ranges one by one for a character outside its BMP bitmap: the astral characters
    # of the table (hundreds of ranges) are one range here, and checked against the table when found.
    bmp = sorted(cp for cp in table if cp < 0x10000)
    candidates = re.compile(f"[{_class_ranges(bmp)}\\U00020000-\\U0003ffff]")
    codes = np.arange(max(table) + 1, dtype="<u4")
    for cp, out in table.items():
        codes[cp] = ord(out)
    return _Simplified(table, cast(Callable[[str | bytes], object], finder), candidates, codes)


def _fold_simplified(text: str) -> str:
    """``text`` with the fold's table applied: str.translate for short text, a numpy lookup for long."""
    fold = _simplified()
    if len(text) < _ARRAY_FROM:
        return text.translate(fold.table)
    points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    folded = fold.codes.take(points, mode="clip")
    beyond = points >= len(fold.codes)  # past the table (and clipped to its last entry): unchanged
    if beyond.any():
        folded[beyond] = points[beyond]
    return folded.tobytes().decode("utf-32-le")


def simplified_table() -> dict[str, str]:
    """Every Traditional character the fold changes, and the Simplified character it becomes."""
    return {chr(cp): out for cp, out in _simplified().table.items()}


def has_traditional(text: str | bytes) -> bool:
    """True when ``text`` (str, or UTF-8) holds a character that :func:`simplified` changes."""
    if text.isascii():
        return False
    fold = _simplified()
    if len(text) >= _RE2_FROM:
        return fold.finder(text) is not None
    chars = text.decode() if isinstance(text, bytes) else text
    found = fold.candidates.search(chars)
    while found is not None and ord(found.group()) not in fold.table:  # an astral one that does not fold
        found = fold.candidates.search(chars, found.end())
    return found is not None


def simplified(text: str) -> str:
    """``text`` with every Traditional Chinese character made Simplified, one character for one.

    The characters are OpenCC ``t2s``'s, each converted alone (``網絡賭場`` → ``网络赌场``, ``發票`` →
    ``发票``): a fold for matching, not a translation (``乾坤`` folds to ``干坤``). Text without such a
    character (ASCII, Simplified Chinese, any other script) is returned as it is, after one RE2 scan.
    """
    if not has_traditional(text):
        return text
    return _fold_simplified(text)


def simplified_bytes(data: bytes) -> bytes:
    """:func:`simplified` of UTF-8 text."""
    if not has_traditional(data):
        return data
    return _fold_simplified(data.decode()).encode()


# ---- full --------------------------------------------------------------------------------------------------

_CJK = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u3100-\u312f\u3190-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
)
_CJK_RE = re.compile(f"[{_CJK}]")
# After ``light``, separators are exactly the ASCII characters other than a-z, 0-9 (and the sentinel).
_SEPARATORS = re.compile(r"[\x01-/:-`{-\x7f]+")
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")
# A single letter/digit token (not CJK: those are already joined); a run of three or more is one word.
_WORD = r"[0-9a-z\x80-\U0010ffff]"
_SINGLE = r"[0-9a-z\u00c0-\u058f]"
_SINGLES = re.compile(f"(?<!{_WORD}){_SINGLE}(?: {_SINGLE}(?!{_WORD})){{2,}}")


def is_cjk(char: str) -> bool:
    """True for a Han, kana or bopomofo character (matched without word boundaries)."""
    return _CJK_RE.match(char) is not None


def full(text: str) -> str:
    """The full form of ``text`` (see the module docstring)."""
    return full_from_light(light(text))


# Byte tables for the fast path of full_from_light: separators to spaces; and the "shape" of a text, where
# each character becomes one byte, "a" for those that can make a single-letter token and "b" for the others.
_TO_SPACE = bytes(b if b >= 0x80 or chr(b).isalnum() else 0x20 for b in range(256))
_SHAPE = bytes(
    0x20 if b == 0x20 else 0x61 if chr(b).isalnum() or 0xC3 <= b <= 0xD6 else 0x62 for b in range(256)
)
_CONTINUATION = bytes(range(0x80, 0xC0))


def full_from_light(s: str) -> str:
    """:func:`full` of text already in the light form."""
    s = simplified(s)  # one character for one, Han for Han: nothing below sees the difference
    # Separators to single spaces with bytes methods (C speed, where re.sub takes ~20 ns a character).
    data = b" ".join(s.encode().translate(_TO_SPACE).split())
    if b" " not in data:
        return data.decode()  # one word: nothing to join
    s = data.decode()
    if not s.isascii():
        s = _CJK_GAP.sub("", s)
        data = s.encode()
    # A run of three single-letter tokens shows as " a a a " in the shape; only then is the regex needed.
    if b" a a a " in b" " + data.translate(_SHAPE, _CONTINUATION) + b" ":
        s = _SINGLES.sub(_drop_spaces, s)
    return s


def _drop_spaces(match: re.Match[str]) -> str:
    return match.group().replace(" ", "")


_WORD_RUN = re.compile(r"[0-9a-z\x80-\U0010ffff]+")


def light_indexes_of_full_python(light: str, full: str, offsets: Sequence[int]) -> list[int]:
    """The indexes in ``light`` of the characters at ``offsets`` (ascending) of ``full_from_light(light)``.

    Both forms hold the same letters and digits in the same order (the full form only rewrites separators),
    so counting them is enough: no need for the slower :func:`full_mapped`. :func:`light_indexes_of_full` is
    this function, compiled where ``rules._speedups`` is built.
    """
    wanted = [offset - full.count(" ", 0, offset) for offset in offsets]  # letters and digits before each
    out: list[int] = []
    seen = 0
    runs = _WORD_RUN.finditer(light)
    run = next(runs, None)
    for target in wanted:
        while run is not None and seen + run.end() - run.start() <= target:
            seen += run.end() - run.start()
            run = next(runs, None)
        out.append(len(light) if run is None else run.start() + target - seen)
    return out


# ---- glued: joiners inside words ---------------------------------------------------------------------------

#: ASCII characters that, standing between two letters or digits with no space around them, may hide a word.
JOINERS: Final = "-_~*"
_GLUE = re.compile(f"(?<={_WORD})[{re.escape(JOINERS)}]+(?={_WORD})")
_EMOJI_BLOCKS = (0x1F000, 0x1FAFF)  # pictographs, some not assigned yet in this Python's Unicode tables


def is_joining_symbol(char: str) -> bool:
    """True for a symbol or emoji (which the light form makes a space) that can stand inside a word."""
    if char.isascii() or fold_char(char) != " ":
        return False
    return unicodedata.category(char)[0] == "S" or _EMOJI_BLOCKS[0] <= ord(char) <= _EMOJI_BLOCKS[1]


@functools.cache
def _symbols() -> re.Pattern[str]:
    # The BMP ones one by one (a bitmap for re); the astral ones are checked one by one by _as_joiner.
    spaces = [c for c, f in _tables().table.items() if f == " " and ord(c) < 0x10000]
    points = sorted(ord(c) for c in spaces if is_joining_symbol(c))
    return re.compile(f"[{_class_ranges(points)}\\U00010000-\\U0010ffff]")


def _as_joiner(match: re.Match[str]) -> str:
    return "*" if is_joining_symbol(match.group()) else match.group()


def glued_light(text: str, light: str) -> str | None:
    """``light`` (``light(text)``) with the joiners between letters or digits dropped; None if there are none.

    Joiners are ``-_~*`` in the light form, and symbols or emoji in ``text`` (which the light form turns into
    spaces). Only a run of joiners alone between two letters or digits goes: ``fr~ee``, ``fr🔥ee``,
    ``fr_*_ee`` → ``free``; ``fr ee`` and ``fr - ee`` stay apart. The letters and digits are those of
    ``light``, in the same order, so :func:`light_indexes_of_full` maps the glued full form back too.
    """
    if not text.isascii():
        symbols = _symbols()
        if symbols.search(text) is not None:
            light = light_joined(symbols.sub(_as_joiner, text).replace(SENTINEL, ""))
    if _GLUE.search(light) is None:
        return None
    return _GLUE.sub("", light)


# ---- mapped forms, for evidence ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mapped:
    """A normalized text with the index of the original character each of its characters came from."""

    original: str
    text: str
    index: Sequence[int]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that produced ``text[start:end]`` (``end > start``)."""
        if not self.index or end <= start:
            return (0, 0)
        return self.index[start], self.index[end - 1] + 1

    def original_text(self, start: int, end: int) -> str:
        """The original text that produced ``text[start:end]``."""
        a, b = self.original_span(start, end)
        return self.original[a:b]


def light_mapped(text: str, light: str | None = None) -> Mapped:
    """:func:`light` with a map back to ``text``; ``light`` is ``light(text)``, if the caller has it."""
    tables = _tables()
    if tables.uneven.search(text) is None:  # one character for one: the map is the identity
        return Mapped(text, light_joined(text) if light is None else light, range(len(text)))
    pieces: list[str] = []
    index: list[int] = []
    pos = 0
    # Only the characters that change go through Python one by one; runs of the others are lower-cased whole
    # (which keeps their length: the characters whose case mapping changes length are all in the table).
    for m in tables.special.finditer(text):
        at = m.start()
        if at > pos:
            pieces.append(text[pos:at].lower())
            index.extend(range(pos, at))
        c = m.group()
        found = tables.table.get(c)
        folded = "" if c.isascii() else _astral(c) if found is None else found
        if folded:
            pieces.append(folded)
            index.extend([at] * len(folded))
        pos = at + 1
    if pos < len(text):
        pieces.append(text[pos:].lower())
        index.extend(range(pos, len(text)))
    return Mapped(text, "".join(pieces), tuple(index))


Step = Callable[[str, list[int]], tuple[str, list[int]]]


def replace_mapped(pattern: re.Pattern[str], make: Callable[[str], str]) -> Step:
    """A step replacing each match of ``pattern`` with ``make(match)``, whose characters map to the match's.

    ``make`` may only drop characters of the match or replace the whole match with one character.
    """

    def step(text: str, index: list[int]) -> tuple[str, list[int]]:
        pieces: list[str] = []
        new_index: list[int] = []
        pos = 0
        for m in pattern.finditer(text):
            start, end = m.span()
            pieces.append(text[pos:start])
            new_index.extend(index[pos:start])
            replacement = make(m.group())
            pieces.append(replacement)
            if len(replacement) == 1 and end - start != 1:
                new_index.append(index[start])
            else:
                kept = [index[start + k] for k, ch in enumerate(m.group()) if ch != " "]
                new_index.extend(kept if len(kept) == len(replacement) else [index[start]] * len(replacement))
            pos = end
        pieces.append(text[pos:])
        new_index.extend(index[pos:])
        return "".join(pieces), new_index

    return step


def _strip_mapped(text: str, index: list[int]) -> tuple[str, list[int]]:
    start, end = 0, len(text)
    while start < end and text[start] == " ":
        start += 1
    while end > start and text[end - 1] == " ":
        end -= 1
    return text[start:end], index[start:end]


def _simplified_mapped(text: str, index: list[int]) -> tuple[str, list[int]]:
    return simplified(text), index  # one character for one: the map stays


_FULL_STEPS: tuple[Step, ...] = (
    _simplified_mapped,
    replace_mapped(_SEPARATORS, lambda _: " "),
    _strip_mapped,
    replace_mapped(_CJK_GAP, lambda _: ""),
    replace_mapped(_SINGLES, lambda s: s.replace(" ", "")),
)


def full_mapped(text: str) -> Mapped:
    """:func:`full` with a map back to ``text``."""
    return apply_steps(light_mapped(text), _FULL_STEPS)


def apply_steps(mapped: Mapped, steps: Sequence[Step]) -> Mapped:
    """Apply text rewriting steps to a mapped text, keeping the map to the original."""
    text, index = mapped.text, list(mapped.index)
    for step in steps:
        text, index = step(text, index)
    return Mapped(mapped.original, text, tuple(index))


light_bytes: Callable[[str], bytes]
#: :func:`light_and_compact` without the Simplified fold of the compact form (compiled where it is built).
light_and_compact_unfolded: Callable[[str], tuple[bytes, bytes]]
light_indexes_of_full: Callable[[str, str, Sequence[int]], list[int]]
try:
    from rules._speedups import light_and_compact as light_and_compact_unfolded
    from rules._speedups import light_bytes, light_indexes_of_full
except ImportError:  # not built: the same, in Python
    light_bytes = light_bytes_python
    light_and_compact_unfolded = light_and_compact_python
    light_indexes_of_full = light_indexes_of_full_python
# Compiled, one field's light form is quickest through the bytes; in Python, light_joined() is.
_COMPILED: Final = light_bytes is not light_bytes_python
