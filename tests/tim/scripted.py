"""A scripted API caller for unit tests of the paging logic: it answers a fixed list of replies in order."""

from __future__ import annotations

from typing import Any


class ScriptedCaller:
    """Returns ``replies`` one per call and records every request body."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    async def call(self, path: str, body: Any) -> dict[str, Any]:
        self.requests.append(dict(body))
        return self.replies.pop(0)


def roam_item(key: str, sender: str = "u1", receiver: str = "u2", text: str = "hi") -> dict[str, Any]:
    seq, random, timestamp = (int(x) for x in key.split("_"))
    return {
        "From_Account": sender,
        "To_Account": receiver,
        "MsgSeq": seq,
        "MsgRandom": random,
        "MsgTimeStamp": timestamp,
        "MsgFlagBits": 0,
        "MsgKey": key,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        "CloudCustomData": "",
    }


def roam_page(keys: list[str], complete: int) -> dict[str, Any]:
    items = [roam_item(k) for k in keys]
    first = items[0] if items else None
    return {
        "ActionStatus": "OK",
        "ErrorCode": 0,
        "ErrorInfo": "",
        "Complete": complete,
        "MsgCnt": len(items),
        "LastMsgTime": first["MsgTimeStamp"] if first else 0,
        "LastMsgKey": first["MsgKey"] if first else "",
        "MsgList": items,
    }
