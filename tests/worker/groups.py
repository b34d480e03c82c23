"""Group conversations in worker tests: old history seeded through the API, group jobs, and what the
emulator shows of a group afterwards."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from worker.emulator.seed import add_group_members, create_group, create_topic
from worker.jobs import Job
from worker.tim.client import TimClient

#: ``IsPlaceMsg`` of a recalled group message, and of a hole.
RECALLED, HOLE = 2, 1


def set_clock(url: str, at: float) -> None:
    """Make the emulator's clock read ``at`` (it keeps running from there)."""
    httpx.post(f"{url}/_emulator/clock", json={"set": at}).raise_for_status()


async def new_group(
    client: TimClient,
    url: str,
    *,
    owner: str,
    members: Sequence[str],
    created_at: int,
    topics: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """A group created at ``created_at`` (imported history must be newer than its creation); with
    ``topics``, a topic-enabled community with those topics. Returns its GroupId and the TopicIds.

    Its members' join tip (a system message) is its seq 1, sent at ``created_at``.
    """
    set_clock(url, created_at)
    try:
        group_id = await create_group(
            client,
            owner=owner,
            group_type="Community" if topics else "Public",
            members=members,
            support_topic=bool(topics),
        )
        topic_ids = [await create_topic(client, group_id=group_id, name=name) for name in topics]
    finally:
        set_clock(url, time.time())
    return group_id, topic_ids


async def join_at(client: TimClient, url: str, group_id: str, users: Sequence[str], at: int) -> None:
    """Add ``users`` to the group at ``at``: their join tip is a system message sent then."""
    set_clock(url, at)
    try:
        await add_group_members(client, group_id, users)
    finally:
        set_clock(url, time.time())


def group_messages(url: str, group_id: str, topic_id: str | None = None) -> dict[int, dict[str, Any]]:
    """The group's (or topic's) stored messages by seq, as the emulator holds them."""
    params = {"id": group_id, **({"topic": topic_id} if topic_id else {})}
    response = httpx.get(f"{url}/_emulator/group", params=params)
    response.raise_for_status()
    return {m["MsgSeq"]: m for m in response.json()["messages"]}


def recalled_seqs(url: str, group_id: str, topic_id: str | None = None) -> set[int]:
    """Seqs the emulator shows as recalled (IsPlaceMsg 2) in the group or topic."""
    return {seq for seq, m in group_messages(url, group_id, topic_id).items() if m["IsPlaceMsg"] == RECALLED}


def sent_by(url: str, group_id: str, sender: str, topic_id: str | None = None) -> set[int]:
    """Seqs of the (non-system) messages ``sender`` sent in the group or topic."""
    return {
        seq
        for seq, m in group_messages(url, group_id, topic_id).items()
        if m["From_Account"] == sender and not m["IsSystemMsg"]
    }


def group_job(
    job_id: str,
    group_id: str,
    *,
    suspect: str,
    window: tuple[int, int],
    topic_id: str | None = None,
    ruleset: str = "default",
    **extra: Any,
) -> Job:
    """A job on a group's (or a topic's) history over ``window`` (since, until)."""
    conversation: dict[str, str] = {"type": "group", "group_id": group_id}
    if topic_id is not None:
        conversation["topic_id"] = topic_id
    return Job.model_validate(
        {
            "version": 1,
            "job_id": job_id,
            "conversation": conversation,
            "suspect": suspect,
            "window": {"since": window[0], "until": window[1]},
            "ruleset": ruleset,
            **extra,
        }
    )


def seqs(keys: Sequence[str]) -> list[int]:
    """Group MsgKeys (seqs as strings) as sorted ints."""
    return sorted(int(k) for k in keys)
