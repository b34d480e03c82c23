"""The emulator's gateway and seeding APIs: URL checks, body errors, per-party views, control surface."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, KEY, SDKAPPID
from worker.emulator.seed import import_accounts, import_c2c, send_c2c, text
from worker.emulator.server import EmulatorThread
from worker.tim.client import TimClient
from worker.tim.errors import TimApiError
from worker.tim.history import iter_c2c_history
from worker.tim.usersig import UserSigProvider

NOW = int(time.time())
SIG = UserSigProvider(SDKAPPID, KEY, ADMIN)


def raw(url: str, path: str, *, body: bytes = b"{}", method: str = "POST", **params: Any) -> httpx.Response:
    query = {
        "sdkappid": SDKAPPID,
        "identifier": ADMIN,
        "usersig": SIG.get(),
        "random": 1,
        "contenttype": "json",
    }
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return httpx.request(method, f"{url}{path}", params=query, content=body)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"sdkappid": None}, 60012),
        ({"sdkappid": 1234}, 70020),
        ({"contenttype": "xml"}, 60002),
        ({"random": None}, 60002),
        ({"random": 4294967296}, 60002),
        ({"identifier": None}, 60004),
        ({"usersig": None}, 70002),
    ],
)
def test_url_problems_get_documented_codes(
    emulator: EmulatorThread, params: dict[str, Any], code: int
) -> None:
    response = raw(emulator.url, "/v4/im_open_login_svc/account_import", body=b'{"UserID":"a"}', **params)
    assert response.status_code == 200
    assert response.json()["ErrorCode"] == code


def test_only_post_is_served(emulator: EmulatorThread) -> None:
    response = raw(emulator.url, "/v4/im_open_login_svc/account_import", method="GET")
    assert (response.status_code, response.json()["ErrorCode"]) == (200, 60002)


def test_unknown_api_is_60009(emulator: EmulatorThread) -> None:
    assert raw(emulator.url, "/v4/openim/no_such_command").json()["ErrorCode"] == 60009


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v4/openim/admin_getroammsg", 90001),
        ("/v4/official_account_open_http_svc/official_account_msg_get_simple", 60003),
    ],
)
@pytest.mark.parametrize("body", [b"{not json", b"", b"[1]"])
def test_malformed_json_gets_the_api_parse_error(
    emulator: EmulatorThread, path: str, code: int, body: bytes
) -> None:
    reply = raw(emulator.url, path, body=body).json()
    assert (reply["ActionStatus"], reply["ErrorCode"]) == ("FAIL", code)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"To_Account": "user2", "MsgRandom": 1, "MsgBody": [text("hi")]}, 90008),
        ({"From_Account": "user1", "To_Account": "nobody", "MsgRandom": 1, "MsgBody": [text("hi")]}, 90003),
        ({"From_Account": "user1", "To_Account": "user2", "MsgBody": [text("hi")]}, 90005),
        ({"From_Account": "user1", "To_Account": "user2", "MsgRandom": 1, "MsgBody": "hi"}, 90002),
        (
            {
                "From_Account": "user1",
                "To_Account": "user2",
                "MsgRandom": 1,
                "MsgBody": [{"MsgType": 5, "MsgContent": {}}],
            },
            90007,
        ),
        (
            {"From_Account": "user1", "To_Account": "user2", "MsgRandom": 1, "MsgBody": [text("x" * 13000)]},
            93000,
        ),
        (
            {
                "SyncFromOldSystem": 1,
                "From_Account": "user1",
                "To_Account": "user2",
                "MsgRandom": 1,
                "MsgBody": [text("hi")],
            },
            90010,
        ),
    ],
)
async def test_import_problems_get_documented_codes(
    client: TimClient, body: dict[str, Any], code: int
) -> None:
    await import_accounts(client, ["user1", "user2"])
    request = {"SyncFromOldSystem": 2, "MsgSeq": 1, "MsgTimeStamp": NOW, **body}
    with pytest.raises(TimApiError) as caught:
        await client.call("openim/importmsg", request)
    assert caught.value.code == code


async def test_import_deduplicates_on_seq_random_and_time_either_way(
    emulator: EmulatorThread, client: TimClient
) -> None:
    await import_accounts(client, ["user1", "user2"])
    await import_c2c(
        client, sender="user1", receiver="user2", timestamp=NOW, seq=7, random=8, body=[text("first")]
    )
    await import_c2c(
        client, sender="user2", receiver="user1", timestamp=NOW, seq=7, random=8, body=[text("second")]
    )
    stored = httpx.get(f"{emulator.url}/_emulator/c2c", params={"a": "user1", "b": "user2"}).json()[
        "messages"
    ]
    assert [m["MsgBody"][0]["MsgContent"]["Text"] for m in stored] == ["first"]


async def view(client: TimClient, operator: str, peer: str) -> list[str]:
    return [
        m.msg_key
        async for m in iter_c2c_history(client, operator=operator, peer=peer, since=0, until=NOW + 60)
    ]


async def test_sync_other_machine_2_is_not_kept_for_the_sender(client: TimClient) -> None:
    await import_accounts(client, ["user1", "user2"])
    kept = await send_c2c(client, sender="user1", receiver="user2", random=1, body=[text("kept")])
    unsynced = await send_c2c(
        client, sender="user1", receiver="user2", random=2, body=[text("not kept")], sync_other_machine=2
    )
    assert await view(client, "user1", "user2") == [kept]
    assert sorted(await view(client, "user2", "user1")) == sorted([kept, unsynced])


async def test_deleting_messages_changes_only_one_party_s_view(client: TimClient) -> None:
    await import_accounts(client, ["user1", "user2"])
    keys = [
        await import_c2c(
            client,
            sender="user1",
            receiver="user2",
            timestamp=NOW - 10 + i,
            seq=i + 1,
            random=i,
            body=[text(str(i))],
        )
        for i in range(4)
    ]
    await client.call(
        "openim/delete_c2c_msg_ramble",
        {"Operator_Account": "user2", "Peer_Account": "user1", "MsgKeyList": keys[:2]},
    )
    assert await view(client, "user2", "user1") == keys[2:]
    assert await view(client, "user1", "user2") == keys
    await client.call(
        "recentcontact/delete", {"From_Account": "user1", "Type": 1, "To_Account": "user2", "ClearRamble": 1}
    )
    assert await view(client, "user1", "user2") == []
    assert await view(client, "user2", "user1") == keys[2:]


def test_control_surface_sets_clock_limits_and_reports_stats(emulator: EmulatorThread) -> None:
    url = emulator.url
    now = httpx.post(f"{url}/_emulator/clock", json={"set": 1_700_000_000}).json()["now"]
    assert abs(now - 1_700_000_000) < 1
    assert abs(httpx.post(f"{url}/_emulator/clock", json={"advance": 60}).json()["now"] - 1_700_000_060) < 1
    limits = httpx.post(
        f"{url}/_emulator/limits", json={"default": 200, "commands": {"account_import": 1}}
    ).json()
    assert limits["commands"] == {"account_import": 1}
    body = b'{"UserID":"a"}'
    codes = [
        raw(url, "/v4/im_open_login_svc/account_import", body=body).json()["ErrorCode"] for _ in range(3)
    ]
    assert codes == [0, 60007, 60007]
    stats = httpx.get(f"{url}/_emulator/stats").json()
    assert stats["limit_breaches"] == {"account_import": 2}
    assert stats["calls"]["account_import"]["60007"] == 2
    assert httpx.post(f"{url}/_emulator/faults", json={"commands": {"x": {"bogus": 1}}}).status_code == 422
    httpx.post(f"{url}/_emulator/reset").raise_for_status()
    assert httpx.get(f"{url}/_emulator/stats").json()["calls"] == {}
