"""Stream a conversation's history window page by page, never holding the whole window.

One async iterator per history API. Each yields normalized :class:`~worker.tim.models.Message` objects
inside ``[since, until]`` exactly once (duplicates at page edges are dropped), and each refuses to loop
forever on a reply that makes no progress.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.tim.errors import TimProtocolError
from worker.tim.models import JsonObject, Message, MessageState
from worker.tim.replies import (
    GROUP_HISTORY_COMMAND,
    OA_HISTORY_COMMAND,
    ROAM_COMMAND,
    parse_group_page,
    parse_official_account_page,
    parse_roam_page,
)

ROAM_PATH = "openim/admin_getroammsg"
OA_HISTORY_PATH = "official_account_open_http_svc/official_account_msg_get_simple"
OA_MAX_PAGE = 20
GROUP_HISTORY_PATH = "group_open_http_svc/group_msg_get_simple"
GROUP_MAX_PAGE = 20


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


@dataclass(slots=True)
class _GroupWindow:
    """Places each message of a newest-first group walk in or out of ``[since, until]``.

    Dated messages (``MsgTimeStamp`` > 0) are placed by their time. Seqs follow the server's receive order
    and times are the server's, so an undated message (a hole, typically) was sent no earlier than the
    nearest dated message below it and no later than the nearest dated one above it: it is kept unless
    those bounds put it wholly outside the window. Deciding needs the next dated message below, so undated
    messages wait in ``pending`` until one arrives or the walk ends (a missing bound never excludes).
    """

    since: int
    until: int
    stats: HistoryStats
    newer_time: int | None = None  # time of the nearest dated message above (higher seq)
    pending: list[Message] = field(default_factory=list)

    def feed(self, message: Message) -> list[Message]:
        """The messages, newest first, now known to be in the window."""
        if message.timestamp <= 0:
            if self.newer_time is not None and self.newer_time < self.since:
                self.stats.outside_window += 1
            else:
                self.pending.append(message)
            return []
        released, self.pending = self.pending, []
        if message.timestamp > self.until:
            # The waiting messages came after this one, so after ``until`` too.
            self.stats.outside_window += len(released)
            released = []
        self.newer_time = message.timestamp
        if self.since <= message.timestamp <= self.until:
            return [*released, message]
        self.stats.outside_window += 1
        return released

    def flush(self) -> list[Message]:
        """The walk reached the end of the history: nothing below bounds the waiting undated messages."""
        released, self.pending = self.pending, []
        return released


def _check_group_page(messages: Sequence[Message], requested: int | None) -> int:
    """The page's lowest seq, once sure that the page lies at or below the requested seq."""
    seqs = [m.seq for m in messages]
    lowest, highest = min(seqs), max(seqs)
    if requested is not None and lowest > requested:
        raise TimProtocolError(
            GROUP_HISTORY_COMMAND,
            f"paging made no progress: asked for seqs up to {requested}, got {lowest}..{highest}",
        )
    if requested is not None and highest > requested:
        raise TimProtocolError(
            GROUP_HISTORY_COMMAND, f"MsgSeq {highest} is above the requested ReqMsgSeq {requested}"
        )
    return lowest


async def iter_group_history(
    client: ApiCaller,
    *,
    group_id: str,
    since: int,
    until: int,
    topic_id: str | None = None,
    page_size: int = GROUP_MAX_PAGE,
    with_recalled: bool = True,
    stats: HistoryStats | None = None,
    start_seq: int | None = None,
) -> AsyncIterator[Message]:
    """Yield the group's (or the community topic's) messages sent in ``[since, until]``, newest first
    (``group_msg_get_simple``). With ``start_seq``, the walk starts at that seq instead of the newest (to
    read known messages again, say).

    The first request names no ``ReqMsgSeq`` and so gets the newest messages; each next one asks for seqs
    up to the smallest seq returned minus one. ``IsFinished`` 1 only says the requested range came back
    whole, so the walk goes on downward and ends when the next ``ReqMsgSeq`` would be below 1, when a page
    whose dated messages are all older than ``since`` has been read, when ``IsFinished`` is 2 (everything
    below has expired), or on an empty page. Messages sent during the walk get seqs above the first page
    and are never seen.

    Holes (``IsPlaceMsg`` 1) and, with ``with_recalled``, recalled messages (``IsPlaceMsg`` 2) are yielded
    with their state so callers can report them; system messages have ``system`` set. A message without a
    time is yielded unless the dated messages around it (by seq) show it lies outside the window, see
    :class:`_GroupWindow`. A reply listing a seq above the one requested is a :class:`TimProtocolError`.
    """
    stats = stats if stats is not None else HistoryStats()
    request: dict[str, Any] = {"GroupId": group_id, "ReqMsgNumber": max(1, min(page_size, GROUP_MAX_PAGE))}
    if with_recalled:
        request["WithRecalledMsg"] = 1
    if topic_id is not None:
        request["TopicId"] = topic_id
    window = _GroupWindow(since, until, stats)
    requested = start_seq
    if start_seq is not None:
        request["ReqMsgSeq"] = start_seq
    while True:
        page = parse_group_page(await client.call(GROUP_HISTORY_PATH, request))
        stats.pages += 1
        if not page.messages:
            break
        lowest = _check_group_page(page.messages, requested)
        # Pages cannot overlap (checked above), so a repeated seq can only be within one page.
        seen: set[int] = set()
        for message in sorted(page.messages, key=lambda m: m.seq, reverse=True):
            if message.seq in seen:
                stats.duplicates += 1
                continue
            seen.add(message.seq)
            for kept in window.feed(message):
                stats.messages += 1
                yield kept
        if page.is_finished == 2:
            break
        dated = [m.timestamp for m in page.messages if m.timestamp > 0]
        if dated and max(dated) < since:
            # Nothing waits: undated messages below a dated one older than ``since`` were already dropped.
            return
        if lowest - 1 < 1:
            break
        requested = lowest - 1
        request = {**request, "ReqMsgSeq": requested}
    for kept in window.flush():
        stats.messages += 1
        yield kept
