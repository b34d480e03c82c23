"""The emulator's per-command limit, and the second tenant that shares it."""

from __future__ import annotations

import httpx

from worker.emulator.limits import ServerLimits
from worker.emulator.server import EmulatorThread


def admitted(limits: ServerLimits, command: str, times: list[float]) -> int:
    return sum(limits.admit(command, t) for t in times)


def test_the_limit_is_counted_over_any_one_second_window() -> None:
    limits = ServerLimits(10)
    assert admitted(limits, "c", [i * 0.01 for i in range(20)]) == 10
    # a second after the first admitted call, room opens one call at a time
    assert limits.admit("c", 1.0)
    assert not limits.admit("c", 1.005)
    assert limits.admit("c", 1.01)


def test_a_tenant_takes_its_share_of_one_command_only() -> None:
    limits = ServerLimits(200)
    limits.set_tenant({"admin_getroammsg": 150})
    spread = [i / 400 for i in range(400)]  # 400 calls over one second
    assert admitted(limits, "admin_getroammsg", spread) == 50
    assert admitted(limits, "admin_msgwithdraw", spread) == 200


def test_a_tenant_taking_the_whole_limit_leaves_nothing_and_leaving_restores_it() -> None:
    limits = ServerLimits(100)
    limits.set_tenant({"c": 100})
    assert not limits.admit("c", 0.0)
    limits.set_tenant({})
    assert admitted(limits, "c", [1 + i / 1000 for i in range(150)]) == 100


def test_the_tenant_is_set_over_http_and_reset_with_the_app(emulator: EmulatorThread) -> None:
    url = emulator.url
    shown = httpx.post(f"{url}/_emulator/tenant", json={"commands": {"admin_getroammsg": 120, "x": 0}})
    assert shown.json() == {"commands": {"admin_getroammsg": 120}}
    assert emulator.emulator.limits.tenant == {"admin_getroammsg": 120}
    assert httpx.post(f"{url}/_emulator/tenant", json={"commands": {"a": -1}}).status_code == 400
    assert httpx.post(f"{url}/_emulator/tenant", json={"rate": 1}).status_code in (400, 422)
    httpx.post(f"{url}/_emulator/reset").raise_for_status()
    assert httpx.get(f"{url}/_emulator/tenant").json() == {"commands": {}}
