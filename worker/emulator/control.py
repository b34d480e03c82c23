"""The ``/_emulator/`` control surface: faults, clock, limits, settings, stats, state inspection (one-to-one,
official accounts, groups), holes, reset, and the media store (upload a picture; its renditions served).

Not part of the Chat API; it lets tests, the demo and benchmarks steer the emulator and look inside it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.emulator.faults import FaultSpec
from worker.emulator.gateway import Emulator
from worker.emulator.groups import GroupMsgState, MessageLog
from worker.emulator.official import OAState


class ClockChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: float | None = None
    advance: float | None = None


class LimitsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: int | None = Field(200, ge=0)
    commands: dict[str, int | None] = Field(default_factory=dict)


class TenantChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Calls/s of each command the app's other caller makes; 0 (or leaving a command out) stops it.
    commands: dict[str, int] = Field(default_factory=dict)


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roaming_days: float | None = Field(None, gt=0)
    roam_page_bytes: int | None = Field(None, ge=256)
    oa_page_bytes: int | None = Field(None, ge=256)
    group_page_bytes: int | None = Field(None, ge=256)
    #: Seconds after which a group message can no longer be recalled (RetCode 10031); 0 lifts the limit.
    group_recall_limit_s: int | None = Field(None, ge=0)
    refuse_group_recall: bool | None = None


class GroupHolesChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    GroupId: str
    TopicId: str = ""
    MsgSeqList: list[int]


def _log_messages(log: MessageLog) -> list[dict[str, Any]]:
    if log.keeps_history:
        return [m.public() for m in log.messages]
    return [
        {"MsgSeq": seq, "MsgTimeStamp": t, "Recalled": seq in log.live_recalled}
        for seq, t in enumerate(log.live_times, start=1)
    ]


class HolesChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Official_Account: str
    MsgKeyList: list[str]


async def _json(request: Request, model: type[BaseModel]) -> Any:
    body = await request.body()
    return model.model_validate_json(body or b"{}")


def _group_routes(emulator: Emulator) -> list[Route]:
    """``/_emulator/group`` (a group's or topic's state) and ``/_emulator/group/holes``."""

    async def group(request: Request) -> JSONResponse:
        group_id = request.query_params.get("id", "")
        found = emulator.service.groups.groups.get(group_id)
        if found is None:
            return JSONResponse({"error": f"no group {group_id!r}"}, status_code=404)
        topic_id = request.query_params.get("topic", "")
        log = found.log
        if topic_id:
            topic = found.topics.get(topic_id)
            if topic is None:
                return JSONResponse({"error": f"no topic {topic_id!r} in {group_id!r}"}, status_code=404)
            log = topic.log
        return JSONResponse(
            {
                "GroupId": found.group_id,
                "Type": found.type_name,
                "Name": found.name,
                "Owner_Account": found.owner,
                "SupportTopic": int(found.support_topic),
                "Destroyed": found.destroyed,
                "Members": list(found.members),
                "Topics": [{"TopicId": t.topic_id, "TopicName": t.name} for t in found.topics.values()],
                "TopicId": topic_id,
                "messages": _log_messages(log),
            }
        )

    async def group_holes(request: Request) -> JSONResponse:
        change = await _json(request, GroupHolesChange)
        found = emulator.service.groups.groups.get(change.GroupId)
        topic = found.topics.get(change.TopicId) if found is not None and change.TopicId else None
        if found is None or (change.TopicId and topic is None):
            return JSONResponse({"error": "no such group or topic"}, status_code=404)
        log = topic.log if topic is not None else found.log
        made = []
        for seq in change.MsgSeqList:
            if log.keeps_history and 1 <= seq <= len(log.messages):
                log.messages[seq - 1].set_state(GroupMsgState.HOLE)
                made.append(seq)
        return JSONResponse({"holes": made})

    return [
        Route("/_emulator/group", group),
        Route("/_emulator/group/holes", group_holes, methods=["POST"]),
    ]


def _media_routes(emulator: Emulator) -> list[Route]:
    """Upload a picture (its ``TIMImageElem`` comes back); serve its renditions."""

    async def media_upload(request: Request) -> JSONResponse:
        body = await request.body()
        base = str(request.base_url).rstrip("/")
        try:
            content = emulator.media.upload(body, base)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"MsgType": "TIMImageElem", "MsgContent": content})

    async def media_get(request: Request) -> Response:
        kind = request.path_params["kind"]
        stored = emulator.media.get(request.path_params["uuid"], int(kind) if kind.isdigit() else 0)
        if stored is None:
            return JSONResponse({"error": "no such media"}, status_code=404)
        return Response(stored.data, media_type=stored.content_type)

    return [
        Route("/_emulator/media", media_upload, methods=["POST"]),
        Route("/_emulator/media/{uuid}/{kind}", media_get, methods=["GET"]),
    ]


def _tenant_route(emulator: Emulator) -> Route:
    """``/_emulator/tenant``: the app's other caller, taking part of a command's limit."""

    async def tenant(request: Request) -> JSONResponse:
        if request.method == "POST":
            change = await _json(request, TenantChange)
            if any(rate < 0 for rate in change.commands.values()):
                return JSONResponse({"error": "a tenant's calls/s cannot be negative"}, status_code=400)
            emulator.limits.set_tenant(change.commands)
        return JSONResponse({"commands": emulator.limits.tenant})

    return Route("/_emulator/tenant", tenant, methods=["GET", "POST"])


def build_control_app(emulator: Emulator) -> Starlette:
    """The Starlette app serving ``/_emulator/...``."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse(
            {"ok": True, "sdkappid": emulator.config.sdkappid, "admin": emulator.config.admin}
        )

    async def stats(_: Request) -> JSONResponse:
        state = {**emulator.service.c2c.stats(), **emulator.service.groups.stats()}
        return JSONResponse({**emulator.stats.snapshot(), "state": state})

    async def stats_reset(_: Request) -> JSONResponse:
        emulator.stats = type(emulator.stats)()
        return JSONResponse({"ok": True})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            emulator.faults.configure(await _json(request, FaultSpec))
        elif request.method == "DELETE":
            emulator.faults.clear()
        return JSONResponse(emulator.faults.spec.model_dump(mode="json"))

    async def clock(request: Request) -> JSONResponse:
        if request.method == "POST":
            change = await _json(request, ClockChange)
            if change.set is not None:
                emulator.clock.set(change.set)
            if change.advance is not None:
                emulator.clock.advance(change.advance)
        return JSONResponse({"now": emulator.clock.now()})

    async def limits(request: Request) -> JSONResponse:
        if request.method == "POST":
            change = await _json(request, LimitsChange)
            emulator.limits.configure(
                change.default or None, {k: v or None for k, v in change.commands.items()}
            )
        return JSONResponse({"default": emulator.limits.default, "commands": emulator.limits.per_command})

    async def settings(request: Request) -> JSONResponse:
        current = emulator.service.settings
        if request.method == "POST":
            change = await _json(request, SettingsChange)
            for name, value in change.model_dump(exclude_none=True).items():
                setattr(current, name, value)
            if change.group_recall_limit_s == 0:
                current.group_recall_limit_s = None
        return JSONResponse(
            {
                "roaming_days": current.roaming_days,
                "roam_page_bytes": current.roam_page_bytes,
                "oa_page_bytes": current.oa_page_bytes,
                "group_page_bytes": current.group_page_bytes,
                "group_recall_limit_s": current.group_recall_limit_s,
                "refuse_group_recall": current.refuse_group_recall,
            }
        )

    async def reset(_: Request) -> JSONResponse:
        emulator.reset()
        return JSONResponse({"ok": True})

    async def c2c(request: Request) -> JSONResponse:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        conversation = emulator.service.c2c.find(a, b)
        messages = [m.public() for m in conversation.messages()] if conversation else []
        return JSONResponse({"messages": messages})

    async def official_account(request: Request) -> JSONResponse:
        user_id = request.query_params.get("id", "")
        account = emulator.service.official.accounts.get(user_id)
        if account is None:
            return JSONResponse({"error": f"no official account {user_id!r}"}, status_code=404)
        return JSONResponse(
            {
                "OfficialAccountUserID": account.user_id,
                "Owner_Account": account.owner,
                "Name": account.name,
                "Subscribers": sorted(account.subscribers),
                "messages": [
                    {
                        "MsgKey": m.key,
                        "MsgSeq": m.seq,
                        "MsgTimeStamp": m.timestamp,
                        "IsPlaceMsg": int(m.state),
                        "MsgBody": m.body,
                    }
                    for m in account.messages
                ],
            }
        )

    async def holes(request: Request) -> JSONResponse:
        change = await _json(request, HolesChange)
        account = emulator.service.official.accounts.get(change.Official_Account)
        if account is None:
            return JSONResponse({"error": "no such official account"}, status_code=404)
        made = []
        for message in account.messages:
            if message.key in change.MsgKeyList:
                message.set_state(OAState.HOLE)
                made.append(message.key)
        return JSONResponse({"holes": made})

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    return Starlette(
        exception_handlers={ValidationError: invalid},
        routes=[
            Route("/_emulator/health", health),
            Route("/_emulator/stats", stats),
            Route("/_emulator/stats/reset", stats_reset, methods=["POST"]),
            Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_emulator/clock", clock, methods=["GET", "POST"]),
            Route("/_emulator/limits", limits, methods=["GET", "POST"]),
            _tenant_route(emulator),
            Route("/_emulator/settings", settings, methods=["GET", "POST"]),
            Route("/_emulator/reset", reset, methods=["POST"]),
            Route("/_emulator/c2c", c2c),
            Route("/_emulator/official_account", official_account),
            Route("/_emulator/official_account/holes", holes, methods=["POST"]),
            *_group_routes(emulator),
            *_media_routes(emulator),
        ],
    )
