"""Normalization: what each level does, the separator rule, and the map back to the original text."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings

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
