"""Seeding an app through the documented APIs: accounts, one-to-one history, official accounts, groups.

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


GROUP_SERVICE = "group_open_http_svc"
#: ``import_group_msg`` takes at most 7 messages a call [https://cloud.tencent.com/document/product/269/1635].
GROUP_IMPORT_BATCH = 7


async def create_group(
    client: ApiCaller,
    *,
    owner: str,
    group_type: str,
    members: Sequence[str] = (),
    name: str = "",
    group_id: str = "",
    support_topic: bool = False,
) -> str:
    """Create a group (``create_group``); returns its GroupId.

    ``group_type`` is a documented ``Type`` (Private/Work, Public, ChatRoom/Meeting, AVChatRoom, Community);
    ``name`` defaults to the type; ``support_topic`` asks a Community for topics. Adding ``members`` here
    records a join tip (a system message) in the group's history.
    """
    request: dict[str, Any] = {"Owner_Account": owner, "Type": group_type, "Name": name or group_type}
    if members:
        request["MemberList"] = [{"Member_Account": user} for user in members]
    if group_id:
        request["GroupId"] = group_id
    if support_topic:
        request["SupportTopic"] = 1
    reply = await client.call(f"{GROUP_SERVICE}/create_group", request)
    return str(reply["GroupId"])


async def create_topic(client: ApiCaller, *, group_id: str, name: str, topic_id: str = "") -> str:
    """Create a topic in a topic-enabled community (``create_topic``); returns its TopicId."""
    request = {"GroupId": group_id, "TopicName": name}
    if topic_id:
        request["TopicId"] = topic_id
    reply = await client.call("million_group_open_http_svc/create_topic", request)
    return str(reply["TopicId"])


async def add_group_members(client: ApiCaller, group_id: str, users: Sequence[str]) -> None:
    """Add ``users`` to the group (``add_group_member``, 300 per call); each add records a join tip."""
    for start in range(0, len(users), 300):
        await client.call(
            f"{GROUP_SERVICE}/add_group_member",
            {"GroupId": group_id, "MemberList": [{"Member_Account": u} for u in users[start : start + 300]]},
        )


async def import_group_messages(
    client: ApiCaller,
    *,
    group_id: str,
    messages: Sequence[tuple[str, int, int, Sequence[JsonObject]]],
    topic_id: str = "",
) -> list[int]:
    """Import historical group (or topic) messages (``import_group_msg``, 7 per call); returns their
    MsgSeqs in order.

    Each message is ``(sender, send time, random, body)``. The service takes them only in increasing
    time order, each later than the group's creation and its newest message and earlier than now: to seed
    old history, create the group while the emulator's clock is set back. A message the service refuses
    raises :class:`ValueError` naming its per-message Result.
    """
    seqs: list[int] = []
    for start in range(0, len(messages), GROUP_IMPORT_BATCH):
        batch = messages[start : start + GROUP_IMPORT_BATCH]
        request: dict[str, Any] = {
            "GroupId": group_id,
            "MsgList": [
                {"From_Account": sender, "SendTime": send_time, "Random": random, "MsgBody": list(body)}
                for sender, send_time, random, body in batch
            ],
        }
        if topic_id:
            request["TopicId"] = topic_id
        reply = await client.call(f"{GROUP_SERVICE}/import_group_msg", request)
        for offset, result in enumerate(reply["ImportMsgResult"]):
            if result["Result"] != 0:
                raise ValueError(
                    f"message {start + offset} (SendTime {result['MsgTime']}) was refused: "
                    f"Result {result['Result']}"
                )
            seqs.append(int(result["MsgSeq"]))
    return seqs


async def send_group(
    client: ApiCaller,
    *,
    group_id: str,
    sender: str,
    random: int,
    body: Sequence[JsonObject],
    topic_id: str = "",
) -> int:
    """Send one group (or topic) message now (``send_group_msg``); returns its MsgSeq."""
    request: dict[str, Any] = {
        "GroupId": group_id,
        "From_Account": sender,
        "Random": random,
        "MsgBody": list(body),
    }
    if topic_id:
        request["TopicId"] = topic_id
    reply = await client.call(f"{GROUP_SERVICE}/send_group_msg", request)
    return int(reply["MsgSeq"])
