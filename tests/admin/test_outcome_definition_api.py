"""Changing what counts as converted, through the API (HubSpot) and the CLI (Salesforce): validated, audited, and the
stored history re-labelled under the new definition (expected outcomes and labels computed by hand below)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from cli.bands_commands import outcomes as outcomes_cli
from core.records import Event
from core.runtime import ServiceUrls
from scoring.labels import LabelPolicy, LeadHistory, label_leads
from storage.db import Database
from storage.models import AuditEntry, BandSet, InboxEvent, Lead, Outcome, OutcomeDefinition
from storage.outcomes import stored_outcomes
from tasks.ingest import record_outcome_events
from tests.admin.test_fields_api import caller
from tests.crm_ids import with_ids

T0 = datetime(2026, 10, 1, tzinfo=UTC)
T1, T2, T3, T4 = (datetime(2026, 11, d, 12, tzinfo=UTC) for d in (1, 5, 10, 15))
L1, L2, C1, OPP = "00Q5g0000011111AAA", "00Q5g0000022222AAA", "0035g0000033333AAA", "0065g0000044444AAA"

# (crm, object type, id, event type, time, properties)
HISTORY: list[tuple[str, str, str, str, datetime, dict[str, Any]]] = [
    ("hubspot", "contact", "101", "property_change", T1, {"lifecyclestage": "salesqualifiedlead"}),
    ("hubspot", "contact", "101", "property_change", T3, {"lifecyclestage": "customer"}),
    ("hubspot", "contact", "102", "property_change", T2, {"lifecyclestage": "opportunity"}),
    ("hubspot", "contact", "103", "property_change", T2, {"hs_lead_status": "CONNECTED"}),
    ("hubspot", "deal", "9001", "association_change", T2, {"associationType": "DEAL_TO_CONTACT", "toObjectId": 104}),
    ("hubspot", "deal", "9001", "property_change", T4, {"dealstage": "closedwon"}),
    ("salesforce", "lead", L1, "updated", T1, {"Status": "Working - Contacted"}),
    ("salesforce", "lead", L1, "updated", T3, {"Status": "Closed - Converted", "IsConverted": "true"}),
    ("salesforce", "lead", L2, "updated", T2, {"Status": "Qualified"}),
    ("salesforce", "opportunity", OPP, "updated", T4, {"IsClosed": "true", "IsWon": "true", "ContactId": C1,
                                                       "StageName": "Closed Won"}),
]
PEOPLE = {"hubspot": ["101", "102", "103", "104"], "salesforce": [L1, L2, C1]}


@pytest.fixture()
def history(clean_db: Database) -> Iterator[dict[str, int]]:
    """Leads for every person above, the events stored as processed, and the outcomes the default rules recorded
    at ingest; CRM id -> lead id."""
    with clean_db.session() as session:
        session.execute(delete(OutcomeDefinition))
        session.execute(delete(BandSet))
        ids: dict[str, Lead] = {}
        for crm, people in PEOPLE.items():
            for person in people:
                ids[person] = Lead(email=f"p{person[-5:].lower()}@defs.example", created_at=T0)
                session.add_all(with_ids(ids[person], **{crm: person}))
        events = []
        for n, (crm, object_type, object_id, event_type, at, props) in enumerate(HISTORY):
            session.add(InboxEvent(dedupe_key=f"defs-{n}", crm=crm, object_type=object_type, object_id=object_id,
                                   event_type=event_type, properties=props, occurred_at=at, received_at=at,
                                   status="done"))
            events.append(Event(source="test", crm=crm, object_type=object_type, object_id=object_id,  # type: ignore[arg-type]
                                event_type=event_type, occurred_at=at, received_at=at, properties=props,
                                dedupe_key=f"defs-{n}"))
        session.flush()
        record_outcome_events(session, events)  # what ingest recorded under the default definition
        lead_ids = {person: lead.id for person, lead in ids.items()}
    yield lead_ids
    with clean_db.session() as session:
        session.execute(delete(OutcomeDefinition))


def outcomes_of(db: Database, crm: str, leads: dict[str, int]) -> dict[str, list[tuple[bool, datetime, str]]]:
    """CRM id -> its outcomes (won, when, source), for the people of one CRM that have any."""
    people = {leads[p]: p for p in PEOPLE[crm]}
    out: dict[str, list[tuple[bool, datetime, str]]] = {}
    with db.session() as session:
        for lead_id, won, at, source in session.execute(
                select(Outcome.lead_id, Outcome.won, Outcome.occurred_at, Outcome.source)
                .where(Outcome.lead_id.in_(people)).order_by(Outcome.occurred_at)):
            out.setdefault(people[lead_id], []).append((won, at, source))
    return out


def positives(db: Database, leads: dict[str, int]) -> dict[str, datetime]:
    """CRM id -> the decision time of its positive label (first win minus the 1-day gap), as training sees it."""
    names = {str(v): k for k, v in leads.items()}
    with db.session() as session:
        recorded = stored_outcomes(session)
    histories = {str(v): LeadHistory(first_seen=T0) for v in leads.values()}
    labels = label_leads(histories, recorded, T4 + timedelta(days=1), LabelPolicy())
    return {names[label.lead_id]: label.decision_time for label in labels if label.won}


def test_defaults_then_api_change_relabels_hubspot(admin_app: Any, make_token: Any, clean_db: Database,
                                                   history: dict[str, int]) -> None:
    gap = timedelta(days=1)
    # The default definition: lifecycle stage customer, a closed-won deal; a converted Lead, a won Opportunity.
    assert outcomes_of(clean_db, "hubspot", history) == {
        "101": [(True, T3, "hubspot.lifecyclestage")], "104": [(True, T4, "hubspot.deal")]}
    assert positives(clean_db, history) == {"101": T3 - gap, "104": T4 - gap, L1: T3 - gap, C1: T4 - gap}
    viewer = caller(admin_app, make_token("viewer"))
    got = viewer("GET", "/outcome-definition").get_json()
    assert got["version"] == 0 and got["rules"]["hubspot"] == {"lifecycle_stage": "customer", "lead_status": [],
                                                               "deal_won": True}
    assert got["descriptions"]["salesforce"] == "Lead converted or a won Opportunity"
    change = {"lifecycle_stage": "salesqualifiedlead", "lead_status": ["CONNECTED"], "deal_won": False}
    assert viewer("PUT", "/outcome-definition/hubspot", json=change).status_code == 403

    admin = caller(admin_app, make_token("admin"))
    for body, status, words in [
        ({"lifecycle_stage": "bogus"}, 400, "'bogus' is not a HubSpot lifecycle stage"),
        ({"deal_won": False}, 400, "choose at least one hubspot criterion"),
        ({"lead_converted": True}, 400, "unknown hubspot criteria: lead_converted"),
        ({"deal_won": "maybe"}, 400, "deal_won"),
        ({"lifecycle_stage": "customer", "deal_won": True}, 409, "nothing changed"),
    ]:
        refused = admin("PUT", "/outcome-definition/hubspot", json=body)
        assert refused.status_code == status and words in str(refused.get_json()), refused.get_json()
    assert admin("PUT", "/outcome-definition/pipedrive", json=change).status_code == 404

    done = admin("PUT", "/outcome-definition/hubspot", json=change)
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    # Kept: 101's customer (a later stage than SQL). Dropped: 104's deal. Added: 101's SQL, 102's opportunity,
    # 103's lead status.
    assert body["version"] == 1 and body["relabelled"] == {"before": 2, "dropped": 1, "added": 3, "after": 4}
    assert body["retrain_queued"] is True
    assert body["definition"]["descriptions"]["hubspot"] == ("lifecycle stage salesqualifiedlead or later or lead "
                                                             "status CONNECTED")
    assert outcomes_of(clean_db, "hubspot", history) == {
        "101": [(True, T1, "hubspot.lifecyclestage"), (True, T3, "hubspot.lifecyclestage")],
        "102": [(True, T2, "hubspot.lifecyclestage")], "103": [(True, T2, "hubspot.leadstatus")]}
    assert positives(clean_db, history) == {"101": T1 - gap, "102": T2 - gap, "103": T2 - gap, L1: T3 - gap,
                                            C1: T4 - gap}
    with clean_db.session() as session:
        entries = {e.action: e for e in session.scalars(select(AuditEntry).where(
            AuditEntry.action.startswith("outcomes.")))}
    assert entries["outcomes.definition"].target == "hubspot v1"
    assert entries["outcomes.definition"].before["lifecycle_stage"] == "customer"
    assert entries["outcomes.definition"].after == {"lifecycle_stage": "salesqualifiedlead",
                                                    "lead_status": ["CONNECTED"], "deal_won": False}
    assert entries["outcomes.relabel"].after == {"before": 2, "dropped": 1, "added": 3, "after": 4}
    assert entries["outcomes.definition"].actor.startswith("admin-")


def test_cli_change_relabels_salesforce(clean_db: Database, history: dict[str, int], service_urls: ServiceUrls,
                                        broker: tuple[str, str], tmp_path: Path) -> None:
    gap = timedelta(days=1)
    env = {**service_urls.as_env(), "CELERY_BROKER_URL": broker[0], "LEADBRIDGE_ENV_FILE": "",
           "LEADBRIDGE_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert outcomes_of(clean_db, "salesforce", history) == {
        L1: [(True, T3, "salesforce.lead")], C1: [(True, T4, "salesforce.opportunity")]}
    bad = runner.invoke(outcomes_cli, ["set", "salesforce", "--no-lead-converted"], env=env)
    assert bad.exit_code == 1 and "choose at least one salesforce criterion" in bad.output
    assert "Traceback" not in bad.output
    done = runner.invoke(outcomes_cli, ["set", "salesforce", "--no-lead-converted", "--opportunity-won",
                                        "--lead-status", "Qualified"], env=env)
    assert done.exit_code == 0, done.output
    assert "saved outcome definition v1 for salesforce" in done.output
    assert "2 outcomes before, 1 dropped, 1 added, 2 now" in done.output
    # L1's conversion no longer counts (nor does its status); L2's "Qualified" does; C1's won Opportunity stays.
    assert outcomes_of(clean_db, "salesforce", history) == {
        L2: [(True, T2, "salesforce.leadstatus")], C1: [(True, T4, "salesforce.opportunity")]}
    assert positives(clean_db, history) == {"101": T3 - gap, "104": T4 - gap, L2: T2 - gap, C1: T4 - gap}
    shown = runner.invoke(outcomes_cli, ["show"], env=env)
    assert shown.exit_code == 0 and "salesforce  converted = a won Opportunity or lead status Qualified" in shown.output
    with clean_db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "outcomes.definition")).one()
    assert entry.target == "salesforce v1" and entry.before["lead_converted"] is True
    assert entry.after == {"lead_converted": False, "lead_status": ["Qualified"], "opportunity_won": True}
