"""Webhook endpoints: verify, parse, commit raw events to the inbox, enqueue ids, answer.

One URL per source: /webhooks/<kind>/<slug>. No scoring and no CRM calls happen on a request; the
inbox row is the durable copy, so an enqueue failure is logged and left to the sweeper.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, request
from flask.typing import ResponseReturnValue

from bridge import metrics
from bridge.extensions import services
from connectors.events import parse_events
from connectors.hubspot.webhook import parse_hubspot
from connectors.parsing import MalformedPayload, ParseResult
from connectors.salesforce.webhook import (
    ack_response,
    fault_response,
    parse_salesforce_json,
    parse_salesforce_outbound,
)
from core.records import utcnow
from core.signatures import SignatureError, verify_hmac_header, verify_hubspot, verify_standard_webhook
from storage.inbox import store_events
from storage.sources import ReceivingSource, receiving_source

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
SOAP_TYPES = ("text/xml", "application/soap+xml")


class Rejection(Exception):
    """A delivery refused with an HTTP status and a named reason."""

    def __init__(self, status: int, error: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.detail = status, error, message, detail or {}


@dataclass(frozen=True)
class Delivery:
    """What a view learned about one request before storing it."""

    source: ReceivingSource
    body: bytes


@bp.post("/hubspot/<slug>")
def hubspot(slug: str) -> ResponseReturnValue:
    """Receive a HubSpot webhook batch (v3 signature, or v1/v2 when the source says so)."""
    return _handle("hubspot", slug, JSON_TYPES, _verify_hubspot, _parse_hubspot, _json_reply, _json_error)


@bp.post("/salesforce/<slug>")
def salesforce(slug: str) -> ResponseReturnValue:
    """Receive a Salesforce Outbound Message (SOAP) or a signed JSON callout / Platform Event relay."""
    if _content_type() in SOAP_TYPES or _content_type() == "":
        return _handle("salesforce", slug, SOAP_TYPES, _verify_outbound, _parse_outbound, _soap_reply, _soap_error)
    return _handle("salesforce", slug, JSON_TYPES, _verify_hmac, _parse_sf_json, _json_reply, _json_error)


@bp.post("/events/<slug>")
def events(slug: str) -> ResponseReturnValue:
    """Receive a batch of Segment-style behavioural events signed with Standard Webhooks."""
    return _handle("events", slug, JSON_TYPES, _verify_standard, _parse_events, _json_reply, _json_error)


# --- the shared flow ------------------------------------------------------------------------------

Reply = Callable[[int, dict[str, Any]], ResponseReturnValue]
ErrorReply = Callable[[Rejection], ResponseReturnValue]


def _handle(
    kind: str,
    slug: str,
    content_types: tuple[str, ...],
    verify: Callable[[Delivery], None],
    parse: Callable[[Delivery], ParseResult],
    reply: Reply,
    error_reply: ErrorReply,
) -> ResponseReturnValue:
    started = time.perf_counter()
    svc = services()
    source_label = "unknown"
    try:
        with svc.db.engine.connect() as connection:
            source = receiving_source(connection, kind, slug)
        if source is None:
            raise Rejection(404, "unknown_source", f"no {kind} source at this URL")
        source_label = source.name
        if not source.enabled:
            raise Rejection(403, "source_disabled", f"source {source.name!r} is disabled")
        if _content_type() not in content_types:
            raise Rejection(415, "unsupported_content_type", f"Content-Type must be {' or '.join(content_types)}")
        delivery = Delivery(source, _read_body(svc.settings.max_body_bytes))
        verify(delivery)
        try:
            result = parse(delivery)
        except MalformedPayload as exc:
            raise Rejection(400, exc.code, exc.message) from None
        if not result.events and result.invalid:
            raise Rejection(400, "no_valid_events", "no event in the batch is valid", result.summary())
        with svc.db.session(write=True) as session:
            new_ids = store_events(session, result.events, delivery.source.id)
        # Committed: from here on the events survive anything.
        summary = result.summary()
        summary.update(accepted=len(new_ids), duplicates=len(result.events) - len(new_ids))
        metrics.record_delivery(kind, source_label, "accepted" if new_ids else "duplicate", summary)
        response = make_response(reply(202 if new_ids else 200, summary))
        if new_ids:
            # Hand off once the answer is on its way: the sender never waits on the broker, and a
            # failed hand-off is repaired by the sweeper from the committed rows.
            response.call_on_close(lambda: svc.handoff.submit(new_ids))
        return response
    except Rejection as rejection:
        log.info("webhook.%s.rejected", kind, extra={"reason": rejection.error, "source": source_label})
        metrics.record_rejection(kind, source_label, rejection.error)
        response = make_response(error_reply(rejection))
        if not _body_consumed():
            # Answered before the body was read: the unread bytes would be taken for the next request on
            # a kept-alive connection, so say honestly that this one closes.
            response.headers["Connection"] = "close"
        return response
    finally:
        metrics.ACK_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)


def _content_type() -> str:
    return (request.mimetype or "").lower()


# Set in the WSGI environ by a server that read the whole body before calling the app (`leadbridge web`
# does, see cli/web.py): an answer given before the app read the body then leaves nothing unread.
BUFFERED_BODY_KEY = "leadbridge.body_buffered"
_BODY_READ_KEY = "leadbridge.body_read"


def _read_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise Rejection(413, "payload_too_large", f"body is {length} bytes; the limit is {limit}")
    body = request.stream.read(limit + 1)
    request.environ[_BODY_READ_KEY] = len(body) <= limit  # True: every byte of it was read
    if len(body) > limit:
        raise Rejection(413, "payload_too_large", f"body exceeds the limit of {limit} bytes")
    return body


def _body_consumed() -> bool:
    environ = request.environ
    if environ.get(BUFFERED_BODY_KEY) or environ.get(_BODY_READ_KEY):
        return True
    return not request.content_length and not request.headers.get("Transfer-Encoding")  # there was no body


def _signed_uri() -> str:
    # HubSpot signs the URL it called; behind a proxy that is the public URL, not the one we see.
    base = services().settings.public_url or request.host_url.rstrip("/")
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


# --- verifiers ------------------------------------------------------------------------------------


def _verify_hubspot(delivery: Delivery) -> None:
    version = delivery.source.signature_version
    if version == "v3":
        signature = request.headers.get("X-HubSpot-Signature-v3")
    else:
        signature = request.headers.get("X-HubSpot-Signature")
    try:
        verify_hubspot(
            delivery.source.valid_secrets(), version=version, signature=signature, method=request.method,
            uri=_signed_uri(), body=delivery.body, timestamp_ms=request.headers.get("X-HubSpot-Request-Timestamp"),
        )
    except SignatureError as exc:
        raise Rejection(401, "invalid_signature", str(exc)) from None


def _verify_hmac(delivery: Delivery) -> None:
    try:
        verify_hmac_header(delivery.source.valid_secrets(), request.headers.get("X-Leadbridge-Signature"), delivery.body)
    except SignatureError as exc:
        raise Rejection(401, "invalid_signature", str(exc)) from None


def _verify_outbound(delivery: Delivery) -> None:
    # Outbound Messages carry no HMAC: the unguessable URL plus the OrganizationId check (in the parser) authenticate.
    if not delivery.source.org_id:
        raise Rejection(403, "org_id_required", "this source has no Salesforce organization id configured")


def _verify_standard(delivery: Delivery) -> None:
    # Verified over the raw bytes, never parsed here (standardwebhooks' own verify parses the body as
    # JSON): a correctly signed but malformed body reaches the parser and gets its 400.
    try:
        verify_standard_webhook(
            delivery.source.valid_secrets(), msg_id=request.headers.get("webhook-id"),
            timestamp=request.headers.get("webhook-timestamp"), signature=request.headers.get("webhook-signature"),
            body=delivery.body,
        )
    except SignatureError as exc:
        raise Rejection(401, "invalid_signature", str(exc)) from None


# --- parsers bound to sources ---------------------------------------------------------------------


def _portal_id(source: ReceivingSource) -> int | None:
    return int(source.org_id) if source.org_id and source.org_id.isdigit() else None


def _parse_hubspot(d: Delivery) -> ParseResult:
    return parse_hubspot(d.body, source=d.source.name, received_at=utcnow(), portal_id=_portal_id(d.source))


def _parse_outbound(d: Delivery) -> ParseResult:
    return parse_salesforce_outbound(d.body, source=d.source.name, received_at=utcnow(), org_id=d.source.org_id)


def _parse_sf_json(d: Delivery) -> ParseResult:
    return parse_salesforce_json(d.body, source=d.source.name, received_at=utcnow(), org_id=d.source.org_id)


def _parse_events(d: Delivery) -> ParseResult:
    return parse_events(d.body, source=d.source.name, received_at=utcnow())


# --- replies --------------------------------------------------------------------------------------


def _json_reply(status: int, summary: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(summary), status


def _json_error(rejection: Rejection) -> ResponseReturnValue:
    return jsonify(error=rejection.error, message=rejection.message, **rejection.detail), rejection.status


def _soap_reply(status: int, summary: dict[str, Any]) -> ResponseReturnValue:
    # Salesforce only needs the Ack (HTTP 200) to stop retrying, for new and repeated messages alike.
    return Response(ack_response(), status=200, content_type="text/xml; charset=utf-8")


def _soap_error(rejection: Rejection) -> ResponseReturnValue:
    body = fault_response(f"{rejection.error}: {rejection.message}", code="Client")
    return Response(body, status=rejection.status, content_type="text/xml; charset=utf-8")
