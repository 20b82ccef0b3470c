"""Tests for core.signatures: every scheme, every failure mode, and secret rotation.

Signatures are computed here from the test secrets with hmac/hashlib directly (the way each vendor
documents them), never pasted as hex, and never produced by the code under test alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import pytest

from core.signatures import (
    MAX_SKEW_SECONDS,
    SignatureError,
    check_timestamp,
    hmac_signature_header,
    hubspot_v1_signature,
    hubspot_v2_signature,
    hubspot_v3_signature,
    verify_hmac_header,
    verify_hubspot,
)

SECRET = "test-client-secret-7d1f"
OLD_SECRET = "test-client-secret-previous"
OTHER_SECRET = "not-the-secret"
NOW = 1_717_430_406.123  # seconds, as time.time() returns them
NOW_MS = int(NOW * 1000)
URI = "https://bridge.example.com/webhooks/hubspot?source=main"
BODY = b'[{"eventId":100001,"portalId":62515,"subscriptionType":"contact.creation","objectId":101}]'


def clock() -> float:
    return NOW


# --- reference implementations, straight from the vendors' descriptions -----------------------------


def v3_reference(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = (method + uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def v2_reference(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def v1_reference(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def hmac_reference(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def test_signers_agree_with_the_vendor_descriptions():
    ts = str(NOW_MS)
    assert hubspot_v3_signature(SECRET, "POST", URI, BODY, ts) == v3_reference(SECRET, "POST", URI, BODY, ts)
    assert hubspot_v3_signature(SECRET, "post", URI, BODY, NOW_MS) == v3_reference(
        SECRET, "POST", URI, BODY, ts
    )
    assert hubspot_v2_signature(SECRET, "POST", URI, BODY) == v2_reference(SECRET, "POST", URI, BODY)
    assert hubspot_v1_signature(SECRET, BODY) == v1_reference(SECRET, BODY)
    assert hmac_signature_header(SECRET, BODY, int(NOW)) == hmac_reference(SECRET, BODY, int(NOW))


# --- HubSpot v3 ----------------------------------------------------------------------------------------


def verify(
    version: str,
    signature: str | None,
    timestamp: str | None = None,
    *,
    secrets: Sequence[str] = (SECRET,),
    body: bytes = BODY,
    uri: str = URI,
    method: str = "POST",
) -> None:
    """verify_hubspot with this file's secret, request and clock unless told otherwise."""
    verify_hubspot(
        secrets,
        version=version,
        signature=signature,
        method=method,
        uri=uri,
        body=body,
        timestamp_ms=timestamp,
        clock=clock,
    )


def verify_v3(signature: str | None, timestamp: str | None = str(NOW_MS), **request: Any) -> None:
    verify("v3", signature, timestamp, **request)


def test_v3_valid_signature_passes():
    verify_v3(v3_reference(SECRET, "POST", URI, BODY, str(NOW_MS)))


@pytest.mark.parametrize("signature", [None, ""])
def test_v3_missing_signature_header(signature: str | None):
    with pytest.raises(SignatureError, match="missing signature header"):
        verify_v3(signature)


@pytest.mark.parametrize("timestamp", [None, ""])
def test_v3_missing_timestamp_header(timestamp: str | None):
    with pytest.raises(SignatureError, match="missing X-HubSpot-Request-Timestamp header"):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, str(NOW_MS)), timestamp)


@pytest.mark.parametrize("timestamp", ["abc", "1717430406.123", "1.7e12", "0x1A", "2024-06-03T16:00:06Z"])
def test_v3_non_integer_timestamp(timestamp: str):
    with pytest.raises(SignatureError, match="is not an integer"):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, timestamp), timestamp)


def test_v3_stale_timestamp():
    stale = str(NOW_MS - (MAX_SKEW_SECONDS + 1) * 1000)
    with pytest.raises(SignatureError, match="outside the 5 minute window"):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, stale), stale)


def test_v3_future_timestamp():
    future = str(NOW_MS + (MAX_SKEW_SECONDS + 1) * 1000)
    with pytest.raises(SignatureError, match="outside the 5 minute window"):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, future), future)


@pytest.mark.parametrize("offset_s", [-MAX_SKEW_SECONDS, -60, 0, 60, MAX_SKEW_SECONDS])
def test_v3_timestamps_inside_the_window_pass(offset_s: int):
    ts = str(NOW_MS + offset_s * 1000)
    verify_v3(v3_reference(SECRET, "POST", URI, BODY, ts), ts)


def test_v3_timestamp_in_seconds_is_rejected_as_stale():
    seconds = str(int(NOW))
    with pytest.raises(SignatureError, match="outside the 5 minute window"):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, seconds), seconds)


def test_v3_wrong_secret():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v3(v3_reference(OTHER_SECRET, "POST", URI, BODY, str(NOW_MS)))


@pytest.mark.parametrize(
    "field, value",
    [
        ("body", BODY.replace(b"101", b"102")),
        ("uri", URI.replace("main", "other")),
        ("uri", "http://bridge.example.com/webhooks/hubspot?source=main"),
        ("method", "PUT"),
    ],
)
def test_v3_bad_signature_when_anything_signed_changes(field: str, value):
    signature = v3_reference(SECRET, "POST", URI, BODY, str(NOW_MS))
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v3(signature, **{field: value})


def test_v3_replayed_signature_with_a_fresh_timestamp_fails():
    old_ts = str(NOW_MS - 10 * 60 * 1000)
    signature = v3_reference(SECRET, "POST", URI, BODY, old_ts)
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v3(signature, str(NOW_MS))


@pytest.mark.parametrize("signature", ["garbage", "é" * 44, base64.b64encode(b"\x00" * 32).decode()])
def test_v3_bad_signature_values(signature: str):
    with pytest.raises(SignatureError):
        verify_v3(signature)


@pytest.mark.parametrize("signing_secret", [SECRET, OLD_SECRET])
def test_v3_rotation_either_secret_passes(signing_secret: str):
    verify_v3(v3_reference(signing_secret, "POST", URI, BODY, str(NOW_MS)), secrets=(SECRET, OLD_SECRET))


def test_v3_rotation_neither_secret_fails():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v3(v3_reference(OTHER_SECRET, "POST", URI, BODY, str(NOW_MS)), secrets=(SECRET, OLD_SECRET))


def test_v3_no_secrets_configured_fails():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, str(NOW_MS)), secrets=())


def test_v3_absurdly_large_timestamp_is_a_signature_error():
    huge = "9" * 400
    with pytest.raises(SignatureError):
        verify_v3(v3_reference(SECRET, "POST", URI, BODY, huge), huge)


# --- HubSpot v2 and v1 ---------------------------------------------------------------------------------


def verify_v2(signature: str | None, **request: Any) -> None:
    verify("v2", signature, **request)


def verify_v1(signature: str | None, *, secrets: Sequence[str] = (SECRET,), body: bytes = BODY) -> None:
    verify("v1", signature, secrets=secrets, body=body)


def test_v2_valid_signature_passes():
    verify_v2(v2_reference(SECRET, "POST", URI, BODY))


def test_v1_valid_signature_passes():
    verify_v1(v1_reference(SECRET, BODY))


@pytest.mark.parametrize("verify", [verify_v2, verify_v1], ids=["v2", "v1"])
@pytest.mark.parametrize("signature", [None, ""])
def test_v1_v2_missing_signature_header(verify, signature):
    with pytest.raises(SignatureError, match="missing signature header"):
        verify(signature)


def test_v2_wrong_secret():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v2(v2_reference(OTHER_SECRET, "POST", URI, BODY))


def test_v1_wrong_secret():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v1(v1_reference(OTHER_SECRET, BODY))


@pytest.mark.parametrize("field, value", [("body", BODY + b" "), ("uri", URI + "&x=1"), ("method", "GET")])
def test_v2_bad_signature_when_anything_signed_changes(field: str, value):
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v2(v2_reference(SECRET, "POST", URI, BODY), **{field: value})


def test_v1_bad_signature_when_the_body_changes():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v1(v1_reference(SECRET, BODY), body=BODY + b" ")


def test_v1_signs_the_body_only():
    # v1 does not cover the URL: documented HubSpot behaviour, and a reason to prefer v3.
    verify("v1", v1_reference(SECRET, BODY), secrets=[SECRET], method="GET", uri="https://elsewhere/")


def test_v1_v2_have_no_timestamp_so_no_replay_window():
    # Nothing in a v1/v2 request says when it was signed; only v3 can refuse a replay.
    verify("v2", v2_reference(SECRET, "POST", URI, BODY), str(NOW_MS - 86_400_000), secrets=[SECRET])


@pytest.mark.parametrize("signing_secret", [SECRET, OLD_SECRET])
def test_v2_rotation_either_secret_passes(signing_secret: str):
    verify_v2(v2_reference(signing_secret, "POST", URI, BODY), secrets=(SECRET, OLD_SECRET))


@pytest.mark.parametrize("signing_secret", [SECRET, OLD_SECRET])
def test_v1_rotation_either_secret_passes(signing_secret: str):
    verify_v1(v1_reference(signing_secret, BODY), secrets=(SECRET, OLD_SECRET))


def test_v1_v2_rotation_neither_secret_fails():
    with pytest.raises(SignatureError):
        verify_v2(v2_reference(OTHER_SECRET, "POST", URI, BODY), secrets=(SECRET, OLD_SECRET))
    with pytest.raises(SignatureError):
        verify_v1(v1_reference(OTHER_SECRET, BODY), secrets=(SECRET, OLD_SECRET))


def test_signature_of_one_version_does_not_pass_as_another():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_v2(v1_reference(SECRET, BODY))


@pytest.mark.parametrize("version", ["v4", "", "V3"])
def test_unknown_version(version: str):
    with pytest.raises(SignatureError, match="unknown HubSpot signature version"):
        verify(version, "x", str(NOW_MS), secrets=[SECRET])


# --- timestamped HMAC header (Salesforce Flow / Platform Event relays) ----------------------------------


def verify_header(header: str | None, *, secrets=(SECRET,), body: bytes = BODY) -> None:
    verify_hmac_header(secrets, header, body, clock=clock)


def test_hmac_valid_header_passes():
    verify_header(hmac_reference(SECRET, BODY, int(NOW)))


@pytest.mark.parametrize("header", [None, ""])
def test_hmac_missing_header(header: str | None):
    with pytest.raises(SignatureError, match="missing X-Leadbridge-Signature header"):
        verify_header(header)


@pytest.mark.parametrize("header", ["garbage", "t=1717430406", "v1=abc", "t1717430406,v1abc", "sha256=abc"])
def test_hmac_malformed_header(header: str):
    with pytest.raises(SignatureError, match=r"must look like t=<unix>,v1=<hex>"):
        verify_header(header)


@pytest.mark.parametrize("t", ["abc", "1717430406.5", "", "1e9"])
def test_hmac_non_integer_timestamp(t: str):
    digest = hmac_reference(SECRET, BODY, int(NOW)).split("v1=")[1]
    with pytest.raises(SignatureError, match="timestamp is not an integer"):
        verify_header(f"t={t},v1={digest}")


def test_hmac_stale_timestamp():
    with pytest.raises(SignatureError, match="outside the 5 minute window"):
        verify_header(hmac_reference(SECRET, BODY, int(NOW) - MAX_SKEW_SECONDS - 1))


def test_hmac_future_timestamp():
    with pytest.raises(SignatureError, match="outside the 5 minute window"):
        verify_header(hmac_reference(SECRET, BODY, int(NOW) + MAX_SKEW_SECONDS + 1))


def test_hmac_wrong_secret():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_header(hmac_reference(OTHER_SECRET, BODY, int(NOW)))


def test_hmac_bad_signature_when_body_changes():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_header(hmac_reference(SECRET, BODY, int(NOW)), body=BODY + b"\n")


def test_hmac_timestamp_is_covered_by_the_signature():
    # Moving t forward to re-use an old signature inside the window must fail.
    digest = hmac_reference(SECRET, BODY, int(NOW) - 3600).split("v1=")[1]
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_header(f"t={int(NOW)},v1={digest}")


@pytest.mark.parametrize("signing_secret", [SECRET, OLD_SECRET])
def test_hmac_rotation_either_secret_passes(signing_secret: str):
    verify_header(hmac_reference(signing_secret, BODY, int(NOW)), secrets=(SECRET, OLD_SECRET))


def test_hmac_rotation_neither_secret_fails():
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_header(hmac_reference(OTHER_SECRET, BODY, int(NOW)), secrets=(SECRET, OLD_SECRET))


def test_hmac_absurdly_large_timestamp_is_a_signature_error():
    with pytest.raises(SignatureError):
        verify_header("t=" + "9" * 400 + ",v1=00")


# --- the window itself ---------------------------------------------------------------------------------


def test_check_timestamp_window_edges():
    check_timestamp(NOW - MAX_SKEW_SECONDS, clock)
    check_timestamp(NOW + MAX_SKEW_SECONDS, clock)
    with pytest.raises(SignatureError):
        check_timestamp(NOW - MAX_SKEW_SECONDS - 0.001, clock)
    with pytest.raises(SignatureError):
        check_timestamp(NOW + MAX_SKEW_SECONDS + 0.001, clock)


def test_check_timestamp_custom_window():
    check_timestamp(NOW - 50, clock, max_skew=60)
    with pytest.raises(SignatureError):
        check_timestamp(NOW - 61, clock, max_skew=60)
