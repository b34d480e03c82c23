"""Seeding an app through the documented APIs: accounts, one-to-one history, official accounts.

Used by the demo, the tests and the benchmarks; works against the emulator or a real staging app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.tim.history import ApiCaller
from worker.tim.models import JsonObject


def text(value: str) -> JsonObject:
    """A ``TIMTextElem`` element."""
    return {"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}


async def import_accounts(client: ApiCaller, users: Sequence[str]) -> None:
    """Import ``users`` (100 per call)."""
    for start in range(0, len(users), 100):
        await client.call(
            "im_open_login_svc/multiaccount_import", {"Accounts": list(users[start : start + 100])}
        )


async def import_c2c(
    client: ApiCaller,
    *,
    sender: str,
    receiver: str,
    timestamp: int,
    seq: int,
    random: int,
    body: Sequence[JsonObject],
    cloud_custom_data: str = "",
) -> str:
    """Import one historical one-to-one message (``importmsg``); returns its MsgKey."""
    request: dict[str, Any] = {
        "SyncFromOldSystem": 2,
        "From_Account": sender,
        "To_Account": receiver,
        "MsgSeq": seq,
        "MsgRandom": random,
        "MsgTimeStamp": timestamp,
        "MsgBody": list(body),
    }
    if cloud_custom_data:
        request["CloudCustomData"] = cloud_custom_data
    await client.call("openim/importmsg", request)
    return f"{seq}_{random}_{timestamp}"


async def send_c2c(
    client: ApiCaller,
    *,
    sender: str,
    receiver: str,
    random: int,
    body: Sequence[JsonObject],
    sync_other_machine: int = 1,
) -> str:
    """Send one one-to-one message now (``sendmsg``); returns its MsgKey."""
    reply = await client.call(
        "openim/sendmsg",
        {
            "SyncOtherMachine": sync_other_machine,
            "From_Account": sender,
            "To_Account": receiver,
            "MsgRandom": random,
            "MsgBody": list(body),
        },
    )
    return str(reply["MsgKey"])


async def create_official_account(client: ApiCaller, *, owner: str, name: str, user_id: str = "") -> str:
    """Create an official account; returns its id."""
    request = {"Owner_Account": owner, "Name": name}
    if user_id:
        request["OfficialAccountUserID"] = user_id
    reply = await client.call("official_account_open_http_svc/create_official_account", request)
    return str(reply["OfficialAccountUserID"])


async def add_subscribers(client: ApiCaller, account: str, users: Sequence[str]) -> None:
    """Subscribe ``users`` to ``account``."""
    await client.call(
        "official_account_open_http_svc/add_subscriber",
        {"Official_Account": account, "SubscriberList": [{"Subscriber_Account": u} for u in users]},
    )


async def send_official_account(
    client: ApiCaller, *, account: str, random: int, body: Sequence[JsonObject], cloud_custom_data: str = ""
) -> str:
    """Broadcast one official-account message; returns its MsgKey."""
    request: dict[str, Any] = {"Official_Account": account, "Random": random, "MsgBody": list(body)}
    if cloud_custom_data:
        request["CloudCustomData"] = cloud_custom_data
    reply = await client.call("official_account_open_http_svc/send_official_account_msg", request)
    return str(reply["MsgKey"])
