"""Outcomes from webhooks and CRM reads, labels from the stored data, training rows, prequential from history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from core.records import Event
from scoring.labels import LabelPolicy
from storage.db import Database
from storage.inbox import store_events
from storage.models import Lead, LeadCrmId, Outcome, ScoreHistory
from scoring.dataset import prequential_records
from scoring.features import ACTIVITY_TYPES, build_offline
from storage.outcomes import load_events, score_history
from tasks.ingest import ingest_rows, record_outcome_events
from tasks.learning import collect_outcomes_from, training_data
from tests.crm_ids import with_ids
from tests.learning.conftest import DAY, T0, store_world, world_events


def hs(object_type: str, object_id: str, event_type: str, at_day: float, key: str, **props: Any) -> Event:
    at = T0 + at_day * DAY
    return Event(source="hubspot-app", crm="hubspot", object_type=object_type, object_id=object_id,
                 event_type=event_type, occurred_at=at, received_at=at, properties=props, dedupe_key=key)


def test_webhook_events_become_outcome_rows_once(clean: Database) -> None:
    events = [
        hs("contact", "501", "property_change", 0, "c501", email="ana@acme.io"),
        hs("contact", "502", "property_change", 0, "c502", email="bo@acme.io"),
        hs("deal", "9001", "association_change", 1, "a9001", toObjectId=501, associationType="DEAL_TO_CONTACT"),
        hs("deal", "9001", "property_change", 5, "d9001", dealstage="closedwon"),
        hs("contact", "502", "property_change", 6, "l502", lifecyclestage="customer"),
        hs("deal", "9002", "property_change", 7, "d9002", dealstage="closedlost"),  # contacts unknown yet
        Event(source="sf", crm="salesforce", object_type="lead", object_id="00Q000000000001AAA",
              event_type="property_change", occurred_at=T0 + 8 * DAY, received_at=T0 + 8 * DAY,
              properties={"Email": "cy@acme.io", "IsConverted": "true"}, dedupe_key="sf1"),
    ]
    with clean.session(write=True) as session:
        ids = store_events(session, events, None)
    with clean.session(write=True) as session:
        ingest_rows(session, ids, None)
    with clean.session() as session:
        rows = session.execute(select(LeadCrmId.crm, LeadCrmId.object_id, Outcome.won, Outcome.source,
                                      Outcome.occurred_at).join(LeadCrmId, LeadCrmId.lead_id == Outcome.lead_id)
                               .order_by(Outcome.occurred_at)).all()
    assert [(r.crm, r.object_id, r.won, r.source) for r in rows] == [
        ("hubspot", "501", True, "hubspot.deal"), ("hubspot", "502", True, "hubspot.lifecyclestage"),
        ("salesforce", "00Q000000000001AAA", True, "salesforce.lead")]
    assert rows[0].occurred_at == T0 + 5 * DAY
    # The same events again (a retried delivery reaching this function twice) add nothing.
    with clean.session(write=True) as session:
        again = record_outcome_events(session, events)
    assert again.recorded == 0 and again.duplicates == 3 and again.unresolved_deals == ["9002"]


def test_crm_outcomes_are_collected_through_the_real_sdk(clean: Database, redis_client: Any) -> None:
    crm = SandboxCRM()
    crm.start(port=0)
    try:
        store = crm.store
        won_contact = store.hs_create("contacts", {"email": "dee@initech.com"})["id"]
        lost_contact = store.hs_create("contacts", {"email": "eve@initech.com"})["id"]
        stranger = store.hs_create("contacts", {"email": "who@else.com"})["id"]
        for contact, stage in ((won_contact, "closedwon"), (lost_contact, "closedlost"), (stranger, "closedwon")):
            deal = store.hs_create("deals", {"dealname": "d", "dealstage": stage, "closedate": "2025-02-01T00:00:00Z"})
            store.hs_associate("deals", deal["id"], "contacts", contact)
        with clean.session(write=True) as session:
            session.add_all([*with_ids(Lead(email="dee@initech.com", properties={}), hubspot=won_contact),
                             *with_ids(Lead(email="eve@initech.com", properties={}), hubspot=lost_contact)])
        connector = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=crm.base_url)
        redis_client.delete("lb:learning:outcomes_since:hubspot")
        counts = collect_outcomes_from(clean, redis_client, {"hubspot": connector, "salesforce": None})
        assert counts["hubspot"]["recorded"] == 2 and counts["hubspot"]["unknown_leads"] == 1
        again = collect_outcomes_from(clean, redis_client, {"hubspot": connector})
        assert again["hubspot"]["recorded"] == 0  # read again since the last read: nothing new
        with clean.session() as session:
            got = {hid: won for hid, won in session.execute(
                select(LeadCrmId.object_id, Outcome.won).join(LeadCrmId, LeadCrmId.lead_id == Outcome.lead_id))}
        assert got == {won_contact: True, lost_contact: False}
    finally:
        crm.stop()


def test_training_rows_from_the_inbox_match_the_feature_code_and_respect_maturity(clean: Database) -> None:
    events, outcomes = world_events(leads=120)
    leads = store_world(clean, events, outcomes)
    policy = LabelPolicy(maturity=timedelta(days=90), gap=DAY)
    early = T0 + 70 * DAY  # nobody has been around for 90 days yet: only wins are labelled
    with clean.session() as session:
        data = training_data(session, early, policy)
    assert len(data.frame) and data.frame["won"].eq(1).all()
    late = T0 + 200 * DAY
    with clean.session() as session:
        data = training_data(session, late, policy)
    labelled_users = {u for u, (won, _) in outcomes.items() if won}
    assert data.frame["won"].sum() == len(labelled_users)
    assert len(data.frame) == len(leads)  # every lead is labelled by day 200: won, or lost after 90 days
    # Each row equals the declared feature code run on the original events as of the decision time.
    by_lead = {str(lid): user for user, lid in leads.items()}
    for _, row in data.frame.sample(15, random_state=1).iterrows():
        user = by_lead[row["lead_id"]]
        expected = build_offline(events, datetime.fromisoformat(row["as_of"]), lead_ids=[user])[user]
        for name, value in expected.items():
            got = row[name]
            assert got == value or (value is None and pd.isna(got)), (name, got, value)
    # Positives are judged a day before their win; lost leads never after their maturity date.
    won_rows = data.frame[data.frame["won"] == 1]
    for _, row in won_rows.head(5).iterrows():
        assert outcomes[by_lead[row["lead_id"]]][1] - DAY == datetime.fromisoformat(row["as_of"])


def test_prequential_uses_the_score_live_at_decision_time(clean: Database) -> None:
    from scoring.labels import LabelledLead

    with clean.session(write=True) as session:
        lead = Lead(external_id="p1", properties={})
        session.add(lead)
        session.flush()
        for day, p, version in ((1, 0.2, "m1"), (5, 0.6, "m1"), (9, 0.9, "m2")):
            session.add(ScoreHistory(lead_id=lead.id, score=int(p * 100), probability=p, grade=None, reasons=[],
                                     model_version=version, feature_time=T0 + day * DAY))
        lead_id = str(lead.id)
    labels = [LabelledLead(lead_id, True, T0 + 6 * DAY, T0 + 7 * DAY, "test"),
              LabelledLead(lead_id, False, T0 + 0.5 * DAY, T0 + 90 * DAY, "test")]
    with clean.session() as session:
        records, untested = prequential_records(labels, score_history(session, [int(lead_id)]))
    assert [(r.probability, r.model_version) for r in records] == [(0.6, "m1")]  # not the later 0.9
    assert untested == 1


@pytest.mark.parametrize("status", ["ignored", "pending"])
def test_only_processed_events_train(clean: Database, status: str) -> None:
    from storage.models import InboxEvent

    events, outcomes = world_events(leads=5)
    store_world(clean, events, outcomes)
    with clean.session(write=True) as session:
        session.execute(InboxEvent.__table__.update().values(status=status))
    with clean.session() as session:
        assert load_events(session, ACTIVITY_TYPES).events == []


def test_labels_whose_history_was_purged_stay_out(clean: Database) -> None:
    from sqlalchemy import delete

    from storage.models import InboxEvent

    events, outcomes = world_events(leads=120)
    store_world(clean, events, outcomes)
    policy = LabelPolicy(maturity=timedelta(days=30), gap=DAY)
    now = T0 + 200 * DAY
    with clean.session() as session:
        full = training_data(session, now, policy)
    assert full.dropped_for_retention == 0
    with clean.session(write=True) as session:  # retention purged the first 20 days of raw events
        session.execute(delete(InboxEvent).where(InboxEvent.occurred_at < T0 + 20 * DAY))
        session.execute(Lead.__table__.update().values(created_at=T0))
    with clean.session() as session:
        purged = training_data(session, now, policy)
    assert purged.dropped_for_retention > 0
    assert len(purged.frame) + purged.dropped_for_retention == len(full.frame)
    first_kept = min(datetime.fromisoformat(t) for t in purged.frame["as_of"])
    assert first_kept >= T0 + 50 * DAY - timedelta(seconds=1)  # oldest kept event (day >= 20) + 30 days
