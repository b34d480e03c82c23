"""The normalized message the worker and the rules see, whatever API it came from."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]

#: ``MsgFlagBits`` value of a recalled one-to-one message.
FLAG_RECALLED = 8


class ConversationKind(enum.StrEnum):
    """Which history API a message came from."""

    C2C = "c2c"
    OFFICIAL_ACCOUNT = "official_account"
    GROUP = "group"


class MessageState(enum.StrEnum):
    """Whether a message can still be acted on."""

    NORMAL = "normal"
    RECALLED = "recalled"  # MsgFlagBits 8 (one-to-one) or IsPlaceMsg 2
    HOLE = "hole"  # IsPlaceMsg 1: deleted, expired or never stored; no body


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation's history, normalized.

    ``body`` is the API's own ``MsgBody`` (a list of ``{"MsgType", "MsgContent"}`` elements), kept as
    given so that rules and evidence see exactly what the service holds.
    """

    kind: ConversationKind
    msg_key: str
    from_account: str
    timestamp: int
    seq: int
    random: int = 0
    to_account: str | None = None
    state: MessageState = MessageState.NORMAL
    body: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    cloud_custom_data: str = ""
    flag_bits: int = 0
    #: ``IsSystemMsg`` 1 in a group's history: sent by the service (a group tip), never by the sender named.
    system: bool = False

    @property
    def is_actionable(self) -> bool:
        """True when the message still exists and could be recalled."""
        return self.state is MessageState.NORMAL
