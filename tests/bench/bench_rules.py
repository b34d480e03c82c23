"""Rule engine throughput against a naive baseline, on a generated mixed English/Chinese corpus.

The corpus is built in code from a fixed seed: chat messages in English, Chinese and both, with text, custom
(JSON), forwarded (nested two levels), image, file, sound, location and face elements and CloudCustomData;
a few percent carry spam, some of it disguised (full-width, zero-width, separators, homoglyphs). The rule
set has a 20,000-word keyword list, 200 regexes, a domain block list, and custom, element and flood rules.

The baseline does what a first attempt would: for every text field, ``word in text`` for each word and
``re.search`` for each regex, with no normalization at all (so it also misses every disguised word). Both
figures count the same bytes: the UTF-8 text of every text-bearing field. The engine's time includes
walking the message, normalization, the rules and building matches. It runs twice: with the baseline's
work (the word list and the regexes: the issue's target, >= 500x and >= 20 MB/s) and with the whole rule
set (links, custom, element and flood rules on top).

The Traditional Chinese rows measure the Simplified fold (``normalize.simplified``) against the same work
without it, in the same run: the light and compact forms of pages of fields (ASCII, Simplified,
Traditional and mixed text), and the whole scan of the chat corpus rewritten in Traditional Chinese (OpenCC
``s2t``) against the corpus as written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import opencc

from rules import RuleSet, load_text, normalize
from rules.page import COMPILED, walk
from tests.bench import Row
from worker.tim.models import ConversationKind, Message

SEED = 20240611
WORDS = 20_000
REGEXES = 200
MESSAGES = 12_000
LONG_MESSAGES = 2_000
BASELINE_MESSAGES = 150
PAGE = 100  # messages per history page


def _split(words: str) -> list[str]:
    return words.split()


_EN = _split(
    """
the be to of and a in that have it for not on with he as you do at this but his by from they we say
her she or an will my one all would there their what so up out if about who get which go me when
make can like time no just him know take people into year your good some could them see other than
then now look only come its over think also back after use two how our work first well way even new
want because any these give day most us is are was were been has had said did hello thanks please
today tomorrow meeting photo video game play team price order shop deal send check link group chat
friend love happy birthday weekend dinner lunch coffee movie music travel flight hotel room school
class exam homework office project report update issue fix release morning night great sure okay
maybe later call home
"""
)
_CN = _split(
    """
我们 你们 他们 今天 明天 昨天 时候 什么 怎么 为什么 可以 没有 这个 那个 一下
知道 觉得 喜欢 朋友 工作 学习 吃饭 睡觉 开会 项目 报告 问题 电影 音乐 旅游
周末 生日 快乐 谢谢 不客气 好的 没问题 大家 一起 公司 老师 学生 同学 孩子
父母 医院 银行 地铁 天气 下雨 晴天 手机 电脑 照片 视频 游戏 比赛 价格 订单
购物 快递 已经 还是 因为 所以 但是 如果 虽然 然后 现在 以后 以前 地方 东西
事情 时间 需要 希望 准备 开始 结束 发现 告诉 回家 上班 下班 早上 晚上 中午
"""
)
_SYLLABLES = _split(
    """
ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu ka ke ki ko ku la le li
lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va
ve vi vo vu za ze zi zo zu ar er ir or ur an en in on un ex ax ox
"""
)
_SPAM = ["free crypto", "buy followers", "赌博", "代开发票", "网络赌场", "刷单返利"]
_DISGUISES: list[Callable[[str], str]] = [
    str.strip,  # as written
    lambda w: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in w),  # full-width
    "\u200b".join,  # zero-width spaces
    lambda w: ".".join(w.replace(" ", "")),  # f.r.e.e.c.r.y.p.t.o
    str.upper,
    lambda w: w.replace("e", "е").replace("o", "о"),  # Cyrillic homoglyphs
]


def _keyword_chars(rng: random.Random) -> str:
    # Keywords use characters the chat vocabulary rarely does, so that hits stay about as rare as spam is.
    common = set("".join(_CN))
    pool = [chr(cp) for cp in range(0x5000, 0x6000) if chr(cp) not in common]
    return "".join(rng.sample(pool, 600))


def word_list(rng: random.Random, count: int = WORDS) -> list[str]:
    """Plausible English words and phrases (60%) and Chinese words (40%), the demo's spam words included."""
    words: set[str] = set(_SPAM)
    while len(words) < count * 0.6:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(3, 4)))
        if rng.random() < 0.15:
            word += " " + "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))
        words.add(word)
    chars = _keyword_chars(rng)
    while len(words) < count:
        words.add("".join(rng.choice(chars) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def regex_list(rng: random.Random, count: int = REGEXES) -> list[str]:
    """Moderation-like patterns: contact handles, phone numbers, word variants, Chinese phrases."""
    chars = _keyword_chars(rng)
    shapes: list[Callable[[str, str], str]] = [
        lambda w, c: rf"\b{w}\s*\d{{3,}}",
        lambda w, c: rf"{w}\s*[:：]\s*[a-z0-9_-]{{6,}}",
        lambda w, c: rf"{c}.{{0,4}}\d{{2,}}",
        lambda w, c: rf"\b(?:buy|sell|cheap)\s+{w}s?\b",
        lambda w, c: rf"{w}[._-]?{w[::-1]}",
        lambda w, c: rf"1[3-9]\d{{9}}{w[:2]}",
        lambda w, c: rf"{c}[^\s]{{0,3}}{c[::-1]}",
        lambda w, c: rf"\b{w}(?:ing|ed|er)\b",
    ]
    out = [r"(?:wx|vx|qq|微信)\s*[:：]\s*[a-z0-9_-]{6,}"]
    for i in range(count - 1):
        word = "".join(rng.choice(_SYLLABLES) for _ in range(3))
        han = "".join(rng.choice(chars) for _ in range(2))
        out.append(shapes[i % len(shapes)](word, han))
    return out


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.5:
        text = " ".join(rng.choice(_EN) for _ in range(rng.randint(3, 30)))
        return text.capitalize() + rng.choice([".", "!", "?", "", " :)", "..."])
    text = "".join(rng.choice(_CN) for _ in range(rng.randint(2, 16)))
    if rng.random() < 0.3:
        text += " " + " ".join(rng.choice(_EN) for _ in range(rng.randint(1, 5)))
    return text + rng.choice(["。", "！", "？", "", "～", "，好吗？"])


def _text(rng: random.Random) -> str:
    text = _sentence(rng)
    roll = rng.random()
    if roll < 0.03:
        text += " " + rng.choice(_DISGUISES)(rng.choice(_SPAM))
    elif roll < 0.04:
        text += rng.choice([" see hxxp://www.scam-example[.]com/x", " 访问 bad。example", " wx: abc12345"])
    return text


def _elem(kind: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"MsgType": kind, "MsgContent": content}


def _body(rng: random.Random, depth: int = 0) -> list[dict[str, Any]]:
    roll = rng.random()
    body = [_elem("TIMTextElem", {"Text": _text(rng)})]
    if roll < 0.10:
        body.append(_elem("TIMFaceElem", {"Index": rng.randint(0, 200), "Data": "face"}))
    elif roll < 0.18:
        card = {"type": "promo", "card": {"title": _sentence(rng), "text": _text(rng)}}
        body = [
            _elem(
                "TIMCustomElem", {"Data": json.dumps(card, ensure_ascii=rng.random() < 0.3), "Desc": "card"}
            )
        ]
    elif roll < 0.24 and depth < 2:
        items = [
            {"From_Account": f"u{rng.randint(1, 50)}", "MsgBody": _body(rng, depth + 1)} for _ in range(3)
        ]
        relay = {
            "Title": "聊天记录",
            "MsgNum": len(items),
            "CompatibleText": "请升级",
            "AbstractList": [_sentence(rng) for _ in range(2)],
            "MsgList": items,
        }
        body = [_elem("TIMRelayElem", relay)]
    elif roll < 0.29:
        uuid = f"{rng.getrandbits(64):016x}"
        infos = [{"Type": t, "Size": 1000, "Width": 100, "Height": 100, "URL": f"https://cos.example/{uuid}/{t}"}
                 for t in (1, 2, 3)]  # fmt: skip
        body.append(_elem("TIMImageElem", {"UUID": uuid, "ImageFormat": 1, "ImageInfoArray": infos}))
    elif roll < 0.33:
        name = rng.choice(["report.pdf", "photo.jpg", "setup.exe", "合同.docx", "notes.txt"])
        body.append(
            _elem(
                "TIMFileElem", {"Url": "https://cos.example/f", "UUID": "f1", "FileSize": 9, "FileName": name}
            )
        )
    elif roll < 0.36:
        body = [_elem("TIMLocationElem", {"Desc": _sentence(rng), "Latitude": 22.5, "Longitude": 114.0})]
    elif roll < 0.39:
        body = [_elem("TIMSoundElem", {"Url": "https://cos.example/s", "UUID": "s1", "Size": 9, "Second": 3})]
    return body


def corpus(rng: random.Random, count: int = MESSAGES) -> list[Message]:
    """``count`` messages from a few dozen senders over a few hours."""
    out = []
    for n in range(count):
        ccd = (
            json.dumps({"client": "app", "note": _sentence(rng)}, ensure_ascii=False)
            if rng.random() < 0.2
            else ""
        )
        out.append(
            Message(
                kind=ConversationKind.C2C,
                msg_key=f"{n}_{rng.getrandbits(32)}",
                from_account=f"user{rng.randint(1, 40)}",
                timestamp=1_700_000_000 + n * 2,
                seq=n,
                body=_body(rng),
                cloud_custom_data=ccd,
            )
        )
    return out


def rule_file(words: Sequence[str], patterns: Sequence[str], *, words_and_regexes_only: bool = False) -> str:
    """A rule file: the word list, the regexes split over four rules, and one rule of each other type.

    ``words_and_regexes_only``: without the other types, so that the engine does the baseline's work.
    """
    regex_rules = [
        {"id": f"regex-{k}", "type": "regex", "action": "flag", "patterns": list(patterns[k::4])}
        for k in range(4)
    ]
    domains = [f"bad{k}.example" for k in range(500)] + ["scam-example.com", "bad.example"]
    rules: list[dict[str, Any]] = [
        {"id": "words", "type": "keywords", "action": "recall", "words": list(words)},
        *regex_rules,
        {"id": "links", "type": "links", "action": "recall", "block": domains},
        {"id": "cards", "type": "custom", "action": "flag", "path": "card.text", "keywords": _SPAM},
        {"id": "files", "type": "element", "action": "recall", "file_extensions": ["exe", "apk"]},
        {"id": "flood", "type": "flood", "action": "flag", "count": 5, "seconds": 60},
    ]
    if words_and_regexes_only:
        rules = [rule for rule in rules if rule["type"] in ("keywords", "regex")]
    return json.dumps({"version": 1, "rulesets": {"default": {"rules": rules}}}, ensure_ascii=False)


def text_fields(message: Message) -> list[str]:
    """The text-bearing fields of a message: what both the engine and the baseline are timed over."""
    return [f.text for f in walk(message).fields if f.textual]


def _baseline(messages: Sequence[Message], words: Sequence[str], patterns: Sequence[re.Pattern[str]]) -> int:
    hits = 0
    for message in messages:
        for text in text_fields(message):
            hits += sum(1 for w in words if w in text)
            hits += sum(1 for p in patterns if p.search(text) is not None)
    return hits


def long_corpus(rng: random.Random, count: int = LONG_MESSAGES) -> list[Message]:
    """Text messages of about 1 KB (a dozen sentences), spam as often per message as in :func:`corpus`."""
    out = []
    for n in range(count):
        value = " ".join(_sentence(rng) for _ in range(12))
        if rng.random() < 0.03:
            value += " " + rng.choice(_DISGUISES)(rng.choice(_SPAM))
        body = [_elem("TIMTextElem", {"Text": value})]
        out.append(
            Message(ConversationKind.C2C, f"long-{n}", f"user{n % 40}", 1_700_000_000 + n, n, body=body)
        )
    return out


def run() -> list[Row]:
    """Measure the engine and the baseline on the same corpora."""
    rng = random.Random(SEED)
    words = word_list(rng)
    patterns = regex_list(rng)
    ruleset = load_text(rule_file(words, patterns), "bench.json").get("default")
    baseline_work = load_text(rule_file(words, patterns, words_and_regexes_only=True), "bench.json").get(
        "default"
    )
    compiled = [re.compile(p) for p in patterns]
    name = "naive: `in` per word, re.search per regex"

    messages = corpus(rng)
    text_bytes = sum(len(t.encode()) for m in messages for t in text_fields(m))
    same_work, _ = _time_engine(baseline_work, messages, PAGE)
    paged, paged_matches = _time_engine(ruleset, messages, PAGE)
    single, single_matches = _time_engine(ruleset, messages, 1)
    if paged_matches != single_matches:
        raise AssertionError(f"paged scan found {paged_matches} matches, one by one {single_matches}")
    base_bytes, base_count, base_seconds = _time_baseline(messages, words, compiled)
    # KB/s rather than MB/s: the baseline's figure would round to 0.1 MB/s.
    base_kbs, base_rate = base_bytes / base_seconds / 1e3, base_count / base_seconds

    long = long_corpus(rng)
    long_bytes = sum(len(t.encode()) for m in long for t in text_fields(m))
    long_seconds, _ = _time_engine(ruleset, long, PAGE)
    long_base_bytes, _, long_base_seconds = _time_baseline(long, words, compiled)

    chat = f"chat corpus ({text_bytes / len(messages):.0f} B of text a message)"
    words_rules = f"{WORDS:,} words + {REGEXES} regexes"
    all_rules = "whole rule set"
    walk = "compiled" if COMPILED else "pure Python"
    return [
        Row(
            "rules",
            f"{chat}, {words_rules}: text, pages of {PAGE}",
            text_bytes / same_work / 1e3,
            "KB/s",
            base_kbs,
            name,
        ),
        Row(
            "rules",
            f"{chat}, {words_rules}: messages, pages of {PAGE}",
            len(messages) / same_work,
            "msg/s",
            base_rate,
            name,
        ),
        Row(
            "rules",
            f"{chat}, {all_rules}: text, pages of {PAGE}",
            text_bytes / paged / 1e3,
            "KB/s",
            base_kbs,
            name,
        ),
        Row(
            "rules",
            f"{chat}, {all_rules}: text, one at a time",
            text_bytes / single / 1e3,
            "KB/s",
            base_kbs,
            name,
        ),
        Row(
            "rules",
            f"long messages ({long_bytes / len(long):.0f} B a message), {all_rules}: text, pages of {PAGE}",
            long_bytes / long_seconds / 1e3,
            "KB/s",
            long_base_bytes / long_base_seconds / 1e3,
            name,
        ),
        Row(
            "rules",
            f"chat corpus, {all_rules}: matches in {len(messages)} messages ({walk} walk)",
            paged_matches,
            "matches",
        ),
        *script_rows(ruleset, messages, paged_matches),
    ]


def to_traditional(value: Any, convert: Callable[[str], str]) -> Any:
    """``value`` (a message body, or any part of one) with every string converted by ``convert``."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {k: to_traditional(v, convert) for k, v in value.items()}
    if isinstance(value, list):
        return [to_traditional(v, convert) for v in value]
    return value


def script_rows(ruleset: RuleSet, messages: Sequence[Message], matches: int) -> list[Row]:
    """The Simplified fold's cost: normalizing pages with and without it, and scanning Traditional text
    against ``messages`` as written (on which ``ruleset`` found ``matches``)."""
    s2t = opencc.OpenCC("s2t")

    def convert(text: str) -> str:
        return str(s2t.convert(text))

    fields = [t for m in messages for t in text_fields(m)]
    cjk = [t for t in fields if not t.isascii()]
    traditional = [convert(t) for t in cjk]
    corpora = {
        "ASCII": [t for t in fields if t.isascii()],
        "Simplified": cjk,
        "Traditional": traditional,
        "mixed (chat corpus, every other Chinese field Traditional)": [
            convert(t) if not t.isascii() and n % 2 else t for n, t in enumerate(fields)
        ],
    }
    rows = []
    for name, texts in corpora.items():
        pages = [normalize.join_fields(texts[k : k + PAGE]) for k in range(0, len(texts), PAGE)]
        size = sum(len(p.encode()) for p in pages)
        folded, plain = _interleaved(
            functools.partial(_run_pages, normalize.light_and_compact, pages),
            functools.partial(_run_pages, normalize.light_and_compact_unfolded, pages),
        )
        rows.append(
            Row(
                "rules",
                f"light + compact forms of {name} text, pages of {PAGE} fields: with the Simplified fold",
                size / folded / 1e6,
                "MB/s",
                size / plain / 1e6,
                "the same without it",
            )
        )
    rewritten = [
        dataclasses.replace(
            m,
            body=tuple(to_traditional(list(m.body), convert)),
            cloud_custom_data=convert(m.cloud_custom_data),
        )
        for m in messages
    ]
    # Both corpora again, turn about, so that the machine's drift hits both alike.
    seconds, written = _interleaved(
        functools.partial(_scan, ruleset, rewritten), functools.partial(_scan, ruleset, messages)
    )
    found = _scan(ruleset, rewritten)
    rows += [
        Row(
            "rules",
            f"chat corpus in Traditional Chinese (OpenCC s2t), whole rule set: messages, pages of {PAGE}",
            len(rewritten) / seconds,
            "msg/s",
            len(messages) / written,
            "the corpus as written",
        ),
        Row(
            "rules",
            f"chat corpus in Traditional Chinese, whole rule set: matches in {len(rewritten)} messages",
            found,
            "matches",
            matches,
            "the corpus as written",
        ),
    ]
    return rows


def _run_pages(function: Callable[[str], object], pages: Sequence[str]) -> None:
    for page in pages:
        function(page)


def _scan(ruleset: RuleSet, messages: Sequence[Message]) -> int:
    """The matches of one scan of ``messages``, fed a page at a time."""
    scanner = ruleset.scanner()
    found = sum(len(scanner.feed_many(messages[k : k + PAGE])) for k in range(0, len(messages), PAGE))
    return found + len(scanner.finish())


def _interleaved(
    first: Callable[[], object], second: Callable[[], object], runs: int = 5
) -> tuple[float, float]:
    """Best seconds of ``first`` and of ``second`` over ``runs`` runs each, taken turn about."""
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for k, function in enumerate((first, second)):
            started = time.perf_counter()
            function()
            best[k] = min(best[k], time.perf_counter() - started)
    return best[0], best[1]


def _time_baseline(
    messages: Sequence[Message], words: Sequence[str], patterns: Sequence[re.Pattern[str]]
) -> tuple[int, int, float]:
    """Bytes, messages and seconds (best of three: each run takes as long as ten of the engine's) of the
    baseline over a sample spread across ``messages``."""
    sample = messages[:: max(1, len(messages) // BASELINE_MESSAGES)]
    sample_bytes = sum(len(t.encode()) for m in sample for t in text_fields(m))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        _baseline(sample, words, patterns)
        best = min(best, time.perf_counter() - started)
    return sample_bytes, len(sample), best


def _time_engine(ruleset: RuleSet, messages: Sequence[Message], page: int) -> tuple[float, int]:
    """Best of five: seconds to scan ``messages`` fed ``page`` at a time, and the number of matches."""
    best, matches = float("inf"), 0
    for _ in range(5):
        scanner = ruleset.scanner()
        started = time.perf_counter()
        found = 0
        for k in range(0, len(messages), page):
            found += len(scanner.feed_many(messages[k : k + page]))
        found += len(scanner.finish())
        best = min(best, time.perf_counter() - started)
        matches = found
    return best, matches
