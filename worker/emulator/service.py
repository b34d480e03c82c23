"""The emulated service: accounts, one-to-one and official-account state, and the documented commands.

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
from worker.emulator.messages import check_body
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
        }

    def reset(self) -> None:
        """Forget every account and message; only the admin account remains."""
        self.accounts = {self.admin: {"Nick": self.admin, "FaceUrl": ""}}
        self.c2c = C2CStore()
        self.official = OfficialStore()

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
