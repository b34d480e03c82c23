"""A user report as the app backend files it (``POST /v1/reports``), validated field by field.

The shapes follow the job contract (:mod:`worker.jobs`): a one-to-one conversation is the reporter's with the
suspect, a group (or one topic of a community) is addressed by id and its messages by ``MsgSeq``, an official
account by its id. Every string is bounded and free of control characters; the description may hold line
breaks but nothing else below U+0020.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from worker.jobs import (
    MAX_TIMESTAMP,
    NO_CONTROLS,
    AccountId,
    Characters,
    GroupConversation,
    OfficialAccountConversation,
    Timestamp,
    json_integer,
)
from worker.ledger.scans import c2c_key, conversation_key_of

CATEGORIES: Final = ("spam", "scam", "harassment", "sexual", "violence", "other")
MAX_MESSAGES = 100
MAX_DESCRIPTION = 1000
MAX_BODY_BYTES = 32 * 1024

SELF_REPORT = "reporter and suspect are the same account: self-reports are refused"
PROTECTED = "suspect is a protected account: reports against it are refused"
SEQS_IN_GROUPS = "msg_seqs names messages of a group; use msg_keys elsewhere"
KEYS_OUTSIDE_GROUPS = "msg_keys names one-to-one and official-account messages; use msg_seqs in a group"
PEER_IS_SUSPECT = "conversation.peer, when given, must be the suspect"
ACCOUNT_IS_SUSPECT = "for an official account the suspect is the account itself"

_TEXT = Characters(forbidden=r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", rule="not hold control characters")
_MSG_KEY = re.compile(r"^(\d{1,10})_(\d{1,10})_(\d{1,10})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class C2CReportConversation(_Strict):
    """The reporter's one-to-one conversation with the suspect."""

    type: Literal["c2c"]
    peer: AccountId | None = None


ReportConversation = Annotated[
    C2CReportConversation | GroupConversation | OfficialAccountConversation, Field(discriminator="type")
]


class ReportIn(_Strict):
    """``POST /v1/reports``: one user's report of messages in one conversation."""

    reporter: AccountId = Field(description="the account that reports")
    suspect: Annotated[
        str, Field(min_length=1, max_length=64, description="the account reported"), NO_CONTROLS
    ]
    conversation: ReportConversation
    msg_keys: list[Annotated[str, Field(min_length=5, max_length=64, pattern=_MSG_KEY.pattern)]] = Field(
        default_factory=list, max_length=MAX_MESSAGES, description="reported messages (MsgKey)"
    )
    msg_seqs: list[Annotated[int, Field(ge=1, le=MAX_TIMESTAMP), BeforeValidator(json_integer)]] = Field(
        default_factory=list, max_length=MAX_MESSAGES, description="reported group messages (MsgSeq)"
    )
    category: Literal["spam", "scam", "harassment", "sexual", "violence", "other"]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION), _TEXT] | None = None
    reported_at: Timestamp = Field(description="when the user reported, Unix seconds")
    language: (
        Annotated[str, Field(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]
        | None
    ) = Field(None, description="the reporter's language, for the notice (e.g. en, zh-CN)")

    @model_validator(mode="after")
    def _consistent(self) -> ReportIn:
        conversation = self.conversation
        is_group = isinstance(conversation, GroupConversation)
        if self.msg_seqs and not is_group:
            raise ValueError(SEQS_IN_GROUPS)
        if self.msg_keys and is_group:
            raise ValueError(KEYS_OUTSIDE_GROUPS)
        if isinstance(conversation, C2CReportConversation) and conversation.peer not in (None, self.suspect):
            raise ValueError(PEER_IS_SUSPECT)
        if isinstance(conversation, OfficialAccountConversation) and self.suspect != conversation.account:
            raise ValueError(ACCOUNT_IS_SUSPECT)
        return self

    def conversation_key(self) -> str:
        """The conversation's identity, as the ledger keys it (the same from either party's side)."""
        if isinstance(self.conversation, C2CReportConversation):
            return c2c_key(self.reporter, self.suspect)
        return conversation_key_of(self.conversation)

    def job_conversation(self) -> dict[str, Any]:
        """The conversation as the job contract names it (a one-to-one one read from the reporter's side)."""
        conversation = self.conversation
        if isinstance(conversation, C2CReportConversation):
            return {"type": "c2c", "operator": self.reporter, "peer": self.suspect}
        return conversation.model_dump(exclude_none=True)

    def msg_refs(self) -> list[str | int]:
        """The reported messages: MsgKeys, or MsgSeqs in a group."""
        return [*self.msg_keys, *self.msg_seqs]


def msg_key_time(key: str) -> int | None:
    """The send time a MsgKey (``seq_random_time``) carries, or None."""
    match = _MSG_KEY.fullmatch(key)  # not match: "$" would also accept a final newline
    return int(match.group(3)) if match else None


class InvalidReport(ValueError):
    """A report that cannot be taken: ``problems`` is a list of ``{"field", "message"}``."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))


_CROSS_FIELD = {
    SEQS_IN_GROUPS: "msg_seqs",
    KEYS_OUTSIDE_GROUPS: "msg_keys",
    PEER_IS_SUSPECT: "conversation.peer",
    ACCOUNT_IS_SUSPECT: "suspect",
}


def _field_of(location: tuple[int | str, ...]) -> str:
    # The discriminated union puts the tag in the path (conversation.group.group_id): drop it.
    parts = [str(part) for part in location if part not in ("c2c", "group", "official_account")]
    return ".".join(parts) or "(report)"


def parse_report(body: bytes) -> ReportIn:
    """The report in ``body`` (JSON), or :class:`InvalidReport` naming each bad field (at most 10)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidReport([{"field": "(body)", "message": "not JSON"}]) from None
    if not isinstance(data, dict):
        raise InvalidReport([{"field": "(body)", "message": "must be a JSON object"}])
    try:
        return ReportIn.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False)[:10]:
            message = str(error["msg"]).removeprefix("Value error, ")[:200]
            field = _CROSS_FIELD.get(message) or _field_of(tuple(error["loc"]))
            problems.append({"field": field, "message": message})
        raise InvalidReport(problems) from None
