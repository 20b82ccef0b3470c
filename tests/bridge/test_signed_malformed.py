"""A correctly signed but malformed body is the parser's 400, never a signature 401 (issue 13).

Standard Webhooks are verified over the raw bytes (standardwebhooks' own `verify` decodes and parses the
body first, so an empty, non-UTF-8 or deeply nested body used to be "malformed signature headers", 401).
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from core.signatures import SignatureError, standard_webhook_signature, verify_standard_webhook
from storage.sources import new_secret
from tests.bridge.conftest import Signer

DEEP = b"[" * 30_000 + b"]" * 30_000  # under the test app's 64 KiB limit
MALFORMED = {
    "empty": b"",
    "not UTF-8": b'{"batch": ["\xff\xfe"]}',
    "nested too deeply": DEEP,
    "not JSON": b"{batch: nope",
}


def post_events(client: Any, source: Any, body: bytes, *, secret: str | None = None, timestamp: int | None = None,
                signature: str | None = None) -> Any:
    """POST `body` to an events source with Standard Webhooks headers computed over the raw bytes."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts),
               "webhook-signature": signature or standard_webhook_signature(secret or source.secret, msg_id, ts, body)}
    return client.post(source.webhook_path(), data=body, headers=headers, content_type="application/json",
                       buffered=True)


@pytest.mark.parametrize("problem", list(MALFORMED))
def test_signed_malformed_events_body_is_400(webhook_app, make_source, problem: str) -> None:  # type: ignore[no-untyped-def]
    source = make_source("events")
    response = post_events(webhook_app.test_client(), source, MALFORMED[problem])
    assert response.status_code == 400, response.get_data(as_text=True)
    payload = response.get_json()
    assert payload["error"] in ("empty_body", "not_json")
    assert payload["message"]  # names the problem


@pytest.mark.parametrize("problem", list(MALFORMED))
def test_signed_malformed_hubspot_and_salesforce_json_bodies_are_400(  # type: ignore[no-untyped-def]
    signed: Signer, make_source, problem: str
) -> None:
    hubspot = make_source("hubspot")
    salesforce = make_source("salesforce", org_id="00D5g000004ABCDEA2")
    for response in (signed.hubspot(hubspot, MALFORMED[problem]), signed.salesforce_json(salesforce, MALFORMED[problem])):
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json()["error"] in ("empty_body", "not_json")


def test_wrong_signature_on_a_malformed_body_is_still_401(webhook_app, make_source) -> None:  # type: ignore[no-untyped-def]
    source = make_source("events")
    response = post_events(webhook_app.test_client(), source, b"", secret=new_secret("events"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_signature"


# --- the verifier, one test per failure mode ------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = 1_750_000_000.0


def verify(body: bytes = b'{"batch": []}', **headers: Any) -> None:
    defaults = {"msg_id": "msg_1", "timestamp": str(int(NOW))}
    values = {**defaults, **headers}
    if "signature" not in values:
        values["signature"] = standard_webhook_signature(SECRET, values["msg_id"], values["timestamp"], body)
    verify_standard_webhook([SECRET], body=body, clock=lambda: NOW, **values)


def test_a_signature_made_by_the_standardwebhooks_library_verifies() -> None:
    body = '{"batch": [{"type": "page"}]}'
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(NOW, tz=UTC), body)
    verify(body.encode(), signature=signature)
    assert signature == standard_webhook_signature(SECRET, "msg_1", int(NOW), body.encode())


def test_any_v1_entry_may_match_and_others_are_ignored() -> None:
    good = standard_webhook_signature(SECRET, "msg_1", int(NOW), b"{}")
    verify(b"{}", signature=f"v1a,abc v1,not-base64! v1,{base64.b64encode(b'x' * 32).decode()} {good}")


@pytest.mark.parametrize("missing", ["msg_id", "timestamp", "signature"])
def test_missing_header(missing: str) -> None:
    with pytest.raises(SignatureError, match="missing webhook-"):
        verify(**{missing: None})


def test_bad_signature() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(signature=standard_webhook_signature(new_secret("events"), "msg_1", int(NOW), b'{"batch": []}'))


def test_signature_of_another_body() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"[1]", signature=standard_webhook_signature(SECRET, "msg_1", int(NOW), b"[2]"))


def test_no_v1_signature() -> None:
    with pytest.raises(SignatureError, match="no valid v1"):
        verify(signature="v2,abc")


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_or_future_timestamp(offset: int) -> None:
    with pytest.raises(SignatureError, match="5 minute window"):
        verify(timestamp=str(int(NOW) + offset))


def test_timestamp_not_an_integer() -> None:
    with pytest.raises(SignatureError, match="not an integer"):
        verify(timestamp="soon")


# --- early answers under a server that streams the body (the test client, gunicorn's sync worker) ---


def test_an_answer_before_the_body_was_read_closes_the_connection(webhook_app, make_source) -> None:  # type: ignore[no-untyped-def]
    client = webhook_app.test_client()
    body = b'[{"objectId": 1}]'
    unknown = client.post("/webhooks/hubspot/no-such-source", data=body, content_type="application/json")
    assert unknown.status_code == 404
    assert unknown.headers.get("Connection") == "close"  # the unread body must not be taken for a request
    source = make_source("events")
    wrong_type = client.post(source.webhook_path(), data=body, content_type="text/plain")
    assert wrong_type.status_code == 415
    assert wrong_type.headers.get("Connection") == "close"
    read_then_refused = post_events(client, source, b"")
    assert read_then_refused.status_code == 400
    assert "Connection" not in read_then_refused.headers  # the body was read: the connection can be kept
