"""Normalization: what each level does, the separator rule, and the map back to the original text."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import normalize
from tests.rules.helpers import TRICKY_TEXT


def test_ascii_cheap_path_is_just_lower_case() -> None:
    assert normalize.light("Hello, World!") == "hello, world!"
    assert normalize.full("Hello, World!") == "hello world"


def test_light_folds_width_case_invisibles_homoglyphs_and_punctuation() -> None:
    assert normalize.light("ＦＲＥＥ") == "free"  # full-width, upper case
    assert normalize.light("𝐟𝐫𝐞𝐞") == "free"  # NFKC (mathematical bold)
    assert normalize.light("fr\u200bee\u2060") == "free"  # zero-width space, word joiner
    assert normalize.light("frее") == "free"  # Cyrillic е
    assert normalize.light("frée") == "free"  # diacritics
    assert normalize.light("Straße") == "strasse"  # case folding
    assert normalize.light("⼤\uf9d1") == "大六"  # Kangxi radical, CJK compatibility ideograph
    assert normalize.light("你好。再见！") == "你好.再见!"  # CJK punctuation to ASCII
    assert normalize.light("a🔥b") == "a b"  # pictographs separate words
    assert normalize.light("が") == "が"  # marks that carry meaning outside Latin, Greek, Cyrillic stay


def test_full_collapses_separators_between_single_letters_only() -> None:
    assert normalize.full("f.r.e.e crypto") == "free crypto"
    assert normalize.full("f r e e") == "free"
    assert normalize.full("f - r - e - e") == "free"
    assert normalize.full("f🔥r🔥e🔥e") == "free"
    # Words of two or more letters are never glued: "of reeds" must not become "ofreeds" (which holds "free").
    assert normalize.full("a bit of reeds") == "a bit of reeds"
    assert normalize.full("fr ee") == "fr ee"
    # Two single letters are not a run (the rule needs three): "a b" stays as written.
    assert normalize.full("plan a b") == "plan a b"


def test_full_joins_cjk_across_separators_but_not_latin_words() -> None:
    assert normalize.full("赌 博") == "赌博"
    assert normalize.full("代.开.发.票") == "代开发票"
    assert normalize.full("赌，博") == "赌博"
    assert normalize.full("赌博 free crypto") == "赌博 free crypto"


@settings(max_examples=300, deadline=None)
@given(TRICKY_TEXT)
def test_mapped_forms_equal_the_fast_forms(value: str) -> None:
    light = normalize.light_mapped(value)
    assert light.text == normalize.light(value)
    assert len(light.index) == len(light.text)
    assert list(light.index) == sorted(light.index)
    full = normalize.full_mapped(value)
    assert full.text == normalize.full(value)
    assert all(0 <= i < len(value) for i in full.index)


@settings(max_examples=300, deadline=None)
@given(TRICKY_TEXT)
def test_light_indexes_of_full_agree_with_the_full_map(value: str) -> None:
    light = normalize.light(value)
    full = normalize.full_from_light(light)
    light_mapped = normalize.light_mapped(value)
    full_mapped = normalize.full_mapped(value)
    letters = [k for k in range(len(full)) if full[k] != " "]
    found = normalize.light_indexes_of_full(light, full, letters)
    assert [light_mapped.index[i] for i in found] == [full_mapped.index[k] for k in letters]


def test_joined_light_keeps_field_sentinels_and_drops_user_ones() -> None:
    assert normalize.light_joined("A\x00B") == "a\x00b"
    assert normalize.light("A\x00B") == "ab"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="needs the Unicode tables of 3.11+")
def test_every_bmp_character_folds_the_same_on_every_path() -> None:
    table = normalize.fold_char
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        expected = "" if c == "\x00" else table(c)
        assert normalize.light(c) == expected, hex(cp)
        assert normalize.light_mapped(c).text == expected, hex(cp)


def test_mapped_span_shows_the_original_text() -> None:
    original = "Get ｆ.ｒ.ｅ.ｅ ｃｒｙｐｔｏ now"
    mapped = normalize.full_mapped(original)
    start = mapped.text.index("free crypto")
    assert mapped.original_text(start, start + len("free crypto")) == "ｆ.ｒ.ｅ.ｅ ｃｒｙｐｔｏ"


# ---- Traditional → Simplified ------------------------------------------------------------------------------


def _every_code_point() -> list[int]:
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def test_simplified_fold_is_opencc_t2s_of_each_character_on_every_code_point() -> None:
    # OpenCC, asked about every character of Unicode (not only the ranges the fold builds its table from),
    # changes exactly the table's characters, into what the table says (one chain, 薴 → 苧 → 苎, followed).
    every = normalize.opencc_characters(((0, 0x10FFFF),))
    table = normalize.simplified_table()
    assert set(every) == set(table)
    assert len(table) > 5000
    for char, converted in every.items():
        assert len(converted) == 1, char  # one character for one: the map back to the original holds
        assert table[char] in (converted, every.get(converted)), char
        assert table[char] not in table, char  # folding twice changes nothing
        assert normalize.is_cjk(char) or "\u2e80" <= char <= "\u2fdf", char
        assert normalize.is_cjk(table[char]), char  # Han stays Han: word boundaries do not move
    assert table["薴"] == "苎"


def test_the_cheap_test_finds_exactly_the_characters_the_fold_changes() -> None:
    # Both searches: re's for short text, RE2's for long (512 characters and more).
    table = normalize.simplified_table()
    padding = "a" * 600
    for char in table:
        assert normalize.has_traditional(char), char
        assert normalize.has_traditional(char.encode()), char
        assert normalize.has_traditional(padding + char), char
        assert normalize.has_traditional((char + padding).encode()), char
    others = [chr(cp) for cp in _every_code_point() if chr(cp) not in table]
    assert not any(normalize.has_traditional(char) for char in others)
    assert not normalize.has_traditional("".join(others))
    assert not normalize.has_traditional("".join(others).encode())
    assert not normalize.has_traditional("你" * 100 + "\U00020000" * 100)  # astral CJK that does not fold


def test_full_and_compact_forms_fold_traditional_chinese_light_keeps_it() -> None:
    assert normalize.full("網絡賭場 代開發票") == "网络赌场代开发票"
    assert normalize.full("网络赌场") == "网络赌场"  # Simplified text is left as it is
    assert normalize.light("網絡賭場") == "網絡賭場"  # regexes and domains see the script as written
    light, compact = normalize.light_and_compact("賭 博\x00Free 發票")
    assert (light.decode(), compact.decode()) == ("賭 博\x00free 發票", "赌博\x00free发票")
    assert normalize.compact_form("賭.博".encode()) == "赌博".encode()
    assert normalize.simplified("hello 你好") == "hello 你好"


def test_evidence_of_a_traditional_match_is_the_traditional_text() -> None:
    original = "請看 網.絡.賭.場 吧"
    mapped = normalize.full_mapped(original)
    start = mapped.text.index("网络赌场")
    assert mapped.original_text(start, start + 4) == "網.絡.賭.場"


def test_long_text_folds_as_short_text_does() -> None:
    # Past a few dozen characters the fold takes a numpy lookup table instead of str.translate.
    table = normalize.simplified_table()
    text = "".join(table) + "Ａb 😀\U000e0041\U0010fffd 發" * 3 + "".join(table)[::-1]
    expected = "".join(table.get(c, c) for c in text)
    assert normalize.simplified(text) == expected
    assert normalize.simplified_bytes(text.encode()) == expected.encode()
    assert [normalize.simplified(c) for c in text] == list(expected)


# Long enough, often, for the numpy path of the fold (64 characters and more).
_TRADITIONAL_TEXT = st.text(
    st.sampled_from(list("網絡賭場代開發票簡體中文賭博乾隆後來髮薴苧 .，a😀")), max_size=150
)


@settings(max_examples=300, deadline=None)
@given(_TRADITIONAL_TEXT | TRICKY_TEXT)
def test_the_fold_keeps_every_map_exact(value: str) -> None:
    full = normalize.full(value)
    assert normalize.full(full) == full  # idempotent
    assert full == normalize.full(normalize.simplified(value))
    mapped = normalize.full_mapped(value)
    assert mapped.text == full
    light = normalize.light(value)
    letters = [k for k in range(len(full)) if full[k] != " "]
    found = normalize.light_indexes_of_full(light, full, letters)
    assert [normalize.light_mapped(value).index[i] for i in found] == [mapped.index[k] for k in letters]


# ---- glued: joiners inside words ---------------------------------------------------------------------------


def _glued(value: str) -> str | None:
    glued = normalize.glued_light(value, normalize.light(value))
    return None if glued is None else normalize.full_from_light(glued)


@pytest.mark.parametrize(
    ("value", "glued"),
    [
        ("fr~ee crypto", "free crypto"),
        ("fr_ee cr*yp-to", "free crypto"),
        ("fr🔥ee cry😀pto", "free crypto"),
        ("fr~🔥_ee", "free"),
        ("ｆｒ～ｅｅ", "free"),  # full-width: a tilde in the light form
        ("fr—ee", "free"),  # an em dash: a hyphen in the light form
        ("fr\u200b~ee", "free"),  # an invisible inside the joiner run
        ("free🔥crypto", "freecrypto"),
        ("co-op e-mail snake_case", "coop email snakecase"),
    ],
)
def test_glued_form_drops_joiners_between_letters(value: str, glued: str) -> None:
    assert _glued(value) == glued


@pytest.mark.parametrize(
    "value",
    [
        "fr ee",  # a space is a word break
        "fr - ee",  # so is a joiner with spaces around it
        "fr 🔥 ee",
        "*emphasis* and ~/path and -flag",  # joiners at the edge of a word
        "fr.ee, fr/ee, fr+ee",  # not joiners
        "hello world 你好",
        "fr①ee",  # a circled digit is a letter, not a symbol
    ],
)
def test_glued_form_is_none_without_a_joiner_inside_a_word(value: str) -> None:
    assert _glued(value) is None


@settings(max_examples=300, deadline=None)
@given(TRICKY_TEXT)
def test_the_glued_form_has_the_same_letters_in_the_same_order(value: str) -> None:
    light = normalize.light(value)
    glued = normalize.glued_light(value, light)
    if glued is not None:
        assert [c for c in glued if c.isalnum()] == [c for c in light if c.isalnum()]
        assert glued != light
