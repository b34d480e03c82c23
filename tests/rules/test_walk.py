"""The element walker: every string field, named by its path in the API's JSON."""

from __future__ import annotations

import json

import pytest

from rules.page import walk
from tests.rules.helpers import MakeMessage, elem, forward, msg, text, text_field_cases


@pytest.mark.parametrize(("path", "make"), text_field_cases())
def test_every_text_bearing_field_is_walked_with_its_path(path: str, make: MakeMessage) -> None:
    message = make("needle")
    found = [f for f in walk(message).fields if f.text == "needle"]
    assert [(f.path, f.textual) for f in found] == [(path, True)]


def test_media_fields_are_walked_but_not_as_text() -> None:
    message = msg(
        elem("TIMImageElem", UUID="img-1", ImageFormat=1, ImageInfoArray=[{"Type": 1, "URL": "https://i/1"}]),
        elem("TIMSoundElem", Url="https://s/1", UUID="snd-1", Size=1, Second=2),
        elem(
            "TIMVideoFileElem",
            VideoUrl="https://v/1",
            VideoUUID="vid-1",
            ThumbUrl="https://t/1",
            ThumbUUID="th-1",
        ),
        elem("TIMFileElem", Url="https://f/1", UUID="file-1", FileName="a.txt", FileSize=1),
    )
    fields = {f.path: (f.field, f.textual) for f in walk(message).fields}
    assert fields == {
        "MsgBody[0].MsgContent.UUID": ("UUID", False),
        "MsgBody[0].MsgContent.ImageInfoArray[0].URL": ("URL", False),
        "MsgBody[1].MsgContent.Url": ("Url", False),
        "MsgBody[1].MsgContent.UUID": ("UUID", False),
        "MsgBody[2].MsgContent.VideoUrl": ("VideoUrl", False),
        "MsgBody[2].MsgContent.VideoUUID": ("VideoUUID", False),
        "MsgBody[2].MsgContent.ThumbUrl": ("ThumbUrl", False),
        "MsgBody[2].MsgContent.ThumbUUID": ("ThumbUUID", False),
        "MsgBody[3].MsgContent.FileName": ("FileName", True),
        "MsgBody[3].MsgContent.Url": ("Url", False),
        "MsgBody[3].MsgContent.UUID": ("UUID", False),
    }


def test_elements_are_listed_at_every_depth() -> None:
    message = msg(text("a"), forward([text("b")], [forward([elem("TIMFaceElem", Index=3)])]))
    assert [(e.path, e.element_type, e.depth) for e in walk(message).elements] == [
        ("MsgBody[0]", "TIMTextElem", 0),
        ("MsgBody[1]", "TIMRelayElem", 0),
        ("MsgBody[1].MsgContent.MsgList[0].MsgBody[0]", "TIMTextElem", 1),
        ("MsgBody[1].MsgContent.MsgList[1].MsgBody[0]", "TIMRelayElem", 1),
        ("MsgBody[1].MsgContent.MsgList[1].MsgBody[0].MsgContent.MsgList[0].MsgBody[0]", "TIMFaceElem", 2),
    ]


def test_escaped_json_strings_are_also_walked_decoded() -> None:
    data = json.dumps({"card": {"text": "代开发票"}})  # ensure_ascii: the raw text shows \\u4ee3...
    found = {f.path: f.text for f in walk(msg(elem("TIMCustomElem", Data=data))).fields}
    assert found["MsgBody[0].MsgContent.Data#/card/text"] == "代开发票"
    plain = json.dumps({"card": {"text": "hello"}})
    assert [f.path for f in walk(msg(elem("TIMCustomElem", Data=plain))).fields] == [
        "MsgBody[0].MsgContent.Data"
    ]


def test_unknown_element_types_have_every_string_walked_as_text() -> None:
    message = msg(elem("TIMFutureElem", Caption="new kind", Tags=["t1", "t2"], Count=3))
    assert [(f.path, f.textual) for f in walk(message).fields] == [
        ("MsgBody[0].MsgContent.Caption", True),
        ("MsgBody[0].MsgContent.Tags[0]", True),
        ("MsgBody[0].MsgContent.Tags[1]", True),
    ]


def test_malformed_elements_are_skipped() -> None:
    message = msg({"MsgType": "TIMTextElem"}, {"MsgContent": {"Text": "x"}}, text(""), text("ok"))
    assert [f.path for f in walk(message).fields] == ["MsgBody[3].MsgContent.Text"]
