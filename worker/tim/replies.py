"""Pure parsing of history replies into typed pages of normalized messages.

Each function checks the fields the worker relies on and raises :class:`TimProtocolError` naming the first
field that is missing or mistyped, so a malformed reply fails the job with a clear reason instead of
crashing the process or being read wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.tim.errors import TimProtocolError
from worker.tim.models import FLAG_RECALLED, ConversationKind, JsonObject, Message, MessageState

ROAM_COMMAND = "admin_getroammsg"
OA_HISTORY_COMMAND = "official_account_msg_get_simple"
GROUP_HISTORY_COMMAND = "group_msg_get_simple"


def _field(  # noqa: PLR0917 - called for dozens of fields; keywords would bury the names
    obj: Mapping[str, Any], name: str, kind: type, command: str, where: str, default: Any = None
) -> Any:
    value = obj.get(name, default)
    # bool is an int subclass; a JSON true is never a valid count or time here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        shown = "missing" if name not in obj else f"a {type(value).__name__}"
        raise TimProtocolError(command, f"{where}{name} is {shown}, expected {kind.__name__}")
    return value


def _choice(  # noqa: PLR0917 - as _field
    obj: Mapping[str, Any], name: str, allowed: tuple[int, ...], command: str, where: str, default: Any = None
) -> int:
    """An integer field that must be one of ``allowed``."""
    value: int = _field(obj, name, int, command, where, default)
    if value not in allowed:
        expected = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
        raise TimProtocolError(command, f"{where}{name} is {value}, expected {expected}")
    return value


def _body(item: Mapping[str, Any], command: str, where: str) -> tuple[JsonObject, ...]:
    body = item.get("MsgBody", [])
    if body is None:
        return ()
    if not isinstance(body, list) or not all(isinstance(element, dict) for element in body):
        raise TimProtocolError(command, f"{where}MsgBody is not a list of objects")
    return tuple(body)


@dataclass(frozen=True, slots=True)
class RoamPage:
    """One page of ``admin_getroammsg``."""

    complete: bool
    last_msg_time: int
    last_msg_key: str
    messages: tuple[Message, ...]


def parse_roam_page(reply: Mapping[str, Any]) -> RoamPage:
    """Parse an ``admin_getroammsg`` reply."""
    cmd = ROAM_COMMAND
    complete = _choice(reply, "Complete", (0, 1), cmd, "")
    items = _field(reply, "MsgList", list, cmd, "", default=[])
    messages = tuple(_roam_message(item, i) for i, item in enumerate(items))
    last_time = _field(reply, "LastMsgTime", int, cmd, "", default=0)
    last_key = _field(reply, "LastMsgKey", str, cmd, "", default="")
    return RoamPage(complete == 1, last_time, last_key, messages)


def _roam_message(item: Any, index: int) -> Message:
    cmd, where = ROAM_COMMAND, f"MsgList[{index}]."
    if not isinstance(item, dict):
        raise TimProtocolError(cmd, f"MsgList[{index}] is not an object")
    flags = _field(item, "MsgFlagBits", int, cmd, where, default=0)
    return Message(
        kind=ConversationKind.C2C,
        msg_key=_field(item, "MsgKey", str, cmd, where),
        from_account=_field(item, "From_Account", str, cmd, where),
        to_account=_field(item, "To_Account", str, cmd, where),
        timestamp=_field(item, "MsgTimeStamp", int, cmd, where),
        seq=_field(item, "MsgSeq", int, cmd, where, default=0),
        random=_field(item, "MsgRandom", int, cmd, where, default=0),
        state=MessageState.RECALLED if flags & FLAG_RECALLED else MessageState.NORMAL,
        body=_body(item, cmd, where),
        cloud_custom_data=_field(item, "CloudCustomData", str, cmd, where, default=""),
        flag_bits=flags,
    )


@dataclass(frozen=True, slots=True)
class OfficialAccountPage:
    """One page of ``official_account_msg_get_simple``."""

    is_finished: int  # 0 more to pull, 1 all returned, 2 the rest has expired
    last_msg_key: str
    messages: tuple[Message, ...]


_PLACE_STATES = {0: MessageState.NORMAL, 1: MessageState.HOLE, 2: MessageState.RECALLED}


def parse_official_account_page(reply: Mapping[str, Any]) -> OfficialAccountPage:
    """Parse an ``official_account_msg_get_simple`` reply."""
    cmd = OA_HISTORY_COMMAND
    finished = _choice(reply, "IsFinished", (0, 1, 2), cmd, "")
    items = _field(reply, "RspMsgList", list, cmd, "", default=[])
    messages = tuple(_official_account_message(item, i) for i, item in enumerate(items))
    last_key = reply.get("LastMsgKey")
    if not isinstance(last_key, str) or not last_key:
        # The key of the oldest message returned is where the next pull continues from.
        last_key = min(messages, key=lambda m: m.seq).msg_key if messages else ""
    return OfficialAccountPage(finished, last_key, messages)


def _official_account_message(item: Any, index: int) -> Message:
    cmd, where = OA_HISTORY_COMMAND, f"RspMsgList[{index}]."
    if not isinstance(item, dict):
        raise TimProtocolError(cmd, f"RspMsgList[{index}] is not an object")
    place = _choice(item, "IsPlaceMsg", tuple(_PLACE_STATES), cmd, where, default=0)
    return Message(
        kind=ConversationKind.OFFICIAL_ACCOUNT,
        msg_key=_field(item, "MsgKey", str, cmd, where),
        from_account=_field(item, "From_Account", str, cmd, where, default=""),
        timestamp=_field(item, "MsgTimeStamp", int, cmd, where, default=0),
        seq=_field(item, "MsgSeq", int, cmd, where),
        random=_field(item, "MsgRandom", int, cmd, where, default=0),
        state=_PLACE_STATES[place],
        body=_body(item, cmd, where),
        cloud_custom_data=_field(item, "CloudCustomData", str, cmd, where, default=""),
    )


@dataclass(frozen=True, slots=True)
class GroupPage:
    """One page of ``group_msg_get_simple``.

    ``is_finished`` is 1 when the whole requested seq range came back (not that the history is exhausted),
    0 when the reply was cut short (over 1 MB, or a range over 20), 2 when cut short and every message
    below has expired.
    """

    is_finished: int
    messages: tuple[Message, ...]


def parse_group_page(reply: Mapping[str, Any]) -> GroupPage:
    """Parse a ``group_msg_get_simple`` reply. A message's ``msg_key`` is its ``MsgSeq`` as a string."""
    cmd = GROUP_HISTORY_COMMAND
    finished = _choice(reply, "IsFinished", (0, 1, 2), cmd, "")
    items = _field(reply, "RspMsgList", list, cmd, "", default=[])
    return GroupPage(finished, tuple(_group_message(item, i) for i, item in enumerate(items)))


def _group_message(item: Any, index: int) -> Message:
    cmd, where = GROUP_HISTORY_COMMAND, f"RspMsgList[{index}]."
    if not isinstance(item, dict):
        raise TimProtocolError(cmd, f"RspMsgList[{index}] is not an object")
    seq = _field(item, "MsgSeq", int, cmd, where)
    if seq < 1:
        raise TimProtocolError(cmd, f"{where}MsgSeq is {seq}, expected a positive integer")
    place = _choice(item, "IsPlaceMsg", tuple(_PLACE_STATES), cmd, where, default=0)
    state = _PLACE_STATES[place]
    system = _choice(item, "IsSystemMsg", (0, 1), cmd, where, default=0)
    # Only placeholders (deleted, expired, recalled) may come without a time: a live message without one
    # could not be placed in or out of the window.
    if state is MessageState.NORMAL:
        timestamp = _field(item, "MsgTimeStamp", int, cmd, where)
    else:
        timestamp = _field(item, "MsgTimeStamp", int, cmd, where, default=0)
    if timestamp < 0:
        raise TimProtocolError(cmd, f"{where}MsgTimeStamp is {timestamp}, expected 0 or more")
    return Message(
        kind=ConversationKind.GROUP,
        msg_key=str(seq),
        from_account=_field(item, "From_Account", str, cmd, where, default=""),
        timestamp=timestamp,
        seq=seq,
        random=_field(item, "MsgRandom", int, cmd, where, default=0),
        state=state,
        body=_body(item, cmd, where),
        cloud_custom_data=_field(item, "CloudCustomData", str, cmd, where, default=""),
        system=system == 1,
    )
