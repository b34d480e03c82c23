"""Stream a conversation's history window page by page, never holding the whole window.

One async iterator per history API. Both yield normalized :class:`~worker.tim.models.Message` objects
inside ``[since, until]`` exactly once (duplicates at page edges are dropped), and both refuse to loop
forever on a reply that makes no progress.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from worker.tim.errors import TimProtocolError
from worker.tim.models import JsonObject, Message, MessageState
from worker.tim.replies import (
    OA_HISTORY_COMMAND,
    ROAM_COMMAND,
    parse_official_account_page,
    parse_roam_page,
)

ROAM_PATH = "openim/admin_getroammsg"
OA_HISTORY_PATH = "official_account_open_http_svc/official_account_msg_get_simple"
OA_MAX_PAGE = 20


class ApiCaller(Protocol):
    """Anything that can make a Chat REST API call (the real :class:`~worker.tim.client.TimClient`)."""

    async def call(self, path: str, body: Any) -> JsonObject: ...


@dataclass(slots=True)
class HistoryStats:
    """What one history walk did."""

    pages: int = 0
    messages: int = 0
    duplicates: int = 0
    outside_window: int = 0


def _fresh(
    messages: Iterable[Message], seen: set[str], since: int, until: int, stats: HistoryStats
) -> Iterable[Message]:
    for message in messages:
        if message.msg_key in seen:
            stats.duplicates += 1
        elif not since <= message.timestamp <= until:
            stats.outside_window += 1
        else:
            stats.messages += 1
            yield message


async def iter_c2c_history(
    client: ApiCaller,
    *,
    operator: str,
    peer: str,
    since: int,
    until: int,
    max_cnt: int = 100,
    stats: HistoryStats | None = None,
) -> AsyncIterator[Message]:
    """Yield the one-to-one messages between ``operator`` and ``peer`` sent in ``[since, until]``, as
    ``operator`` sees them (``admin_getroammsg``).

    Pages come newest first; while ``Complete == 0`` the next request sets ``MaxTime`` to the reply's
    ``LastMsgTime`` and passes its ``LastMsgKey``.
    """
    stats = stats if stats is not None else HistoryStats()
    request: dict[str, Any] = {
        "Operator_Account": operator,
        "Peer_Account": peer,
        "MaxCnt": max_cnt,
        "MinTime": since,
        "MaxTime": until,
    }
    previous_keys: set[str] = set()
    cursor: tuple[int, str] | None = None
    while True:
        page = parse_roam_page(await client.call(ROAM_PATH, request))
        stats.pages += 1
        for message in _fresh(page.messages, previous_keys, since, until, stats):
            yield message
        if page.complete:
            return
        next_cursor = (page.last_msg_time, page.last_msg_key)
        if not page.messages or not page.last_msg_key or next_cursor == cursor:
            raise TimProtocolError(
                ROAM_COMMAND, f"Complete is 0 but paging made no progress at {next_cursor}"
            )
        cursor = next_cursor
        # Only page edges can repeat, so the previous page's keys are all that must be remembered.
        previous_keys = {m.msg_key for m in page.messages}
        request = {**request, "MaxTime": page.last_msg_time, "LastMsgKey": page.last_msg_key}


async def iter_official_account_history(
    client: ApiCaller,
    *,
    account: str,
    since: int,
    until: int,
    page_size: int = OA_MAX_PAGE,
    with_recalled: bool = True,
    stats: HistoryStats | None = None,
) -> AsyncIterator[Message]:
    """Yield the official account's messages sent in ``[since, until]`` (``official_account_msg_get_simple``).

    Pages come newest first and continue from the reply's ``LastMsgKey``; the walk ends when
    ``IsFinished`` is 1 (all returned) or 2 (the rest has expired), or once a page reaches messages older
    than ``since``. Holes (``IsPlaceMsg`` 1) and, with ``with_recalled``, recalled messages
    (``IsPlaceMsg`` 2) are yielded with their state so callers can report them.
    """
    stats = stats if stats is not None else HistoryStats()
    request: dict[str, Any] = {"Official_Account": account, "ReqMsgNumber": min(page_size, OA_MAX_PAGE)}
    if with_recalled:
        request["WithRecalledMsg"] = 1
    previous_keys: set[str] = set()
    last_key: str | None = None
    while True:
        page = parse_official_account_page(await client.call(OA_HISTORY_PATH, request))
        stats.pages += 1
        for message in _fresh(page.messages, previous_keys, since, until, stats):
            yield message
        if page.is_finished != 0:
            return
        if not page.messages or page.last_msg_key == last_key:
            raise TimProtocolError(OA_HISTORY_COMMAND, "IsFinished is 0 but paging made no progress")
        # Holes may carry no time; only real messages say how far back the walk has come.
        dated = [m.timestamp for m in page.messages if m.state is not MessageState.HOLE and m.timestamp > 0]
        if dated and min(dated) < since:
            return
        last_key = page.last_msg_key
        previous_keys = {m.msg_key for m in page.messages}
        request = {**request, "LastMsgKey": page.last_msg_key}
