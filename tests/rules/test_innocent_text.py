"""Innocent text full of joiners (``_ - ~ *``, emoji) and Traditional Chinese: the shipped rules stay quiet.

Gluing words across joiners (``fr~ee`` → ``free``) and folding Traditional Chinese to Simplified catch more
disguised spam; these are the everyday uses of the same characters that must not become matches of
``rules/examples/default.yaml``: identifiers, hyphenated words, markdown, paths, ranges, emoji in sentences.
"""

from __future__ import annotations

import pytest

from rules import DEFAULT_RULES_PATH, load_file
from tests.rules.helpers import elem, msg, scan, text

DEFAULT = load_file(DEFAULT_RULES_PATH).get("default")

INNOCENT = [
    # identifiers and code
    "my_variable_name = get_free_space()",
    "snake_case_identifier and another_one",
    "js_camera is_camera_on ops-campaign analysis_camp",  # glued, each would hold "scam"
    "file_name-v2~backup.tar.gz",
    "run make free-crypto-course-site",  # "free crypto course" is on the demo's allow list
    # hyphenated words
    "Please e-mail the co-op about the x-ray and the t-shirt",
    "well-known part-time self-employed re-enter buy-in",
    "crypto-currency news: bitcoin-ethereum spread",
    "vip-lounge, signals-group-chat, profit-sharing",
    # markdown
    "This is *really* important, see **bold** and _italics_",
    "~~strikethrough~~ and `code_span`",
    "- item one\n- item two\n* item three",
    # paths and ranges
    "ls ~/projects/free-range && cd ~/docs",
    "Prices range 5~10 dollars, open 9~5, ships in 2-3 days",
    "A~B 两个方案，今天~明天都可以",
    # emoji in sentences
    "Great game tonight 🔥🔥 see you 😀 at dinner",
    "free 🎉 tickets? crypto 📉 again",
    "会议🔥开始了，大家🙂准备好",
    # Traditional Chinese
    "我們明天開會，記得帶電腦。",
    "這個週末一起去看電影吧！",
    "發票已經寄出，請查收。",
    "網絡很慢，遊戲一直斷線",
]


@pytest.mark.parametrize("value", INNOCENT)
def test_innocent_text_matches_no_default_rule(value: str) -> None:
    assert scan(DEFAULT, msg(text(value))) == []


def test_innocent_text_matches_no_default_rule_in_custom_elements_either() -> None:
    messages = [msg(elem("TIMCustomElem", Data=value, Desc=value, Ext=value)) for value in INNOCENT]
    assert scan(DEFAULT, *messages) == []


def test_the_same_tricks_in_spam_are_caught() -> None:
    spam = ["fr~ee cr*ypto here", "buy_fol-lowers now", "網絡賭場 註冊送彩金", "專業代開發票"]
    found = scan(DEFAULT, *(msg(text(value), key=f"k{n}") for n, value in enumerate(spam)))
    assert [(m.msg_key, m.rule_id, m.evidence) for m in found] == [
        ("k0", "spam-phrases-en", "fr~ee cr*ypto"),
        ("k1", "spam-phrases-en", "buy_fol-lowers"),
        ("k2", "gambling-invoices-zh", "網絡賭場"),
        ("k3", "gambling-invoices-zh", "代開發票"),
    ]
