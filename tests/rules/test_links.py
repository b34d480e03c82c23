"""``links``: domains in any text field, obfuscated or not, against block and allow lists."""

from __future__ import annotations

import time

import pytest

from rules import RulesError, normalize
from tests.rules.helpers import (
    MakeMessage,
    elem,
    forward,
    msg,
    only,
    rule,
    ruleset,
    scan,
    text,
    text_field_cases,
)

LINKS = ruleset(
    rule(
        "links",
        "domains",
        block=["scam-example.com", "bad.example", "例子.测试", "xn--e1afmkfd.com"],
        allow=["help.scam-example.com"],
    )
)


def _found(value: str) -> tuple[str, str]:
    found = only(scan(LINKS, msg(text(value))))
    assert (found.rule_id, found.rule_type, found.element_path) == (
        "domains",
        "links",
        "MsgBody[0].MsgContent.Text",
    )
    return found.evidence, found.normalized


# Each trick: (text, evidence, host).
TRICKS = {
    "plain-url": (
        "see https://scam-example.com/login now",
        "https://scam-example.com/login",
        "scam-example.com",
    ),
    "bare-domain": ("go to bad.example today", "bad.example", "bad.example"),
    "subdomain": ("www.login.scam-example.com", "www.login.scam-example.com", "www.login.scam-example.com"),
    "upper-case": ("Visit BAD.Example!", "BAD.Example", "bad.example"),
    "bracket-dot": ("scam-example[.]com", "scam-example[.]com", "scam-example.com"),
    "paren-dot": ("bad(.)example", "bad(.)example", "bad.example"),
    "spaced-bracket-dot": ("bad [ . ] example", "bad [ . ] example", "bad.example"),
    "bracket-word-dot": ("bad{dot}example", "bad{dot}example", "bad.example"),
    "spelled-dot": ("bad dot example", "bad dot example", "bad.example"),
    "bracket-chinese-dot": ("bad[点]example", "bad[点]example", "bad.example"),
    "hxxp-scheme": ("hxxp://bad.example/x", "hxxp://bad.example/x", "bad.example"),
    "hxxps-and-brackets": ("hxxps://scam-example[.]com", "hxxps://scam-example[.]com", "scam-example.com"),
    "fullwidth": ("ｂａｄ．ｅｘａｍｐｌｅ", "ｂａｄ．ｅｘａｍｐｌｅ", "bad.example"),
    "ideographic-full-stop": ("访问bad。example领奖", "bad。example", "bad.example"),
    "zero-width-inside": ("bad\u200b.exa\u200dmple", "bad\u200b.exa\u200dmple", "bad.example"),
    "homoglyph": ("ѕсаm-ехаmрlе.соm", "ѕсаm-ехаmрlе.соm", "scam-example.com"),
    "chinese-context": ("请访问scam-example.com获取奖励", "scam-example.com", "scam-example.com"),
    "idn-unicode": ("打开 例子.测试 看看", "例子.测试", "例子.测试"),
    "idn-punycode-of-unicode-entry": (
        "open xn--fsqu00a.xn--0zwm56d",
        "xn--fsqu00a.xn--0zwm56d",
        "xn--fsqu00a.xn--0zwm56d",
    ),
    # Light normalization maps the Cyrillic letters that imitate Latin ones, in text and block list alike.
    "idn-unicode-of-punycode-entry": ("open пример.com", "пример.com", normalize.light("пример.com")),
}


@pytest.mark.parametrize(("value", "evidence", "host"), TRICKS.values(), ids=TRICKS.keys())
def test_obfuscated_domain_is_found(value: str, evidence: str, host: str) -> None:
    assert _found(value) == (evidence, host)


def test_punycode_lookalike_is_decoded_and_caught() -> None:
    # xn--bd-7kc.example is "bаd.example" with a Cyrillic а: decoded and folded, it is bad.example.
    assert _found("login at xn--bd-7kc.example") == ("xn--bd-7kc.example", "bad.example")


@pytest.mark.parametrize(
    "value",
    [
        "notbad.example",  # another domain that ends the same
        "bad.example.org",  # bad.example is only a subdomain here
        "my-bad.example",
        "bad.examples",
        "bad example",
        "the scam-example is a company",
        "help.scam-example.com/takedown",  # allow-listed subdomain
    ],
)
def test_other_domains_and_allowed_ones_are_not_reported(value: str) -> None:
    assert scan(LINKS, msg(text(value))) == []


def test_most_specific_entry_wins() -> None:
    rs = ruleset(rule("links", block=["example.com", "evil.docs.example.com"], allow=["docs.example.com"]))
    found = scan(rs, msg(text("a.example.com b.docs.example.com evil.docs.example.com")))
    assert [m.normalized for m in found] == ["a.example.com", "evil.docs.example.com"]


@pytest.mark.parametrize(("path", "make"), text_field_cases())
def test_links_cover_every_text_bearing_field(path: str, make: MakeMessage) -> None:
    found = only(scan(LINKS, make("visit https://bad.example/win")))
    assert (found.element_path, found.evidence) == (path, "https://bad.example/win")


def test_every_domain_of_a_text_is_reported_once() -> None:
    found = scan(LINKS, msg(text("bad.example, bad.example and scam-example.com")))
    assert [m.normalized for m in found] == ["bad.example", "scam-example.com"]


@pytest.mark.parametrize("entry", ["localhost", "not a domain", "bad..", "http://"])
def test_entries_that_are_not_domains_are_rejected(entry: str) -> None:
    with pytest.raises(RulesError, match="is not a domain name"):
        ruleset(rule("links", block=[entry]))


def test_block_entries_may_be_written_as_urls_or_wildcards() -> None:
    rs = ruleset(rule("links", block=["https://Bad.Example/path", "*.scam-example.com"]))
    assert [m.normalized for m in scan(rs, msg(text("bad.example x.scam-example.com")))] == [
        "bad.example",
        "x.scam-example.com",
    ]


def test_hostile_text_takes_linear_time() -> None:
    page = [
        msg(text(" " * 20_000 + "x")),
        msg(text("a" * 20_000 + " xn--")),
        msg(text("[" + " " * 20_000)),
        msg(text("bad" + " dot" * 5_000)),
    ]
    started = time.perf_counter()
    assert scan(LINKS, *page) == []
    assert time.perf_counter() - started < 1.0


# ---- media URLs, read by default ---------------------------------------------------------------------------


def _image(*urls: str) -> dict[str, object]:
    infos = [{"Type": n + 1, "Size": 9, "Width": 9, "Height": 9, "URL": url} for n, url in enumerate(urls)]
    return elem("TIMImageElem", UUID="u", ImageFormat=1, ImageInfoArray=infos)


BAD_URL = "https://cdn.bad.example/x.png"
MEDIA = {
    "image": (_image("https://cos.example/ok.png", BAD_URL), "MsgBody[0].MsgContent.ImageInfoArray[1].URL"),
    "file": (elem("TIMFileElem", Url=BAD_URL, UUID="f", FileName="x.png"), "MsgBody[0].MsgContent.Url"),
    "sound": (elem("TIMSoundElem", Url=BAD_URL, UUID="s", Second=1), "MsgBody[0].MsgContent.Url"),
    "video": (elem("TIMVideoFileElem", VideoUrl=BAD_URL, VideoUUID="v"), "MsgBody[0].MsgContent.VideoUrl"),
    "thumb": (
        elem("TIMVideoFileElem", VideoUrl="https://ok.example/v", ThumbUrl=BAD_URL),
        "MsgBody[0].MsgContent.ThumbUrl",
    ),
    "custom-json-data": (
        elem("TIMCustomElem", Data='{"type": "card", "url": "https://cdn.bad.example/x.png"}'),
        "MsgBody[0].MsgContent.Data",
    ),
    "custom-json-escaped": (  # only the decoded string shows the domain
        elem("TIMCustomElem", Data='{"url": "https://cdn.bad\\u002eexample/x.png"}'),
        "MsgBody[0].MsgContent.Data#/url",
    ),
    "custom-ext": (elem("TIMCustomElem", Data="{}", Ext=BAD_URL), "MsgBody[0].MsgContent.Ext"),
    "custom-desc": (elem("TIMCustomElem", Data="{}", Desc=f"see {BAD_URL}"), "MsgBody[0].MsgContent.Desc"),
}
_MEDIA_ONLY = ("image", "file", "sound", "video", "thumb")


@pytest.mark.parametrize(("element", "path"), MEDIA.values(), ids=MEDIA.keys())
def test_a_blocked_domain_in_any_url_field_is_caught_by_default(
    element: dict[str, object], path: str
) -> None:
    found = only(scan(LINKS, msg(element)))
    assert (found.element_path, found.normalized) == (path, "cdn.bad.example")
    assert "cdn.bad.example" in found.evidence


@pytest.mark.parametrize("kind", _MEDIA_ONLY)
def test_media_urls_are_read_inside_forwarded_messages(kind: str) -> None:
    element, path = MEDIA[kind]
    found = only(scan(LINKS, msg(text("look"), forward([text("hi")], [element]))))
    assert found.element_path == f"MsgBody[1].MsgContent.MsgList[1].{path}"


@pytest.mark.parametrize("kind", _MEDIA_ONLY)
def test_fields_narrow_what_a_links_rule_reads(kind: str) -> None:
    element, path = MEDIA[kind]
    text_only = ruleset(rule("links", "text-only", block=["bad.example"], fields=["Text"]))
    message = msg(element, text("and bad.example"))
    assert [m.element_path for m in scan(text_only, message)] == ["MsgBody[1].MsgContent.Text"]
    field = path.rsplit(".", 1)[-1]
    url_only = ruleset(rule("links", "url-only", block=["bad.example"], fields=[field]))
    assert [m.element_path for m in scan(url_only, message)] == [path]


def test_elements_narrow_the_media_urls_too() -> None:
    rs = ruleset(rule("links", block=["bad.example"], elements=["TIMImageElem"]))
    video = MEDIA["video"][0]
    found = scan(rs, msg(text("bad.example"), MEDIA["image"][0], video))
    assert [m.element_path for m in found] == ["MsgBody[1].MsgContent.ImageInfoArray[1].URL"]


def test_rules_reading_media_urls_by_default_and_by_name_each_report_once() -> None:
    rs = ruleset(
        rule("links", "default", block=["bad.example"]),
        rule("links", "named", block=["bad.example"], fields=["URL"]),
        rule("links", "text", block=["bad.example"], fields=["Text"]),
    )
    found = scan(rs, msg(text("bad.example"), MEDIA["image"][0], key="a"), msg(MEDIA["file"][0], key="b"))
    assert [(m.msg_key, m.rule_id, m.element_path.rsplit(".", 1)[-1]) for m in found] == [
        ("a", "default", "Text"),
        ("a", "text", "Text"),
        ("a", "default", "URL"),
        ("a", "named", "URL"),
        ("b", "default", "Url"),
    ]


def test_ordinary_media_urls_are_not_reported() -> None:
    page = [msg(_image("https://cos.ap-guangzhou.myqcloud.com/a.png")), msg(MEDIA["file"][0] | {})]
    assert only(scan(LINKS, *page)).element_path == "MsgBody[0].MsgContent.Url"


# ---- Chinese scripts ---------------------------------------------------------------------------------------


def test_traditional_dot_word_is_a_dot() -> None:
    assert _found("bad[點]example") == ("bad[點]example", "bad.example")
    assert _found("bad 點 example") == ("bad 點 example", "bad.example")


def test_domains_are_compared_in_the_script_they_are_written_in() -> None:
    # An IDN written in Traditional Chinese is another domain: keywords fold scripts, domains do not.
    assert scan(LINKS, msg(text("打開 例子.測試 看看"))) == []
    assert _found("請訪問bad.example領獎") == ("bad.example", "bad.example")
