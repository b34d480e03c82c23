"""Message bodies as the service accepts them: element checks and the 12 KB size limit."""

from __future__ import annotations

from typing import Any

import orjson

from worker.emulator.errors import ApiFailure

#: Element types of the documented message formats.
ELEMENT_TYPES = frozenset(
    {
        "TIMTextElem",
        "TIMLocationElem",
        "TIMFaceElem",
        "TIMCustomElem",
        "TIMSoundElem",
        "TIMImageElem",
        "TIMFileElem",
        "TIMVideoFileElem",
        "TIMRelayElem",
    }
)
MAX_MESSAGE_BYTES = 12 * 1024

BAD_BODY = 90002  # MsgBody is not an array of elements in the documented format
BAD_MSGTYPE = 90007  # an element's MsgType is not a string
TOO_LONG = 93000  # the message is over the size limit


def check_body(body: Any, cloud_custom_data: str) -> list[dict[str, Any]]:
    """Return ``body`` if it is a valid ``MsgBody``; raise :class:`ApiFailure` otherwise."""
    if not isinstance(body, list) or not body:
        raise ApiFailure(BAD_BODY, "MsgBody is missing or is not a non-empty array")
    custom = 0
    for index, element in enumerate(body):
        if not isinstance(element, dict):
            raise ApiFailure(BAD_BODY, f"MsgBody[{index}] is not an object")
        msg_type = element.get("MsgType")
        if not isinstance(msg_type, str):
            raise ApiFailure(BAD_MSGTYPE, f"MsgBody[{index}].MsgType is not a string")
        if msg_type not in ELEMENT_TYPES:
            raise ApiFailure(BAD_BODY, f"MsgBody[{index}].MsgType {msg_type!r} is not a known element type")
        if not isinstance(element.get("MsgContent"), dict):
            raise ApiFailure(BAD_BODY, f"MsgBody[{index}].MsgContent is not an object")
        custom += msg_type == "TIMCustomElem"
    if custom > 1:
        raise ApiFailure(BAD_BODY, "a message may hold only one TIMCustomElem")
    if len(orjson.dumps(body)) + len(cloud_custom_data.encode()) > MAX_MESSAGE_BYTES:
        raise ApiFailure(TOO_LONG, "message is over 12 KB")
    return body
