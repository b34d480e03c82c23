"""Moderation job v1: the contract with report producers.

A job names one conversation, the suspect whose messages may be recalled, the history window to scan, the
rule set to apply and whether to recall or only report (dry run). ``job_id`` is the idempotency key.

Validation is exactly as strict as the published JSON Schema (``worker/schema/job-v1.schema.json``): unknown
fields are refused, integers are JSON integers (``1`` or ``1.0``, never ``true`` or ``"1"``), strings are
strings, and every string is bounded. The schema cannot compare two fields, so the parser alone checks the
rules in :data:`CROSS_FIELD_PROBLEMS`. Every problem is reported with its field path, and what a problem
says is bounded too: a refused document's content is never echoed at length.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

SCHEMA_PATH = Path(__file__).parent / "schema" / "job-v1.schema.json"
MAX_WINDOW_S = 90 * 86400  # the longest roaming period any plan offers
MAX_TIMESTAMP = 2**32 - 1
MAX_PLAN_ID = 2**31 - 1  # plans.id is an SQL INTEGER
MAX_JOB_ID = 128
MAX_REPORTS_PER_JOB = 1000
JOB_ID_CHARACTERS = "A-Za-z0-9_.:-"  # a regex character class; job ids travel in AMQP headers and logs

# The rules JSON Schema cannot express (they compare fields): the schema may accept a job the parser refuses
# for one of these, and for nothing else. The schema's description lists them.
TWO_PARTIES = "operator and peer must be two different accounts"
SUSPECT_IS_A_PARTY = "suspect must be one of the conversation's two parties"
SUSPECT_IS_THE_ACCOUNT = "for an official account the suspect is the account itself"
SINCE_AFTER_UNTIL = "since is after until"
WINDOW_TOO_LONG = f"the window is longer than {MAX_WINDOW_S // 86400} days"
MSG_SEQS_NAME_GROUP_MESSAGES = "report.msg_seqs names messages of a group conversation only"
MSG_KEYS_NAME_OTHER_MESSAGES = (
    "report.msg_keys names messages of a one-to-one or official-account conversation"
)
CROSS_FIELD_PROBLEMS: Final[tuple[str, ...]] = (
    TWO_PARTIES,
    SUSPECT_IS_A_PARTY,
    SUSPECT_IS_THE_ACCOUNT,
    SINCE_AFTER_UNTIL,
    WINDOW_TOO_LONG,
    MSG_SEQS_NAME_GROUP_MESSAGES,
    MSG_KEYS_NAME_OTHER_MESSAGES,
)

# Rules the parser checks in code and the schema states with oneOf / if-then.
_BOTH_FORMS = "give either since/until or lookback_s, not both"
_NO_FORM = "give since and until, or lookback_s"
_HALF_WINDOW = "since and until go together"
_LOOKBACK_NEEDS_REPORT_TIME = "window.lookback_s needs report.reported_at"
_APPLY_PLAN_RECALLS = "an apply_plan job recalls; it cannot be a dry run"

MAX_PROBLEMS_PER_JOB = 8
MAX_PROBLEMS_PER_DOCUMENT = 50
MAX_PROBLEM_CHARS = 200
_MAX_PATH_PART_CHARS = 40
_JOB_ID = re.compile(f"[{JOB_ID_CHARACTERS}]{{1,{MAX_JOB_ID}}}")


def is_valid_job_id(value: object) -> bool:
    """True when ``value`` meets the job_id rules: 1 to 128 ASCII letters, digits and ``_ . : -``."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def json_integer(value: object) -> object:
    """``value`` as JSON Schema reads an integer: any number with a zero fractional part, so ``1.0`` is 1
    (several producers' JSON libraries write it so); everything else is left to the strict int check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _json_one(value: object) -> object:
    # Literal[1] would take True (True == 1); JSON Schema's const 1 does not.
    if isinstance(value, bool):
        raise PydanticCustomError("literal_error", "Input should be 1")
    return json_integer(value)


@dataclass(frozen=True)
class Characters:
    """The characters a string may hold, checked alike by the parser and by any JSON Schema validator.

    ``forbidden`` is a regex character class of ASCII ranges and ``\\xHH`` escapes. The schema states the rule
    as ``not: {pattern: forbidden}``: an unanchored search for one character means the same in ECMA-262,
    Python's ``re`` and Rust's ``regex``, while ``$`` (Python's also matches before a final newline), ``.``
    (ECMA-262's stops at ``\\r``, U+2028 and U+2029) and ``\\w`` (Unicode-aware outside ECMA-262) do not.
    ``pattern`` optionally restates the rule in the readable anchored form, for people and code generators.
    """

    forbidden: str
    rule: str  # completes "String should ..."
    pattern: str | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        search = re.compile(self.forbidden).search
        message = "String should " + self.rule

        def check(value: str) -> str:
            if search(value):
                raise PydanticCustomError("string_characters", message)
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self.pattern is not None:
            json_schema["pattern"] = self.pattern
        json_schema["not"] = {"pattern": self.forbidden}
        return json_schema


_JOB_ID_ONLY = Characters(
    forbidden=f"[^{JOB_ID_CHARACTERS}]",
    rule="hold only ASCII letters, digits and _ . : -",
    pattern=f"^[{JOB_ID_CHARACTERS}]+$",
)
# C0 and C1 controls and DEL: never part of an identifier, and harmful in headers and log lines.
NO_CONTROLS = Characters(forbidden=r"[\x00-\x1f\x7f-\x9f]", rule="not hold control characters")

AccountId = Annotated[str, Field(min_length=1, max_length=32, description="a Chat UserID"), NO_CONTROLS]
# The bounds come before the BeforeValidator so that pydantic keeps them in the int schema: after it, they
# would be checked all the same but published as "ge"/"le", which JSON Schema ignores.
Timestamp = Annotated[
    int, Field(ge=0, le=MAX_TIMESTAMP, description="Unix time, seconds"), BeforeValidator(json_integer)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, str_strip_whitespace=False)


class C2CConversation(_Strict):
    """A one-to-one conversation, read from ``operator``'s side (their view of the history)."""

    type: Literal["c2c"]
    operator: AccountId = Field(description="whose view of the history is read, usually the reporter")
    peer: AccountId

    @model_validator(mode="after")
    def _two_parties(self) -> C2CConversation:
        if self.operator == self.peer:
            raise ValueError(TWO_PARTIES)
        return self


class OfficialAccountConversation(_Strict):
    """An official account's broadcast history."""

    type: Literal["official_account"]
    account: Annotated[
        str,
        Field(min_length=7, max_length=64, pattern=r"^@TOA#_", description="official account id, @TOA#_…"),
        NO_CONTROLS,
    ]


class GroupConversation(_Strict):
    """A group's history, or one topic's of a community group. Its messages are addressed by ``MsgSeq``."""

    type: Literal["group"]
    group_id: Annotated[
        str,
        Field(min_length=1, max_length=48, description="a Chat group id, e.g. @TGS#2C5SZEAEF"),
        NO_CONTROLS,
    ]
    topic_id: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=128,
                description="a community topic id, e.g. @TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic",
            ),
            NO_CONTROLS,
        ]
        | None
    ) = None


Conversation = Annotated[
    C2CConversation | OfficialAccountConversation | GroupConversation, Field(discriminator="type")
]


class Window(_Strict):
    """``since``/``until`` (inclusive), or ``lookback_s`` seconds before the report's ``reported_at``."""

    model_config = ConfigDict(
        json_schema_extra={
            # null stands for an absent field, as in the parser
            "oneOf": [
                {
                    "title": "since/until",
                    "required": ["since", "until"],
                    "properties": {
                        "since": {"type": "integer"},
                        "until": {"type": "integer"},
                        "lookback_s": {"type": "null"},
                    },
                },
                {
                    "title": "lookback_s",
                    "required": ["lookback_s"],
                    "properties": {
                        "lookback_s": {"type": "integer"},
                        "since": {"type": "null"},
                        "until": {"type": "null"},
                    },
                },
            ]
        }
    )

    since: Timestamp | None = None
    until: Timestamp | None = None
    lookback_s: Annotated[int, Field(ge=1, le=MAX_WINDOW_S), BeforeValidator(json_integer)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Window:
        explicit = self.since is not None or self.until is not None
        if explicit and self.lookback_s is not None:
            raise ValueError(_BOTH_FORMS)
        if not explicit and self.lookback_s is None:
            raise ValueError(_NO_FORM)
        if explicit:
            if self.since is None or self.until is None:
                raise ValueError(_HALF_WINDOW)
            if self.since > self.until:
                raise ValueError(SINCE_AFTER_UNTIL)
            if self.until - self.since > MAX_WINDOW_S:
                raise ValueError(WINDOW_TOO_LONG)
        return self


class Report(_Strict):
    """Who reported what; carried through to the result for the audit trail."""

    reporter: AccountId | None = None
    reason: str | None = Field(None, max_length=500)
    msg_keys: list[Annotated[str, Field(min_length=1, max_length=64), NO_CONTROLS]] = Field(
        default_factory=list,
        max_length=100,
        description="the reported one-to-one or official-account messages",
    )
    msg_seqs: list[Annotated[int, Field(ge=1, le=MAX_TIMESTAMP), BeforeValidator(json_integer)]] = Field(
        default_factory=list, max_length=100, description="the reported group messages (MsgSeq)"
    )
    reported_at: Timestamp | None = None
    reports: list[Annotated[str, Field(min_length=1, max_length=40), _JOB_ID_ONLY]] = Field(
        default_factory=list,
        max_length=MAX_REPORTS_PER_JOB,
        description="the intake's reports this job answers (report ids)",
    )


class Job(_Strict):
    """A moderation job, version 1."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "$comment": _LOOKBACK_NEEDS_REPORT_TIME,
                    "if": {
                        "required": ["window"],
                        "properties": {
                            "window": {
                                "required": ["lookback_s"],
                                "properties": {"lookback_s": {"type": "integer"}},
                            }
                        },
                    },
                    "then": {
                        "required": ["report"],
                        "properties": {
                            "report": {
                                "required": ["reported_at"],
                                "properties": {"reported_at": {"type": "integer"}},
                            }
                        },
                    },
                },
                {
                    "$comment": _APPLY_PLAN_RECALLS,
                    "if": {"required": ["apply_plan"], "properties": {"apply_plan": {"type": "integer"}}},
                    "then": {"properties": {"mode": {"const": "recall"}}},
                },
            ]
        }
    )

    version: Annotated[Literal[1], BeforeValidator(_json_one)]
    job_id: Annotated[str, Field(min_length=1, max_length=MAX_JOB_ID), _JOB_ID_ONLY]
    conversation: Conversation
    suspect: Annotated[
        str,
        Field(min_length=1, max_length=64, description="a Chat UserID, or the official account's id"),
        NO_CONTROLS,
    ]
    window: Window
    report: Report = Report()
    ruleset: Annotated[str, Field(min_length=1, max_length=64), NO_CONTROLS] = "default"
    mode: Literal["recall", "dry_run"] = "recall"
    apply_plan: Annotated[int, Field(ge=1, le=MAX_PLAN_ID), BeforeValidator(json_integer)] | None = Field(
        None, description="recall exactly the messages of this approved plan (set by plan approval)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Job:
        conversation = self.conversation
        is_group = isinstance(conversation, GroupConversation)
        if self.report.msg_seqs and not is_group:
            raise ValueError(MSG_SEQS_NAME_GROUP_MESSAGES)
        if self.report.msg_keys and is_group:
            raise ValueError(MSG_KEYS_NAME_OTHER_MESSAGES)
        if isinstance(conversation, C2CConversation) and self.suspect not in (
            conversation.operator,
            conversation.peer,
        ):
            raise ValueError(SUSPECT_IS_A_PARTY)
        if isinstance(conversation, OfficialAccountConversation) and self.suspect != conversation.account:
            raise ValueError(SUSPECT_IS_THE_ACCOUNT)
        if self.window.lookback_s is not None and self.report.reported_at is None:
            raise ValueError(_LOOKBACK_NEEDS_REPORT_TIME)
        if self.apply_plan is not None and self.mode != "recall":
            raise ValueError(_APPLY_PLAN_RECALLS)
        return self

    @property
    def since(self) -> int:
        """Start of the window (inclusive)."""
        if self.window.since is not None:
            return self.window.since
        # validated: lookback_s comes with report.reported_at
        return max(0, (self.report.reported_at or 0) - (self.window.lookback_s or 0))

    @property
    def until(self) -> int:
        """End of the window (inclusive)."""
        if self.window.until is not None:
            return self.window.until
        return self.report.reported_at or 0

    @property
    def dry_run(self) -> bool:
        """True when nothing may be recalled."""
        return self.mode == "dry_run"


class InvalidJob(ValueError):
    """A job that cannot be run; ``problems`` lists each bad field as ``path: message``.

    ``job_id`` is the document's job_id when that alone is valid (results and headers carry it), else None.
    """

    def __init__(self, problems: list[str], job_id: str | None = None) -> None:
        self.problems = problems
        self.job_id = job_id if is_valid_job_id(job_id) else None
        super().__init__("invalid job: " + "; ".join(problems))


def _clip(text: str, limit: int) -> str:
    """``text`` on one line and at most ``limit`` characters: controls escaped, the rest cut off."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _capped(problems: list[str], limit: int, where: str) -> list[str]:
    """At most ``limit`` problems, each clipped, then one saying how many were left out."""
    shown = [_clip(problem, MAX_PROBLEM_CHARS) for problem in problems[:limit]]
    if len(problems) > limit:
        shown.append(f"{where}: and {len(problems) - limit} more problems")
    return shown


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        # an unknown field's name is part of its path: shown short, however long it is
        path = ".".join(
            _clip(str(part), _MAX_PATH_PART_CHARS) for part in item["loc"] if part not in ("function-after",)
        )
        if item["type"] == "union_tag_invalid":  # pydantic's message quotes the whole tag
            ctx = item.get("ctx", {})
            tag = _clip(str(ctx.get("tag")), _MAX_PATH_PART_CHARS)
            message = (
                f"Input tag '{tag}' found using {ctx.get('discriminator')} does not match any of the "
                f"expected tags: {ctx.get('expected_tags')}"
            )
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{path or '(job)'}: {message}")
    return problems


def _validate(data: Any) -> Job:
    """A job from a decoded JSON document."""
    if not isinstance(data, dict):
        raise InvalidJob([f"(job): a job is a JSON object, not a {type(data).__name__}"])
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        job_id = data.get("job_id")
        raise InvalidJob(
            _capped(_describe(exc), MAX_PROBLEMS_PER_JOB, "(job)"),
            job_id if isinstance(job_id, str) else None,
        ) from None


def parse_job(raw: bytes | str) -> Job:
    """Parse and validate one job from JSON. Raises :class:`InvalidJob` naming every problem (up to 8)."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJob([f"(job): not valid JSON ({_clip(str(exc), 120)})"]) from None
    return _validate(data)


def parse_jobs_document(text: str) -> list[Job]:
    """Jobs from a document holding one JSON object, a JSON list of them, or JSON lines.

    Every job is checked; :class:`InvalidJob` lists the problems (up to 8 a job and 50 in all), each
    prefixed with its job's place (``line N`` for JSON lines, ``item N`` for a list).
    """
    stripped = text.strip()
    if not stripped:
        raise InvalidJob(["(input): no jobs given"])
    jobs: list[Job] = []
    problems: list[str] = []
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        documents = [
            (f"line {number}", line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()
        ]
        for where, line in documents:
            try:
                jobs.append(parse_job(line))
            except InvalidJob as exc:
                problems += [f"{where}: {problem}" for problem in exc.problems]
    else:
        items = list(enumerate(whole, start=1)) if isinstance(whole, list) else [(0, whole)]
        for number, item in items:
            try:
                jobs.append(_validate(item))
            except InvalidJob as exc:
                where = f"item {number}" if number else "job"
                problems += [f"{where}: {problem}" for problem in exc.problems]
    if problems:
        raise InvalidJob(_capped(problems, MAX_PROBLEMS_PER_DOCUMENT, "(input)"))
    return jobs


def _cross_field_note() -> str:
    rules = "; ".join(CROSS_FIELD_PROBLEMS)
    return (
        "A moderation job, version 1. The worker also refuses a job that breaks a rule this schema cannot "
        "state, because it compares two fields or is a limit of this worker; each is named here as the "
        f"worker words its refusal: {rules}."
    )


def job_json_schema() -> dict[str, Any]:
    """The JSON Schema of job v1, as published in ``worker/schema/job-v1.schema.json``."""
    schema = Job.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://recall-worker.invalid/schema/job-v1.schema.json"
    schema["title"] = "recall-worker moderation job, version 1"
    schema["description"] = _cross_field_note()
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate the published schema file."""
    path.write_text(json.dumps(job_json_schema(), indent=2, ensure_ascii=False) + "\n")
