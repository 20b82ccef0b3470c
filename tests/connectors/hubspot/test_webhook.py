"""Unit tests for the HubSpot webhook parser (connectors.hubspot.webhook)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.hubspot.webhook import parse_hubspot
from connectors.parsing import TooManyEvents
from core.records import EVENT_TYPES
from tests.connectors.parsers import PORTAL, RECEIVED, kinds, with_overrides
from tests.connectors.parsers import hubspot as parse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hubspot"


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())


def one(**overrides: Any) -> dict[str, Any]:
    """A contact.propertyChange event shaped like HUBSPOT.md §5.3, with fields overridden."""
    return with_overrides(copy.deepcopy(load("batch_documented.json")[1]), overrides)


# --- the documented batch -------------------------------------------------------------------------------


def test_documented_batch_maps_every_event():
    result = parse(load("batch_documented.json"))
    assert result.invalid == [] and result.ignored == []
    assert kinds(result) == [
        ("contact", "101", "created"),
        ("contact", "101", "property_change"),
        ("deal", "555", "property_change"),
        ("contact", "102", "privacy_deletion"),
        ("contact", "101", "merged"),
        ("contact", "101", "association_change"),
    ]
    for event in result.events:
        assert event.crm == "hubspot"
        assert event.source == "hubspot-main"
        assert event.event_type in EVENT_TYPES
        assert event.received_at == RECEIVED
        assert len(event.dedupe_key) == 64
    assert len({e.dedupe_key for e in result.events}) == 6


def test_property_change_carries_name_value_and_time():
    event = parse(load("batch_documented.json")).events[1]
    assert event.occurred_at == datetime(2024, 6, 3, 16, 0, 1, tzinfo=UTC)
    assert event.properties["lifecyclestage"] == "marketingqualifiedlead"
    assert set(event.properties) == {"lifecyclestage", "_meta"}
    assert event.email is None


def test_metadata_kept_for_echo_detection():
    meta = parse(load("batch_documented.json")).events[0].properties["_meta"]
    assert meta["changeSource"] == "CRM_UI"
    assert meta["sourceId"] == "userId:45678"
    assert meta["appId"] == 54321
    assert meta["eventId"] == 100001
    assert meta["portalId"] == PORTAL


def test_merge_fields_become_properties():
    event = parse(load("batch_documented.json")).events[4]
    assert event.properties["mergedObjectIds"] == [103]
    assert event.properties["primaryObjectId"] == 101
    assert event.properties["newObjectId"] == 101
    assert event.properties["numberOfPropertiesMoved"] == 12


def test_association_fields_become_properties():
    event = parse(load("batch_documented.json")).events[5]
    props = event.properties
    assert props["associationType"] == "CONTACT_TO_COMPANY"
    assert (props["fromObjectId"], props["toObjectId"]) == (101, 9001)
    assert props["associationRemoved"] is False and props["isPrimaryAssociation"] is True


def test_email_property_change_sets_normalised_email():
    result = parse([one(propertyName="email", propertyValue="  Ana.Lopez@Acme.IO ")])
    event = result.events[0]
    assert event.email == "ana.lopez@acme.io"
    assert event.properties["email"] == "  Ana.Lopez@Acme.IO "  # the CRM's value is kept as sent


def test_cleared_email_gives_no_email():
    event = parse([one(propertyName="email", propertyValue="")]).events[0]
    assert event.email is None and event.properties["email"] == ""


def test_missing_property_value_means_cleared():
    event = parse([one(propertyValue=None)]).events[0]
    assert event.properties["lifecyclestage"] is None


def test_non_string_scalar_property_value_is_stringified():
    assert parse([one(propertyValue=250)]).events[0].properties["lifecyclestage"] == "250"
    assert parse([one(propertyValue=True)]).events[0].properties["lifecyclestage"] == "true"


@pytest.mark.parametrize(
    "subscription, event_type",
    [
        ("contact.creation", "created"),
        ("contact.deletion", "deleted"),
        ("contact.restore", "restored"),
        ("company.creation", "created"),
        ("company.deletion", "deleted"),
        ("company.propertyChange", "property_change"),
        ("deal.creation", "created"),
        ("deal.merge", "merged"),
        ("deal.restore", "restored"),
    ],
)
def test_legacy_subscription_types(subscription: str, event_type: str):
    event = parse([one(subscriptionType=subscription)]).events[0]
    assert event.event_type == event_type
    assert event.object_type == subscription.split(".")[0]


# --- generic object.* subscriptions ---------------------------------------------------------------------


def test_generic_object_batch():
    result = parse(load("generic_object_batch.json"))
    assert kinds(result) == [
        ("contact", "101", "created"),
        ("company", "9001", "property_change"),
        ("deal", "555", "deleted"),
        ("deal", "555", "restored"),
    ]
    assert result.events[1].properties["numberofemployees"] == "250"
    assert result.ignored == [(4, "objectTypeId '0-5' is not a contact, company or deal")]
    assert result.invalid == []


def test_generic_event_without_object_type_id_is_invalid():
    result = parse([one(subscriptionType="object.propertyChange", objectTypeId=None)])
    assert result.events == []
    assert result.invalid == [(0, "objectTypeId is missing on a generic object.* event")]


def test_legacy_and_generic_forms_of_one_change_share_a_dedupe_key():
    legacy = parse([one()]).events[0]
    generic_form = one(subscriptionType="object.propertyChange", objectTypeId="0-1", eventId=999)
    generic = parse([generic_form]).events[0]
    assert legacy.dedupe_key == generic.dedupe_key


# --- dedupe keys ----------------------------------------------------------------------------------------


def test_retry_with_new_event_id_and_attempt_number_has_same_key():
    first = parse([one()]).events[0]
    retry = parse([one(eventId=777777, attemptNumber=3)]).events[0]
    assert first.dedupe_key == retry.dedupe_key


def test_same_event_id_for_different_changes_gives_different_keys():
    # HubSpot eventIds are not unique: two different changes can carry the same one.
    a = parse([one(eventId=1, objectId=101)]).events[0]
    b = parse([one(eventId=1, objectId=102)]).events[0]
    c = parse([one(eventId=1, propertyName="hs_lead_status")]).events[0]
    d = parse([one(eventId=1, occurredAt=1717430409000)]).events[0]
    assert len({a.dedupe_key, b.dedupe_key, c.dedupe_key, d.dedupe_key}) == 4


def test_portal_is_part_of_the_key():
    a = parse([one()], portal_id=None).events[0]
    b = parse([one(portalId=1)], portal_id=None).events[0]
    assert a.dedupe_key != b.dedupe_key


def test_two_values_of_one_property_in_one_millisecond_are_two_events():
    # Found by bench/e2e: senders changing the same contacts at once had a few changes dropped as repeats.
    first = one(eventId=1, propertyValue="3")
    result = parse([first, one(eventId=2, propertyValue="4"), one(eventId=3, propertyValue="3", attemptNumber=1)])
    assert [e.properties[first["propertyName"]] for e in result.events] == ["3", "4"]
    assert result.events[0].dedupe_key != result.events[1].dedupe_key


def test_associations_to_two_companies_in_one_millisecond_are_distinct():
    base = load("association_both_sides.json")[0]
    second = dict(base, toObjectId=9002, eventId=300009)
    result = parse([base, second])
    assert len(result.events) == 2
    assert result.events[0].dedupe_key != result.events[1].dedupe_key


def test_association_without_object_id_uses_from_object_id():
    result = parse(load("association_both_sides.json"))
    got = [(e.object_type, e.object_id, e.properties["toObjectId"]) for e in result.events]
    assert got == [("contact", "101", 9001), ("company", "9001", 101)]


def test_duplicate_inside_one_batch_is_reported_ignored():
    result = parse([one(), one(eventId=5), one(propertyName="city", propertyValue="Lyon")])
    assert len(result.events) == 2
    assert result.ignored == [(1, "duplicate of entry 0 in this batch")]


# --- per-event problems keep the rest of the batch ------------------------------------------------------


def test_wrong_portal_is_invalid_and_the_rest_is_kept():
    result = parse([one(), one(portalId=99999, propertyName="city")])
    assert [e.object_id for e in result.events] == ["101"]
    assert result.invalid == [(1, "portalId does not match the portal configured for this source")]


def test_no_configured_portal_accepts_any_portal():
    assert len(parse([one(portalId=99999)], portal_id=None).events) == 1


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"portalId": None}, "portalId is missing"),
        ({"portalId": "abc"}, "portalId must be an integer"),
        ({"objectId": None}, "objectId is missing"),
        ({"objectId": 1.5}, "objectId must be an integer"),
        ({"objectId": True}, "objectId must be an integer"),
        ({"objectId": -1}, "objectId is out of range"),
        ({"occurredAt": None}, "occurredAt must be epoch milliseconds"),
        ({"occurredAt": "yesterday"}, "occurredAt must be epoch milliseconds"),
        ({"occurredAt": 1717430401}, "occurredAt looks like epoch seconds; expected milliseconds"),
        ({"occurredAt": 10**20}, "occurredAt is out of range"),
        ({"occurredAt": 500}, "occurredAt is before 2000-01-01"),
        ({"subscriptionType": None}, "subscriptionType is missing or not of the form <object>.<action>"),
        ({"subscriptionType": "contact"}, "subscriptionType is missing or not of the form <object>.<action>"),
        ({"propertyName": None}, "propertyName is missing on a propertyChange event"),
        ({"propertyValue": {"nested": 1}}, "propertyValue must be a string"),
    ],
)
def test_invalid_event_reasons(overrides: dict[str, Any], reason: str):
    result = parse([one(**overrides)])
    assert result.events == []
    assert result.invalid == [(0, reason)]


def test_event_from_the_future_is_invalid():
    future = int((RECEIVED + timedelta(days=2)).timestamp() * 1000)
    assert parse([one(occurredAt=future)]).invalid == [(0, "occurredAt is more than a day in the future")]


def test_numeric_strings_are_accepted_for_ids_and_time():
    event = parse([one(objectId="101", portalId=str(PORTAL), occurredAt="1717430401000")]).events[0]
    assert event.object_id == "101"
    assert event.dedupe_key == parse([one()]).events[0].dedupe_key


def test_entry_that_is_not_an_object_is_invalid():
    result = parse([one(), 42, "x", None, []])
    assert len(result.events) == 1
    assert [i for i, _ in result.invalid] == [1, 2, 3, 4]
    assert result.invalid[0].reason == "event must be a JSON object, got a number"


def test_bad_merge_and_association_fields_are_invalid():
    merge = one(subscriptionType="contact.merge", mergedObjectIds="103")
    assoc = one(subscriptionType="contact.associationChange", toObjectId=None)
    removed = one(subscriptionType="contact.associationChange", toObjectId=5, associationRemoved="no")
    result = parse([merge, assoc, removed])
    assert result.invalid == [
        (0, "mergedObjectIds must be a list of integers"),
        (1, "toObjectId is missing"),
        (2, "associationRemoved must be true or false"),
    ]


# --- ignored: well-formed but not ours -----------------------------------------------------------------


@pytest.mark.parametrize(
    "subscription",
    [
        "ticket.creation",
        "product.deletion",
        "conversation.creation",
        "contact.someFutureAction",
        "company.privacyDeletion",
    ],
)
def test_unused_subscription_types_are_ignored(subscription: str):
    result = parse([one(subscriptionType=subscription)])
    assert result.events == [] and result.invalid == []
    assert result.ignored == [(0, f"subscription type {subscription!r} is not one we use")]


def test_privacy_deletion_has_no_personal_data():
    event = parse(load("batch_documented.json")).events[3]
    assert event.email is None
    assert set(event.properties) == {"_meta"}


# --- whole-body problems --------------------------------------------------------------------------------


def test_more_than_100_events_is_rejected():
    with pytest.raises(TooManyEvents) as excinfo:
        parse([one(objectId=i) for i in range(101)])
    assert excinfo.value.code == "too_many_events"
    assert "101 events; at most 100" in str(excinfo.value)


def test_exactly_100_events_is_accepted():
    assert len(parse([one(objectId=i + 1) for i in range(100)]).events) == 100


def test_empty_array_is_an_empty_result():
    result = parse([])
    assert (result.events, result.invalid, result.ignored) == ([], [], [])


def test_naive_received_at_is_taken_as_utc():
    event = parse([one()], received_at=RECEIVED.replace(tzinfo=None)).events[0]
    assert event.received_at == RECEIVED


def test_summary_is_json_ready():
    result = parse([one(), one(portalId=1), one(subscriptionType="ticket.creation")])
    summary = result.summary()
    assert summary == {
        "accepted": 1,
        "invalid": [{"index": 1, "reason": "portalId does not match the portal configured for this source"}],
        "ignored": [{"index": 2, "reason": "subscription type 'ticket.creation' is not one we use"}],
        "dropped": [],
    }
    json.dumps(summary)


def test_portal_id_given_as_text_still_matches():
    body = json.dumps([one()]).encode()
    text_portal: Any = str(PORTAL)  # as read from a text column
    result = parse_hubspot(body, source="hubspot-main", received_at=RECEIVED, portal_id=text_portal)
    assert len(result.events) == 1
