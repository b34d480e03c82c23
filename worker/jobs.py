"""Moderation job v1: the contract with report producers.

A job names one conversation, the suspect whose messages may be recalled, the history window to scan, the
rule set to apply and whether to recall or only report (dry run). ``job_id`` is the idempotency key.
Validation is strict (unknown fields are refused) and every problem is reported with its field path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_PATH = Path(__file__).parent / "schema" / "job-v1.schema.json"
MAX_WINDOW_S = 90 * 86400  # the longest roaming period any plan offers

AccountId = Annotated[str, Field(min_length=1, max_length=32, description="a Chat UserID")]
Timestamp = Annotated[int, Field(ge=0, le=2**32 - 1, description="Unix time, seconds")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class C2CConversation(_Strict):
    """A one-to-one conversation, read from ``operator``'s side (their view of the history)."""

    type: Literal["c2c"]
    operator: AccountId = Field(description="whose view of the history is read, usually the reporter")
    peer: AccountId

    @model_validator(mode="after")
    def _two_parties(self) -> C2CConversation:
        if self.operator == self.peer:
            raise ValueError("operator and peer must be two different accounts")
        return self


class OfficialAccountConversation(_Strict):
    """An official account's broadcast history."""

    type: Literal["official_account"]
    account: str = Field(pattern=r"^@TOA#_.+", max_length=64, description="official account id, @TOA#_…")


class GroupConversation(_Strict):
    """A group; part of the contract, not yet served by this worker."""

    type: Literal["group"]
    group_id: str = Field(min_length=1)


Conversation = Annotated[
    C2CConversation | OfficialAccountConversation | GroupConversation, Field(discriminator="type")
]


class Window(_Strict):
    """``since``/``until`` (inclusive), or ``lookback_s`` seconds before the report's ``reported_at``."""

    since: Timestamp | None = None
    until: Timestamp | None = None
    lookback_s: int | None = Field(None, ge=1, le=MAX_WINDOW_S)

    @model_validator(mode="after")
    def _one_form(self) -> Window:
        explicit = self.since is not None or self.until is not None
        if explicit and self.lookback_s is not None:
            raise ValueError("give either since/until or lookback_s, not both")
        if not explicit and self.lookback_s is None:
            raise ValueError("give since and until, or lookback_s")
        if explicit:
            if self.since is None or self.until is None:
                raise ValueError("since and until go together")
            if self.since > self.until:
                raise ValueError("since is after until")
            if self.until - self.since > MAX_WINDOW_S:
                raise ValueError(f"the window is longer than {MAX_WINDOW_S // 86400} days")
        return self


class Report(_Strict):
    """Who reported what; carried through to the result for the audit trail."""

    reporter: AccountId | None = None
    reason: str | None = Field(None, max_length=500)
    msg_keys: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=100
    )
    reported_at: Timestamp | None = None


class Job(_Strict):
    """A moderation job, version 1."""

    version: Literal[1]
    job_id: str = Field(min_length=1, max_length=128, pattern=r"^[\w.:\-]+$")
    conversation: Conversation
    suspect: AccountId
    window: Window
    report: Report = Report()
    ruleset: str = Field("default", min_length=1, max_length=64)
    mode: Literal["recall", "dry_run"] = "recall"
    apply_plan: int | None = Field(
        None, ge=1, description="recall exactly the messages of this approved plan (set by plan approval)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Job:
        conversation = self.conversation
        if isinstance(conversation, GroupConversation):
            raise ValueError("group conversations are not supported by this worker yet")
        if isinstance(conversation, C2CConversation) and self.suspect not in (
            conversation.operator,
            conversation.peer,
        ):
            raise ValueError("suspect must be one of the conversation's two parties")
        if isinstance(conversation, OfficialAccountConversation) and self.suspect != conversation.account:
            raise ValueError("for an official account the suspect is the account itself")
        if self.window.lookback_s is not None and self.report.reported_at is None:
            raise ValueError("window.lookback_s needs report.reported_at")
        if self.apply_plan is not None and self.mode != "recall":
            raise ValueError("an apply_plan job recalls; it cannot be a dry run")
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
    """A job that cannot be run; ``problems`` lists each bad field as ``path: message``."""

    def __init__(self, problems: list[str], job_id: str | None = None) -> None:
        self.problems = problems
        self.job_id = job_id
        super().__init__("invalid job: " + "; ".join(problems))


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"] if part not in ("function-after",))
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{path or '(job)'}: {message}")
    return problems


def parse_job(raw: bytes | str) -> Job:
    """Parse and validate one job from JSON. Raises :class:`InvalidJob` naming every problem."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJob([f"(job): not valid JSON ({exc})"]) from None
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise InvalidJob([f"(job): a job is a JSON object, not a {type(data).__name__}"])
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        raise InvalidJob(_describe(exc), job_id if isinstance(job_id, str) else None) from None


def parse_jobs_document(text: str) -> list[Job]:
    """Jobs from a document holding one JSON object, a JSON list of them, or JSON lines.

    Every job is checked; :class:`InvalidJob` lists every problem, each prefixed with its job's place
    (``line N`` for JSON lines, ``item N`` for a list).
    """
    stripped = text.strip()
    if not stripped:
        raise InvalidJob(["(input): no jobs given"])
    documents: list[tuple[str, Any]] = []
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                documents.append((f"line {number}", line))
    else:
        if isinstance(whole, list):
            documents = [(f"item {n}", orjson.dumps(item)) for n, item in enumerate(whole, start=1)]
        else:
            documents = [("job", stripped)]
    jobs: list[Job] = []
    problems: list[str] = []
    for where, raw in documents:
        try:
            jobs.append(parse_job(raw))
        except InvalidJob as exc:
            problems += [f"{where}: {problem}" for problem in exc.problems]
    if problems:
        raise InvalidJob(problems)
    return jobs


def job_json_schema() -> dict[str, Any]:
    """The JSON Schema of job v1, as published in ``worker/schema/job-v1.schema.json``."""
    schema = Job.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://recall-worker.invalid/schema/job-v1.schema.json"
    schema["title"] = "recall-worker moderation job, version 1"
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate the published schema file."""
    path.write_text(json.dumps(job_json_schema(), indent=2, ensure_ascii=False) + "\n")
