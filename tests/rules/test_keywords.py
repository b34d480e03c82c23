"""``keywords``: evasion tricks (one test each, English and Chinese), boundaries, allow lists, every field."""

from __future__ import annotations

import random
import time

import pytest

from rules import RulesError
from tests.rules.helpers import MakeMessage, elem, msg, only, rule, ruleset, scan, text, text_field_cases

WORDS = ["free crypto", "buy followers", "赌博", "代开发票", "六合彩", "免费vpn", "大额贷款"]
RULES = ruleset(rule("keywords", "spam", words=WORDS))


def _hit(value: str) -> tuple[str, str]:
    found = only(scan(RULES, msg(text(f"hey {value} ok"))))
    assert (found.rule_id, found.rule_type, found.action) == ("spam", "keywords", "recall")
    assert found.element_path == "MsgBody[0].MsgContent.Text"
    return found.evidence, found.normalized


# Each trick: (what the user wrote, what evidence shows, the normalized form that matched).
TRICKS = {
    "plain-en": ("free crypto", "free crypto"),
    "plain-zh": ("赌博", "赌博"),
    "nfkc-en": ("𝐟𝐫𝐞𝐞 𝐜𝐫𝐲𝐩𝐭𝐨", "free crypto"),  # mathematical bold letters
    "nfkc-zh": ("\uf9d1合彩", "六合彩"),  # CJK compatibility ideograph for 六
    "case-en": ("FREE Crypto", "free crypto"),
    "case-zh": ("免费VPN", "免费vpn"),
    "fullwidth-en": ("ｆｒｅｅ　ｃｒｙｐｔｏ", "free crypto"),
    "fullwidth-zh": ("免费ＶＰＮ", "免费vpn"),
    "zero-width-en": ("fr\u200bee cry\u200dpto", "free crypto"),
    "zero-width-zh": ("赌\u200b博", "赌博"),
    "invisible-en": ("free\u00ad crypto\u2060", "free crypto"),  # soft hyphen, word joiner
    "invisible-zh": ("代\ufeff开\u3164发票", "代开发票"),  # BOM, Hangul filler
    "dots-en": ("f.r.e.e crypto", "free crypto"),
    "dots-zh": ("代.开.发.票", "代开发票"),
    "spaces-en": ("f r e e crypto", "free crypto"),
    "spaces-zh": ("赌 博", "赌博"),
    "mixed-separators-en": ("b-u_y f*o*l*l*o*w*e*r*s", "buyfollowers"),  # one run of single letters
    "fullwidth-punctuation-zh": ("赌，博", "赌博"),
    "emoji-separators-en": ("f🔥r🔥e🔥e crypto", "free crypto"),
    "emoji-separators-zh": ("六🎲合🎲彩", "六合彩"),
    "homoglyph-en": ("frее сrурtо", "free crypto"),  # Cyrillic е, с, у, р, о
    "homoglyph-zh": ("⼤额贷款", "大额贷款"),  # Kangxi radical for 大
    "accents-en": ("frée crÿpto", "free crypto"),
    "joined-words-en": ("freecrypto", "freecrypto"),
    "traditional-zh": ("代開發票", "代开发票"),  # Traditional script, the list is Simplified
    "traditional-separated-zh": ("賭.博", "赌博"),
    "tilde-inside-word-en": ("fr~ee crypto", "free crypto"),
    "asterisk-inside-word-en": ("free cr*ypto", "free crypto"),
    "underscore-inside-word-en": ("fr_ee cryp_to", "free crypto"),
    "hyphens-inside-words-en": ("fr-ee cry-pto", "free crypto"),
    "emoji-inside-word-en": ("fr🔥ee crypto", "free crypto"),
    "emoji-between-words-en": ("free🔥crypto", "free crypto"),
    "joiner-run-inside-word-en": ("b~*~uy fol_lo-wers", "buy followers"),
    "underscores-hyphens-en": ("f_r_e_e c-r-y-p-t-o", "freecrypto"),  # one run of single letters
}


@pytest.mark.parametrize(("written", "normalized"), TRICKS.values(), ids=TRICKS.keys())
def test_evasion_trick_is_caught_with_original_evidence(written: str, normalized: str) -> None:
    evidence, found = _hit(written)
    assert found == normalized
    assert evidence == written.strip(
        "\u2060"
    )  # the span the user wrote (a trailing invisible is not part of it)


def test_separator_collapsing_does_not_glue_real_words() -> None:
    # Squashed, "a bit of reeds" holds "free": only runs of three or more single letters are joined.
    rs = ruleset(rule("keywords", words=["free", "bitof"]))
    assert scan(rs, msg(text("a bit of reeds"), text("fr ee"), text("plan a b"))) == []


def test_joiners_glue_words_only_for_whole_word_matches() -> None:
    # "fr~ee" is glued, but a glued form only ever matches whole words: "js_camera" does not hold "camera"'s
    # neighbour "scam" for a whole-word rule, and whole_word: false rules never look at the glued form.
    rs = ruleset(
        rule("keywords", "whole", words=["free", "scam"]),
        rule("keywords", "inside", words=["scam"], whole_word=False),
    )
    assert [m.rule_id for m in scan(rs, msg(text("fr~ee")))] == ["whole"]
    assert scan(rs, msg(text("js_camera is_camera_on ops-campaign"))) == []
    assert scan(rs, msg(text("fr ee, fr - ee, carefree-ish"))) == []


def test_an_allowed_phrase_hides_its_glued_form_too() -> None:
    rs = ruleset(rule("keywords", words=["free crypto"], allow=["free crypto course"]))
    assert (
        scan(rs, msg(text("free-crypto course"), text("fr~ee crypto course"), text("free~crypto course")))
        == []
    )
    assert only(scan(rs, msg(text("free~crypto coarse")))).evidence == "free~crypto"


def test_a_place_found_in_both_forms_is_reported_once() -> None:
    found = only(scan(RULES, msg(text("free-crypto"))))
    assert (found.evidence, found.normalized) == ("free-crypto", "free crypto")


def test_traditional_list_entries_match_simplified_text_and_the_other_way_round() -> None:
    traditional = ruleset(rule("keywords", "t", words=["網絡賭場", "發票"]))
    simplified = ruleset(rule("keywords", "s", words=["网络赌场", "发票"]))
    for rs in (traditional, simplified):
        found = scan(rs, msg(text("网络赌场开业"), text("網絡賭場開業"), text("代开發票"), text("代開发票")))
        assert [(m.evidence, m.normalized) for m in found] == [
            ("网络赌场", "网络赌场"),
            ("網絡賭場", "网络赌场"),
            ("發票", "发票"),
            ("发票", "发票"),
        ]


def test_traditional_allow_list_entries_are_folded_too() -> None:
    rs = ruleset(rule("keywords", words=["赌博"], allow=["賭博遊戲機"]))
    assert scan(rs, msg(text("赌博游戏机"), text("賭博遊戲機"))) == []
    assert only(scan(rs, msg(text("賭博網站")))).normalized == "赌博"


def test_chinese_is_joined_across_any_separator_a_known_trade_off() -> None:
    # Chinese has no spaces, so separators between Chinese characters are dropped: "赌，博" is caught, and so,
    # across a sentence break, is "我不赌。博物馆". Allow-list such phrases if they turn up.
    assert only(scan(RULES, msg(text("我不赌。博物馆")))).evidence == "赌。博"
    rs = ruleset(rule("keywords", words=["赌博"], allow=["赌博物馆"]))
    assert scan(rs, msg(text("我不赌。博物馆"))) == []


def test_latin_words_match_whole_words_only_by_default() -> None:
    rs = ruleset(rule("keywords", words=["scam"]))
    assert scan(rs, msg(text("scammer"), text("a scampi dish"))) == []
    assert only(scan(rs, msg(text("total SCAM!")))).evidence == "SCAM"


def test_whole_word_off_matches_inside_words() -> None:
    rs = ruleset(rule("keywords", words=["scam"], whole_word=False))
    assert only(scan(rs, msg(text("scammers here")))).evidence == "scam"


def test_chinese_matches_without_word_boundaries() -> None:
    found = only(scan(RULES, msg(text("我们一起去赌博吧"))))
    assert (found.evidence, found.normalized) == ("赌博", "赌博")
    # A Latin keyword next to Chinese counts as a whole word: the script changes there.
    assert only(scan(RULES, msg(text("快来free crypto领取")))).normalized == "free crypto"


def test_allow_list_hides_known_false_positives_in_english() -> None:
    rs = ruleset(rule("keywords", words=["scam"], whole_word=False, allow=["scampi", "scamper"]))
    assert scan(rs, msg(text("Scampi tonight? The cat will scamper off."))) == []
    assert only(scan(rs, msg(text("scampi and a scam")))).evidence == "scam"


def test_allow_list_hides_known_false_positives_in_chinese() -> None:
    rs = ruleset(rule("keywords", words=["赌博"], allow=["反赌博"]))
    assert scan(rs, msg(text("参加反赌博宣传活动"))) == []
    assert only(scan(rs, msg(text("反赌博，不要赌博")))).evidence == "赌博"


def test_allow_list_of_one_rule_does_not_hide_another_rules_match() -> None:
    rs = ruleset(
        rule("keywords", "lenient", words=["scam"], whole_word=False, allow=["scampi"]),
        rule("keywords", "strict", words=["scampi"], action="flag"),
    )
    assert [(m.rule_id, m.action) for m in scan(rs, msg(text("scampi")))] == [("strict", "flag")]


@pytest.mark.parametrize(("path", "make"), text_field_cases())
def test_keywords_cover_every_text_bearing_field(path: str, make: MakeMessage) -> None:
    found = only(scan(RULES, make("please buy followers now")))
    assert (found.element_path, found.evidence) == (path, "buy followers")


def test_keywords_in_escaped_json_are_found_decoded() -> None:
    found = only(scan(RULES, msg(elem("TIMCustomElem", Data='{"t": "\\u4ee3\\u5f00\\u53d1\\u7968"}'))))
    assert (found.element_path, found.evidence) == ("MsgBody[0].MsgContent.Data#/t", "代开发票")


def test_fields_and_elements_narrow_what_a_rule_reads() -> None:
    only_text = ruleset(rule("keywords", words=["free crypto"], elements=["TIMTextElem"]))
    message = msg(text("free crypto"), elem("TIMCustomElem", Data="free crypto"))
    assert [m.element_path for m in scan(only_text, message)] == ["MsgBody[0].MsgContent.Text"]
    desc_only = ruleset(rule("keywords", words=["free crypto"], fields=["Desc"]))
    message = msg(elem("TIMCustomElem", Data="free crypto", Desc="free crypto"), text("free crypto"))
    assert [m.element_path for m in scan(desc_only, message)] == ["MsgBody[0].MsgContent.Desc"]


def test_non_text_fields_are_read_only_when_named() -> None:
    image = elem("TIMImageElem", UUID="x", ImageInfoArray=[{"Type": 1, "URL": "https://cdn/free-crypto.png"}])
    assert scan(RULES, msg(image)) == []
    rs = ruleset(rule("keywords", words=["free crypto"], fields=["URL"]))
    assert only(scan(rs, msg(image))).element_path == "MsgBody[0].MsgContent.ImageInfoArray[0].URL"


def test_several_rules_and_messages_in_one_batch() -> None:
    rs = ruleset(
        rule("keywords", "en", words=["free crypto"]), rule("keywords", "zh", words=["赌博"], action="flag")
    )
    found = scan(rs, msg(text("free crypto"), key="a"), msg(text("ok"), key="b"), msg(text("赌博"), key="c"))
    assert sorted((m.msg_key, m.rule_id, m.action) for m in found) == [
        ("a", "en", "recall"),
        ("c", "zh", "flag"),
    ]


def test_keyword_without_letters_is_rejected_with_its_line() -> None:
    with pytest.raises(RulesError) as caught:
        ruleset(rule("keywords", words=["ok", "!!!"]))
    assert "'!!!' has no letters or digits" in str(caught.value)


def test_twenty_thousand_words_compile_and_match_quickly() -> None:
    rng = random.Random(5)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(5, 10))) for _ in range(20_000)}
    words |= {"".join(chr(rng.randint(0x5000, 0x5FFF)) for _ in range(3)) for _ in range(5_000)}
    started = time.perf_counter()
    rs = ruleset(rule("keywords", words=sorted(words)))
    target = sorted(words)[1234]
    found = only(scan(rs, msg(text(f"look: {'.'.join(target)}!"))))
    assert found.normalized == target
    assert time.perf_counter() - started < 10
