"""`leadbridge forget`: after it, no table row and no Redis key or value anywhere holds the person's e-mail, and
the leadbridge fields on their CRM record are empty.

The person's data gets in the way it does in production: signed webhooks through the real app into the
inbox, ingest and scoring against the real database and Redis; then the real CLI runs as a process, and
clears the CRM fields through the real HubSpot SDK against the sandbox CRM over HTTP.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from core.records import utcnow
from core.runtime import ServiceUrls
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from storage.models import (
    AuditEntry,
    DeadLetter,
    FieldMapping,
    InboxEvent,
    Lead,
    OutboxItem,
    Outcome,
    ScoreHistory,
)
from tasks.ingest import ingest_rows
from tests.crm_ids import has_id
from tests.pii import (
    BOB,
    DANA,
    ERIN,
    World,
    hubspot_event,
    person_everywhere,
    redis_containing,
    rows_containing,
    segment,
)
from tests.processes import REPO

SHOWN = {"leadbridge_score": "88", "leadbridge_grade": "A", "leadbridge_tier": "hot",
         "leadbridge_reasons": "+ requested a demo", "leadbridge_model_version": "rules:v1",
         "leadbridge_scored_at": "1767225600000", "leadbridge_previous_score": "76", "leadbridge_score_change": "12",
         "leadbridge_score_trend": "improving", "leadbridge_score_changed_at": "1767225600000",
         "leadbridge_score_change_reason": "+12: requested a demo"}


@pytest.fixture()
def crm(hubspot_sandbox: SandboxCRM) -> SandboxCRM:
    """The sandbox CRM with leadbridge's properties and Dana's contact (id 101) showing her score."""
    dana = {"email": DANA, "firstname": "Dana", "lastname": "Lopez", **SHOWN}
    contact = hubspot_sandbox.store.hs_create("contacts", dana)
    assert contact["id"] == "101"  # the id person_everywhere's HubSpot events carry
    return hubspot_sandbox


@pytest.fixture()
def crm_env(service_env: dict[str, str], crm: SandboxCRM) -> dict[str, str]:
    """The CLI's environment with HubSpot configured against the sandbox CRM."""
    return {**service_env, "HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN, "HUBSPOT_BASE_URL": crm.base_url}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=90, check=False)


def contact(crm: SandboxCRM, contact_id: str = "101") -> dict[str, Any]:
    found = crm.store.hs_get("contacts", contact_id)
    assert found is not None
    return found["properties"]


def audit_entries(db: Database) -> list[AuditEntry]:
    with db.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.forget")
                                    .order_by(AuditEntry.id)))


def assert_no_personal_data(entry: AuditEntry, *personal: str) -> None:
    shown = json.dumps([entry.actor, entry.action, entry.target, entry.before, entry.after]).lower()
    for value in personal:
        assert value.lower() not in shown, value


def test_forget_by_email_leaves_no_trace(world: World, db: Database, crm: SandboxCRM,
                                         crm_env: dict[str, str]) -> None:
    dana_id = person_everywhere(world)
    client = world.res.redis
    with db.session() as session:
        # Set aside by two stages: a writeback refused for her lead, and an event of hers that kept failing.
        row = InboxEvent(dedupe_key="dead-dana", crm="web", object_type="person", object_id="u_dana",
                         event_type="page_view", email=DANA, properties={"url": "https://example.com/x"},
                         occurred_at=utcnow(), status="dead", attempts=5, error="ValueError")
        session.add(row)
        session.flush()
        session.add_all([
            DeadLetter(stage="ingest", inbox_id=row.id, error=f"ValueError: not a URL for {DANA}", payload={}),
            DeadLetter(stage="writeback", crm="hubspot", lead_id=dana_id, error="VALIDATION_ERROR",
                       payload={"leadbridge_score": "88"}),
            # A delivery payload naming her without a lead link.
            OutboxItem(target="slack", kind="alert", payload={"text": f"{DANA} is hot"}, status="dead"),
        ])
        # The admin maps the tier to a property of their own: that one is cleared, as it holds her tier.
        session.add(FieldMapping(crm="hubspot", object_type="contacts", output="tier", field_name="sales_tier"))
    crm.store.hs_create_property("contacts", {"name": "sales_tier", "label": "Sales tier", "type": "string",
                                              "fieldType": "text", "groupName": "leadbridge"})
    crm.store.hs_update("contacts", "101", {"sales_tier": "hot"})
    # The checks below can see the data at all: before, Dana is in tables and Redis.
    assert {t for t, _ in rows_containing(db, DANA)} >= {"inbox", "leads", "dead_letters", "outbox"}
    assert redis_containing(client, DANA)

    done = run_cli(crm_env, "forget", DANA, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"forgot lead {dana_id}" in done.stdout
    assert "cleared the leadbridge fields on HubSpot contact 101" in done.stdout

    assert rows_containing(db, DANA) == []
    assert redis_containing(client, DANA) == []
    assert redis_containing(world.broker, DANA) == []
    with db.session() as session:
        assert session.get(Lead, dana_id) is None
        for model in (ScoreHistory, Outcome, OutboxItem, DeadLetter):
            assert session.scalar(select(func.count()).select_from(model).where(model.lead_id == dana_id)) == 0
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(
            InboxEvent.object_id.in_(["101", "u_dana"]))) == 0
        # Bob, the control, is untouched.
        bob = session.scalars(select(Lead).where(Lead.email == BOB)).one()
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.object_id == "u_bob")) == 2
    [entry] = audit_entries(db)
    assert entry.target == f"lead:{dana_id}" and entry.actor == "cli:forget"
    assert entry.after["events"] >= 7 and entry.after["outbox"] == 2 and entry.after["redis_keys"] >= 3
    assert entry.after["dead_letters"] == 2
    assert entry.after["crm"] == {"hubspot": {"records": 1, "cleared": 1}}
    assert_no_personal_data(entry, DANA, "dana", "lopez", "u_dana", "initech", '"101"')
    assert not client.sismember("lb:dirty:hubspot", dana_id)
    assert client.hget("lb:written:hubspot", dana_id) is None
    assert client.exists(f"lb:fs:t:{bob.id}") and redis_containing(client, BOB)

    # The CRM record stays, with every leadbridge field (the mapped one included) empty.
    props = contact(crm)
    assert props["email"] == DANA and props["firstname"] == "Dana"
    assert {name: props.get(name) for name in [*SHOWN, "sales_tier"] if name != "leadbridge_tier"} == {
        name: "" for name in [*SHOWN, "sales_tier"] if name != "leadbridge_tier"}

    # The queued message for the purged event finds nothing left to do.
    with db.session(write=True) as session:
        assert ingest_rows(session, list(range(1, 10_000)), world.res).processed == 0
    assert rows_containing(db, DANA) == [] and redis_containing(client, DANA) == []


def test_pending_events_of_a_person_without_a_lead_are_forgotten(world: World, db: Database, crm: SandboxCRM,
                                                                 crm_env: dict[str, str]) -> None:
    person_everywhere(world)
    now_ms = int(time.time() * 1000)
    # Erin's events arrive but no worker has read them yet: no lead exists, everything waits in the inbox.
    world.deliver_events([segment("identify", "u_erin", ERIN, traits={"email": ERIN, "firstName": "Erin"}),
                          segment("page", "u_erin", ERIN, properties={"url": "https://example.com/pricing"})])
    world.deliver_hubspot([
        hubspot_event("contact.creation", 102, now_ms - 3000),
        hubspot_event("contact.propertyChange", 102, now_ms - 2000, propertyName="email", propertyValue=ERIN),
        hubspot_event("contact.propertyChange", 102, now_ms - 1000, propertyName="firstname", propertyValue="Erin"),
    ])
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.email == ERIN)) == 0
        pending = session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "pending"))
        assert pending >= 5

    done = run_cli(crm_env, "forget", ERIN, "--yes")
    assert done.returncode == 0, done.stderr
    assert "forgot a person with no lead yet: 5 events" in done.stdout
    assert rows_containing(db, ERIN) == []
    with db.session() as session:
        # Her contact's events without the e-mail went too (found through the record the e-mail named).
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.object_id.in_(
            ["102", "u_erin"]))) == 0
    [entry] = audit_entries(db)
    assert entry.target == "person without a lead" and entry.after["events"] == 5 and entry.after["leads"] == 0
    assert_no_personal_data(entry, ERIN, "erin", "u_erin", '"102"')

    # The worker then runs the queued batches: nothing of Erin is left to bring her back.
    world.process()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead).where(
            (Lead.email == ERIN) | has_id("hubspot", "102") | (Lead.external_id == "u_erin"))) == 0
    assert rows_containing(db, ERIN) == [] and redis_containing(world.res.redis, ERIN) == []


def test_a_web_user_id_without_a_lead(world: World, db: Database, crm_env: dict[str, str]) -> None:
    world.deliver_events([segment("page", "u_frank", "frank@initrode.example",
                                  properties={"url": "https://example.com/pricing"}),
                          segment("track", "u_frank", "frank@initrode.example", event="Demo Requested")])
    done = run_cli(crm_env, "forget", "web:u_frank", "--yes")
    assert done.returncode == 0, done.stderr
    assert "forgot a person with no lead yet: 2 events" in done.stdout
    assert rows_containing(db, "frank@initrode.example") == [] and rows_containing(db, "u_frank") == []
    world.process()
    assert rows_containing(db, "u_frank") == []


def test_an_unreachable_crm_is_named_and_the_local_purge_stands(world: World, db: Database, crm: SandboxCRM,
                                                               crm_env: dict[str, str]) -> None:
    dana_id = person_everywhere(world)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = {**crm_env, "HUBSPOT_BASE_URL": f"http://127.0.0.1:{closed}"}
    done = run_cli(down, "forget", DANA, "--yes")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"forgot lead {dana_id}" in done.stdout
    assert "the leadbridge fields on HubSpot contact 101 were NOT cleared" in done.stderr
    assert "leadbridge forget hubspot:101" in done.stderr and "Traceback" not in done.stderr
    assert rows_containing(db, DANA) == [] and redis_containing(world.res.redis, DANA) == []
    [entry] = audit_entries(db)
    assert entry.after["crm"] == {"hubspot": {"records": 1, "failed": 1}}
    assert_no_personal_data(entry, DANA, "dana", '"101"', "127.0.0.1")
    assert contact(crm)["leadbridge_grade"] == "A"  # not reached, so not cleared

    # Once HubSpot answers again, the same command with the record's id clears what is left.
    again = run_cli(crm_env, "forget", "hubspot:101", "--yes")
    assert again.returncode == 0, again.stderr
    assert "cleared the leadbridge fields on HubSpot contact 101" in again.stdout
    assert all(contact(crm)[name] == "" for name in SHOWN)
    assert contact(crm)["email"] == DANA  # the record itself is the CRM's
    second = audit_entries(db)[-1]
    assert second.after["crm"] == {"hubspot": {"records": 1, "cleared": 1}} and second.after["leads"] == 0


def test_unknown_person_is_a_clear_error(world: World, crm_env: dict[str, str]) -> None:
    person_everywhere(world)
    for ref in ("nobody@nowhere.example", "999999", "hubspot:424242", "web:nobody"):
        done = run_cli(crm_env, "forget", ref, "--yes")
        assert done.returncode == 1, (ref, done.stdout, done.stderr)
        assert "no lead matches" in done.stderr and "nothing was deleted" in done.stderr
        assert "Traceback" not in done.stderr
    with world.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 2
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_ambiguous_id_needs_a_prefix_and_spares_the_other_person(world: World, db: Database, crm: SandboxCRM,
                                                                  crm_env: dict[str, str]) -> None:
    dana_id = person_everywhere(world)
    # A HubSpot contact whose id is Dana's leadbridge id: "forget <that number>" could mean either person.
    now_ms = int(time.time() * 1000)
    world.deliver_hubspot([hubspot_event("contact.propertyChange", dana_id, now_ms - 3000, propertyName="email",
                                         propertyValue="carol.kim@umbrella.example")])
    world.process()
    done = run_cli(crm_env, "forget", str(dana_id), "--yes")
    assert done.returncode == 2 and f"lead:{dana_id}" in done.stderr and f"hubspot:{dana_id}" in done.stderr
    assert "Traceback" not in done.stderr

    done = run_cli(crm_env, "forget", f"lead:{dana_id}", "--yes")
    assert done.returncode == 0, done.stderr
    assert rows_containing(db, DANA) == []
    # Carol's events (object id == Dana's lead id) survive Dana's deletion.
    assert rows_containing(db, "carol.kim@umbrella.example")
    with db.session() as session:
        carol = session.scalars(select(Lead).where(has_id("hubspot", str(dana_id)))).one()
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(
            InboxEvent.object_id == str(dana_id))) == 1
    done = run_cli(crm_env, "forget", f"hubspot:{dana_id}", "--yes")
    assert done.returncode == 0, done.stderr
    # Carol's contact is not in the sandbox CRM: nothing there to clear, which is no failure.
    assert f"HubSpot contact {dana_id} is no longer in the CRM" in done.stdout
    with db.session() as session:
        assert session.get(Lead, carol.id) is None


def test_salesforce_leads_and_contacts_are_cleared_with_their_mappings(
        db: Database, redis_client: Any, settings_overrides: dict[str, Any], service_urls: ServiceUrls,
        crm: SandboxCRM) -> None:
    """clear_crm_fields through the real simple-salesforce connector: a Lead and a Contact whose admin mapped the
    Contact tier to a field of their own; every leadbridge field empty afterwards, the records' own data kept."""
    from cli.privacy_commands import clear_crm_fields
    from core.settings import load_settings
    from tasks.resources import Resources
    from tests.connectors.conftest import salesforce_for

    connector = salesforce_for(crm)
    connector.provision_fields(create=True)
    crm.store.sf_add_field("Contact", "Contact_Tier__c", "string", "Contact tier", length=20)
    values = {"Leadbridge_Score__c": 88.0, "Leadbridge_Grade__c": "A", "Leadbridge_Tier__c": "hot",
              "Leadbridge_Reasons__c": "+ requested a demo", "Leadbridge_Model_Version__c": "rules:v1",
              "Leadbridge_Scored_At__c": "2026-01-01T00:00:00.000Z", "Leadbridge_Previous_Score__c": 76.0,
              "Leadbridge_Score_Change__c": 12.0, "Leadbridge_Score_Trend__c": "improving",
              "Leadbridge_Score_Changed_At__c": "2026-01-01T00:00:00.000Z",
              "Leadbridge_Score_Change_Reason__c": "+12: requested a demo"}
    lead = crm.store.sf_create("Lead", {"LastName": "Lopez", "Company": "Initech", "Email": DANA, **values},
                               source="CRM_UI")
    contact = crm.store.sf_create("Contact", {"LastName": "Lopez", "Email": DANA, "Contact_Tier__c": "hot", **values},
                                  source="CRM_UI")
    with db.session() as session:
        session.query(FieldMapping).delete()
        session.add(FieldMapping(crm="salesforce", object_type="Contact", output="tier", field_name="Contact_Tier__c"))
    res = Resources(load_settings(settings_overrides, env_file=None), service_urls, db, redis_client)
    res._connectors["salesforce"] = connector  # the sandbox needs its routing session; mappings are read as usual
    try:
        done = clear_crm_fields(res, [("salesforce", lead), ("salesforce", contact), ("salesforce", "00Q000000000999AAA")])
    finally:
        with db.session() as session:
            session.query(FieldMapping).delete()
    assert {(c.record_id, c.outcome) for c in done} == {(lead, "cleared"), (contact, "cleared"),
                                                        ("00Q000000000999AAA", "gone")}
    for sobject, rid in (("Lead", lead), ("Contact", contact)):
        record = crm.store.sf_get(sobject, rid)
        assert {name: record.get(name) for name in values} == {name: None for name in values}, sobject
        assert record["Email"] == DANA and record["LastName"] == "Lopez"
    assert crm.store.sf_get("Contact", contact)["Contact_Tier__c"] is None
