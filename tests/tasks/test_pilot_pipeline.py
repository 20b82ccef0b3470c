"""A pilot on the live path (issue 17): new leads get a group once, control leads are scored and stored but
show nothing in the CRM but their hidden group field and trigger no alert, and no group ever changes.

Real Redis, a real database, a real worker process and the sandbox CRM over HTTP (HubSpot through the worker;
Salesforce through the real SDK in this process, across a Lead conversion).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from core.records import utcnow
from sandbox import SandboxCRM
from scoring.experiment import CONTROL, PILOT
from services.pilots import PilotInput, announce_pilot, end_pilot, pause_pilot, resume_pilot, start_pilot
from storage.crypto import encrypt
from storage.db import Database
from storage.models import AlertRule, Lead, ScoreHistory
from storage.pilots import groups_of
from storage.scores import ScoreChange
from tasks.resources import Resources
from tasks.score import assign_groups
from tasks.writeback import _lead_values
from tests.connectors.conftest import Receiver, receiver  # noqa: F401 - receiver: fixture
from tests.pii import hubspot_event
from tests.processes import wait_for
from tests.tasks.conftest import LivePipeline
from tests.tasks.test_salesforce_conversion import Deliveries, deliver, leads_of, new_lead, pipeline  # noqa: F401

WRITE_WITHIN = 60.0


def start(db: Database, redis: Any, **settings: Any) -> None:
    """Start a pilot as the API does: commit, then tell the workers."""
    with db.session() as session:
        start_pilot(session, "test", PilotInput(name="pilot under test", **settings))
    announce_pilot(redis)


def change(db: Database, redis: Any, action: Any) -> None:
    """Pause, resume or end the pilot, then tell the workers."""
    with db.session() as session:
        action(session, "test")
    announce_pilot(redis)


def first_scores(lead_ids: list[int]) -> list[ScoreChange]:
    return [ScoreChange(lead_id, None, 50, True, True) for lead_id in lead_ids]


def test_live_assignment_is_stable_and_within_a_point_of_the_share(res: Resources, db: Database) -> None:
    now = utcnow()
    with db.session() as session:
        session.execute(Lead.__table__.insert(), [{"email": f"l{i}@acme.io", "properties": {}, "created_at": now,
                                                   "updated_at": now} for i in range(10_000)])
        ids = list(session.scalars(select(Lead.id).order_by(Lead.id)))
    start(db, res.redis, control_share=0.10)
    with db.session() as session:
        changes = assign_groups(res, session, first_scores(ids))
    with db.session() as session:
        groups = groups_of(session, ids)
    assert len(groups) == 10_000 and {c.lead_id: c.group for c in changes} == groups
    assert all(c.hidden == (c.group == CONTROL) for c in changes)
    share = sum(g == CONTROL for g in groups.values()) / len(groups)
    assert abs(share - 0.10) <= 0.01, share

    # The same leads scored again, however the pilot moves on: nothing changes (insert-only, same salt).
    for action in (pause_pilot, resume_pilot, end_pilot):
        change(db, res.redis, action)
        with db.session() as session:
            assign_groups(res, session, first_scores(ids))
        with db.session() as session:
            assert groups_of(session, ids) == groups
    # A new pilot (another salt) assigns only leads that have no group yet.
    start(db, res.redis, control_share=0.5)
    with db.session() as session:
        again = assign_groups(res, session, first_scores(ids[:100]))
        # Their groups stand, from the ended pilot, which no longer hides anything.
        assert [(c.group, c.hidden) for c in again] == [(groups[i], False) for i in ids[:100]]
        session.execute(Lead.__table__.insert(), [{"email": "new@acme.io", "properties": {}, "created_at": now,
                                                   "updated_at": now}])
        new_id = session.scalar(select(Lead.id).where(Lead.email == "new@acme.io"))
        [assigned] = assign_groups(res, session, first_scores([new_id]))
    assert assigned.group in (PILOT, CONTROL)
    with db.session() as session:
        assert groups_of(session, ids) == groups


def _slack(sandbox: SandboxCRM) -> list[dict[str, Any]]:
    return requests.get(sandbox.base_url + "/_sandbox/slack/messages", timeout=5).json()["messages"]


def test_a_pilot_by_owner_keeps_each_owners_leads_together(res: Resources, db: Database,
                                                           sandbox: SandboxCRM) -> None:
    """Cluster randomisation: the owner a read of the CRM gives (hubspot_owner_id, Salesforce OwnerId) becomes the
    lead's canonical `owner`; every lead of one owner lands in that owner's group, the owner kept as the cluster."""
    from connectors.registry import lead_fields
    from storage.models import LeadGroup

    contact = sandbox.store.hs_create("contacts", {"email": "owned@acme.io", "hubspot_owner_id": "7001"})
    connector = res.connector("hubspot")
    assert connector is not None
    [read] = connector.read_leads([contact["id"]])
    assert lead_fields("hubspot", read.lead.properties)["owner"] == "7001"
    assert lead_fields("salesforce", {"OwnerId": "005000000000001AAA"})["owner"] == "005000000000001AAA"

    now = utcnow()
    owners = [f"owner-{n}" for n in range(40)]
    with db.session() as session:
        session.execute(Lead.__table__.insert(), [
            {"email": f"o{i}@acme.io", "properties": {"owner": owners[i % 40]}, "created_at": now, "updated_at": now}
            for i in range(400)] + [{"email": "nobody@acme.io", "properties": {}, "created_at": now,
                                     "updated_at": now}])
        ids = list(session.scalars(select(Lead.id).order_by(Lead.id)))
    start(db, res.redis, control_share=0.25, unit="owner")
    with db.session() as session:
        assign_groups(res, session, first_scores(ids))
    with db.session() as session:
        rows = {r.lead_id: (r.group, r.cluster) for r in session.scalars(select(LeadGroup))}
    by_owner: dict[str | None, set[str]] = {}
    for group, cluster in rows.values():
        by_owner.setdefault(cluster, set()).add(group)
    assert len(rows) == 401 and all(len(groups) == 1 for owner, groups in by_owner.items() if owner)
    assert len([o for o in by_owner if o]) == 40 and rows[ids[-1]][1] is None  # no owner: assigned on its own
    assert 0 < sum(by_owner[o] == {CONTROL} for o in owners) < 40


def test_control_leads_show_only_their_group_and_fire_no_alert(live_pipeline: LivePipeline) -> None:
    p = live_pipeline
    store = p.sandbox.store
    with p.db.session() as session:
        session.add(AlertRule(name="hot", threshold=1, channel="#sales", cooldown_minutes=60, enabled=True,
                              routing={"webhook_url": encrypt(p.sandbox.base_url + "/services/T000/B000/pilot")}))
    start(p.db, p.redis, control_share=0.5)
    # Sixteen people alike but for their names: the same score, so the group is the only difference.
    contacts = [store.hs_create("contacts", {"email": f"p{i}@initech.com", "firstname": f"Person{i}",
                                             "lastname": "Alike", "jobtitle": "VP Sales", "company": "Initech"})["id"]
                for i in range(16)]
    at = int(time.time() * 1000)
    body = json.dumps([hubspot_event("contact.creation", int(c), at + i) for i, c in enumerate(contacts)]).encode()
    assert p.signer.hubspot(p.hubspot, body).status_code == 202

    def leads() -> dict[str, tuple[int, int | None]]:
        """HubSpot id -> (lead id, stored score) of the contacts that have been scored."""
        with p.db.session() as session:
            rows = session.execute(select(Lead.id, Lead.email, Lead.score).where(Lead.email.like("p%@initech.com")))
            by_email = {email: (lead_id, score) for lead_id, email, score in rows}
        return {c: by_email[f"p{i}@initech.com"] for i, c in enumerate(contacts)
                if by_email.get(f"p{i}@initech.com", (0, None))[1] is not None}

    wait_for(lambda: len(leads()) == 16, WRITE_WITHIN, "all sixteen scored")
    scored = leads()
    with p.db.session() as session:
        groups = groups_of(session, [lead_id for lead_id, _ in scored.values()])
        assert session.scalar(select(ScoreHistory.id).where(  # control leads keep a score history too
            ScoreHistory.lead_id.in_([i for i, _ in scored.values()]))) is not None
    group_of = {c: groups[lead_id] for c, (lead_id, _) in scored.items()}
    control = [c for c in contacts if group_of[c] == CONTROL]
    pilot = [c for c in contacts if group_of[c] == PILOT]
    assert control and pilot, group_of  # 2 in 65,536 tests would see one group only
    assert len({score for _, score in scored.values()}) == 1  # alike: the same score in both groups

    def shown(contact: str) -> dict[str, Any]:
        return store.hs_get("contacts", contact)["properties"]

    wait_for(lambda: all(shown(c).get("leadbridge_score") for c in pilot), WRITE_WITHIN, "pilot scores in HubSpot")
    wait_for(lambda: all(shown(c).get("leadbridge_group") == CONTROL for c in control), WRITE_WITHIN,
             "control groups in HubSpot")
    wait_for(lambda: len(_slack(p.sandbox)) >= len(pilot), WRITE_WITHIN, "an alert per pilot lead")
    time.sleep(2.0)  # and no more than that
    assert len(_slack(p.sandbox)) == len(pilot)
    # Which leads were alerted: each queued alert holds its (rule, lead) cooldown.
    alerted = {int(k.decode().rsplit(":", 1)[1]) for k in p.redis.scan_iter("lb:alert:cool:*")}
    for c in contacts:
        props = shown(c)
        if c in pilot:
            assert props["leadbridge_group"] == PILOT and props["leadbridge_reasons"] and props["leadbridge_grade"]
            assert scored[c][0] in alerted
        else:
            assert not any(props.get(f"leadbridge_{name}") for name in
                           ("score", "grade", "reasons", "tier", "model_version", "scored_at")), props
            assert scored[c][0] not in alerted
    writes = requests.get(p.sandbox.base_url + "/_sandbox/writes", timeout=5, params={
        "prefix": "leadbridge_", "object_id": control[0]}).json()["writes"]
    assert {w["property"] for w in writes} == {"leadbridge_group"}

    # Paused, resumed: the groups stand. Ended: the control leads' scores appear on their next write.
    change(p.db, p.redis, pause_pilot)
    change(p.db, p.redis, resume_pilot)
    change(p.db, p.redis, end_pilot)
    ids = [scored[c][0] for c in control]
    with p.db.session() as session:
        values = {lead_id: v for lead_id, _, v in _lead_values(session, "hubspot", ids, p.redis)}
    # What their next write sends: the score fields, beside the group they keep.
    assert all(values[i]["group"] == CONTROL and isinstance(values[i]["score"], int) and values[i]["reasons"]
               for i in ids), values
    with p.db.session() as session:
        assert groups_of(session, [lead_id for lead_id, _ in scored.values()]) == groups
    assert all(shown(c)["leadbridge_group"] == CONTROL for c in control)


def test_a_converted_salesforce_lead_keeps_its_group_and_the_contact_shows_only_it(
        pipeline: Resources, sandbox: SandboxCRM, receiver: Receiver, db: Database) -> None:  # noqa: F811
    res = pipeline
    feed = Deliveries(sandbox, receiver, "00D5g000004ABCDEA2")
    start(db, res.redis, control_share=0.5)
    found: dict[str, tuple[str, int]] = {}
    for i in range(24):  # new Leads until one of each group (2 in 16 million runs need more)
        mark = feed.mark()
        lead_sf = new_lead(sandbox, f"sf{i}@acme.io")
        deliver(res, feed.after(mark, "Lead", lead_sf))
        [(lead_id, _)] = leads_of(db, f"sf{i}@acme.io")
        with db.session() as session:
            found.setdefault(groups_of(session, [lead_id])[lead_id], (lead_sf, lead_id))
        if len(found) == 2:
            break
    (control_sf, control_id), (pilot_sf, pilot_id) = found[CONTROL], found[PILOT]
    control_lead, pilot_lead = sandbox.store.sf_get("Lead", control_sf), sandbox.store.sf_get("Lead", pilot_sf)
    assert control_lead["Leadbridge_Group__c"] == CONTROL and control_lead.get("Leadbridge_Score__c") is None
    assert control_lead.get("Leadbridge_Reasons__c") is None and control_lead.get("Leadbridge_Grade__c") is None
    assert pilot_lead["Leadbridge_Group__c"] == PILOT and pilot_lead["Leadbridge_Score__c"] is not None
    with db.session() as session:
        assert session.get(Lead, control_id).score is not None  # scored and stored as usual

    # Converted: the same leadbridge lead now stands for a Contact too, and keeps its group; the Contact shows it.
    feed.quiet()
    mark = feed.mark()
    contact_sf = sandbox.store.sf_convert_lead(control_sf, won=None)["ContactId"]
    deliver(res, feed.after(mark, "Lead", "<sf:IsConverted>true"))
    assert leads_of(db, "sf" + control_lead["Email"][2:]) == [(control_id, {control_sf, contact_sf})]
    with db.session() as session:
        assert groups_of(session, [control_id, pilot_id]) == {control_id: CONTROL, pilot_id: PILOT}
    contact = sandbox.store.sf_get("Contact", contact_sf)
    assert contact["Leadbridge_Group__c"] == CONTROL and contact.get("Leadbridge_Score__c") is None
