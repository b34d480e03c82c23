"""The compiled twins in ``rules._speedups`` give exactly what their pure-Python originals give.

Scanning uses the compiled functions where the extension is built and the Python ones elsewhere, so any
difference between the two would make a match depend on the machine. Skipped (with the reason) where the
extension is not built; under CI it must be.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import normalize
from rules.page import COMPILED, Page, fill_python, walk_page
from tests.bench.bench_rules import SEED, corpus
from tests.rules.helpers import TRICKY_TEXT
from worker.tim.models import ConversationKind, Message

if not COMPILED:
    reason = "rules._speedups is not built (no C compiler where the package was installed)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI builds it", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from rules import _speedups  # only importable where built


def _python_page(messages: list[Message]) -> Page:
    page = Page()
    fill_python(page, messages)
    return page


def _assert_same_page(messages: list[Message]) -> None:
    compiled, python = walk_page(messages), _python_page(messages)
    for name in Page.__slots__:
        assert getattr(compiled, name) == getattr(python, name), name


def test_the_walks_agree_on_the_benchmark_corpus() -> None:
    messages = corpus(random.Random(SEED), 2_000)
    for k in range(0, len(messages), 100):
        _assert_same_page(messages[k : k + 100])


_STRINGS = (
    st.sampled_from(["", "hi", '{"a": "\\u8d4c"}', '["x", {"k~/": "\\u0041b"}]', "\x00", "a\\b"])
    | TRICKY_TEXT
)
_KINDS = st.sampled_from(
    ["TIMTextElem", "TIMCustomElem", "TIMFaceElem", "TIMFileElem", "TIMImageElem", "TIMSoundElem",
     "TIMLocationElem", "TIMVideoFileElem", "TIMRelayElem", "TIMNewKindElem", 7]
)  # fmt: skip
_NAMES = st.sampled_from(
    ["Text", "Data", "Desc", "Ext", "FileName", "Url", "UUID", "URL", "Title", "CompatibleText", "Sound",
     "VideoUrl", "Index", "Other"]
)  # fmt: skip


def _content(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    values: st.SearchStrategy[Any] = _STRINGS | st.integers() | st.none() | st.lists(_STRINGS, max_size=3)
    plain = st.dictionaries(_NAMES, values, max_size=4)
    images = st.lists(st.dictionaries(st.just("URL"), _STRINGS) | st.just("not a dict"), max_size=3)
    with_images = st.builds(lambda d, infos: {**d, "ImageInfoArray": infos}, plain, images)
    if depth >= 2:
        return plain | with_images
    items = st.lists(
        st.fixed_dictionaries(
            {"MsgBody": st.lists(_element(depth + 1), max_size=3)}, optional={"CloudCustomData": _STRINGS}
        ),
        max_size=3,
    )
    relay = st.builds(
        lambda d, items, abstracts: {**d, "MsgList": items, "AbstractList": abstracts},
        plain,
        items,
        st.lists(_STRINGS, max_size=2),
    )
    return plain | with_images | relay


def _element(depth: int = 0) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({"MsgType": _KINDS, "MsgContent": _content(depth)}) | st.just("junk")


_MESSAGES = st.lists(
    st.builds(
        lambda n, body, ccd: Message(
            ConversationKind.C2C, f"k{n}", "u", n, n, body=body, cloud_custom_data=ccd
        ),
        st.integers(0, 10**6),
        st.lists(_element(), max_size=20),  # past 16 elements, paths are no longer precomputed
        _STRINGS,
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(_MESSAGES)
def test_the_walks_agree_on_any_message_shape(messages: list[Message]) -> None:
    _assert_same_page(messages)


def test_the_walks_agree_on_every_element_type_with_escaped_json() -> None:
    payload = json.dumps({"card": {"text": "赌博", "list": ["免费", {"a/b~": "fr\u200bee"}]}})
    body = [{"MsgType": kind, "MsgContent": {"Data": payload, "Desc": payload, "Ext": payload}}
            for kind in ("TIMCustomElem", "TIMFaceElem", "TIMLocationElem", "TIMUnknownElem")]  # fmt: skip
    _assert_same_page([Message(ConversationKind.C2C, "k", "u", 1, 1, body=body, cloud_custom_data=payload)])


def test_every_character_has_the_same_light_and_compact_forms() -> None:
    # Every BMP character, and every 251st astral one (their light forms come from the same table code).
    points = [*range(0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x110000, 251)]
    for cp in points:
        text = f"A{chr(cp)}\x00b.{chr(cp)}"
        assert _speedups.light_and_compact(text) == normalize.light_and_compact_python(text), hex(cp)


def test_a_long_expansion_grows_the_buffer() -> None:
    text = "\ufdfa" * 200 + "ABC 赌博"  # each character's light form is 18 characters long
    assert _speedups.light_and_compact(text) == normalize.light_and_compact_python(text)
    assert _speedups.light_bytes(text) == normalize.light_bytes_python(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(TRICKY_TEXT, max_size=5))
def test_the_light_forms_agree_on_joined_fields(texts: list[str]) -> None:
    joined = normalize.join_fields(texts)
    assert _speedups.light_and_compact(joined) == normalize.light_and_compact_python(joined)
    assert _speedups.light_bytes(joined) == normalize.light_bytes_python(joined)


@settings(max_examples=500, deadline=None)
@given(TRICKY_TEXT)
def test_the_light_indexes_of_the_full_form_agree(value: str) -> None:
    light = normalize.light(value)
    full = normalize.full_from_light(light)
    offsets = sorted({*range(0, len(full), 3), len(full) - 1} - {-1})
    compiled = _speedups.light_indexes_of_full(light, full, offsets)
    assert compiled == normalize.light_indexes_of_full_python(light, full, offsets)
