"""Unit tests for the behavioural (Segment-style) event parser (connectors.events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.events import classify_page
from connectors.parsing import TooManyEvents
from core.records import EVENT_TYPES
from tests.connectors.parsers import RECEIVED, with_overrides
from tests.connectors.parsers import events as parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def track(name: str = "Demo Requested", **overrides: Any) -> dict[str, Any]:
    event = {
        "type": "track",
        "event": name,
        "userId": "97980cfea0067",
        "messageId": "msg-1",
        "timestamp": "2024-06-03T15:57:00.000Z",
        "properties": {"product": "TPS Cloud"},
    }
    return with_overrides(event, overrides)


# --- the fixture batch ---------------------------------------------------------------------------------


def test_batch_maps_every_kind_of_event():
    result = parse(load("batch.json"))
    assert result.invalid == []
    assert [e.event_type for e in result.events] == [
        "identify",
        "page_view",
        "page_view",
        "email_open",
        "email_click",
        "form_fill",
        "download",
        "download",
        "webinar",
        "demo_request",
    ]
    assert result.ignored == [
        (10, "track event 'Order Completed' is not one we score"),
        (11, "group calls are not used"),
    ]
    for event in result.events:
        assert (event.crm, event.object_type, event.source) == ("web", "person", "website")
        assert event.event_type in EVENT_TYPES
        assert event.received_at == RECEIVED
    assert len({e.dedupe_key for e in result.events}) == 10


def test_identify_keeps_traits_and_email():
    event = parse(load("batch.json")).events[0]
    assert event.object_id == "97980cfea0067"
    assert event.email == "peter@initech.com"
    assert event.properties["name"] == "Peter Gibbons"
    assert event.properties["company"] == {"name": "Initech", "employee_count": 300}
    assert event.properties["_meta"] == {
        "type": "identify",
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "userId": "97980cfea0067",
        "anonymousId": "507f191e810c19729de860ea",
    }
    assert event.occurred_at == datetime(2024, 6, 3, 15, 50, tzinfo=UTC)


def test_page_view_properties_and_class():
    pricing, docs = parse(load("batch.json")).events[1:3]
    props = dict(pricing.properties)
    props.pop("_meta")
    assert props == {
        "url": "https://www.initech.com/en/pricing?plan=team",
        "title": "Pricing | Initech",
        "path": "/en/pricing",
        "referrer": "https://www.google.com/",
        "name": "Pricing",
        "page_class": "pricing",
    }
    assert docs.properties["page_class"] == "docs"  # docs.initech.com
    assert docs.object_id == "507f191e810c19729de860ea"  # anonymous visitor


def test_single_page_event_reads_context_page():
    (event,) = parse(load("page_single.json")).events
    assert event.properties["url"] == "https://www.initech.com/customers/globex"
    assert event.properties["title"] == "Globex | Initech customers"
    assert event.properties["page_class"] == "case_studies"


def test_email_from_context_traits_and_properties():
    events = parse(load("batch.json")).events
    assert events[3].email == "peter@initech.com"  # context.traits
    assert events[5].email == "peter@initech.com"  # properties.email
    assert events[6].email is None


def test_track_properties_and_event_name_are_kept():
    event = parse(load("batch.json")).events[4]
    assert event.properties["link_url"] == "https://www.initech.com/case-studies/globex"
    assert event.properties["_meta"]["event"] == "Email Link Clicked"


# --- track names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, event_type",
    [
        ("Email Opened", "email_open"),
        ("email_opened", "email_open"),
        ("Email Link Clicked", "email_click"),
        ("Email Clicked", "email_click"),
        ("Form Submitted", "form_fill"),
        ("form-submitted", "form_fill"),
        ("File Downloaded", "download"),
        ("Whitepaper Downloaded", "download"),
        ("Ebook Downloaded", "download"),
        ("Webinar Attended", "webinar"),
        ("Demo Requested", "demo_request"),
        ("  demo   REQUESTED ", "demo_request"),
        ("Session Started", "session_start"),
    ],
)
def test_track_names(name: str, event_type: str):
    assert parse(track(name)).events[0].event_type == event_type


@pytest.mark.parametrize("name", ["Order Completed", "Signed Up", "Video Playback Started"])
def test_unknown_track_names_are_ignored_not_invalid(name: str):
    result = parse(track(name))
    assert result.events == [] and result.invalid == []
    assert result.ignored == [(0, f"track event {name!r} is not one we score")]


@pytest.mark.parametrize("call", ["screen", "group", "alias"])
def test_other_segment_calls_are_ignored(call: str):
    assert parse(track(type=call)).ignored == [(0, f"{call} calls are not used")]


# --- page classes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, path, page_class",
    [
        ("https://www.initech.com/pricing", None, "pricing"),
        ("https://www.initech.com/en-gb/plans/", None, "pricing"),
        ("https://www.initech.com/Pricing?x=1#top", None, "pricing"),
        ("https://www.initech.com/docs/api/auth", None, "docs"),
        ("https://developers.initech.com/reference", None, "docs"),
        ("https://www.initech.com/case-studies/globex", None, "case_studies"),
        ("https://www.initech.com/customers", None, "case_studies"),
        ("https://www.initech.com/careers/engineering", None, "careers"),
        ("https://jobs.initech.com/", None, "careers"),
        ("https://www.initech.com/blog/pricing-strategies", None, "blog"),
        ("https://www.initech.com/blog/pricing", None, "blog"),
        ("https://blog.initech.com/2024/06/hello", None, "blog"),
        ("https://www.initech.com/", None, "other"),
        ("https://docs.io/pricing-faq", None, "other"),
        (None, "/pricing", "pricing"),
        ("https://www.initech.com/", "/docs/start", "docs"),
        ("http://[::1/pricing", None, "other"),
        ("not a url", None, "other"),
        (None, None, "other"),
    ],
)
def test_classify_page(url: str | None, path: str | None, page_class: str):
    assert classify_page(url, path) == page_class


# --- identity, time, dedupe ----------------------------------------------------------------------------


def test_anonymous_id_used_when_no_user_id():
    event = parse(track(userId=None, anonymousId="anon-1")).events[0]
    assert event.object_id == "anon-1"
    assert event.properties["_meta"]["anonymousId"] == "anon-1"
    assert "userId" not in event.properties["_meta"]


def test_numeric_user_id_is_accepted_as_text():
    assert parse(track(userId=4242)).events[0].object_id == "4242"


def test_missing_timestamp_uses_receipt_time_and_original_timestamp_is_a_fallback():
    assert parse(track(timestamp=None)).events[0].occurred_at == RECEIVED
    original = parse(track(timestamp=None, originalTimestamp="2024-06-03T15:00:00+02:00")).events[0]
    assert original.occurred_at == datetime(2024, 6, 3, 13, 0, tzinfo=UTC)


def test_naive_timestamp_is_utc():
    assert parse(track(timestamp="2024-06-03T15:57:00")).events[0].occurred_at == datetime(
        2024, 6, 3, 15, 57, tzinfo=UTC
    )


def test_message_id_is_the_dedupe_key():
    a = parse(track()).events[0]
    b = parse(track(properties={"product": "other"}), received_at=RECEIVED + timedelta(minutes=3)).events[0]
    c = parse(track(messageId="msg-2")).events[0]
    assert a.dedupe_key == b.dedupe_key != c.dedupe_key


def test_same_message_id_from_two_sources_is_two_events():
    assert (
        parse(track(), source="site-a").events[0].dedupe_key
        != parse(track(), source="site-b").events[0].dedupe_key
    )


def test_without_message_id_the_content_is_the_key_and_sent_at_is_not_part_of_it():
    a = parse(track(messageId=None, sentAt="2024-06-03T15:57:01Z")).events[0]
    retry = parse(
        track(messageId=None, sentAt="2024-06-03T15:59:30Z"), received_at=RECEIVED + timedelta(minutes=2)
    )
    other = parse(track(messageId=None, timestamp="2024-06-03T15:58:00Z")).events[0]
    assert a.dedupe_key == retry.events[0].dedupe_key != other.dedupe_key


def test_duplicate_in_batch_is_ignored():
    result = parse({"batch": [track(), track()]})
    assert len(result.events) == 1 and result.ignored == [(1, "duplicate of entry 0 in this batch")]


# --- invalid entries keep the rest ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"type": None}, "type is missing"),
        ({"type": "purchase"}, "type 'purchase' is not a Segment call (identify, track, page)"),
        ({"userId": None}, "userId or anonymousId is required"),
        ({"userId": ""}, "userId or anonymousId is required"),
        ({"userId": ["x"]}, "userId must be a string"),
        ({"userId": "u" * 65}, "userId is longer than 64 characters"),
        ({"event": None}, "track event has no 'event' name"),
        ({"event": "   "}, "track event has no 'event' name"),
        ({"timestamp": "yesterday"}, "timestamp is not an ISO-8601 date-time"),
        ({"timestamp": 1717430220000}, "timestamp must be an ISO-8601 date-time string"),
        ({"timestamp": "1999-12-31T23:59:59Z"}, "timestamp is before 2000-01-01"),
        ({"timestamp": "2030-01-01T00:00:00Z"}, "timestamp is more than a day in the future"),
        ({"properties": ["a"]}, "properties must be a JSON object, got an array"),
        ({"context": "web"}, "context must be a JSON object, got a string"),
    ],
)
def test_invalid_entries(overrides: dict[str, Any], reason: str):
    result = parse({"batch": [track(messageId="good"), track(**overrides)]})
    assert len(result.events) == 1
    assert result.invalid == [(1, reason)]


def test_identify_with_bad_traits_is_invalid():
    result = parse({"type": "identify", "userId": "u1", "traits": "vip"})
    assert result.invalid == [(0, "traits must be a JSON object, got a string")]


def test_non_object_entries_are_invalid():
    result = parse([track(), 5, None])
    assert result.invalid == [
        (1, "event must be a JSON object, got a number"),
        (2, "event must be a JSON object, got null"),
    ]


def test_batch_level_context_is_a_default():
    payload = {"batch": [track(properties={})], "context": {"traits": {"email": "Peter@Initech.com"}}}
    assert parse(payload).events[0].email == "peter@initech.com"


# --- whole-body problems -------------------------------------------------------------------------------


def test_more_than_500_events_is_rejected():
    with pytest.raises(TooManyEvents, match="501 events; at most 500"):
        parse({"batch": [track(messageId=str(i)) for i in range(501)]})


def test_500_events_are_accepted():
    assert len(parse({"batch": [track(messageId=str(i)) for i in range(500)]}).events) == 500
