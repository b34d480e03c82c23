"""Client of the Tencent Cloud Chat REST API: calls, history iterators, recalls."""

from worker.tim.client import ClientStats, RetryPolicy, TimClient
from worker.tim.errors import TimApiError, TimError, TimHttpError, TimProtocolError, TimTransportError
from worker.tim.history import (
    HistoryStats,
    iter_c2c_history,
    iter_group_history,
    iter_official_account_history,
)
from worker.tim.models import ConversationKind, Message, MessageState
from worker.tim.recall import (
    RecallOutcome,
    RecallResult,
    recall_c2c,
    recall_group,
    recall_official_account,
    wipe_group_sender,
)
from worker.tim.usersig import UserSigProvider

__all__ = [
    "ClientStats",
    "ConversationKind",
    "HistoryStats",
    "Message",
    "MessageState",
    "RecallOutcome",
    "RecallResult",
    "RetryPolicy",
    "TimApiError",
    "TimClient",
    "TimError",
    "TimHttpError",
    "TimProtocolError",
    "TimTransportError",
    "UserSigProvider",
    "iter_c2c_history",
    "iter_group_history",
    "iter_official_account_history",
    "recall_c2c",
    "recall_group",
    "recall_official_account",
    "wipe_group_sender",
]
