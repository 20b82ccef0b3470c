"""Mapped CRM fields as features: kind derivation, which events carry them, and online = offline replay."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from connectors.events import parse_events
from connectors.hubspot.webhook import parse_hubspot
from connectors.salesforce.webhook import parse_salesforce_json, parse_salesforce_outbound
from core.feature_schema import BUILTIN_FEATURE_NAMES
from core.records import Event
from scoring.features import FEATURE_NAMES, RedisFeatureStore, build_offline, to_ms, traits_of
from scoring.schema import FeatureSchema, MappedField, SchemaError, check_fields, derive
from scoring.training_set import EventIndex, build_decision_frame, serves_live_pipeline
from tests.scoring.events import T0, ev, random_stream

SCHEMA = FeatureSchema(3, (
    MappedField("hubspot", "contacts", "budget", "numeric", "budget"),
    MappedField("hubspot", "contacts", "lead_source_detail", "categorical", "lead_source_detail", top_n=5),
    MappedField("hubspot", "contacts", "has_trial", "boolean", "has_trial", fit=True),
    MappedField("hubspot", "contacts", "first_meeting_date", "date", "first_meeting_age"),
    MappedField("hubspot", "contacts", "pain_points", "text", "pain_points"),
    MappedField("salesforce", "Lead", "Budget__c", "numeric", "budget"),
    MappedField("salesforce", "Lead", "Rating", "categorical", "rating"),
    MappedField("salesforce", "Contact", "Trial_Start__c", "date", "trial_age", label="Trial Start"),
))
MAPPED = ("budget", "lead_source_detail", "has_trial", "first_meeting_age", "pain_points", "rating", "trial_age")


def test_builtin_names_are_pinned_to_the_declarations() -> None:
    assert BUILTIN_FEATURE_NAMES == FEATURE_NAMES
    assert SCHEMA.feature_names == (*FEATURE_NAMES, *MAPPED)
    assert SCHEMA.mapped_features == MAPPED
    assert FeatureSchema.empty().feature_names == FEATURE_NAMES


def test_kinds_derive_the_same_values_everywhere() -> None:
    at = to_ms(datetime(2025, 3, 11, 12, tzinfo=UTC))
    assert [derive("numeric", v) for v in ("12,500", " 3.5 ", "nan", "inf", "lots", "", None)] == \
        [12500.0, 3.5, None, None, None, None, None]
    assert [derive("categorical", v) for v in (" Partner ", "", None)] == ["Partner", None, None]
    assert [derive("boolean", v) for v in ("Yes", "no", "TRUE", "false", "1", "0", True, "maybe", "")] == \
        ["true", "false", "true", "false", "true", "false", "true", None, None]
    epoch_ms = str(to_ms(datetime(2025, 3, 1, tzinfo=UTC)))  # HubSpot date properties: midnight UTC in ms
    assert [derive("date", v, at) for v in ("2025-03-01", epoch_ms, "2025-03-11T00:00:00.000+0000",
                                             "2025-03-21", "not a date", "")] == [10.5, 10.5, 0.5, -9.5, None, None]
    assert [derive("text", v) for v in ("  too slow  ", "", None)] == [8, None, None]
    with pytest.raises(ValueError, match="as-of"):
        derive("date", "2025-03-01")


def test_bad_schemas_are_refused_with_the_problem_named() -> None:
    ok = MappedField("hubspot", "contacts", "budget", "numeric", "budget")
    cases = [
        (MappedField("hubspot", "contacts", "budget", "money", "budget"), "unknown kind 'money'"),  # type: ignore[arg-type]
        (MappedField("hubspot", "contacts", "industry", "categorical", "industry"), "built-in feature"),
        (MappedField("hubspot", "contacts", "x", "categorical", "x", top_n=0), "top_n"),
        (MappedField("hubspot", "contacts", "x", "categorical", "x", top_n=True), "top_n"),  # type: ignore[arg-type]
        (MappedField("hubspot", "contacts", "x", "numeric", "Bad Name"), "feature name 'Bad Name'"),
        (MappedField("hubspot", "contacts", "", "numeric", "x"), "property is missing"),
        (MappedField("hubspot", "contacts", "other_budget", "numeric", "budget"), "duplicate feature 'budget'"),
        (MappedField("hubspot", "CONTACTS", "BUDGET", "text", "b2"), "mapped twice"),
        (MappedField("salesforce", "Lead", "Budget__c", "text", "budget"), "duplicate feature 'budget'"),
    ]
    for bad, message in cases:
        with pytest.raises(SchemaError, match=message):
            check_fields([ok, bad])
    # The same feature from the same-named field of another object, same kind: one feature, two sources.
    check_fields([ok, MappedField("salesforce", "Lead", "Budget__c", "numeric", "budget")])


def test_webhook_properties_reach_mapped_traits() -> None:
    now = datetime.now(UTC)
    ms = to_ms(now) - 1000
    body = json.dumps([
        {"eventId": 1, "subscriptionId": 2, "portalId": 62515, "appId": 5, "occurredAt": ms, "objectId": 101,
         "subscriptionType": "contact.propertyChange", "propertyName": "Budget", "propertyValue": "40000",
         "changeSource": "CRM_UI", "attemptNumber": 0},
        {"eventId": 2, "subscriptionId": 2, "portalId": 62515, "appId": 5, "occurredAt": ms, "objectId": 101,
         "subscriptionType": "contact.propertyChange", "propertyName": "has_trial", "propertyValue": "",
         "changeSource": "CRM_UI", "attemptNumber": 0},
        {"eventId": 3, "subscriptionId": 2, "portalId": 62515, "appId": 5, "occurredAt": ms, "objectId": 101,
         "subscriptionType": "contact.propertyChange", "propertyName": "unmapped_thing", "propertyValue": "x",
         "changeSource": "CRM_UI", "attemptNumber": 0},
    ]).encode()
    hubspot = parse_hubspot(body, source="hs", received_at=now, portal_id=62515).events
    assert [traits_of(e, SCHEMA) for e in hubspot] == [{"f:budget": "40000"}, {"f:has_trial": ""}, {}]
    assert [traits_of(e) for e in hubspot] == [{}, {}, {}]  # no schema: today's traits

    org = "00D000000000001AAA"
    envelope = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">
  <OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId>
  <Notification><Id>04l000000000001AAA</Id>
   <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
    <sf:Id>00Q000000000001AAA</sf:Id><sf:Email>ana@acme.io</sf:Email><sf:Budget__c>1200.5</sf:Budget__c>
    <sf:Rating>Hot</sf:Rating><sf:Trial_Start__c>2025-01-01</sf:Trial_Start__c>
   </sObject></Notification>
 </notifications></soapenv:Body></soapenv:Envelope>""".encode()
    (lead,) = parse_salesforce_outbound(envelope, source="sf", received_at=now, org_id=org).events
    # Trial_Start__c is mapped on Contact, not Lead: a Lead's field of that name is not the feature.
    assert {k: v for k, v in traits_of(lead, SCHEMA).items() if k.startswith("f:")} == \
        {"f:budget": "1200.5", "f:rating": "Hot"}
    flow = json.dumps({"organizationId": org, "events": [
        {"object": "Contact", "id": "003000000000001AAA", "type": "property_change", "eventId": "e1",
         "fields": {"Trial_Start__c": "2025-02-01", "Budget__c": 99}},
        {"object": "Lead", "id": "00Q000000000002AAA", "type": "update", "eventId": "e2",
         "fields": {"Budget__c": 250000, "Rating": None}},
    ]}).encode()
    contact, lead2 = parse_salesforce_json(flow, source="sf", received_at=now, org_id=org).events
    assert traits_of(contact, SCHEMA) == {"f:trial_age": "2025-02-01"}
    assert traits_of(lead2, SCHEMA) == {"f:budget": "250000", "f:rating": ""}

    web = json.dumps({"batch": [{"type": "identify", "userId": "u1", "messageId": "m1",
                                 "timestamp": now.isoformat(),
                                 "traits": {"email": "u1@acme.io", "BUDGET": "7", "Rating": "Warm"}}]}).encode()
    (identify,) = parse_events(web, source="web", received_at=now).events
    assert {k: v for k, v in traits_of(identify, SCHEMA).items() if k.startswith("f:")} == \
        {"f:budget": "7", "f:rating": "Warm"}
    enrichment = Event(source="enrichment", crm="hubspot", object_type="contact", object_id="101",
                       event_type="identify", occurred_at=now, received_at=now,
                       properties={"traits": {"jobtitle": "CEO", "pain_points": "slow reports"}})
    assert traits_of(enrichment, SCHEMA) == {"title": "CEO", "f:pain_points": "slow reports"}


def crm_stream(seed: int = 7, leads: int = 25, events: int = 1500, days: int = 40) -> list[Event]:
    """Behaviour plus HubSpot and Salesforce changes of mapped (and unmapped) fields, with repeats and ties."""
    rng = np.random.default_rng(seed)
    out = random_stream(seed=seed, leads=leads, events=events, days=days)
    hubspot = {"budget": lambda: rng.choice(["1000", "2,500", "n/a", "", "99.5"]),
               "lead_source_detail": lambda: rng.choice(["Partner", "Webinar", "Ads", " Partner ", ""]),
               "has_trial": lambda: rng.choice(["yes", "No", "true", "0", "maybe", ""]),
               "first_meeting_date": lambda: rng.choice(["2025-02-20", str(to_ms(T0 + timedelta(days=5))),
                                                         "2025-03-15T10:30:00Z", "soon", ""]),
               "pain_points": lambda: rng.choice(["too slow", "", "pricing and support"]),
               "not_mapped": lambda: "x"}
    for i in range(events // 3):
        lead = f"p{int(rng.integers(0, leads))}"
        at = T0 + timedelta(seconds=int(rng.integers(0, days * 86400 // 600)) * 600)
        if rng.random() < 0.7:
            prop = str(rng.choice(list(hubspot)))
            value = str(hubspot[prop]())
            out.append(Event(source="hs", crm="hubspot", object_type="contact", object_id=lead,
                             event_type=str(rng.choice(["property_change", "created"])), occurred_at=at,
                             received_at=at, properties={prop: value, "_meta": {"eventId": i}}, dedupe_key=f"h{i}"))
        else:
            fields = {"Budget__c": float(rng.integers(0, 9000)), "Rating": str(rng.choice(["Hot", "Cold"]))}
            out.append(Event(source="sf", crm="salesforce", object_type=str(rng.choice(["lead", "contact"])),
                             object_id=lead, event_type="property_change", occurred_at=at, received_at=at,
                             properties={**fields, "Trial_Start__c": "2025-01-15"}, dedupe_key=f"s{i}"))
        if rng.random() < 0.05:
            out.append(out[-1])
    return out


def test_online_store_matches_offline_builder_with_mapped_fields(redis_client) -> None:
    events = sorted(crm_stream(), key=lambda e: e.occurred_at)
    store = RedisFeatureStore(redis_client, prefix="mapped", schema=SCHEMA)
    leads = sorted({e.object_id for e in events} | {"never-seen"})
    i = 0
    seen: dict[str, set] = {name: set() for name in MAPPED}
    for as_of in (T0 + timedelta(days=d, hours=5) for d in (4, 17, 39)):
        batch = []
        while i < len(events) and events[i].occurred_at <= as_of:
            batch.append(events[i])
            i += 1
        store.apply_many(batch)
        online = store.get_online(leads, as_of=as_of)
        offline = build_offline(events, as_of, lead_ids=leads, schema=SCHEMA)
        for lead, vector in zip(leads, online):
            assert list(vector) == list(SCHEMA.feature_names)
            assert vector == offline[lead], lead
            for name in MAPPED:
                seen[name].add(vector[name])
    # Every kind produced real values (of its type) and missing ones.
    for name, kind in (("budget", float), ("lead_source_detail", str), ("has_trial", str),
                       ("first_meeting_age", float), ("pain_points", int), ("rating", str), ("trial_age", float)):
        assert None in seen[name] and len({v for v in seen[name] if isinstance(v, kind)}) >= 2, (name, seen[name])
    assert seen["has_trial"] <= {"true", "false", None}
    assert any(v < 0 for v in seen["first_meeting_age"] if v is not None)  # a meeting still to come


def test_out_of_order_delivery_keeps_latest_mapped_values(redis_client) -> None:
    events = crm_stream(seed=12, leads=12, events=900, days=20)
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    store = RedisFeatureStore(redis_client, prefix="mapped-shuffled", schema=SCHEMA)
    for start in range(0, len(shuffled), 97):
        store.apply_many(shuffled[start:start + 97])
    as_of = T0 + timedelta(days=21)
    leads = sorted({e.object_id for e in events})
    offline = build_offline(events, as_of, lead_ids=leads, schema=SCHEMA, feature_refs=[*MAPPED, "seniority"])
    online = store.get_online(leads, [*MAPPED, "seniority"], as_of=as_of)
    assert [offline[lead] for lead in leads] == online
    # A later clear wins over an earlier value, whatever the arrival order.
    late = T0 + timedelta(days=30)
    for order in ([0, 1], [1, 0]):
        pair = [Event(source="hs", crm="hubspot", object_type="contact", object_id=f"z{order[0]}",
                      event_type="property_change", occurred_at=late + timedelta(minutes=k), received_at=late,
                      properties={"budget": value}, dedupe_key=f"z{order[0]}:{k}")
                for k, value in enumerate(["5000", ""])]
        store.apply_many([pair[j] for j in order])
        assert store.get_online([f"z{order[0]}"], ["budget"], as_of=late + timedelta(hours=1)) == [{"budget": None}]


def test_default_schema_vectors_are_unchanged(redis_client) -> None:
    events = sorted(crm_stream(seed=4, leads=10, events=500, days=15), key=lambda e: e.occurred_at)
    as_of = T0 + timedelta(days=15)
    plain = RedisFeatureStore(redis_client, prefix="plain")
    plain.apply_many(events)
    mapped = RedisFeatureStore(redis_client, prefix="plain-mapped", schema=SCHEMA)
    mapped.apply_many(events)
    leads = sorted({e.object_id for e in events})
    builtin = plain.get_online(leads, as_of=as_of)
    assert builtin == [build_offline(events, as_of, lead_ids=leads)[lead] for lead in leads]
    assert all(list(v) == list(FEATURE_NAMES) for v in builtin)
    assert [{k: v[k] for k in FEATURE_NAMES} for v in mapped.get_online(leads, as_of=as_of)] == builtin
    with pytest.raises(KeyError, match="unknown feature"):
        plain.get_online(leads, ["budget"])
    with pytest.raises(KeyError, match="unknown feature"):
        build_offline(events, as_of, feature_refs=["budget"])


def test_training_frames_hold_mapped_features_and_serve_live() -> None:
    from scoring.labels import LabelledLead

    events = crm_stream(seed=9, leads=8, events=300, days=10)
    decided = T0 + timedelta(days=10)
    labels = [LabelledLead(lead_id=f"p{i}", won=bool(i % 2), decision_time=decided, labelled_at=decided, source="test")
              for i in range(8)]
    frame = build_decision_frame(EventIndex(events, schema=SCHEMA), labels)
    assert list(frame.columns)[-len(MAPPED):] == list(MAPPED)
    expected = build_offline(events, decided, lead_ids=["p3"], schema=SCHEMA)["p3"]
    row = frame[frame.lead_id == "p3"].iloc[0]
    for name in MAPPED:
        assert (pd.isna(row[name]) and expected[name] is None) or row[name] == expected[name], name
    assert serves_live_pipeline(["budget", "pricing_views_7d"], SCHEMA)
    assert not serves_live_pipeline(["budget", "pricing_views_7d"])
    assert not serves_live_pipeline(["budget", "shoe_size"], SCHEMA)
