"""Official accounts: accounts, subscribers, broadcast messages, history pages by seq, recall.

Messages are numbered from seq 1 in arrival order and keyed ``Seq_1_ServerTime``. A history page walks
back from the newest message (or from just before ``LastMsgKey``), at most 20 messages and at most the
size cap, listed oldest first as in the documented sample.
"""

from __future__ import annotations

import enum
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.emulator.errors import ApiFailure

OA_PREFIX = "@TOA#_"
MAX_PAGE = 20

BAD_PARAMETER = 10004
NO_SUCH_ACCOUNT = 10010
BAD_ACCOUNT_ID = 10015
NOT_FOUND = 10030
ALREADY_RECALLED = 20023  # no per-item code is documented; the one-to-one code is used
ID_TAKEN = 130008

_KEY_RE = re.compile(r"^(\d+)_1_(\d+)$")


class OAState(enum.IntEnum):
    """``IsPlaceMsg`` of a stored message."""

    NORMAL = 0
    HOLE = 1
    RECALLED = 2


@dataclass(slots=True)
class OAMessage:
    """A stored official-account message."""

    account: str
    seq: int
    timestamp: int
    random: int
    body: list[dict[str, Any]]
    cloud_custom_data: str = ""
    state: OAState = OAState.NORMAL
    _item: bytes | None = None

    @property
    def key(self) -> str:
        return f"{self.seq}_1_{self.timestamp}"

    def item_json(self) -> bytes:
        """The message as one ``RspMsgList`` item, serialized once until it changes."""
        if self._item is None:
            self._item = orjson.dumps(
                {
                    "From_Account": self.account,
                    "IsPlaceMsg": int(self.state),
                    "MsgBody": [] if self.state is OAState.HOLE else self.body,
                    "MsgSeq": self.seq,
                    "MsgRandom": self.random,
                    "MsgKey": self.key,
                    "MsgTimeStamp": self.timestamp,
                    "MsgPriority": 2,
                    "CloudCustomData": "" if self.state is OAState.HOLE else self.cloud_custom_data,
                }
            )
        return self._item

    def set_state(self, state: OAState) -> None:
        self.state = state
        self._item = None


@dataclass(slots=True)
class OfficialAccount:
    """An official account and its message log (index = seq - 1)."""

    user_id: str
    owner: str
    name: str
    introduction: str = ""
    subscribers: set[str] = field(default_factory=set)
    messages: list[OAMessage] = field(default_factory=list)
    recent_randoms: dict[int, int] = field(default_factory=dict)


def new_account_id() -> str:
    """A generated official-account id in the documented ``@TOA#_`` form."""
    alphabet = string.ascii_uppercase + string.digits
    return OA_PREFIX + "".join(secrets.choice(alphabet) for _ in range(9))


def parse_oa_key(key: str) -> tuple[int, int] | None:
    """``(seq, time)`` of an official-account MsgKey, or None."""
    match = _KEY_RE.match(key)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


class OfficialStore:
    """Every official account."""

    def __init__(self) -> None:
        self.accounts: dict[str, OfficialAccount] = {}

    def get(self, user_id: str) -> OfficialAccount:
        """The account ``user_id``, or the documented error."""
        if not user_id.startswith(OA_PREFIX):
            raise ApiFailure(BAD_ACCOUNT_ID, f"{user_id!r} is not an official account id")
        account = self.accounts.get(user_id)
        if account is None:
            raise ApiFailure(NO_SUCH_ACCOUNT, "the official account does not exist or was destroyed")
        return account

    def page(
        self,
        account: OfficialAccount,
        *,
        last_key: str | None,
        count: int,
        with_recalled: bool,
        max_bytes: int,
        oldest_visible: int,
    ) -> tuple[list[OAMessage], int]:
        """A history page (oldest first) and its ``IsFinished`` value."""
        start = len(account.messages)
        if last_key:
            parsed = parse_oa_key(last_key)
            if parsed is None:
                raise ApiFailure(BAD_PARAMETER, "LastMsgKey is not a valid MsgKey")
            start = min(start, parsed[0] - 1)
        page: list[OAMessage] = []
        size = 0
        index = start - 1
        while index >= 0:
            message = account.messages[index]
            if message.timestamp < oldest_visible:
                break
            if message.state is not OAState.RECALLED or with_recalled:
                item_size = len(message.item_json()) + 1
                if page and (len(page) >= count or size + item_size > max_bytes):
                    break
                page.append(message)
                size += item_size
            index -= 1
        page.reverse()
        # What lies below the page decides IsFinished: more to pull (0), nothing (1), only expired (2).
        while index >= 0:
            message = account.messages[index]
            if message.timestamp < oldest_visible:
                return page, 2
            if message.state is not OAState.RECALLED or with_recalled:
                return page, 0
            index -= 1
        return page, 1

    def recall(self, account: OfficialAccount, key: str, *, oldest_visible: int, apply: bool = True) -> int:
        """Recall one message; returns its per-item RetCode."""
        parsed = parse_oa_key(key)
        if parsed is None or not 1 <= parsed[0] <= len(account.messages):
            return NOT_FOUND
        message = account.messages[parsed[0] - 1]
        if message.key != key or message.state is OAState.HOLE or message.timestamp < oldest_visible:
            return NOT_FOUND
        if message.state is OAState.RECALLED:
            return ALREADY_RECALLED
        if apply:
            message.set_state(OAState.RECALLED)
        return 0
