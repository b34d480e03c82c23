"""One-to-one conversations: storage, per-party views, history pages, recall, deletion.

Messages are kept once per conversation, sorted by ``(MsgTimeStamp, MsgSeq, MsgRandom)`` (the service
sorts by time, then by seq within a second); each remembers which parties no longer see it. A history
page is cut newest-first from a bisected position, listed oldest-first, and stops before the reply would
pass the size cap, exactly as the documented samples show.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.emulator.errors import ApiFailure

SortKey = tuple[int, int, int]

_KEY_RE = re.compile(r"^(\d+)_(\d+)_(\d+)$")
RECALLED_FLAG = 8


def msg_key(seq: int, random: int, timestamp: int) -> str:
    """The MsgKey of a one-to-one message: ``MsgSeq_MsgRandom_MsgTime``."""
    return f"{seq}_{random}_{timestamp}"


def parse_msg_key(key: str) -> SortKey | None:
    """``(time, seq, random)`` of a MsgKey, or None if it is not one."""
    match = _KEY_RE.match(key)
    if match is None:
        return None
    seq, random, timestamp = (int(part) for part in match.groups())
    return (timestamp, seq, random)


@dataclass(slots=True)
class C2CMessage:
    """A stored one-to-one message."""

    sender: str
    receiver: str
    seq: int
    random: int
    timestamp: int
    body: list[dict[str, Any]]
    cloud_custom_data: str = ""
    flag_bits: int = 0
    hidden_for: set[str] = field(default_factory=set)
    _item: bytes | None = None

    @property
    def key(self) -> str:
        return msg_key(self.seq, self.random, self.timestamp)

    @property
    def sort_key(self) -> SortKey:
        return (self.timestamp, self.seq, self.random)

    def item_json(self) -> bytes:
        """The message as one ``MsgList`` item, serialized once and reused until it changes."""
        if self._item is None:
            self._item = orjson.dumps(
                {
                    "From_Account": self.sender,
                    "To_Account": self.receiver,
                    "MsgSeq": self.seq,
                    "MsgRandom": self.random,
                    "MsgTimeStamp": self.timestamp,
                    "MsgFlagBits": self.flag_bits,
                    "IsPeerRead": 0,
                    "MsgKey": self.key,
                    "MsgBody": self.body,
                    "CloudCustomData": self.cloud_custom_data,
                }
            )
        return self._item

    def mark_recalled(self) -> None:
        self.flag_bits |= RECALLED_FLAG
        self._item = None

    def public(self) -> dict[str, Any]:
        """The message with its per-party visibility, for the control surface."""
        return {**orjson.loads(self.item_json()), "HiddenFor": sorted(self.hidden_for)}


def pair_of(a: str, b: str) -> tuple[str, str]:
    """The unordered conversation id of two accounts."""
    return (a, b) if a <= b else (b, a)


class C2CConversation:
    """All messages between two accounts, sorted."""

    def __init__(self) -> None:
        self._keys: list[SortKey] = []
        self._messages: list[C2CMessage] = []
        self._by_key: dict[SortKey, C2CMessage] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, message: C2CMessage) -> bool:
        """Store ``message`` unless one with the same (seq, random, time) exists. True if stored."""
        sort_key = message.sort_key
        if sort_key in self._by_key:
            return False
        index = bisect.bisect_right(self._keys, sort_key)
        self._keys.insert(index, sort_key)
        self._messages.insert(index, message)
        self._by_key[sort_key] = message
        return True

    def get(self, key: str) -> C2CMessage | None:
        """The message with MsgKey ``key``."""
        sort_key = parse_msg_key(key)
        return None if sort_key is None else self._by_key.get(sort_key)

    def messages(self) -> list[C2CMessage]:
        """All messages, oldest first."""
        return list(self._messages)

    def page(
        self,
        viewer: str,
        *,
        min_time: int,
        max_time: int,
        before: SortKey | None,
        max_count: int,
        max_bytes: int,
        oldest_visible: int,
    ) -> tuple[list[C2CMessage], bool]:
        """The newest messages ``viewer`` sees in ``[min_time, max_time]`` strictly older than ``before``.

        Returns the page (oldest first) and whether nothing older remains. The page stops before its
        serialized items would pass ``max_bytes``, but always holds at least one message.
        """
        floor = max(min_time, oldest_visible)
        upper = bisect.bisect_right(self._keys, (max_time, 2**63, 2**63))
        if before is not None:
            upper = min(upper, bisect.bisect_left(self._keys, before))
        lower = bisect.bisect_left(self._keys, (floor, -1, -1))
        page: list[C2CMessage] = []
        size = 0
        index = upper - 1
        while index >= lower:
            message = self._messages[index]
            if viewer not in message.hidden_for:
                item_size = len(message.item_json()) + 1
                if page and (len(page) >= max_count or size + item_size > max_bytes):
                    break
                page.append(message)
                size += item_size
            index -= 1
        complete = True
        while index >= lower:
            if viewer not in self._messages[index].hidden_for:
                complete = False
                break
            index -= 1
        page.reverse()
        return page, complete


class C2CStore:
    """Every one-to-one conversation."""

    def __init__(self) -> None:
        self._conversations: dict[tuple[str, str], C2CConversation] = {}

    def conversation(self, a: str, b: str) -> C2CConversation:
        """The conversation of ``a`` and ``b``, created empty on first use."""
        pair = pair_of(a, b)
        conversation = self._conversations.get(pair)
        if conversation is None:
            conversation = self._conversations[pair] = C2CConversation()
        return conversation

    def find(self, a: str, b: str) -> C2CConversation | None:
        """The conversation of ``a`` and ``b`` if it has ever held a message."""
        return self._conversations.get(pair_of(a, b))

    def recall(self, sender: str, receiver: str, key: str, *, roaming_floor: int, apply: bool = True) -> None:
        """Recall the message ``key`` sent by ``sender`` to ``receiver``, or raise the documented code."""
        if parse_msg_key(key) is None:
            raise ApiFailure(90054, "MsgKey is invalid")
        conversation = self.find(sender, receiver)
        message = conversation.get(key) if conversation else None
        if message is None or message.sender != sender or message.timestamp < roaming_floor:
            raise ApiFailure(20022, "the message to recall does not exist")
        if message.flag_bits & RECALLED_FLAG:
            raise ApiFailure(20023, "the message has already been recalled")
        if apply:
            message.mark_recalled()

    def stats(self) -> dict[str, int]:
        """Counts for the control surface."""
        return {
            "conversations": len(self._conversations),
            "messages": sum(len(c) for c in self._conversations.values()),
        }
