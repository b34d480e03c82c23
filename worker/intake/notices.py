"""Notices to the reporter: the outcome of their report, as a chat message from the app admin.

Wording lives in a YAML file of templates, one block per language and one template per outcome (the
shipped ``notice-templates.yaml``, or the operator's own). Loading checks the whole file up front, so a
missing outcome or a broken template stops the service at start, not at the first notice. Rendering is
pure and never raises on the values: an unknown placeholder stays as written, values are cut short.
:func:`send_notice` sends the text with ``openim/sendmsg``.
"""

from __future__ import annotations

import enum
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from worker.redact import bounded
from worker.tim.errors import TimProtocolError
from worker.tim.history import ApiCaller

SENDMSG_PATH = "openim/sendmsg"
SENDMSG_COMMAND = "sendmsg"
#: The language every other one falls back to; the template file must have it.
FALLBACK_LANGUAGE = "en"
#: The shipped templates (package data next to this module).
SHIPPED_TEMPLATES = "notice-templates.yaml"
#: A placeholder's value is cut to this many characters.
VALUE_LIMIT = 64
#: A rendered notice is cut to this many characters (a message must stay under 12 KB).
TEXT_LIMIT = 2000
UINT32_MAX = 2**32 - 1


class Outcome(enum.StrEnum):
    """What became of a report, as the reporter is told."""

    RECEIVED = "received"
    ACTIONED = "actioned"
    REVIEWING = "reviewing"
    NO_ACTION = "no_action"
    DISMISSED = "dismissed"


#: Outcomes every language must word.
REQUIRED_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.ACTIONED,
    Outcome.REVIEWING,
    Outcome.NO_ACTION,
    Outcome.DISMISSED,
)
#: Outcomes a language may leave out (the fallback language's wording is used, if it has one).
OPTIONAL_OUTCOMES: tuple[Outcome, ...] = (Outcome.RECEIVED,)
KNOWN_OUTCOMES = frozenset(REQUIRED_OUTCOMES + OPTIONAL_OUTCOMES)


class TemplateError(ValueError):
    """The template file is unusable; the message names the file and, where it applies, the language
    and the outcome."""


@dataclass(frozen=True, slots=True)
class Templates:
    """Notice templates: language (a lower-case primary tag such as ``zh``) -> outcome -> template."""

    source: str
    texts: Mapping[str, Mapping[str, str]]

    @property
    def languages(self) -> frozenset[str]:
        """The languages the file words."""
        return frozenset(self.texts)


# loading ------------------------------------------------------------------------------------------------


def normalize_language(tag: str) -> str:
    """A language tag in one spelling: lower case, ``-`` between subtags (``zh_Hans`` -> ``zh-hans``)."""
    return tag.strip().replace("_", "-").lower()


def _check_template(where: str, template: str) -> None:
    """Only plain ``{name}`` placeholders: no positions, attributes, indexes, conversions or format specs,
    so that rendering cannot fail on any value."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"{where}: not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            written = "{" + written + "}"
            raise TemplateError(f"{where}: placeholder {written} must be a plain name such as {{report_id}}")


def parse_templates(text: str, source: str) -> Templates:
    """Read and check templates from YAML ``text`` (``source`` names the file in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{source}: not valid YAML: {bounded(str(exc), 300)}") from None
    if not isinstance(data, dict) or not data:
        raise TemplateError(f"{source}: expected a mapping of language -> outcome -> template")
    texts: dict[str, dict[str, str]] = {}
    for language, block in data.items():
        if not isinstance(language, str) or not language.strip():
            # YAML reads a bare `no:` (Norwegian) as false.
            raise TemplateError(f"{source}: language {language!r} is not a string (quote it)")
        where = f"{source}: language {language!r}"
        if not isinstance(block, dict):
            raise TemplateError(f"{where}: expected a mapping of outcome -> template")
        key = normalize_language(language)
        if key in texts:
            raise TemplateError(f"{where}: given twice")
        texts[key] = {}
        for outcome, template in block.items():
            if outcome not in KNOWN_OUTCOMES:
                known = ", ".join(o.value for o in Outcome)
                raise TemplateError(f"{where}: unknown outcome {outcome!r} (known: {known})")
            if not isinstance(template, str) or not template.strip():
                raise TemplateError(f"{where}: outcome {outcome!r}: the template must be non-empty text")
            _check_template(f"{where}: outcome {outcome!r}", template)
            texts[key][str(outcome)] = template.strip()
        for outcome in REQUIRED_OUTCOMES:
            if outcome.value not in texts[key]:
                raise TemplateError(f"{where}: outcome {outcome.value!r} is missing")
    if FALLBACK_LANGUAGE not in texts:
        raise TemplateError(f"{source}: language {FALLBACK_LANGUAGE!r} is missing (it is the fallback)")
    return Templates(source, texts)


def load_templates(path: Path | None) -> Templates:
    """The templates in ``path``, or the shipped ones when ``path`` is None. Raises
    :class:`TemplateError` for a file that cannot be read or does not check out."""
    if path is None:
        shipped = resources.files("worker.intake").joinpath(SHIPPED_TEMPLATES)
        return parse_templates(shipped.read_text(encoding="utf-8"), SHIPPED_TEMPLATES)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: is not UTF-8 text") from None
    return parse_templates(text, str(path))


# rendering ----------------------------------------------------------------------------------------------


def pick_language(templates: Templates, language: str | None) -> str:
    """The language of ``templates`` to use for a reporter's ``language`` tag: the tag itself, else its
    primary subtag (``zh-CN``, ``zh_Hans`` -> ``zh``), else :data:`FALLBACK_LANGUAGE`."""
    if language:
        tag = normalize_language(language)
        for candidate in (tag, tag.split("-", 1)[0]):
            if candidate in templates.texts:
                return candidate
    return FALLBACK_LANGUAGE


class _Values(dict[str, str]):
    """Placeholder values; a placeholder nobody filled is left as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _value(value: object) -> str:
    # One line of printable text: a value must not reshape the notice around it.
    text = " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 1] + "…"


def render(templates: Templates, language: str | None, outcome: str, values: Mapping[str, object]) -> str:
    """The notice for ``outcome`` in the reporter's ``language`` (see :func:`pick_language`), its
    placeholders filled from ``values``. Raises :class:`LookupError` for an outcome neither that language
    nor the fallback words (an unknown outcome, or ``received`` when no template has it)."""
    chosen = pick_language(templates, language)
    template = templates.texts[chosen].get(outcome) or templates.texts[FALLBACK_LANGUAGE].get(outcome)
    if template is None:
        raise LookupError(f"{templates.source}: no template for outcome {outcome!r}")
    text = template.format_map(_Values({str(k): _value(v) for k, v in values.items()}))
    return bounded(text, TEXT_LIMIT)


# sending ------------------------------------------------------------------------------------------------


def sendmsg_request(*, admin: str, reporter: str, text: str, random: int) -> dict[str, Any]:
    """The ``openim/sendmsg`` body of one notice. Pure."""
    if not text.strip():
        raise ValueError("a notice needs text")
    if not 0 <= random <= UINT32_MAX:
        raise ValueError(f"MsgRandom is a 32-bit unsigned integer, got {random}")
    return {
        # 2: not stored in the admin's roaming history nor pushed to the admin's devices. The admin is a
        # service account sending one notice per report; its own history would only pile them up, and the
        # reporter's copy (what matters) is stored as usual. (1 would sync to the sender; omitted stores.)
        "SyncOtherMachine": 2,
        "From_Account": admin,
        "To_Account": reporter,
        "MsgRandom": random,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        # The app's own C2C before/after-send callbacks must not see the worker's notices: its before-send
        # moderation could drop them, and its after-send hooks would treat them as user traffic.
        "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"],
    }


async def send_notice(
    client: ApiCaller, *, admin: str, reporter: str, text: str, random: int | None = None
) -> str:
    """Send ``text`` to ``reporter`` as a one-to-one message from ``admin``; returns its MsgKey.

    ``random`` is the message's ``MsgRandom`` (default: a fresh random number). Errors are the client's
    typed ones (:mod:`worker.tim.errors`), raised as they come: e.g. a reporter who is not an account of
    the app is a :class:`~worker.tim.errors.TimApiError`.
    """
    chosen = secrets.randbits(32) if random is None else random
    request = sendmsg_request(admin=admin, reporter=reporter, text=text, random=chosen)
    reply = await client.call(SENDMSG_PATH, request)
    key = reply.get("MsgKey")
    if not isinstance(key, str) or not key:
        raise TimProtocolError(SENDMSG_COMMAND, "MsgKey is missing or is not a string")
    return key
