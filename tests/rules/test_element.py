"""``element``: elements by type and attributes, at any depth."""

from __future__ import annotations

import pytest

from rules import RulesError
from tests.rules.helpers import elem, forward, msg, only, rule, ruleset, scan, text

EXECUTABLES = ruleset(rule("element", "exe", file_extensions=["exe", ".APK"]))


def file(name: str) -> dict[str, object]:
    return elem("TIMFileElem", Url="https://cos/f", UUID="f-1", FileSize=10, FileName=name)


@pytest.mark.parametrize(
    "name",
    [
        "setup.exe",
        "SETUP.EXE",
        "game.apk",
        "invoice.pdf.exe",  # double extension
        "invoice\u202efdp.exe",  # right-to-left override: shows as invoiceexe.pdf
        "setup．ｅｘｅ",  # full-width dot and letters
        "setup.exe.",  # trailing dot (Windows drops it)
        "setup.exe  ",  # trailing spaces
        "setup.e\u200bxe",  # zero-width space
    ],
)
def test_file_extensions_are_not_hidden_by_tricks(name: str) -> None:
    found = only(scan(EXECUTABLES, msg(text("see attached"), file(name))))
    assert (found.rule_id, found.rule_type) == ("exe", "element")
    assert (found.element_path, found.evidence) == ("MsgBody[1].MsgContent.FileName", name)
    assert found.normalized in ("exe", "apk")


@pytest.mark.parametrize("name", ["setup.exe.txt", "exe", "readme", "photo.jpeg", "my.exe.pdf"])
def test_other_file_names_pass(name: str) -> None:
    assert scan(EXECUTABLES, msg(file(name))) == []


def image(uuid: str, url: str) -> dict[str, object]:
    urls = [url, url.split("#", maxsplit=1)[0] + "?size=small"]
    infos = [{"Type": t, "Size": 1, "Width": 1, "Height": 1, "URL": u} for t, u in enumerate(urls, start=1)]
    return elem("TIMImageElem", UUID=uuid, ImageFormat=1, ImageInfoArray=infos)


MEDIA = ruleset(
    rule(
        "element",
        "media",
        uuids=["BAD-UUID"],
        urls=["https://CDN.example/bad.png", "https://cdn.example/evil/*"],
    )
)


@pytest.mark.parametrize(
    ("element", "path"),
    [
        (image("bad-uuid", "https://x/1"), "MsgBody[0].MsgContent.UUID"),
        (image("ok", "https://cdn.example/bad.png#frag"), "MsgBody[0].MsgContent.ImageInfoArray[0].URL"),
        (elem("TIMFileElem", Url="https://cdn.example/evil/a", FileName="a"), "MsgBody[0].MsgContent.Url"),
        (elem("TIMSoundElem", Url="https://x/s", UUID="bad-uuid", Second=1), "MsgBody[0].MsgContent.UUID"),
        (elem("TIMVideoFileElem", VideoUrl="x", VideoUUID="BAD-UUID"), "MsgBody[0].MsgContent.VideoUUID"),
        (elem("TIMVideoFileElem", VideoUrl="https://x/v", ThumbUrl="https://cdn.example/evil/t.jpg"),
         "MsgBody[0].MsgContent.ThumbUrl"),
    ],
)  # fmt: skip
def test_media_by_uuid_or_url(element: dict[str, object], path: str) -> None:
    assert only(scan(MEDIA, msg(element))).element_path == path


def test_media_not_listed_pass() -> None:
    assert scan(MEDIA, msg(image("other", "https://cdn.example/good.png"), text("BAD-UUID"))) == []


def test_faces_by_index_or_data() -> None:
    rs = ruleset(rule("element", face_indexes=[13], face_data=["middle_finger"]))
    found = scan(
        rs,
        msg(elem("TIMFaceElem", Index=13, Data="x")),
        msg(elem("TIMFaceElem", Index=1, Data="middle_finger")),
    )
    assert [(m.element_path, m.evidence) for m in found] == [
        ("MsgBody[0].MsgContent.Index", "13"),
        ("MsgBody[0].MsgContent.Data", "middle_finger"),
    ]
    assert scan(rs, msg(elem("TIMFaceElem", Index=12, Data="smile"))) == []


def test_location_text_by_keywords_in_english_and_chinese() -> None:
    rs = ruleset(rule("element", location_keywords=["casino", "赌场"]))
    found = scan(
        rs,
        msg(elem("TIMLocationElem", Desc="Lucky CASINO, 2nd floor", Latitude=1.0, Longitude=2.0)),
        msg(elem("TIMLocationElem", Desc="澳门大赌场", Latitude=1.0, Longitude=2.0)),
        msg(elem("TIMLocationElem", Desc="Casinos Street", Latitude=1.0, Longitude=2.0)),
    )
    assert [(m.element_path, m.evidence) for m in found] == [
        ("MsgBody[0].MsgContent.Desc", "CASINO"),
        ("MsgBody[0].MsgContent.Desc", "赌场"),
    ]


def test_element_types_alone_match_every_element_of_those_types() -> None:
    rs = ruleset(rule("element", "no-voice", action="flag", elements=["TIMSoundElem", "TIMVideoFileElem"]))
    found = scan(
        rs, msg(text("hi"), elem("TIMSoundElem", Url="u", UUID="s", Second=1)), msg(text("only text"))
    )
    assert [(m.element_path, m.evidence, m.action) for m in found] == [("MsgBody[1]", "TIMSoundElem", "flag")]


def test_elements_narrow_attribute_checks() -> None:
    rs = ruleset(rule("element", uuids=["u1"], elements=["TIMImageElem"]))
    assert scan(rs, msg(elem("TIMFileElem", UUID="u1", FileName="a"))) == []
    assert len(scan(rs, msg(image("u1", "https://x")))) == 1


def test_elements_inside_forwarded_messages_two_levels_deep() -> None:
    message = msg(forward([text("a")], [forward([text("b"), file("run.exe")])]))
    assert only(scan(EXECUTABLES, message)).element_path == (
        "MsgBody[0].MsgContent.MsgList[1].MsgBody[0].MsgContent.MsgList[0].MsgBody[1].MsgContent.FileName"
    )


def test_a_rule_that_says_nothing_to_match_is_rejected() -> None:
    with pytest.raises(RulesError, match="give elements, or an attribute"):
        ruleset(rule("element"))
