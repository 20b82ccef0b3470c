"""Behavioural events (website and e-mail activity) in Segment's spec -> canonical Events.

Accepts Segment-style bodies, as the HTTP Tracking API's batch endpoint takes them
(https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#batch, spec at
https://segment.com/docs/connections/spec/common/): `{"batch": [event, ...], "context": {...}}` with at
most 500 events, a bare JSON array of events, or a single event object. An event:

    {"type": "track", "event": "Demo Requested", "userId": "97980cfea0067", "anonymousId": "507f...",
     "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db", "timestamp": "2024-06-03T16:00:00.000Z",
     "properties": {...}, "context": {"traits": {"email": "peter@example.com"}, "page": {...}}}

- `identify` -> identify (properties = traits), `page` -> page_view (properties: url, title, path,
  referrer, name and page_class, one of pricing, docs, case_studies, careers, blog, other, read from the
  URL path), `track` -> by event name (case, `_` and `-` do not matter): see TRACK_EVENT_TYPES, which
  follows Segment's e-mail spec for "Email Opened" / "Email Link Clicked"
  (https://segment.com/docs/connections/spec/email/). Other track names, and screen, group and alias
  calls, are reported as ignored, not invalid.
- object_type is "person"; object_id is userId, else anonymousId (both go to properties["_meta"] so
  ingest can join anonymous history to the known person). email comes from traits, properties or
  context.traits. `timestamp` (else `originalTimestamp`) is ISO-8601; without one, the receipt time.
- The dedupe key comes from messageId; without one, from the event's content (minus sentAt).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from connectors.parsing.common import (META_KEY, BatchBuilder, EventIgnored, EventInvalid, as_utc,
                                       check_batch_size, check_occurred_at, clip, is_int, iso_to_datetime,
                                       json_type, load_json, normalize_email, stable_hash)
from connectors.parsing.errors import MalformedPayload
from connectors.parsing.results import ParseResult
from core.records import Event
from core.values import MAX_OBJECT_ID

MAX_EVENTS = 500  # Segment caps a batch at 500 KB; 500 events is well above what fits in that

# Normalised track event name -> canonical event type.
TRACK_EVENT_TYPES = {
    "email opened": "email_open",
    "email link clicked": "email_click",
    "email clicked": "email_click",
    "form submitted": "form_fill",
    "form filled": "form_fill",
    "file downloaded": "download",
    "whitepaper downloaded": "download",
    "ebook downloaded": "download",
    "content downloaded": "download",
    "webinar attended": "webinar",
    "demo requested": "demo_request",
    "session started": "session_start",
}
# Page classes by URL path segment; the first segment in the path that names a class wins, so
# /blog/pricing-strategies is blog and /en/pricing is pricing.
PAGE_CLASS_SEGMENTS = {
    "pricing": "pricing",
    "plans": "pricing",
    "docs": "docs",
    "documentation": "docs",
    "developers": "docs",
    "developer": "docs",
    "case-studies": "case_studies",
    "case_studies": "case_studies",
    "casestudies": "case_studies",
    "customers": "case_studies",
    "customer-stories": "case_studies",
    "careers": "careers",
    "jobs": "careers",
    "blog": "blog",
    "articles": "blog",
}
# Sites often host docs, blog and jobs on their own sub-domain (docs.example.com).
PAGE_CLASS_HOSTS = {
    "docs": "docs",
    "developer": "docs",
    "developers": "docs",
    "blog": "blog",
    "careers": "careers",
    "jobs": "careers",
}
PAGE_FIELDS = ("url", "title", "path", "referrer", "name")
IGNORED_CALLS = {"screen", "group", "alias"}
# Segment trait names -> canonical lead attributes (first name listed wins); web events carry no account
LEAD_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("firstName", "first_name"),
    "last_name": ("lastName", "last_name"),
    "title": ("title", "jobTitle", "job_title"),
    "country": ("country",),
    "company": ("company", "company_name"),
    "industry": ("industry",),
    "employees": ("employees", "company_size"),
}


def parse_events(body: bytes, *, source: str, received_at: datetime) -> ParseResult:
    """Parse a batch (or one event) of Segment-style identify/track/page calls.

    Raises:
        MalformedPayload: not JSON, not a batch/array/event object, or more than 500 events.
    """
    received_at = as_utc(received_at)
    payload = load_json(body)
    shared_context: dict[str, Any] = {}
    if isinstance(payload, dict) and "batch" in payload:
        items = payload["batch"]
        if not isinstance(items, list):
            raise MalformedPayload(f"'batch' must be an array, got {json_type(items)}", code="wrong_shape")
        if isinstance(payload.get("context"), dict):
            shared_context = payload["context"]
    elif isinstance(payload, list):
        items = payload
    elif isinstance(payload, dict) and "type" in payload:
        items = [payload]
    else:
        raise MalformedPayload(
            'expected {"batch": [...]}, an array of events, or one event with a "type"', code="wrong_shape"
        )
    check_batch_size(len(items), MAX_EVENTS)

    batch = BatchBuilder(source)
    for index, item in enumerate(items):
        batch.run(index, lambda item=item: [_parse_event(item, source, received_at, shared_context)])
    return batch.result


def classify_page(url: str | None, path: str | None = None) -> str:
    """Return the page class (pricing, docs, case_studies, careers, blog or other) of a URL or path."""
    host = ""
    if isinstance(url, str) and url:
        try:
            parts = urlsplit(url.strip())
        except ValueError:  # e.g. an unbalanced IPv6 bracket
            parts = None
        if parts is not None:
            host = (parts.hostname or "") if parts.netloc else ""
            path = path or parts.path
    for segment in (path or "").lower().split("/"):
        if segment in PAGE_CLASS_SEGMENTS:
            return PAGE_CLASS_SEGMENTS[segment]
    label = host.lower().split(".", 1)[0] if host.count(".") >= 2 else ""
    return PAGE_CLASS_HOSTS.get(label, "other")


def _parse_event(item: Any, source: str, received_at: datetime, shared_context: dict[str, Any]) -> Event:
    if not isinstance(item, dict):
        raise EventInvalid(f"event must be a JSON object, got {json_type(item)}")
    call = item.get("type")
    if not isinstance(call, str) or not call:
        raise EventInvalid("type is missing")
    call = call.lower()
    if call in IGNORED_CALLS:
        raise EventIgnored(f"{call} calls are not used")
    if call not in ("identify", "track", "page"):
        raise EventInvalid(f"type {clip(call)!r} is not a Segment call (identify, track, page)")

    user_id = _identity(item, "userId")
    anonymous_id = _identity(item, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise EventInvalid("userId or anonymousId is required")
    context = _mapping(item, "context")
    if shared_context:
        context = {**shared_context, **context}
    occurred_at = _occurred_at(item, received_at)

    meta: dict[str, Any] = {"type": call}
    if call == "identify":
        event_type = "identify"
        properties = dict(_mapping(item, "traits"))
        email_source = properties.get("email")
    elif call == "track":
        name = item.get("event")
        if not isinstance(name, str) or not name.strip():
            raise EventInvalid("track event has no 'event' name")
        event_type = TRACK_EVENT_TYPES.get(_normalise_name(name))
        if event_type is None:
            raise EventIgnored(f"track event {clip(name)!r} is not one we score")
        properties = dict(_mapping(item, "properties"))
        email_source = properties.get("email")
        meta["event"] = name
    else:
        event_type = "page_view"
        properties = _page_properties(item, context)
        email_source = _mapping(item, "properties").get("email")

    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    email = normalize_email(email_source) or normalize_email(context_traits.get("email"))

    message_id = item.get("messageId")
    if isinstance(message_id, str) and message_id.strip():
        meta["messageId"] = message_id
        dedupe_key = stable_hash("web", source, message_id)
    else:
        # sentAt changes on every retry of the same event, so it stays out of the content hash.
        dedupe_key = stable_hash("web", source, {k: v for k, v in item.items() if k != "sentAt"})
    if user_id is not None:
        meta["userId"] = user_id
    if anonymous_id is not None:
        meta["anonymousId"] = anonymous_id
    properties[META_KEY] = meta
    return Event(source=source, crm="web", object_type="person",
                 object_id=user_id if user_id is not None else anonymous_id, event_type=event_type,
                 occurred_at=occurred_at, received_at=received_at, properties=properties,
                 dedupe_key=dedupe_key, email=email)


def _identity(item: dict[str, Any], field: str) -> str | None:
    value = item.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if is_int(value):
        return str(value)  # some libraries send numeric user ids
    if not isinstance(value, str):
        raise EventInvalid(f"{field} must be a string")
    if len(value) > MAX_OBJECT_ID:
        raise EventInvalid(f"{field} is longer than {MAX_OBJECT_ID} characters")
    return value


def _mapping(item: dict[str, Any], field: str) -> dict[str, Any]:
    value = item.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventInvalid(f"{field} must be a JSON object, got {json_type(value)}")
    return value


def _occurred_at(item: dict[str, Any], received_at: datetime) -> datetime:
    for field in ("timestamp", "originalTimestamp"):
        if item.get(field) is not None:
            return check_occurred_at(iso_to_datetime(item[field], field), received_at, field)
    return received_at


def _page_properties(item: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    given = _mapping(item, "properties")
    # analytics.js puts url/path/title in properties and in context.page; properties win.
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    properties: dict[str, Any] = {}
    for name in PAGE_FIELDS:
        value = given.get(name, page.get(name))
        if isinstance(value, str):
            properties[name] = value
    if "name" not in properties and isinstance(item.get("name"), str):
        properties["name"] = item["name"]
    if isinstance(item.get("category"), str):
        properties["category"] = item["category"]
    properties["page_class"] = classify_page(properties.get("url"), properties.get("path"))
    return properties


def _normalise_name(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())
