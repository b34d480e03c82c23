"""What a job's scan records: messages by conversation and MsgKey, their evidence, and the rules' matches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update

from worker.jobs import C2CConversation, GroupConversation, Job, OfficialAccountConversation
from worker.ledger.models import EvidenceRow, MessageRow
from worker.ledger.upsert import chunks, table_of

MESSAGES = table_of(MessageRow)
EVIDENCE = table_of(EvidenceRow)


def c2c_key(a: str, b: str) -> str:
    """A one-to-one conversation's identity, the same from either party's side."""
    return "c2c:" + "|".join(sorted((a, b)))


def conversation_key_of(conversation: OfficialAccountConversation | GroupConversation) -> str:
    """An official account's or a group's (or one topic's) identity."""
    if isinstance(conversation, OfficialAccountConversation):
        return f"oa:{conversation.account}"
    # A topic numbers its messages apart from its group's: (group, topic, seq) names one message.
    if conversation.topic_id is not None:
        return f"group:{conversation.group_id}|topic:{conversation.topic_id}"
    return f"group:{conversation.group_id}"


def conversation_key(job: Job) -> str:
    """A job's conversation's identity, the same from either party's side."""
    conversation = job.conversation
    if isinstance(conversation, C2CConversation):
        return c2c_key(conversation.operator, conversation.peer)
    return conversation_key_of(conversation)


def content_hash(body: Any, cloud_custom_data: str) -> str:
    """SHA-256 of a message's content in canonical JSON (sorted keys)."""
    canonical = orjson.dumps(
        {"CloudCustomData": cloud_custom_data, "MsgBody": body}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class ScannedMessage:
    """What the ledger records of a matched message."""

    msg_key: str
    sender: str
    receiver: str | None
    timestamp: int
    body: Sequence[Any]
    cloud_custom_data: str
    matches: Sequence[Any]  # rules.Match-like: rule_id, rule_type, action, element_path, evidence, normalized


def message_ids(connection: Connection, key: str, msg_keys: Sequence[str]) -> dict[str, int]:
    """The message row id of each of ``msg_keys`` (all recorded) in conversation ``key``."""
    ids: dict[str, int] = {}
    for part in chunks(msg_keys):
        rows = connection.execute(
            select(MESSAGES.c.msg_key, MESSAGES.c.id).where(
                MESSAGES.c.conversation_key == key, MESSAGES.c.msg_key.in_(part)
            )
        )
        ids.update({str(msg_key): int(pk) for msg_key, pk in rows})
    return {msg_key: ids[msg_key] for msg_key in msg_keys}


#: Fills a purged evidence row again (``executemany`` over the rows to recapture).
_RECAPTURE = (
    update(EVIDENCE)
    .where(EVIDENCE.c.message_pk == bindparam("pk"), EVIDENCE.c.purged_at.is_not(None))
    .values(
        job_pk=bindparam("new_job_pk"),
        body=bindparam("new_body", type_=EVIDENCE.c.body.type),
        cloud_custom_data=bindparam("new_cloud_custom_data"),
        captured_at=bindparam("new_captured_at", type_=EVIDENCE.c.captured_at.type),
        purged_at=None,
    )
)


def recapture_purged(connection: Connection, evidence: dict[int, dict[str, Any]]) -> None:
    """Fill purged evidence again from a new capture of the same content (the same hash)."""
    refill: list[dict[str, Any]] = []
    for part in chunks(sorted(evidence)):
        purged = connection.execute(
            select(EVIDENCE.c.message_pk, EVIDENCE.c.content_hash).where(
                EVIDENCE.c.message_pk.in_(part), EVIDENCE.c.purged_at.is_not(None)
            )
        )
        for message_pk, stored_hash in purged:
            values = evidence[message_pk]
            if values["content_hash"] != stored_hash:
                continue  # not the original content: the purged record stays as it is
            refill.append(
                {
                    "pk": message_pk,
                    "new_job_pk": values["job_pk"],
                    "new_body": values["body"],
                    "new_cloud_custom_data": values["cloud_custom_data"],
                    "new_captured_at": values["captured_at"],
                }
            )
    if refill:
        connection.execute(_RECAPTURE, sorted(refill, key=lambda row: int(row["pk"])))


def match_rows(job_pk: int, message_pk: int, matches: Iterable[Any]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for match in matches:
        element_path = getattr(match, "element_path", "")
        rows.setdefault(
            (match.rule_id, element_path),
            {
                "job_pk": job_pk,
                "message_pk": message_pk,
                "rule_id": match.rule_id,
                "rule_type": getattr(match, "rule_type", ""),
                "action": match.action,
                "element_path": element_path,
                "evidence": getattr(match, "evidence", ""),
                "normalized": getattr(match, "normalized", ""),
            },
        )
    return [rows[path] for path in sorted(rows)]
