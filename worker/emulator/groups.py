"""Groups: every group type, members, per-group and per-topic message logs, history pages, recall.

Each group (and each topic of a topic-enabled community) keeps its own message log: seq starts at 1 and
grows in arrival order, so a log is a list indexed by ``seq - 1``. An AVChatRoom stores no history (its
messages only reach online members), so it keeps just each seq's time and whether it was recalled.

Facts and their sources (docs pages as cited in the project's reference notes):

- Group types Private (= Work), Public, ChatRoom (= Meeting), AVChatRoom, Community [create_group].
- Group history (``group_msg_get_simple``, 269/2738): newest first, at most 20 per reply, seq <= ReqMsgSeq;
  IsPlaceMsg 1 = hole (empty MsgBody), 2 = recalled; AVChatRoom has no stored history.
- Recall (``group_msg_recall``, 269/12341): any message inside the roaming period, no time limit, but an
  AVChatRoom message only within one hour.
- Wipe by sender (``delete_group_msg_by_sender``, 269/2359): the sender's messages among the last 1,000.
- Topic ids (``create_topic``, 269/78203): custom ids are ``GroupId + "@TOPIC#_" + custom part``; generated
  ids in the samples look like ``@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_@TOPIC#cRTE3HIM62C5``.
"""

from __future__ import annotations

import enum
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.emulator.errors import ApiFailure

BAD_PARAMETER = 10004
NO_PERMISSION = 10007
GROUP_GONE = 10010
NO_SUCH_GROUP = 10015
NO_SUCH_ACCOUNT = 10019
ID_USED_BY_OTHER = 10021
ID_USED_BY_OWNER = 10025

# Per-item recall RetCodes [tim-error-message.txt].
RECALL_OK = 0
RECALL_NOT_FOUND = 10030
RECALL_TOO_OLD = 10031
RECALL_NOT_ALLOWED = 10032
RECALL_REFUSED_BY_APP = 10041
#: No per-item "already recalled" code is documented; like the official-account emulator, this uses the
#: one-to-one recall API's 20023 ("message already recalled").
RECALL_ALREADY = 20023

MAX_PAGE = 20
WIPE_WINDOW = 1000
#: "AVChatRoom ... 只能撤回1个小时以内的消息" [269/12341, 2026-01 revision].
LIVE_RECALL_LIMIT_S = 3600

GROUP_PREFIX = "@TGS#"
COMMUNITY_PREFIX = "@TGS#_"
TOPIC_MARK = "@TOPIC#"
CUSTOM_TOPIC_MARK = "@TOPIC#_"
MAX_GROUP_ID_BYTES = 48
#: Sender shown on system messages (group tips). Not documented for history replies; it is the account
#: Tencent uses for system notifications elsewhere.
SYSTEM_SENDER = "@TIM#SYSTEM"

#: Accepted ``Type`` values and the kind each behaves as.
GROUP_KINDS = {
    "Private": "Private",
    "Work": "Private",
    "Public": "Public",
    "ChatRoom": "ChatRoom",
    "Meeting": "ChatRoom",
    "AVChatRoom": "AVChatRoom",
    "Community": "Community",
}
LIVE = "AVChatRoom"
COMMUNITY = "Community"

#: ``MsgPriority`` of send_group_msg (a string) and its number in history replies (1 High ... 4 Lowest).
PRIORITIES = {"High": 1, "Normal": 2, "Low": 3, "Lowest": 4}
NORMAL_PRIORITY = 2

_ID_ALPHABET = string.ascii_uppercase + string.digits


class GroupMsgState(enum.IntEnum):
    """``IsPlaceMsg`` of a stored group message."""

    NORMAL = 0
    HOLE = 1
    RECALLED = 2


@dataclass(slots=True)
class GroupMessage:
    """A stored group (or topic) message."""

    sender: str
    seq: int
    timestamp: int
    random: int
    body: list[dict[str, Any]]
    cloud_custom_data: str = ""
    priority: int = NORMAL_PRIORITY
    system: bool = False
    state: GroupMsgState = GroupMsgState.NORMAL
    _item: bytes | None = None

    def item_json(self) -> bytes:
        """The message as one ``RspMsgList`` item (fields in the documented sample's order), serialized
        once and reused until it changes. A hole keeps its metadata; only ``MsgBody`` is emptied, which
        is all the docs say of it."""
        if self._item is None:
            self._item = orjson.dumps(
                {
                    "From_Account": self.sender,
                    "IsPlaceMsg": int(self.state),
                    "IsSystemMsg": int(self.system),
                    "MsgBody": [] if self.state is GroupMsgState.HOLE else self.body,
                    "MsgPriority": self.priority,
                    "MsgRandom": self.random,
                    "MsgSeq": self.seq,
                    "MsgTimeStamp": self.timestamp,
                }
            )
        return self._item

    def set_state(self, state: GroupMsgState) -> None:
        """Change ``IsPlaceMsg`` (and drop the cached item)."""
        self.state = state
        self._item = None

    def public(self) -> dict[str, Any]:
        """The message for the control surface."""
        return {
            "MsgSeq": self.seq,
            "MsgTimeStamp": self.timestamp,
            "From_Account": self.sender,
            "MsgRandom": self.random,
            "IsPlaceMsg": int(self.state),
            "IsSystemMsg": int(self.system),
            "MsgPriority": self.priority,
            "MsgBody": self.body,
            "CloudCustomData": self.cloud_custom_data,
        }


@dataclass(slots=True)
class MessageLog:
    """One seq space: a group's own messages or a topic's.

    ``messages[seq - 1]`` is the stored message. A log that keeps no history (AVChatRoom) fills
    ``live_times`` instead, and ``live_recalled`` names its recalled seqs.
    """

    keeps_history: bool = True
    #: When the group (or topic) was created: imported messages must be newer [269/1635].
    created: int = 0
    messages: list[GroupMessage] = field(default_factory=list)
    live_times: list[int] = field(default_factory=list)
    live_recalled: set[int] = field(default_factory=set)
    #: Random -> seq of the latest message that used it (duplicate detection).
    recent_randoms: dict[int, int] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return len(self.messages) if self.keeps_history else len(self.live_times)

    def last_time(self) -> int:
        """Time of the newest message, or 0."""
        if self.keeps_history:
            return self.messages[-1].timestamp if self.messages else 0
        return self.live_times[-1] if self.live_times else 0

    def append(
        self,
        *,
        sender: str,
        timestamp: int,
        random: int,
        body: list[dict[str, Any]],
        cloud_custom_data: str = "",
        priority: int = NORMAL_PRIORITY,
        system: bool = False,
    ) -> int:
        """Store a message under the next seq; returns the seq."""
        seq = self.last_seq + 1
        if self.keeps_history:
            self.messages.append(
                GroupMessage(sender, seq, timestamp, random, body, cloud_custom_data, priority, system)
            )
        else:
            self.live_times.append(timestamp)
        if not system:
            self.recent_randoms[random] = seq
        return seq

    def duplicate_of(
        self, random: int, body: list[dict[str, Any]], now: int, window_s: int
    ) -> tuple[int, int] | None:
        """``(seq, time)`` of a message this one duplicates: same Random and content within the window."""
        seq = self.recent_randoms.get(random)
        if seq is None or not self.keeps_history:
            return None
        earlier = self.messages[seq - 1]
        if now - earlier.timestamp < window_s and earlier.body == body:
            return earlier.seq, earlier.timestamp
        return None

    def page(
        self,
        *,
        top: int | None,
        count: int,
        with_recalled: bool,
        max_bytes: int,
        oldest_visible: int,
    ) -> tuple[list[GroupMessage], int]:
        """The messages of seqs ``top - count + 1 .. top`` (newest first) and the reply's ``IsFinished``.

        ``top`` None means the newest seq. Recalled messages are left out unless ``with_recalled``;
        messages older than ``oldest_visible`` (past the roaming period) never come back, and since seqs
        follow arrival order, neither does anything below the first such message. The reply holds at
        most 20 messages and stops before its items would pass ``max_bytes`` (but holds at least one).
        IsFinished: 1 when the whole range came back; 0 when the reply was cut short (20 messages or the
        size cap) with more of the range still to come; 2 when the rest of the range has expired.
        """
        last = self.last_seq
        top = last if top is None else min(top, last)
        low = max(1, top - count + 1)
        page: list[GroupMessage] = []
        size = 0
        for seq in range(top, low - 1, -1):
            message = self.messages[seq - 1]
            if message.timestamp < oldest_visible:
                return page, 2
            if message.state is GroupMsgState.RECALLED and not with_recalled:
                continue
            item_size = len(message.item_json()) + 1
            if page and (len(page) >= MAX_PAGE or size + item_size > max_bytes):
                return page, 0
            page.append(message)
            size += item_size
        return page, 1

    def recall(
        self, seq: int, *, now: int, oldest_visible: int, limit_s: int | None, apply: bool = True
    ) -> int:
        """Recall the message ``seq``; returns its per-item RetCode."""
        if not self.keeps_history:
            return self._recall_live(seq, now=now, limit_s=limit_s, apply=apply)
        message = self.messages[seq - 1] if 1 <= seq <= len(self.messages) else None
        code = _recall_code(message, now=now, oldest_visible=oldest_visible, limit_s=limit_s)
        if message is not None and code == RECALL_OK and apply:
            message.set_state(GroupMsgState.RECALLED)
        return code

    def _recall_live(self, seq: int, *, now: int, limit_s: int | None, apply: bool) -> int:
        if not 1 <= seq <= len(self.live_times):
            return RECALL_NOT_FOUND
        if seq in self.live_recalled:
            return RECALL_ALREADY
        limit = LIVE_RECALL_LIMIT_S if limit_s is None else min(limit_s, LIVE_RECALL_LIMIT_S)
        if now - self.live_times[seq - 1] > limit:
            return RECALL_TOO_OLD
        if apply:
            self.live_recalled.add(seq)
        return RECALL_OK

    def wipe_sender(self, sender: str) -> int:
        """Recall ``sender``'s messages among the last 1,000; returns how many changed."""
        changed = 0
        for message in self.messages[-WIPE_WINDOW:]:
            if message.sender == sender and not message.system and message.state is GroupMsgState.NORMAL:
                message.set_state(GroupMsgState.RECALLED)
                changed += 1
        return changed


def _recall_code(message: GroupMessage | None, *, now: int, oldest_visible: int, limit_s: int | None) -> int:
    if message is None or message.state is GroupMsgState.HOLE or message.timestamp < oldest_visible:
        return RECALL_NOT_FOUND  # unknown seq, a hole, or past the roaming period
    if message.system:
        return RECALL_NOT_ALLOWED
    if message.state is GroupMsgState.RECALLED:
        return RECALL_ALREADY
    if limit_s is not None and now - message.timestamp > limit_s:
        return RECALL_TOO_OLD
    return RECALL_OK


@dataclass(slots=True)
class Topic:
    """A topic of a topic-enabled community, with its own message log."""

    topic_id: str
    name: str
    log: MessageLog


@dataclass(slots=True)
class Group:
    """A group: its type, owner, members (account -> join time) and message log."""

    group_id: str
    type_name: str
    name: str
    owner: str
    log: MessageLog
    support_topic: bool = False
    members: dict[str, int] = field(default_factory=dict)
    topics: dict[str, Topic] = field(default_factory=dict)
    destroyed: bool = False

    @property
    def kind(self) -> str:
        """The group type the requested ``Type`` stands for (``Work`` is ``Private``, and so on)."""
        return GROUP_KINDS[self.type_name]

    @property
    def is_live(self) -> bool:
        return self.kind == LIVE


def new_group_id(kind: str) -> str:
    """A generated group id shaped like the documented samples.

    Samples: ``@TGS#2C5SZEAEF`` (ordinary groups), ``@TGS#_@TGS#cQVLVHIM62CJ`` (communities); AVChatRoom
    ids are commonly seen as ``@TGS#a...``.
    """
    if kind == COMMUNITY:
        return f"{COMMUNITY_PREFIX}{GROUP_PREFIX}c{_random_tail(11)}"
    lead = "a" if kind == LIVE else secrets.choice("123")
    return f"{GROUP_PREFIX}{lead}{_random_tail(8)}"


def _random_tail(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_topic_id(group_id: str) -> str:
    """A generated topic id shaped like the documented samples (``...@TOPIC#_@TOPIC#cRTE3HIM62C5``)."""
    return f"{group_id}{CUSTOM_TOPIC_MARK}{TOPIC_MARK}c{_random_tail(11)}"


def check_custom_group_id(group_id: str, kind: str) -> None:
    """Raise the documented error unless ``group_id`` may be used as a custom id for a ``kind`` group.

    Custom ids are printable ASCII, at most 48 bytes; the ``@TGS#`` prefix is reserved for generated ids,
    except that a community's id must start with ``@TGS#_`` [Group System, 269/1502 "自定义群组 ID"].
    """
    if not group_id.isascii() or not group_id.isprintable() or len(group_id) > MAX_GROUP_ID_BYTES:
        raise ApiFailure(BAD_PARAMETER, "GroupId must be printable ASCII of at most 48 bytes")
    if kind == COMMUNITY:
        if not group_id.startswith(COMMUNITY_PREFIX) or len(group_id) == len(COMMUNITY_PREFIX):
            raise ApiFailure(BAD_PARAMETER, f"a community's GroupId must start with {COMMUNITY_PREFIX}")
    elif group_id.startswith(GROUP_PREFIX):
        raise ApiFailure(BAD_PARAMETER, f"a custom GroupId may not start with {GROUP_PREFIX}")


def join_tip(operator: str, users: list[str]) -> list[dict[str, Any]]:
    """The body of the system message recording that ``users`` joined.

    The history docs only say such messages carry ``IsSystemMsg`` 1; the element is a group tip named
    like the SDK's ``TIMGroupTipElem``, with the member fields of ``Group.CallbackAfterNewMemberJoin``.
    """
    return [
        {
            "MsgType": "TIMGroupTipElem",
            "MsgContent": {
                "OpType": "Join",
                "Operator_Account": operator,
                "NewMemberList": [{"Member_Account": user} for user in users],
            },
        }
    ]


class GroupStore:
    """Every group of the app."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def get(self, group_id: str) -> Group:
        """The live group ``group_id``: 10015 if there never was one, 10010 if it was dismissed."""
        group = self.groups.get(group_id)
        if group is None:
            raise ApiFailure(NO_SUCH_GROUP, f"no group has the id {group_id!r}")
        if group.destroyed:
            raise ApiFailure(GROUP_GONE, "the group does not exist or was dismissed")
        return group

    def log_of(self, group: Group, topic_id: str) -> MessageLog:
        """The message log a request with ``TopicId`` (empty = none) addresses.

        Only a topic-enabled community has topics ("仅支持话题的社群适用此选项"); naming a topic elsewhere is
        answered 10007, the code the docs give for a request the group type does not support (import into
        an AVChatRoom, 269/1635). An unknown topic is 10010, "does not exist or was dismissed".
        """
        if not topic_id:
            return group.log
        if not group.support_topic:
            raise ApiFailure(NO_PERMISSION, "TopicId applies only to a community that supports topics")
        topic = group.topics.get(topic_id)
        if topic is None:
            raise ApiFailure(GROUP_GONE, f"the topic {topic_id!r} does not exist or was dismissed")
        return topic.log

    def add_members(self, group: Group, users: list[str], now: int) -> list[str]:
        """Add the accounts not yet members; returns those added, in order."""
        added = []
        for user in users:
            if user not in group.members:
                group.members[user] = now
                added.append(user)
        return added

    def stats(self) -> dict[str, int]:
        """Counts for the control surface."""
        live = [g for g in self.groups.values() if not g.destroyed]
        return {
            "groups": len(live),
            "topics": sum(len(g.topics) for g in live),
            "group_messages": sum(
                len(g.log.messages) + sum(len(t.log.messages) for t in g.topics.values()) for g in live
            ),
        }
