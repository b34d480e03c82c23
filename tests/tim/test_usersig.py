"""UserSig: the client's cached provider, and the emulator's verification with every documented code."""

from __future__ import annotations

import base64
import zlib

import httpx
import pytest

from tests.conftest import ADMIN, KEY, SDKAPPID
from tests.usersig_alt import make_usersig
from worker.emulator.server import EmulatorThread
from worker.tim.usersig import UserSigProvider


def call_with_sig(
    url: str, sig: str, *, identifier: str = ADMIN, sdkappid: int = SDKAPPID
) -> dict[str, object]:
    response = httpx.post(
        f"{url}/v4/im_open_login_svc/account_import",
        params={
            "sdkappid": sdkappid,
            "identifier": identifier,
            "usersig": sig,
            "random": 7,
            "contenttype": "json",
        },
        json={"UserID": "alice"},
    )
    assert response.status_code == 200
    reply: dict[str, object] = response.json()
    return reply


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_provider_caches_the_sig_until_its_renewal_point() -> None:
    clock = FakeClock(1_000_000.0)
    provider = UserSigProvider(SDKAPPID, KEY, ADMIN, ttl_s=1000, renew_fraction=0.2, clock=clock)
    first = provider.get()
    clock.now += 799
    assert provider.get() == first
    assert provider.generated == 1
    clock.now += 1  # 80% of the lifetime has passed
    provider.get()
    assert provider.generated == 2


def test_provider_refuses_a_tiny_ttl() -> None:
    with pytest.raises(ValueError, match="at least 60"):
        UserSigProvider(SDKAPPID, KEY, ADMIN, ttl_s=10)


def test_sig_from_the_official_library_is_accepted(emulator: EmulatorThread) -> None:
    sig = UserSigProvider(SDKAPPID, KEY, ADMIN).get()
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 0


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_sig_from_an_independent_generator_is_accepted(emulator: EmulatorThread, level: int) -> None:
    sig = make_usersig(sdkappid=SDKAPPID, key=KEY, identifier=ADMIN, level=level)
    reply = call_with_sig(emulator.url, sig)
    assert reply["ErrorCode"] == 0, reply


def test_expired_sig_is_70001(emulator: EmulatorThread) -> None:
    sig = make_usersig(sdkappid=SDKAPPID, key=KEY, identifier=ADMIN, issued=1_600_000_000, expire=3600)
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 70001


def test_sig_expires_by_the_emulator_clock(emulator: EmulatorThread) -> None:
    sig = make_usersig(sdkappid=SDKAPPID, key=KEY, identifier=ADMIN, expire=3600)
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 0
    httpx.post(f"{emulator.url}/_emulator/clock", json={"advance": 3601}).raise_for_status()
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 70001


@pytest.mark.parametrize(
    "sig",
    [
        "not*a-valid_sig",  # base64 that does not inflate
        base64.b64encode(b"plain bytes").decode(),
        base64.b64encode(zlib.compress(b"not json")).decode().translate(str.maketrans("+/=", "*-_")),
        base64.b64encode(zlib.compress(b'{"TLS.ver":"2.0"}')).decode().translate(str.maketrans("+/=", "*-_")),
    ],
)
def test_undecodable_sig_is_70003(emulator: EmulatorThread, sig: str) -> None:
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 70003


def test_sig_signed_with_another_key_is_70009(emulator: EmulatorThread) -> None:
    sig = make_usersig(sdkappid=SDKAPPID, key="some-other-key", identifier=ADMIN)
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 70009


def test_identifier_not_matching_the_sig_is_70013(emulator: EmulatorThread) -> None:
    sig = make_usersig(sdkappid=SDKAPPID, key=KEY, identifier=ADMIN)
    assert call_with_sig(emulator.url, sig, identifier="mallory")["ErrorCode"] == 70013


def test_sdkappid_not_matching_the_sig_is_70014(emulator: EmulatorThread) -> None:
    sig = make_usersig(sdkappid=1400000001, key=KEY, identifier=ADMIN)
    assert call_with_sig(emulator.url, sig)["ErrorCode"] == 70014


def test_valid_sig_of_a_non_admin_is_refused(emulator: EmulatorThread) -> None:
    sig = make_usersig(sdkappid=SDKAPPID, key=KEY, identifier="alice")
    reply = call_with_sig(emulator.url, sig, identifier="alice")
    assert reply["ErrorCode"] == 60010
    assert reply["ActionStatus"] == "FAIL"


def test_empty_sig_is_70002(emulator: EmulatorThread) -> None:
    assert call_with_sig(emulator.url, "")["ErrorCode"] == 70002
