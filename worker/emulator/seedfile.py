"""``recall-worker emulator --seed FILE``: accounts and conversations loaded into the emulator at start.

The file (JSON, or YAML by its ``.yaml``/``.yml`` suffix) is checked whole before anything is loaded; each
part is then made through the documented API calls of :mod:`worker.emulator.seed`, answered by the
emulator's own command handlers, before the port opens. See ``worker/emulator/example-seed.yaml``::

    accounts: [alice, bob, eve]          # every account named below is imported too
    c2c:                                 # one-to-one messages (openim/importmsg)
      - {from: eve, to: bob, time: -2h, text: "cheap followers at spam.example"}
      - {from: bob, to: eve, time: -1h, MsgBody: [{MsgType: TIMTextElem, MsgContent: {Text: no}}]}
    official_accounts:                   # create_official_account, add_subscriber, send_official_account_msg
      - {owner: alice, name: News, id: "@TOA#_news", subscribers: [bob],
         posts: [{time: -3h, text: "today's news"}]}
    groups:                              # create_group (at ``created``), import_group_msg
      - {id: lobby, type: Public, owner: alice, members: [bob, eve],
         messages: [{from: eve, time: -90m, text: "spam"}]}

Times are Unix seconds, ISO 8601 (UTC unless it says otherwise), or a time before the load: ``-90m``,
``-2h``, ``-3d`` (what stays in the 7 days the history APIs roam). A message has ``text`` or a
``MsgBody`` (the API's element list), not both. Group messages are imported oldest first; a group is
created at ``created`` (default: a minute before its first message), the emulator's clock set back for it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Self

import orjson
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from worker.emulator import seed
from worker.emulator.errors import ApiFailure
from worker.emulator.gateway import Emulator
from worker.emulator.service import RawFields
from worker.tim.models import JsonObject

GROUP_TYPES = ("Private", "Work", "Public", "ChatRoom", "Meeting", "AVChatRoom", "Community")


class InvalidSeed(ValueError):
    """A seed file that cannot be read, checked or loaded; the message is one line."""


_AGO = re.compile(r"-(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _epoch(value: Any) -> Any:
    """Unix seconds, an ISO 8601 date or date-time (UTC unless it says otherwise), or a time before the
    load (``-90m``, ``-2h``, ``-3d``), as Unix seconds."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and (ago := _AGO.fullmatch(value.strip())):
        return int(time.time()) - int(ago[1]) * _UNIT_S[ago[2]]
    elif isinstance(value, str) and not value.strip().isdigit():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is neither Unix seconds, an ISO date or date-time, nor a time ago (-2h)"
            ) from None
    else:
        return value
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


Moment = Annotated[int, BeforeValidator(_epoch), Field(gt=0)]
Account = Annotated[str, Field(min_length=1, max_length=32)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class _Content(_Strict):
    text: str | None = None
    msg_body: list[dict[str, Any]] | None = Field(default=None, alias="MsgBody", min_length=1)

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if (self.text is None) == (self.msg_body is None):
            raise ValueError("give text or MsgBody, one of them")
        return self

    def body(self) -> list[JsonObject]:
        return list(self.msg_body) if self.msg_body is not None else [seed.text(self.text or "")]


class C2CMessage(_Content):
    """One one-to-one message, imported as history."""

    sender: Account = Field(alias="from")
    to: Account
    time: Moment


class Post(_Content):
    """One official-account message, broadcast at ``time`` (default: when the emulator starts)."""

    time: Moment | None = None


class OfficialAccount(_Strict):
    owner: Account
    name: str = Field(min_length=1)
    id: str = ""
    subscribers: list[Account] = Field(default_factory=list)
    posts: list[Post] = Field(default_factory=list)


class GroupMessage(_Content):
    sender: Account = Field(alias="from")
    time: Moment


class Group(_Strict):
    owner: Account
    type: str = "Public"
    id: str = ""
    name: str = ""
    members: list[Account] = Field(default_factory=list)
    created: Moment | None = None
    messages: list[GroupMessage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.type not in GROUP_TYPES:
            raise ValueError(f"type {self.type!r} is none of {', '.join(GROUP_TYPES)}")
        if self.messages and self.created is not None and self.created >= min(m.time for m in self.messages):
            raise ValueError("created must be before the group's first message")
        strangers = {m.sender for m in self.messages} - {self.owner, *self.members}
        if strangers:
            raise ValueError(f"messages from non-members {', '.join(sorted(strangers))}: add them to members")
        return self


class SeedFile(_Strict):
    """What ``--seed`` loads: accounts, one-to-one messages, official accounts with posts, groups."""

    accounts: list[Account] = Field(default_factory=list)
    c2c: list[C2CMessage] = Field(default_factory=list)
    official_accounts: list[OfficialAccount] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)

    def all_accounts(self) -> list[str]:
        """``accounts`` and every account named elsewhere, in order of first mention."""
        named: Iterator[str] = iter(
            [
                *self.accounts,
                *(a for m in self.c2c for a in (m.sender, m.to)),
                *(a for o in self.official_accounts for a in (o.owner, *o.subscribers)),
                *(a for g in self.groups for a in (g.owner, *g.members)),
            ]
        )
        return list(dict.fromkeys(named))


def load_seed(path: Path) -> SeedFile:
    """Read and check a seed file; :class:`InvalidSeed` names the first problems on one line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSeed(f"cannot read the seed file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidSeed(f"cannot read the seed file {path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else orjson.loads(text)
    except (yaml.YAMLError, orjson.JSONDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise InvalidSeed(
            f"seed file {path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {reason}"
        ) from None
    try:
        return SeedFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()
        ]
        raise InvalidSeed(f"seed file {path}: {'; '.join(problems)}") from None


class InProcess:
    """Calls the emulator's command handlers directly: the same handlers ``/v4/…`` routes to, without
    the URL, UserSig, frequency limit and stats of the HTTP front door (a seed is not traffic)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def call(self, path: str, body: Any) -> JsonObject:
        handler = self.emulator.service.handlers[path]
        try:
            reply = handler(orjson.loads(orjson.dumps(body)))
        except ApiFailure as failure:
            raise InvalidSeed(
                f"{path.rsplit('/', 1)[-1]} refused: ErrorCode {failure.code}, {failure.info}"
            ) from None
        if isinstance(reply, RawFields):
            parsed: JsonObject = orjson.loads(b"{" + reply.data + b"}")
            return parsed
        return dict(reply)


async def apply_seed(emulator: Emulator, data: SeedFile) -> dict[str, int]:
    """Load ``data`` into ``emulator`` through the documented seeding calls; returns what was made."""
    api = InProcess(emulator)
    rng = random.Random(0)
    clock = emulator.clock
    where = "accounts"
    posts = group_messages = 0
    try:
        await seed.import_accounts(api, data.all_accounts())
        for i, message in enumerate(data.c2c):
            where = f"c2c.{i}"
            await seed.import_c2c(
                api,
                sender=message.sender,
                receiver=message.to,
                timestamp=message.time,
                seq=rng.randrange(1, 2**31),
                random=rng.randrange(1, 2**31),
                body=message.body(),
            )
        for i, account in enumerate(data.official_accounts):
            where = f"official_accounts.{i}"
            account_id = await seed.create_official_account(
                api, owner=account.owner, name=account.name, user_id=account.id
            )
            if account.subscribers:
                await seed.add_subscribers(api, account_id, account.subscribers)
            for j, post in enumerate(account.posts):
                where = f"official_accounts.{i}.posts.{j}"
                if post.time is not None:
                    clock.set(post.time)
                await seed.send_official_account(
                    api, account=account_id, random=rng.randrange(1, 2**31), body=post.body()
                )
                clock.reset()
                posts += 1
        for i, group in enumerate(data.groups):
            where = f"groups.{i}"
            messages = sorted(group.messages, key=lambda m: m.time)
            created = group.created or (messages[0].time - 60 if messages else None)
            if created is not None:
                clock.set(created)  # imported history must come after the group's creation
            group_id = await seed.create_group(
                api,
                owner=group.owner,
                group_type=group.type,
                members=[m for m in group.members if m != group.owner],
                name=group.name,
                group_id=group.id,
            )
            clock.reset()
            await seed.import_group_messages(
                api,
                group_id=group_id,
                messages=[(m.sender, m.time, rng.randrange(1, 2**31), m.body()) for m in messages],
            )
            group_messages += len(messages)
    except (InvalidSeed, ValueError) as exc:
        raise InvalidSeed(f"seed: {where}: {exc}") from None
    finally:
        clock.reset()
    return {
        "account": len(data.all_accounts()),
        "one-to-one message": len(data.c2c),
        "official account": len(data.official_accounts),
        "post": posts,
        "group": len(data.groups),
        "group message": group_messages,
    }
