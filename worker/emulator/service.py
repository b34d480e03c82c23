"""The emulated service: accounts, one-to-one, official-account and group state, and the documented commands.

Each handler takes the parsed request body and returns the reply's own fields (a dict, or pre-rendered
JSON members for the hot history paths); it raises :class:`ApiFailure` for a documented error. The gateway
adds ``ActionStatus/ErrorCode/ErrorInfo`` and does everything common to all commands.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from worker.emulator.c2c import C2CMessage, C2CStore, msg_key, parse_msg_key
from worker.emulator.clock import Clock
from worker.emulator.errors import ApiFailure
from worker.emulator.fields import UINT32_MAX, opt_int, opt_str, req_int, req_list, req_str
from worker.emulator.groups import (
    COMMUNITY,
    CUSTOM_TOPIC_MARK,
    GROUP_KINDS,
    ID_USED_BY_OTHER,
    ID_USED_BY_OWNER,
    LIVE,
    NO_PERMISSION,
    NO_SUCH_ACCOUNT,
    PRIORITIES,
    RECALL_REFUSED_BY_APP,
    SYSTEM_SENDER,
    Group,
    GroupStore,
    MessageLog,
    Topic,
    check_custom_group_id,
    join_tip,
    new_group_id,
    new_topic_id,
)
from worker.emulator.messages import TOO_LONG, check_body
from worker.emulator.official import (
    BAD_PARAMETER,
    ID_TAKEN,
    MAX_PAGE,
    OA_PREFIX,
    OAMessage,
    OfficialAccount,
    OfficialStore,
    new_account_id,
)

OA_SERVICE = "official_account_open_http_svc"
GROUP_SERVICE = "group_open_http_svc"
TOPIC_SERVICE = "million_group_open_http_svc"
# openim codes (admin_getroammsg / sendmsg / importmsg / admin_msgwithdraw pages)
JSON_INVALID = 90001
TO_ACCOUNT_BAD = 90003
MSG_RANDOM_BAD = 90005
FROM_ACCOUNT_BAD = 90008
FORMAT_INVALID = 90010
# account import and conversation codes
ACCOUNT_PARAM_BAD = 70402
CONTACT_PARAM_BAD = 50002
MAX_USERID_BYTES = 32
DELETE_BATCH = 30
OA_RECALL_BATCH = 10
DUPLICATE_WINDOW_S = 300
# group limits (create_group, add_group_member, import_group_msg, group_msg_recall, create_topic pages)
GROUP_NAME_BYTES = 30
GROUP_CREATE_MEMBERS = 100
GROUP_ADD_MEMBERS = 300
GROUP_IMPORT_BATCH = 7
GROUP_RECALL_BATCH = 10
GROUP_SEND_MAX_BYTES = 12 * 1024
GROUP_IMPORT_MAX_BYTES = 8000
GROUP_MSG_TOO_LONG = 80002
#: Room kept for the reply's envelope (status, counters, cursor) so the whole body stays under the cap.
ENVELOPE_BYTES = 256


@dataclass(frozen=True, slots=True)
class RawFields:
    """Reply members already serialized as JSON (``"A":1,"B":[...]``), to skip re-encoding big pages."""

    data: bytes


Reply = dict[str, Any] | RawFields
Handler = Callable[[dict[str, Any]], Reply]


@dataclass(slots=True)
class ServiceSettings:
    """Behaviour knobs of the emulated service, settable from the control surface."""

    roaming_days: float = 7.0
    roam_page_bytes: int = 13 * 1024
    oa_page_bytes: int = 13 * 1024
    #: Reply size cap of ``group_msg_get_simple`` (the real service caps replies at 1 MB).
    group_page_bytes: int = 1024 * 1024
    #: Group recall time limit in seconds; None (the documented default) recalls anything still roaming.
    group_recall_limit_s: int | None = None
    #: The app refuses group recall (per-item RetCode 10041), a console option.
    refuse_group_recall: bool = False
    #: Drop this fraction of recalls silently (answer OK, change nothing): a fault for verification tests.
    drop_recall_rate: float = 0.0


class ChatService:
    """The state and command handlers of one emulated app."""

    def __init__(self, admin: str, clock: Clock, settings: ServiceSettings | None = None) -> None:
        self.admin = admin
        self.clock = clock
        self.settings = settings or ServiceSettings()
        self.accounts: dict[str, dict[str, str]] = {}
        self.c2c = C2CStore()
        self.official = OfficialStore()
        self.groups = GroupStore()
        self.drop_recall: Callable[[], bool] = lambda: False
        self.reset()
        self.handlers: dict[str, Handler] = {
            "im_open_login_svc/account_import": self.account_import,
            "im_open_login_svc/multiaccount_import": self.multiaccount_import,
            "im_open_login_svc/account_check": self.account_check,
            "openim/sendmsg": self.sendmsg,
            "openim/importmsg": self.importmsg,
            "openim/admin_getroammsg": self.admin_getroammsg,
            "openim/admin_msgwithdraw": self.admin_msgwithdraw,
            "openim/delete_c2c_msg_ramble": self.delete_c2c_msg_ramble,
            "recentcontact/delete": self.recentcontact_delete,
            f"{OA_SERVICE}/create_official_account": self.create_official_account,
            f"{OA_SERVICE}/add_subscriber": self.add_subscriber,
            f"{OA_SERVICE}/send_official_account_msg": self.send_official_account_msg,
            f"{OA_SERVICE}/official_account_msg_get_simple": self.official_account_msg_get_simple,
            f"{OA_SERVICE}/official_account_msg_recall": self.official_account_msg_recall,
            f"{GROUP_SERVICE}/create_group": self.create_group,
            f"{GROUP_SERVICE}/destroy_group": self.destroy_group,
            f"{GROUP_SERVICE}/add_group_member": self.add_group_member,
            f"{GROUP_SERVICE}/send_group_msg": self.send_group_msg,
            f"{GROUP_SERVICE}/import_group_msg": self.import_group_msg,
            f"{GROUP_SERVICE}/group_msg_get_simple": self.group_msg_get_simple,
            f"{GROUP_SERVICE}/group_msg_recall": self.group_msg_recall,
            f"{GROUP_SERVICE}/delete_group_msg_by_sender": self.delete_group_msg_by_sender,
            f"{TOPIC_SERVICE}/create_topic": self.create_topic,
        }

    def reset(self) -> None:
        """Forget every account, group and message; only the admin account remains."""
        self.accounts = {self.admin: {"Nick": self.admin, "FaceUrl": ""}}
        self.c2c = C2CStore()
        self.official = OfficialStore()
        self.groups = GroupStore()

    def roaming_floor(self) -> int:
        """The oldest timestamp still inside the roaming period."""
        return int(self.clock.now() - self.settings.roaming_days * 86400)

    def _account(self, body: dict[str, Any], name: str, code: int) -> str:
        user = req_str(body, name, code)
        if user not in self.accounts:
            raise ApiFailure(code, f"{name} {user!r} does not exist")
        return user

    # accounts ---------------------------------------------------------------------------------------

    def _import(self, user: Any, nick: str = "", face: str = "") -> bool:
        if not isinstance(user, str) or not user or len(user.encode()) > MAX_USERID_BYTES:
            return False
        self.accounts.setdefault(user, {"Nick": nick or user, "FaceUrl": face})
        return True

    def account_import(self, body: dict[str, Any]) -> Reply:
        user = req_str(body, "UserID", ACCOUNT_PARAM_BAD)
        if not self._import(
            user, opt_str(body, "Nick", ACCOUNT_PARAM_BAD), opt_str(body, "FaceUrl", ACCOUNT_PARAM_BAD)
        ):
            raise ApiFailure(ACCOUNT_PARAM_BAD, "UserID must be 1 to 32 bytes")
        return {}

    def multiaccount_import(self, body: dict[str, Any]) -> Reply:
        users = req_list(body, "Accounts", ACCOUNT_PARAM_BAD)
        if len(users) > 100:
            raise ApiFailure(ACCOUNT_PARAM_BAD, "at most 100 accounts per call")
        return {"FailAccounts": [u for u in users if not self._import(u)]}

    def account_check(self, body: dict[str, Any]) -> Reply:
        """Whether accounts were imported (https://cloud.tencent.com/document/product/269/38417)."""
        items = req_list(body, "CheckItem", ACCOUNT_PARAM_BAD)
        if not items or len(items) > 100:
            raise ApiFailure(ACCOUNT_PARAM_BAD, "CheckItem holds 1 to 100 accounts")
        results = []
        for item in items:
            user = item.get("UserID") if isinstance(item, dict) else None
            if not isinstance(user, str) or not user:
                raise ApiFailure(ACCOUNT_PARAM_BAD, "every CheckItem needs a UserID string")
            status = "Imported" if user in self.accounts else "NotImported"
            results.append({"UserID": user, "ResultCode": 0, "ResultInfo": "", "AccountStatus": status})
        return {"ResultItem": results}

    # one-to-one -------------------------------------------------------------------------------------

    def _store_c2c(self, body: dict[str, Any], *, sender: str, timestamp: int, seq: int) -> C2CMessage | None:
        receiver = self._account(body, "To_Account", TO_ACCOUNT_BAD)
        random = req_int(body, "MsgRandom", MSG_RANDOM_BAD, hi=UINT32_MAX)
        ccd = opt_str(body, "CloudCustomData", FORMAT_INVALID)
        message = C2CMessage(
            sender=sender,
            receiver=receiver,
            seq=seq,
            random=random,
            timestamp=timestamp,
            body=check_body(body.get("MsgBody"), ccd),
            cloud_custom_data=ccd,
        )
        return message if self.c2c.conversation(sender, receiver).add(message) else None

    def sendmsg(self, body: dict[str, Any]) -> Reply:
        sender = (
            self._account(body, "From_Account", FROM_ACCOUNT_BAD) if "From_Account" in body else self.admin
        )
        sync = opt_int(body, "SyncOtherMachine", FORMAT_INVALID, 1, lo=1, hi=2)
        now = self.clock.now_s()
        timestamp = opt_int(body, "MsgTimeStamp", FORMAT_INVALID, now, hi=UINT32_MAX)
        seq = opt_int(body, "MsgSeq", FORMAT_INVALID, secrets.randbits(31) + 1, hi=UINT32_MAX)
        message = self._store_c2c(body, sender=sender, timestamp=timestamp, seq=seq)
        if message is not None and sync == 2:
            message.hidden_for.add(sender)  # SyncOtherMachine 2: not kept in the sender's history
        return {"MsgTime": timestamp, "MsgKey": msg_key(seq, body["MsgRandom"], timestamp)}

    def importmsg(self, body: dict[str, Any]) -> Reply:
        if body.get("SyncFromOldSystem") not in (2, 5):
            raise ApiFailure(FORMAT_INVALID, "SyncFromOldSystem must be 2 or 5")
        sender = self._account(body, "From_Account", FROM_ACCOUNT_BAD)
        seq = req_int(body, "MsgSeq", FORMAT_INVALID, hi=UINT32_MAX)
        timestamp = req_int(body, "MsgTimeStamp", FORMAT_INVALID, hi=UINT32_MAX)
        # A duplicate (same seq, random and time, either direction) is accepted and ignored.
        self._store_c2c(body, sender=sender, timestamp=timestamp, seq=seq)
        return {}

    def admin_getroammsg(self, body: dict[str, Any]) -> Reply:
        # The older revision of this API named the parties From_Account / To_Account.
        operator_field = "Operator_Account" if "Operator_Account" in body else "From_Account"
        peer_field = "Peer_Account" if "Peer_Account" in body else "To_Account"
        operator = self._account(body, operator_field, FROM_ACCOUNT_BAD)
        peer = req_str(body, peer_field, TO_ACCOUNT_BAD)
        max_cnt = req_int(body, "MaxCnt", JSON_INVALID, lo=1)
        min_time = req_int(body, "MinTime", JSON_INVALID)
        max_time = req_int(body, "MaxTime", JSON_INVALID)
        last_key = opt_str(body, "LastMsgKey", JSON_INVALID)
        before = None
        if last_key:
            before = parse_msg_key(last_key)
            if before is None:
                raise ApiFailure(JSON_INVALID, "LastMsgKey is not a valid MsgKey")
        conversation = self.c2c.find(operator, peer)
        page: list[C2CMessage] = []
        complete = True
        if conversation is not None and min_time <= max_time:
            page, complete = conversation.page(
                operator,
                min_time=min_time,
                max_time=max_time,
                before=before,
                max_count=max_cnt,
                max_bytes=self.settings.roam_page_bytes - ENVELOPE_BYTES,
                oldest_visible=self.roaming_floor(),
            )
        last = page[0] if page else None
        head = orjson.dumps(
            {
                "Complete": int(complete),
                "MsgCnt": len(page),
                "LastMsgTime": last.timestamp if last else 0,
                "LastMsgKey": last.key if last else "",
            }
        )
        items = b",".join(m.item_json() for m in page)
        return RawFields(head[1:-1] + b',"MsgList":[' + items + b"]")

    def admin_msgwithdraw(self, body: dict[str, Any]) -> Reply:
        sender = self._account(body, "From_Account", FROM_ACCOUNT_BAD)
        receiver = self._account(body, "To_Account", TO_ACCOUNT_BAD)
        key = req_str(body, "MsgKey", 90054)
        self.c2c.recall(
            sender, receiver, key, roaming_floor=self.roaming_floor(), apply=not self.drop_recall()
        )
        return {}

    def delete_c2c_msg_ramble(self, body: dict[str, Any]) -> Reply:
        operator = self._account(body, "Operator_Account", FROM_ACCOUNT_BAD)
        peer = self._account(body, "Peer_Account", TO_ACCOUNT_BAD)
        keys = req_list(body, "MsgKeyList", JSON_INVALID)
        if not keys or len(keys) > DELETE_BATCH or not all(isinstance(k, str) for k in keys):
            raise ApiFailure(JSON_INVALID, f"MsgKeyList must hold 1 to {DELETE_BATCH} MsgKeys")
        conversation = self.c2c.find(operator, peer)
        for key in keys:
            message = conversation.get(key) if conversation else None
            if message is not None:
                message.hidden_for.add(operator)
        return {}

    def recentcontact_delete(self, body: dict[str, Any]) -> Reply:
        owner = self._account(body, "From_Account", CONTACT_PARAM_BAD)
        peer = req_str(body, "To_Account", CONTACT_PARAM_BAD)
        if body.get("Type") != 1:
            raise ApiFailure(CONTACT_PARAM_BAD, "Type must be 1 (one-to-one conversation)")
        if body.get("ClearRamble") == 1 and (conversation := self.c2c.find(owner, peer)) is not None:
            for message in conversation.messages():
                message.hidden_for.add(owner)
        return {}

    # official accounts ------------------------------------------------------------------------------

    def create_official_account(self, body: dict[str, Any]) -> Reply:
        owner = self._account(body, "Owner_Account", BAD_PARAMETER)
        name = req_str(body, "Name", BAD_PARAMETER)
        if len(name.encode()) > 150:
            raise ApiFailure(BAD_PARAMETER, "Name is over 150 bytes")
        user_id = opt_str(body, "OfficialAccountUserID", BAD_PARAMETER) or new_account_id()
        if not user_id.startswith(OA_PREFIX):
            raise ApiFailure(130007, f"OfficialAccountUserID must start with {OA_PREFIX}")
        if user_id in self.official.accounts:
            raise ApiFailure(ID_TAKEN, "OfficialAccountUserID is already used")
        self.official.accounts[user_id] = OfficialAccount(
            user_id, owner, name, opt_str(body, "Introduction", BAD_PARAMETER)
        )
        return {"OfficialAccountUserID": user_id}

    def add_subscriber(self, body: dict[str, Any]) -> Reply:
        account = self.official.get(req_str(body, "Official_Account", BAD_PARAMETER))
        for entry in req_list(body, "SubscriberList", BAD_PARAMETER):
            user = entry.get("Subscriber_Account") if isinstance(entry, dict) else None
            if not isinstance(user, str) or user not in self.accounts:
                raise ApiFailure(BAD_PARAMETER, f"Subscriber_Account {user!r} does not exist")
            account.subscribers.add(user)
        return {}

    def send_official_account_msg(self, body: dict[str, Any]) -> Reply:
        account = self.official.get(req_str(body, "Official_Account", BAD_PARAMETER))
        random = req_int(body, "Random", BAD_PARAMETER, hi=UINT32_MAX)
        ccd = opt_str(body, "CloudCustomData", BAD_PARAMETER)
        msg_body = check_body(body.get("MsgBody"), ccd)
        now = self.clock.now_s()
        seen = account.recent_randoms.get(random)
        if seen is not None:
            earlier = account.messages[seen - 1]
            if now - earlier.timestamp < DUPLICATE_WINDOW_S and earlier.body == msg_body:
                return {"MsgTime": earlier.timestamp, "MsgKey": earlier.key}  # duplicate: dropped
        message = OAMessage(account.user_id, len(account.messages) + 1, now, random, msg_body, ccd)
        account.messages.append(message)
        account.recent_randoms[random] = message.seq
        return {"MsgTime": now, "MsgKey": message.key}

    def official_account_msg_get_simple(self, body: dict[str, Any]) -> Reply:
        account = self.official.get(req_str(body, "Official_Account", BAD_PARAMETER))
        count = min(opt_int(body, "ReqMsgNumber", BAD_PARAMETER, MAX_PAGE, lo=1), MAX_PAGE)
        last_key = opt_str(body, "LastMsgKey", BAD_PARAMETER)
        with_recalled = opt_int(body, "WithRecalledMsg", BAD_PARAMETER, 0, hi=1) == 1
        page, finished = self.official.page(
            account,
            last_key=last_key,
            count=count,
            with_recalled=with_recalled,
            max_bytes=self.settings.oa_page_bytes - ENVELOPE_BYTES,
            oldest_visible=self.roaming_floor(),
        )
        head = orjson.dumps(
            {
                "Official_Account": account.user_id,
                "IsFinished": finished,
                "LastMsgKey": page[0].key if page else last_key,
            }
        )
        items = b",".join(m.item_json() for m in page)
        return RawFields(head[1:-1] + b',"RspMsgList":[' + items + b"]")

    def official_account_msg_recall(self, body: dict[str, Any]) -> Reply:
        account = self.official.get(req_str(body, "Official_Account", BAD_PARAMETER))
        keys = req_list(body, "MsgKeyList", BAD_PARAMETER)
        if not keys or len(keys) > OA_RECALL_BATCH or not all(isinstance(k, str) for k in keys):
            raise ApiFailure(BAD_PARAMETER, f"MsgKeyList must hold 1 to {OA_RECALL_BATCH} MsgKeys")
        reason = opt_str(body, "Reason", BAD_PARAMETER)
        if len(reason.encode()) > 100:
            raise ApiFailure(BAD_PARAMETER, "Reason is over 100 bytes")
        floor = self.roaming_floor()
        results = [
            {
                "MsgKey": key,
                "RetCode": self.official.recall(
                    account, key, oldest_visible=floor, apply=not self.drop_recall()
                ),
            }
            for key in keys
        ]
        return {"RecallRetList": results}

    # groups ---------------------------------------------------------------------------------------

    def _group(self, body: dict[str, Any]) -> Group:
        return self.groups.get(req_str(body, "GroupId", BAD_PARAMETER))

    def _log(self, group: Group, body: dict[str, Any]) -> MessageLog:
        return self.groups.log_of(group, opt_str(body, "TopicId", BAD_PARAMETER))

    @staticmethod
    def _max_bytes(body: dict[str, Any], name: str, limit: int) -> str:
        value = opt_str(body, name, BAD_PARAMETER)
        if len(value.encode()) > limit:
            raise ApiFailure(BAD_PARAMETER, f"{name} is over {limit} bytes")
        return value

    @staticmethod
    def _member_accounts(body: dict[str, Any], limit: int, *, required: bool) -> list[str]:
        if not required and "MemberList" not in body:
            return []
        entries = req_list(body, "MemberList", BAD_PARAMETER)
        if (required and not entries) or len(entries) > limit:
            raise ApiFailure(BAD_PARAMETER, f"MemberList holds {int(required)} to {limit} members")
        users = []
        for entry in entries:
            user = entry.get("Member_Account") if isinstance(entry, dict) else None
            if not isinstance(user, str) or not user:
                raise ApiFailure(BAD_PARAMETER, "every MemberList item needs a Member_Account string")
            users.append(user)
        return users

    @staticmethod
    def _group_body(raw: Any, ccd: str, max_bytes: int) -> tuple[list[dict[str, Any]], bool]:
        """A group message body and whether it is over ``max_bytes`` (with its CloudCustomData)."""
        try:
            msg_body = check_body(raw, ccd)
        except ApiFailure as failure:
            if failure.code == TOO_LONG:
                return [], True
            raise ApiFailure(BAD_PARAMETER, failure.info) from None
        return msg_body, len(orjson.dumps(msg_body)) + len(ccd.encode()) > max_bytes

    def _tip(self, log: MessageLog, users: list[str], now: int) -> None:
        """Record in history that ``users`` joined: a system message, as member changes appear there."""
        if users and log.keeps_history:
            log.append(
                sender=SYSTEM_SENDER,
                timestamp=now,
                random=secrets.randbits(32),
                body=join_tip(self.admin, users),
                system=True,
            )

    def create_group(self, body: dict[str, Any]) -> Reply:
        """``create_group`` (https://cloud.tencent.com/document/product/269/1615)."""
        type_name = req_str(body, "Type", BAD_PARAMETER)
        kind = GROUP_KINDS.get(type_name)
        if kind is None:
            raise ApiFailure(BAD_PARAMETER, f"Type must be one of {', '.join(GROUP_KINDS)}")
        name = req_str(body, "Name", BAD_PARAMETER)
        if len(name.encode()) > GROUP_NAME_BYTES:
            raise ApiFailure(BAD_PARAMETER, f"Name is over {GROUP_NAME_BYTES} bytes")
        for field_name, limit in (("Introduction", 240), ("Notification", 300), ("FaceUrl", 100)):
            self._max_bytes(body, field_name, limit)
        owner = opt_str(body, "Owner_Account", BAD_PARAMETER)
        if owner and owner not in self.accounts:
            raise ApiFailure(NO_SUCH_ACCOUNT, f"Owner_Account {owner!r} was not imported")
        members = self._member_accounts(body, GROUP_CREATE_MEMBERS, required=False)
        if members and kind == LIVE:
            # Like add_group_member, which AVChatRoom does not support: members join from the client.
            raise ApiFailure(NO_PERMISSION, "an AVChatRoom takes no MemberList")
        for user in members:
            if user not in self.accounts:
                raise ApiFailure(NO_SUCH_ACCOUNT, f"Member_Account {user!r} was not imported")
        support_topic = opt_int(body, "SupportTopic", BAD_PARAMETER, 0, hi=1) == 1 and kind == COMMUNITY
        group_id = self._choose_group_id(opt_str(body, "GroupId", BAD_PARAMETER), kind, owner)
        now = self.clock.now_s()
        log = MessageLog(keeps_history=kind != LIVE, created=now)
        group = Group(group_id, type_name, name, owner, log, support_topic)
        if owner:
            group.members[owner] = now
        self.groups.groups[group_id] = group
        self._tip(group.log, self.groups.add_members(group, members, now), now)
        return {"GroupId": group_id}

    def _choose_group_id(self, custom: str, kind: str, owner: str) -> str:
        if not custom:
            group_id = new_group_id(kind)
            while group_id in self.groups.groups:
                group_id = new_group_id(kind)
            return group_id
        check_custom_group_id(custom, kind)
        taken = self.groups.groups.get(custom)
        if taken is not None and not taken.destroyed:
            if owner and taken.owner == owner:
                raise ApiFailure(ID_USED_BY_OWNER, "the GroupId is already used, by a group you own")
            raise ApiFailure(ID_USED_BY_OTHER, "the GroupId is already used by someone else")
        return custom

    def destroy_group(self, body: dict[str, Any]) -> Reply:
        """``destroy_group``: later calls naming the group get 10010."""
        self._group(body).destroyed = True
        return {}

    def add_group_member(self, body: dict[str, Any]) -> Reply:
        """``add_group_member`` (269/1621): Result 0 failed, 1 added, 2 already a member."""
        group = self._group(body)
        if group.is_live:
            raise ApiFailure(NO_PERMISSION, "AVChatRoom does not support adding members")
        silence = opt_int(body, "Silence", BAD_PARAMETER, 0, hi=1) == 1
        users = self._member_accounts(body, GROUP_ADD_MEMBERS, required=True)
        now = self.clock.now_s()
        results = []
        added = []
        for user in users:
            if user not in self.accounts:
                result = 0
            elif user in group.members:
                result = 2
            else:
                group.members[user] = now
                added.append(user)
                result = 1
            results.append({"Member_Account": user, "Result": result})
        if not silence:  # a silent add notifies nobody, so no tip either
            self._tip(group.log, added, now)
        return {"MemberList": results}

    def create_topic(self, body: dict[str, Any]) -> Reply:
        """``million_group_open_http_svc/create_topic`` (269/78203): topic-enabled communities only."""
        group = self._group(body)
        if not group.support_topic:
            raise ApiFailure(NO_PERMISSION, "only a community that supports topics can have topics")
        name = req_str(body, "TopicName", BAD_PARAMETER)
        if len(name.encode()) > GROUP_NAME_BYTES:
            raise ApiFailure(BAD_PARAMETER, f"TopicName is over {GROUP_NAME_BYTES} bytes")
        for field_name, limit in (
            ("CustomString", 3000),
            ("FaceUrl", 100),
            ("Notification", 300),
            ("Introduction", 240),
        ):
            self._max_bytes(body, field_name, limit)
        operator = opt_str(body, "From_Account", BAD_PARAMETER)
        if operator and operator not in self.accounts:
            raise ApiFailure(NO_SUCH_ACCOUNT, f"From_Account {operator!r} was not imported")
        topic_id = opt_str(body, "TopicId", BAD_PARAMETER)
        if topic_id:
            prefix = group.group_id + CUSTOM_TOPIC_MARK
            if (
                not topic_id.startswith(prefix)
                or len(topic_id) == len(prefix)
                or not topic_id.isascii()
                or not topic_id.isprintable()
            ):
                raise ApiFailure(BAD_PARAMETER, f"a custom TopicId is {prefix!r} + a custom part")
            if topic_id in group.topics:
                raise ApiFailure(ID_USED_BY_OTHER, "the TopicId is already used")
        else:
            topic_id = new_topic_id(group.group_id)
            while topic_id in group.topics:
                topic_id = new_topic_id(group.group_id)
        group.topics[topic_id] = Topic(topic_id, name, MessageLog(created=self.clock.now_s()))
        return {"TopicId": topic_id}

    def send_group_msg(self, body: dict[str, Any]) -> Reply:
        """``send_group_msg`` (269/1629): the reply's MsgSeq is the message's seq in the group or topic."""
        group = self._group(body)
        log = self._log(group, body)
        random = req_int(body, "Random", BAD_PARAMETER, hi=UINT32_MAX)
        priority = PRIORITIES.get(opt_str(body, "MsgPriority", BAD_PARAMETER, "Normal"))
        if priority is None:
            raise ApiFailure(BAD_PARAMETER, f"MsgPriority must be one of {', '.join(PRIORITIES)}")
        opt_int(body, "OnlineOnlyFlag", BAD_PARAMETER, 0, hi=1)
        ccd = opt_str(body, "CloudCustomData", BAD_PARAMETER)
        msg_body, too_long = self._group_body(body.get("MsgBody"), ccd, GROUP_SEND_MAX_BYTES)
        if too_long:
            raise ApiFailure(GROUP_MSG_TOO_LONG, "the message is over 12 KB")
        sender = self.admin
        if "From_Account" in body:
            sender = req_str(body, "From_Account", BAD_PARAMETER)
            if sender not in self.accounts:
                raise ApiFailure(NO_SUCH_ACCOUNT, f"From_Account {sender!r} was not imported")
            if sender != self.admin and not group.is_live and sender not in group.members:
                raise ApiFailure(NO_PERMISSION, f"{sender!r} is not a member of the group")
        now = self.clock.now_s()
        duplicate = log.duplicate_of(random, msg_body, now, DUPLICATE_WINDOW_S)
        if duplicate is not None:  # same Random and content within 5 minutes: dropped as a duplicate
            return {"MsgTime": duplicate[1], "MsgSeq": duplicate[0]}
        seq = log.append(
            sender=sender,
            timestamp=now,
            random=random,
            body=msg_body,
            cloud_custom_data=ccd,
            priority=priority,
        )
        return {"MsgTime": now, "MsgSeq": seq}

    def import_group_msg(self, body: dict[str, Any]) -> Reply:
        """``import_group_msg`` (269/1635): at most 7 messages a call, in increasing time order, each
        newer than the group's creation and its newest message and older than now; per-message Result
        0 OK, 10004 bad send time, 80002 over 8000 bytes (a failed message gets MsgSeq 0)."""
        group = self._group(body)
        if group.is_live:
            raise ApiFailure(NO_PERMISSION, "AVChatRoom does not support importing messages")
        log = self._log(group, body)
        opt_int(body, "RecentContactFlag", BAD_PARAMETER, 0, hi=1)
        items = req_list(body, "MsgList", BAD_PARAMETER)
        if not items or len(items) > GROUP_IMPORT_BATCH:
            raise ApiFailure(BAD_PARAMETER, f"MsgList holds 1 to {GROUP_IMPORT_BATCH} messages")
        parsed = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise ApiFailure(BAD_PARAMETER, f"MsgList[{index}] is not an object")
            parsed.append(
                (
                    req_str(item, "From_Account", BAD_PARAMETER),
                    req_int(item, "SendTime", BAD_PARAMETER, hi=UINT32_MAX),
                    opt_int(item, "Random", BAD_PARAMETER, secrets.randbits(32), hi=UINT32_MAX),
                    *self._group_body(item.get("MsgBody"), "", GROUP_IMPORT_MAX_BYTES),
                )
            )
        now = self.clock.now_s()
        newest = max(log.created, log.last_time())
        results = []
        for sender, send_time, random, msg_body, too_long in parsed:
            if too_long:
                results.append({"MsgSeq": 0, "MsgTime": send_time, "Result": GROUP_MSG_TOO_LONG})
            elif not newest < send_time < now:
                results.append({"MsgSeq": 0, "MsgTime": send_time, "Result": BAD_PARAMETER})
            else:
                seq = log.append(sender=sender, timestamp=send_time, random=random, body=msg_body)
                newest = send_time
                results.append({"MsgSeq": seq, "MsgTime": send_time, "Result": 0})
        return {"ImportMsgResult": results}

    def group_msg_get_simple(self, body: dict[str, Any]) -> Reply:
        """``group_msg_get_simple`` (269/2738): see :meth:`MessageLog.page`."""
        group = self._group(body)
        if group.is_live:
            # "AVChatRoom(直播群) 不支持历史消息存储，所以不支持调用此接口" [269/2738]. The page lists no code
            # for it; 10007 is what the docs answer for the same unsupported case on import_group_msg
            # [269/1635] and is in this API's error table.
            raise ApiFailure(NO_PERMISSION, "AVChatRoom keeps no message history")
        log = self._log(group, body)
        count = req_int(body, "ReqMsgNumber", BAD_PARAMETER, lo=1)
        top = req_int(body, "ReqMsgSeq", BAD_PARAMETER) if "ReqMsgSeq" in body else None
        with_recalled = opt_int(body, "WithRecalledMsg", BAD_PARAMETER, 0, hi=1) == 1
        page, finished = log.page(
            top=top,
            count=count,
            with_recalled=with_recalled,
            max_bytes=self.settings.group_page_bytes - ENVELOPE_BYTES,
            oldest_visible=self.roaming_floor(),
        )
        head = orjson.dumps({"GroupId": group.group_id, "IsFinished": finished})
        items = b",".join(m.item_json() for m in page)
        return RawFields(head[1:-1] + b',"RspMsgList":[' + items + b"]")

    def group_msg_recall(self, body: dict[str, Any]) -> Reply:
        """``group_msg_recall`` (269/12341): one RetCode per seq, see :meth:`MessageLog.recall`."""
        group = self._group(body)
        log = self._log(group, body)
        entries = req_list(body, "MsgSeqList", BAD_PARAMETER)
        if not entries or len(entries) > GROUP_RECALL_BATCH:
            raise ApiFailure(BAD_PARAMETER, f"MsgSeqList holds 1 to {GROUP_RECALL_BATCH} seqs")
        seqs = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise ApiFailure(BAD_PARAMETER, "every MsgSeqList item is an object with a MsgSeq")
            seqs.append(req_int(entry, "MsgSeq", BAD_PARAMETER, hi=UINT32_MAX))
        self._max_bytes(body, "Reason", 100)
        now = self.clock.now_s()
        floor = self.roaming_floor()
        results = []
        for seq in seqs:
            if self.settings.refuse_group_recall:
                code = RECALL_REFUSED_BY_APP
            else:
                code = log.recall(
                    seq,
                    now=now,
                    oldest_visible=floor,
                    limit_s=self.settings.group_recall_limit_s,
                    apply=not self.drop_recall(),
                )
            results.append({"MsgSeq": seq, "RetCode": code})
        return {"RecallRetList": results}

    def delete_group_msg_by_sender(self, body: dict[str, Any]) -> Reply:
        """``delete_group_msg_by_sender`` (269/2359): silently recalls the sender's messages among the
        group's (or topic's) last 1,000; an AVChatRoom is left alone without an error."""
        group = self._group(body)
        sender = req_str(body, "Sender_Account", BAD_PARAMETER)
        log = self._log(group, body)
        if log.keeps_history and not self.drop_recall():
            log.wipe_sender(sender)
        return {}
