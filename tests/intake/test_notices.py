"""Notices to reporters: templates (loading, checks, fallbacks) and sending them through the Chat emulator."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ADMIN
from worker.emulator.seed import import_accounts
from worker.intake.notices import (
    OPTIONAL_OUTCOMES,
    REQUIRED_OUTCOMES,
    VALUE_LIMIT,
    Outcome,
    TemplateError,
    Templates,
    load_templates,
    parse_templates,
    render,
    send_notice,
    sendmsg_request,
)
from worker.tim.client import TimClient
from worker.tim.errors import TimApiError
from worker.tim.history import iter_c2c_history
from worker.tim.models import Message

VALUES = {"report_id": "rep-2026-000123", "category": "spam"}


def full_block(prefix: str, *, received: bool = True) -> dict[str, str]:
    outcomes = REQUIRED_OUTCOMES + (OPTIONAL_OUTCOMES if received else ())
    return {o.value: f"{prefix} {o.value} {{report_id}}" for o in outcomes}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notices.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def templates_of(**languages: dict[str, str]) -> Templates:
    return Templates("test", languages)


# the shipped templates ----------------------------------------------------------------------------------


def test_the_shipped_templates_word_every_outcome_in_english_and_chinese() -> None:
    shipped = load_templates(None)
    assert {"en", "zh"} <= shipped.languages
    for language in ("en", "zh"):
        for outcome in Outcome:
            text = render(shipped, language, outcome, VALUES)
            assert "rep-2026-000123" in text
            assert "{" not in text
    assert render(shipped, "zh", Outcome.ACTIONED, VALUES).startswith("感谢您的举报")
    assert "action" in render(shipped, "en", Outcome.ACTIONED, VALUES)


def test_the_actioned_notice_says_what_was_done_in_no_detail() -> None:
    shipped = load_templates(None)
    text = render(shipped, "en", "actioned", {**VALUES, "msg_keys": "549396494_2578554_1584669680"})
    assert "549396494" not in text
    assert "recall" not in text.lower()


# language fallbacks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["zh", "zh-CN", "zh_Hans", "ZH-hant-TW", " zh-SG "])
def test_chinese_tags_map_to_zh(tag: str) -> None:
    shipped = load_templates(None)
    assert render(shipped, tag, "no_action", VALUES) == render(shipped, "zh", "no_action", VALUES)


@pytest.mark.parametrize("tag", [None, "", "fr", "pt-BR", "x-klingon", "-"])
def test_unknown_languages_fall_back_to_english(tag: str | None) -> None:
    shipped = load_templates(None)
    assert render(shipped, tag, "dismissed", VALUES) == render(shipped, "en", "dismissed", VALUES)


def test_a_regional_template_wins_over_its_primary_language(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        en: {full_block("en")}
        pt: {full_block("pt")}
        pt-BR: {full_block("br")}
        """,
    )
    templates = load_templates(path)
    assert render(templates, "pt_br", "actioned", VALUES) == "br actioned rep-2026-000123"
    assert render(templates, "pt-PT", "actioned", VALUES) == "pt actioned rep-2026-000123"


def test_a_language_without_the_optional_outcome_uses_the_fallbacks(tmp_path: Path) -> None:
    path = write(tmp_path, f"en: {full_block('en')}\nzh: {full_block('zh', received=False)}\n")
    templates = load_templates(path)
    assert render(templates, "zh", "received", VALUES) == "en received rep-2026-000123"
    assert render(templates, "zh", "actioned", VALUES) == "zh actioned rep-2026-000123"


def test_an_outcome_nobody_words_is_a_lookup_error(tmp_path: Path) -> None:
    templates = load_templates(write(tmp_path, f"en: {full_block('en', received=False)}\n"))
    with pytest.raises(LookupError, match="received"):
        render(templates, "en", "received", VALUES)
    with pytest.raises(LookupError, match="escalated"):
        render(templates, "en", "escalated", VALUES)


# placeholders -------------------------------------------------------------------------------------------


def test_unknown_placeholders_stay_as_written() -> None:
    templates = templates_of(en={"actioned": "Report {report_id} ({category}) {unknown_thing} done"})
    assert (
        render(templates, "en", "actioned", {"report_id": "r-1"})
        == "Report r-1 ({category}) {unknown_thing} done"
    )


def test_values_are_bounded_single_line_and_never_reinterpreted() -> None:
    templates = templates_of(en={"actioned": "[{category}] #{report_id}"})
    long = "x" * 500
    text = render(templates, "en", "actioned", {"category": "line\none\t\x00{report_id}", "report_id": long})
    category, report_id = text[1:].split("] #")
    assert category == "line one {report_id}"
    assert len(report_id) == VALUE_LIMIT
    assert report_id.endswith("…")
    assert render(templates, "en", "actioned", {"category": 42, "report_id": None}) == "[42] #None"


def test_literal_braces_are_written_doubled() -> None:
    templates = parse_templates(
        'en: {actioned: "{{ok}} {report_id}", reviewing: a, no_action: b, dismissed: c}', "t"
    )
    assert render(templates, "en", "actioned", {"report_id": "r"}) == "{ok} r"


# validation ---------------------------------------------------------------------------------------------


def test_a_missing_outcome_names_the_file_the_language_and_the_outcome(tmp_path: Path) -> None:
    zh = full_block("zh")
    del zh["reviewing"]
    path = write(tmp_path, f"en: {full_block('en')}\nzh: {zh}\n")
    with pytest.raises(TemplateError) as caught:
        load_templates(path)
    message = str(caught.value)
    assert str(path) in message
    assert "'zh'" in message
    assert "'reviewing'" in message
    assert "missing" in message


@pytest.mark.parametrize(
    ("outcome_text", "expected"),
    [
        ('"Report {report_id"', "not a valid template"),
        ('"Report {report_id.__class__}"', "{report_id.__class__} must be a plain name"),
        ('"Report {0}"', "{0} must be a plain name"),
        ('"Report {}"', "must be a plain name"),
        ('"Report {report_id:>10}"', "{report_id:>10} must be a plain name"),
        ('"Report {report_id!r}"', "{report_id!r} must be a plain name"),
        ('""', "non-empty text"),
        ("[1, 2]", "non-empty text"),
    ],
)
def test_a_broken_template_names_its_language_and_outcome(
    tmp_path: Path, outcome_text: str, expected: str
) -> None:
    zh = "\n".join(f"  {k}: {v!r}" for k, v in full_block("zh").items() if k != "dismissed")
    path = write(tmp_path, f"en: {full_block('en')}\nzh:\n{zh}\n  dismissed: {outcome_text}\n")
    with pytest.raises(TemplateError) as caught:
        load_templates(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: language 'zh': outcome 'dismissed': ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "en: {actioned: a, reviewing: b, no-action: c, dismissed: d}",
            "language 'en': unknown outcome 'no-action'",
        ),
        ("zh: {actioned: a, reviewing: b, no_action: c, dismissed: d}", "language 'en' is missing"),
        ("no: {actioned: a, reviewing: b, no_action: c, dismissed: d}", "language False is not a string"),
        ("en: [actioned]", "language 'en': expected a mapping"),
        ("- en", "expected a mapping of language"),
        ("", "expected a mapping of language"),
        ("en: {actioned: 'a\n", "not valid YAML"),
        (
            "en: {actioned: a, reviewing: b, no_action: c, dismissed: d}\nEN: {actioned: a}",
            "language 'EN': given twice",
        ),
    ],
)
def test_a_broken_file_is_refused_with_its_name(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TemplateError) as caught:
        load_templates(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_an_unreadable_file_is_refused_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(TemplateError, match=re.escape("nope.yaml: cannot be read")):
        load_templates(missing)
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("en: {actioned: café}".encode("latin-1"))
    with pytest.raises(TemplateError, match=re.escape("latin1.yaml: is not UTF-8")):
        load_templates(binary)


# the sendmsg request, pure ------------------------------------------------------------------------------


def test_the_sendmsg_request_follows_the_documented_fields() -> None:
    request = sendmsg_request(admin="administrator", reporter="carol", text="hello", random=123)
    assert request == {
        "SyncOtherMachine": 2,
        "From_Account": "administrator",
        "To_Account": "carol",
        "MsgRandom": 123,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello"}}],
        "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"],
    }
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match="MsgRandom"):
            sendmsg_request(admin="a", reporter="b", text="t", random=bad)
    with pytest.raises(ValueError, match="text"):
        sendmsg_request(admin="a", reporter="b", text="  ", random=1)


# sending through the emulator ---------------------------------------------------------------------------


async def history(client: TimClient, operator: str, peer: str, msg_key: str) -> list[Message]:
    sent_at = int(msg_key.rsplit("_", 1)[1])
    return [
        m
        async for m in iter_c2c_history(
            client, operator=operator, peer=peer, since=sent_at - 5, until=sent_at + 5
        )
    ]


async def test_a_notice_reaches_the_reporters_history(client: TimClient) -> None:
    await import_accounts(client, ["carol", "mallory"])
    text = render(load_templates(None), "zh-CN", Outcome.ACTIONED, VALUES)
    key = await send_notice(client, admin=ADMIN, reporter="carol", text=text)

    [message] = await history(client, "carol", ADMIN, key)
    assert message.msg_key == key
    assert message.from_account == ADMIN
    assert message.to_account == "carol"
    assert message.is_actionable
    assert list(message.body) == [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}]
    # SyncOtherMachine 2: the admin's own history does not keep the notices it sends.
    assert await history(client, ADMIN, "carol", key) == []


async def test_the_given_random_is_the_messages_msgrandom(client: TimClient) -> None:
    await import_accounts(client, ["dave"])
    first = await send_notice(client, admin=ADMIN, reporter="dave", text="one", random=4_000_000_001)
    second = await send_notice(client, admin=ADMIN, reporter="dave", text="two", random=7)
    assert first.split("_")[1] == "4000000001"
    assert second.split("_")[1] == "7"
    texts = [m.body[0]["MsgContent"]["Text"] for m in await history(client, "dave", ADMIN, second)]
    assert sorted(texts) == ["one", "two"]


async def test_a_reporter_who_is_not_an_account_is_the_clients_typed_error(client: TimClient) -> None:
    with pytest.raises(TimApiError) as caught:
        await send_notice(client, admin=ADMIN, reporter="nobody-here", text="hello")
    assert caught.value.code == 90003
    assert caught.value.command == "sendmsg"
