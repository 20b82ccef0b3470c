"""Webhook signature schemes, computed and verified in one place.

The bridge verifies inbound requests with these; the sandbox CRM signs the webhooks it sends with the
very same functions, so the two can never drift apart. Clocks are passed in so tests can move time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Callable, Iterable

MAX_SKEW_SECONDS = 300  # HubSpot and Standard Webhooks both reject requests older than 5 minutes

Clock = Callable[[], float]


class SignatureError(ValueError):
    """The request's signature is missing, wrong, or its timestamp is outside the window."""


def hubspot_v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int | str) -> str:
    """Return HubSpot's v3 signature: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    message = method.upper().encode() + uri.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def hubspot_v2_signature(secret: str, method: str, uri: str, body: bytes) -> str:
    """Return HubSpot's v2 signature: hex SHA-256 of secret + method + uri + body."""
    return hashlib.sha256(secret.encode() + method.upper().encode() + uri.encode() + body).hexdigest()


def hubspot_v1_signature(secret: str, body: bytes) -> str:
    """Return HubSpot's v1 signature: hex SHA-256 of secret + body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def hmac_signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """Return our `t=<unix>,v1=<hex>` header for JSON callouts (Salesforce Flow / Platform Event relays)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def check_timestamp(timestamp_s: float, clock: Clock = time.time, max_skew: int = MAX_SKEW_SECONDS) -> None:
    """Raise SignatureError when a timestamp is more than `max_skew` seconds from now, either way."""
    try:
        skew = abs(clock() - float(timestamp_s))
    except OverflowError:  # an integer too large for a float is certainly not "now"
        raise SignatureError("timestamp is outside the 5 minute window") from None
    if skew > max_skew:
        raise SignatureError("timestamp is outside the 5 minute window")


def verify_hubspot(
    secrets: Iterable[str],
    *,
    version: str,
    signature: str | None,
    method: str,
    uri: str,
    body: bytes,
    timestamp_ms: str | None,
    clock: Clock = time.time,
) -> None:
    """Verify a HubSpot request against any of the source's valid secrets (v1, v2 or v3)."""
    if not signature:
        raise SignatureError("missing signature header")
    if version == "v3":
        if not timestamp_ms:
            raise SignatureError("missing X-HubSpot-Request-Timestamp header")
        try:
            ts = int(timestamp_ms)
        except ValueError:
            raise SignatureError("X-HubSpot-Request-Timestamp is not an integer") from None
        try:
            seconds = ts / 1000.0
        except OverflowError:
            raise SignatureError("timestamp is outside the 5 minute window") from None
        check_timestamp(seconds, clock)
        expected = [hubspot_v3_signature(s, method, uri, body, ts) for s in secrets]
    elif version == "v2":
        expected = [hubspot_v2_signature(s, method, uri, body) for s in secrets]
    elif version == "v1":
        expected = [hubspot_v1_signature(s, body) for s in secrets]
    else:
        raise SignatureError(f"unknown HubSpot signature version {version!r}")
    _compare_any(signature, expected)


def verify_hmac_header(secrets: Iterable[str], header: str | None, body: bytes, clock: Clock = time.time) -> None:
    """Verify a `t=<unix>,v1=<hex>` header against any of the source's valid secrets."""
    if not header:
        raise SignatureError("missing X-Leadbridge-Signature header")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts:
        raise SignatureError("signature header must look like t=<unix>,v1=<hex>")
    try:
        ts = int(parts["t"])
    except ValueError:
        raise SignatureError("signature timestamp is not an integer") from None
    check_timestamp(ts, clock)
    _compare_any(f"t={ts},v1={parts['v1']}", [hmac_signature_header(s, body, ts) for s in secrets])


def standard_webhook_signature(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """Return a Standard Webhooks signature, `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}." + body)>`.

    The key is the base64 after the `whsec_` prefix. The HMAC covers the raw body bytes, so a body
    that is not UTF-8 (or not JSON) can still be verified and then refused by the parser as malformed.
    """
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def verify_standard_webhook(
    secrets: Iterable[str],
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    clock: Clock = time.time,
) -> None:
    """Verify Standard Webhooks headers over the raw body against any of the source's valid secrets.

    The signature header holds space-separated `<version>,<base64>` entries; any `v1` entry may match.
    """
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)):
        if not value:
            raise SignatureError(f"missing {name} header")
    assert msg_id is not None and timestamp is not None and signature is not None
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    check_timestamp(ts, clock)
    given = []
    for entry in signature.split():
        version, _, encoded = entry.partition(",")
        if version == "v1":
            try:
                given.append(base64.b64decode(encoded, validate=True))
            except ValueError:
                continue  # a malformed entry matches nothing
    if not given:
        raise SignatureError("webhook-signature has no valid v1 signature")
    expected = [base64.b64decode(standard_webhook_signature(s, msg_id, ts, body)[len("v1,"):]) for s in secrets]
    ok = False
    for candidate in given:  # every pair compared, no early exit
        for digest in expected:
            ok |= hmac.compare_digest(candidate, digest)
    if not ok:
        raise SignatureError("signature does not match")


def _compare_any(given: str, expected: list[str]) -> None:
    # Compare against every candidate (no early exit) so timing says nothing about which secret matched.
    ok = False
    for candidate in expected:
        ok |= hmac.compare_digest(given.encode(), candidate.encode())
    if not ok:
        raise SignatureError("signature does not match")
