"""``recall-worker emulator --seed FILE``: the data is there once the emulator serves; a bad file is one
line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY
from tests.services import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "worker" / "emulator" / "example-seed.yaml"


def _emulator(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
    env["RECALL_TIM_KEY"] = KEY
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "emulator", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def seeded() -> Iterator[str]:
    port = free_port()
    process = _emulator("--port", str(port), "--seed", str(EXAMPLE))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/_emulator/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_the_seed_file_is_loaded_before_the_emulator_serves(seeded: str) -> None:
    c2c = httpx.get(f"{seeded}/_emulator/c2c", params={"a": "bob", "b": "eve"}).json()
    texts = [m["MsgBody"][0]["MsgContent"]["Text"] for m in c2c["messages"]]
    assert texts == [
        "hi, is the bike still for sale?",
        "yes! pay first at https://spam.example/pay",
        "cheap followers, add me on wechat",
    ]
    assert all(m["MsgTimeStamp"] < time.time() - 3600 for m in c2c["messages"]), "times before the load"
    group = httpx.get(f"{seeded}/_emulator/group", params={"id": "bike_market"}).json()
    assert (group["Owner_Account"], group["Members"]) == ("alice", ["alice", "bob", "eve"])
    said = [(m["From_Account"], m["MsgBody"][0]["MsgContent"].get("Text")) for m in group["messages"]]
    assert said[1:] == [
        ("bob", "selling a blue bike"),
        ("eve", "win a free bike: https://spam.example/win"),
    ], "after the join tip, the imported history in order"
    assert group["messages"][0]["IsSystemMsg"] == 1
    account = httpx.get(f"{seeded}/_emulator/official_account", params={"id": "@TOA#_daily_news"}).json()
    assert account["Subscribers"] == ["alice", "bob"] and len(account["messages"]) == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"c2c": [{"from": "a", "to": "b", "time": 1714550400}]}', ["c2c.0", "text or MsgBody"]),
        ('{"groups": [{"owner": "a", "type": "Lobby"}]}', ["groups.0", "Lobby"]),
        ('{"acounts": ["a"]}', ["acounts", "Extra inputs"]),
        (
            '{"c2c": [{"from": "a", "to": "b", "time": "yesterday", "text": "x"}]}',
            ["c2c.0.time", "yesterday"],
        ),
        ("{not json", ["not valid JSON"]),
        (
            '{"groups": [{"owner": "a", "messages": [{"from": "z", "time": "-1h", "text": "x"}]}]}',
            ["groups.0", "non-members z"],
        ),
    ],
)
def test_a_bad_seed_file_is_one_line_and_exit_2(tmp_path: Path, content: str, says: list[str]) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text(content)
    process = _emulator("--port", str(free_port()), "--seed", str(bad))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("recall-worker emulator: ")
    for word in says:
        assert word in err
    assert "Traceback" not in err and "on http://" not in out, "nothing served"


def test_a_missing_seed_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    process = _emulator("--port", str(free_port()), "--seed", str(tmp_path / "nosuch.yaml"))
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2 and len(err.strip().splitlines()) == 1 and "nosuch.yaml" in err
