"""Request signatures (worker/intake/signing.py): pure, no services."""

from __future__ import annotations

import hashlib
import hmac
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from worker.intake.signing import (
    DEFAULT_SKEW_S,
    KEY_HEADER,
    SCHEME,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadSignature,
    Verified,
    signature,
    signed_headers,
    verify,
)

KEY_ID = "k1"
SECRET = "intake-secret-0123456789abcdef"
NEXT_KEY_ID = "k2"
NEXT_SECRET = "next-secret-fedcba9876543210"
KEYS = {KEY_ID: SECRET}
NOW = 1_800_000_000
METHOD = "POST"
PATH = "/v1/reports"
BODY = b'{"reporter":"alice","suspect":"mallory"}'


def _signed(
    *,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    method: str = METHOD,
    path: str = PATH,
    body: bytes = BODY,
    now: float = NOW,
) -> dict[str, str]:
    return signed_headers(key_id, secret, method, path, body, now=now)


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _message(exc: pytest.ExceptionInfo[BadSignature]) -> str:
    return str(exc.value)


# --- round trip --------------------------------------------------------------------------------------------


def test_round_trip_verifies_and_names_the_key() -> None:
    headers = _signed()
    verified = verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)
    assert verified == Verified(KEY_ID, signature(SECRET, NOW, METHOD, PATH, BODY), NOW)
    assert headers[SIGNATURE_HEADER] == SCHEME + verified.signature


def test_signature_is_the_documented_hmac() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}\nPOST\n{PATH}\n".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, NOW, "post", PATH, BODY) == expected
    assert _signed()[TIMESTAMP_HEADER] == str(NOW)
    assert _signed()[KEY_HEADER] == KEY_ID


def test_fractional_now_is_truncated_to_whole_seconds() -> None:
    headers = _signed(now=NOW + 0.999)
    assert headers[TIMESTAMP_HEADER] == str(NOW)
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW + 0.5).timestamp == NOW


def test_method_case_does_not_matter() -> None:
    headers = _signed(method="post")
    assert verify(KEYS, headers, "POST", PATH, BODY, now=NOW).key_id == KEY_ID


def test_empty_body_round_trips() -> None:
    headers = _signed(method="GET", path="/v1/reports/rpt_1", body=b"")
    assert verify(KEYS, headers, "GET", "/v1/reports/rpt_1", b"", now=NOW).key_id == KEY_ID


def test_without_now_uses_the_clock() -> None:
    headers = signed_headers(KEY_ID, SECRET, METHOD, PATH, BODY)
    assert verify(KEYS, headers, METHOD, PATH, BODY).key_id == KEY_ID


# --- wrong secret and tampering ----------------------------------------------------------------------------


def test_wrong_secret_fails() -> None:
    headers = _signed(secret="not-" + SECRET)
    with pytest.raises(BadSignature, match="does not match"):
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(METHOD, PATH, BODY + b" ", id="body-appended"),
        pytest.param(METHOD, PATH, BODY.replace(b"mallory", b"mallorz"), id="body-changed"),
        pytest.param(METHOD, PATH, b"", id="body-dropped"),
        pytest.param("PUT", PATH, BODY, id="method"),
        pytest.param(METHOD, PATH + "/", BODY, id="path-slash"),
        pytest.param(METHOD, "/v1/reportz", BODY, id="path-changed"),
    ],
)
def test_tampered_request_fails(method: str, path: str, body: bytes) -> None:
    headers = _signed()
    with pytest.raises(BadSignature, match="does not match"):
        verify(KEYS, headers, method, path, body, now=NOW)


def test_tampered_timestamp_fails() -> None:
    headers = {**_signed(), TIMESTAMP_HEADER: str(NOW + 1)}
    with pytest.raises(BadSignature, match="does not match"):
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)


def test_signature_differing_only_in_the_last_character_fails() -> None:
    headers = _signed()
    given_sig = headers[SIGNATURE_HEADER]
    last = given_sig[-1]
    flipped = given_sig[:-1] + ("0" if last != "0" else "1")
    with pytest.raises(BadSignature, match="does not match"):
        verify(KEYS, {**headers, SIGNATURE_HEADER: flipped}, METHOD, PATH, BODY, now=NOW)


def test_truncated_signature_fails() -> None:
    headers = _signed()
    with pytest.raises(BadSignature, match="does not match"):
        verify(
            KEYS, {**headers, SIGNATURE_HEADER: headers[SIGNATURE_HEADER][:-1]}, METHOD, PATH, BODY, now=NOW
        )


# --- clock skew --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, DEFAULT_SKEW_S, -DEFAULT_SKEW_S, 1, -1])
def test_timestamp_within_skew_passes(offset: int) -> None:
    """The server's clock may be up to the skew ahead of (stale request) or behind (future request)."""
    headers = _signed()
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW + offset).timestamp == NOW


@pytest.mark.parametrize(
    "offset", [DEFAULT_SKEW_S + 1, -(DEFAULT_SKEW_S + 1), 10 * DEFAULT_SKEW_S, -10 * DEFAULT_SKEW_S]
)
def test_timestamp_beyond_skew_fails(offset: int) -> None:
    headers = _signed()
    with pytest.raises(BadSignature, match=f"more than {DEFAULT_SKEW_S} s") as exc:
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW + offset)
    assert TIMESTAMP_HEADER in _message(exc)


def test_custom_skew_is_honoured() -> None:
    headers = _signed()
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW + 10, skew_s=10).key_id == KEY_ID
    with pytest.raises(BadSignature, match="more than 10 s"):
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW + 11, skew_s=10)


# --- missing and malformed headers -------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_missing_header_fails(missing: str) -> None:
    headers = {name: value for name, value in _signed().items() if name != missing}
    with pytest.raises(BadSignature, match="sign the request") as exc:
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)
    for name in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        assert name in _message(exc)


@pytest.mark.parametrize("emptied", [KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_empty_header_counts_as_missing(emptied: str) -> None:
    headers = {**_signed(), emptied: ""}
    with pytest.raises(BadSignature, match="sign the request"):
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)


def test_no_headers_at_all_fails() -> None:
    with pytest.raises(BadSignature, match="sign the request"):
        verify(KEYS, {}, METHOD, PATH, BODY, now=NOW)


def test_unknown_key_id_fails() -> None:
    headers = _signed(key_id="k9")
    with pytest.raises(BadSignature, match="unknown key id") as exc:
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)
    assert KEY_HEADER in _message(exc)


def test_no_keys_configured_refuses_everything() -> None:
    with pytest.raises(BadSignature, match="unknown key id"):
        verify({}, _signed(), METHOD, PATH, BODY, now=NOW)


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("17e8", id="exponent"),
        pytest.param("1800000000.0", id="fraction"),
        pytest.param("abc", id="letters"),
        pytest.param(" 1800000000", id="leading-space"),
        pytest.param("1800000000 ", id="trailing-space"),
        pytest.param("+1800000000", id="plus"),
        pytest.param("-1800000000", id="negative"),
        pytest.param("-1", id="minus-one"),
        pytest.param("1" * 13, id="thirteen-digits"),
        pytest.param("0" * 12 + "1800000000", id="padded-too-long"),
        pytest.param("١٨٠٠٠٠٠٠٠٠", id="arabic-indic-digits"),
        pytest.param("１８００００００００", id="full-width-digits"),
        pytest.param("0x6b49d200", id="hex"),
    ],
)
def test_malformed_timestamp_fails(stamp: str) -> None:
    headers = {**_signed(), TIMESTAMP_HEADER: stamp}
    with pytest.raises(BadSignature, match="not Unix seconds") as exc:
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)
    assert TIMESTAMP_HEADER in _message(exc)


def test_twelve_digit_timestamp_is_read_as_its_number() -> None:
    """Twelve digits is the longest accepted form: zero-padded, it is the same second (and the same
    signature, so the replay key is unchanged); far from the clock, only the skew refuses it."""
    good = _signed()
    padded = {**good, TIMESTAMP_HEADER: "00" + str(NOW)}
    verified = verify(KEYS, padded, METHOD, PATH, BODY, now=NOW)
    assert verified == verify(KEYS, good, METHOD, PATH, BODY, now=NOW)
    with pytest.raises(BadSignature, match="more than"):
        verify(KEYS, {**good, TIMESTAMP_HEADER: "9" * 12}, METHOD, PATH, BODY, now=NOW)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("v2=" + "0" * 64, id="other-version"),
        pytest.param("V1=" + "0" * 64, id="upper-case-scheme"),
        pytest.param("0" * 64, id="bare-hex"),
        pytest.param("sha256=" + "0" * 64, id="github-style"),
        pytest.param(" v1=" + "0" * 64, id="leading-space"),
    ],
)
def test_malformed_signature_prefix_fails(value: str) -> None:
    headers = {**_signed(), SIGNATURE_HEADER: value}
    with pytest.raises(BadSignature, match="expected v1=<hex>") as exc:
        verify(KEYS, headers, METHOD, PATH, BODY, now=NOW)
    assert SIGNATURE_HEADER in _message(exc)


def test_right_hex_under_the_wrong_prefix_still_fails() -> None:
    headers = _signed()
    bare = headers[SIGNATURE_HEADER].removeprefix(SCHEME)
    with pytest.raises(BadSignature, match="expected"):
        verify(KEYS, {**headers, SIGNATURE_HEADER: bare}, METHOD, PATH, BODY, now=NOW)


def test_upper_case_hex_does_not_match() -> None:
    """The signature is compared as sent: the hex is lower case, as signed_headers writes it."""
    headers = _signed()
    upper = SCHEME + headers[SIGNATURE_HEADER].removeprefix(SCHEME).upper()
    assert upper != headers[SIGNATURE_HEADER]
    with pytest.raises(BadSignature, match="does not match"):
        verify(KEYS, {**headers, SIGNATURE_HEADER: upper}, METHOD, PATH, BODY, now=NOW)


# --- rotation ----------------------------------------------------------------------------------------------


def test_two_keys_are_valid_at_once() -> None:
    keys = {KEY_ID: SECRET, NEXT_KEY_ID: NEXT_SECRET}
    old = verify(keys, _signed(), METHOD, PATH, BODY, now=NOW)
    new = verify(keys, _signed(key_id=NEXT_KEY_ID, secret=NEXT_SECRET), METHOD, PATH, BODY, now=NOW)
    assert (old.key_id, new.key_id) == (KEY_ID, NEXT_KEY_ID)
    assert old.signature != new.signature


def test_a_key_id_with_the_other_keys_secret_fails() -> None:
    keys = {KEY_ID: SECRET, NEXT_KEY_ID: NEXT_SECRET}
    with pytest.raises(BadSignature, match="does not match"):
        verify(keys, _signed(key_id=KEY_ID, secret=NEXT_SECRET), METHOD, PATH, BODY, now=NOW)


def test_a_retired_key_is_refused() -> None:
    headers = _signed()
    with pytest.raises(BadSignature, match="unknown key id"):
        verify({NEXT_KEY_ID: NEXT_SECRET}, headers, METHOD, PATH, BODY, now=NOW)


# --- header names ------------------------------------------------------------------------------------------


def test_lower_case_plain_dict_is_read() -> None:
    headers = _lower(_signed())
    assert set(headers) == {"x-recall-key", "x-recall-timestamp", "x-recall-signature"}
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW).key_id == KEY_ID


def test_canonical_plain_dict_is_read() -> None:
    headers = _signed()
    assert set(headers) == {KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW).key_id == KEY_ID


def test_starlette_headers_are_read() -> None:
    """Starlette presents header names lower case and looks them up case-insensitively."""
    raw = [(name.lower().encode(), value.encode()) for name, value in _signed().items()]
    headers = Headers(raw=raw)
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW).key_id == KEY_ID
    tampered = Headers(raw=[*raw[:1], (b"x-recall-timestamp", str(NOW + 1).encode()), *raw[2:]])
    with pytest.raises(BadSignature, match="does not match"):
        verify(KEYS, tampered, METHOD, PATH, BODY, now=NOW)


def test_starlette_headers_from_mixed_case_names_are_read() -> None:
    headers = Headers(headers=_signed())  # Starlette lower-cases them itself
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW).key_id == KEY_ID


def test_lower_case_name_wins_over_canonical_in_a_plain_dict() -> None:
    good = _signed()
    headers = {**good, "x-recall-signature": good[SIGNATURE_HEADER], SIGNATURE_HEADER: SCHEME + "0" * 64}
    assert verify(KEYS, headers, METHOD, PATH, BODY, now=NOW).key_id == KEY_ID


# --- what failures say -------------------------------------------------------------------------------------

_SECRETS = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation, min_size=16, max_size=64
)


@settings(max_examples=60, deadline=None)
@given(secret=_SECRETS, body=st.binary(max_size=64))
def test_failure_messages_never_hold_the_secret_or_the_expected_signature(secret: str, body: bytes) -> None:
    keys = {KEY_ID: secret}
    good = signed_headers(KEY_ID, secret, METHOD, PATH, body, now=NOW)
    expected = signature(secret, NOW, METHOD, PATH, body)
    wrong_secret = signed_headers(KEY_ID, secret + "x", METHOD, PATH, body, now=NOW)
    cases: list[tuple[dict[str, str], bytes, float]] = [
        (wrong_secret, body, NOW),  # wrong secret
        (good, body + b"!", NOW),  # tampered body
        (good, body, NOW + DEFAULT_SKEW_S + 1),  # stale
        ({**good, TIMESTAMP_HEADER: "x"}, body, NOW),  # malformed timestamp
        ({**good, SIGNATURE_HEADER: "v0=" + expected}, body, NOW),  # malformed prefix
        ({**good, KEY_HEADER: "other"}, body, NOW),  # unknown key
        ({KEY_HEADER: KEY_ID}, body, NOW),  # missing headers
    ]
    for headers, sent_body, now in cases:
        with pytest.raises(BadSignature) as exc:
            verify(keys, headers, METHOD, PATH, sent_body, now=now)
        message = str(exc.value)
        assert secret not in message
        assert expected not in message
        assert signature(secret, NOW, METHOD, PATH, sent_body) not in message
