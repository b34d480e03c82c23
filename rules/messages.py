"""Reading messages in the Chat API's own JSON shape, for trying rules out (``recall-worker rules eval``).

Accepted: one JSON value, or JSON lines (one value a line). A value is a message (an object with
``MsgBody``, as in ``admin_getroammsg``'s ``MsgList`` or ``official_account_msg_get_simple``'s
``RspMsgList``), a list of them, or a whole reply holding ``MsgList`` or ``RspMsgList``. Missing fields get
defaults; a message without ``MsgKey`` is named ``#<n>`` (its 1-based position in the input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from worker.tim.models import FLAG_RECALLED, ConversationKind, Message, MessageState


class MessagesError(ValueError):
    """Input that is not messages; says where."""


def _int(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name, "")
    return value if isinstance(value, str) else ""


def message_from_api(item: Mapping[str, Any], position: int) -> Message:
    """A :class:`Message` from one API message object (``position`` is 1-based, for the default key)."""
    body = item.get("MsgBody") or []
    if not isinstance(body, list):
        raise MessagesError(f"message {position}: MsgBody is not a list")
    flags = _int(item, "MsgFlagBits")
    place = _int(item, "IsPlaceMsg")
    state = MessageState.NORMAL
    if flags & FLAG_RECALLED or place == 2:
        state = MessageState.RECALLED
    elif place == 1:
        state = MessageState.HOLE
    return Message(
        kind=ConversationKind.OFFICIAL_ACCOUNT if "IsPlaceMsg" in item else ConversationKind.C2C,
        msg_key=_str(item, "MsgKey") or f"#{position}",
        from_account=_str(item, "From_Account"),
        to_account=_str(item, "To_Account") or None,
        timestamp=_int(item, "MsgTimeStamp"),
        seq=_int(item, "MsgSeq"),
        random=_int(item, "MsgRandom"),
        state=state,
        body=tuple(e for e in body if isinstance(e, dict)),
        cloud_custom_data=_str(item, "CloudCustomData"),
        flag_bits=flags,
    )


def _items(value: Any, where: str) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        for k, item in enumerate(value):
            yield from _items(item, f"{where}[{k}]")
    elif isinstance(value, dict):
        for container in ("MsgList", "RspMsgList"):
            if isinstance(value.get(container), list) and "MsgBody" not in value:
                yield from _items(value[container], f"{where}.{container}")
                return
        if "MsgBody" not in value:
            raise MessagesError(f"{where}: an object without MsgBody, MsgList or RspMsgList")
        yield value
    else:
        raise MessagesError(f"{where}: expected a message object or a list, got {type(value).__name__}")


def parse_messages(text: str, source: str = "<stdin>") -> list[Message]:
    """Every message in ``text`` (one JSON value, or JSON lines)."""
    values: list[tuple[str, Any]] = []
    try:
        values.append((source, json.loads(text)))
    except ValueError:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values.append((f"{source}:{number}", json.loads(line)))
            except ValueError as exc:
                raise MessagesError(f"{source}:{number}: not JSON: {exc}") from exc
    messages: list[Message] = []
    for where, value in values:
        for item in _items(value, where):
            messages.append(message_from_api(item, len(messages) + 1))
    return messages
