"""Lead resolution: CRM id first, then e-mail, else a new lead; a lead another worker creates meanwhile is reused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select

import storage.leads as leads_module
from connectors.registry import lead_fields
from core.records import Event
from storage.db import Database
from storage.leads import (
    crm_id_map,
    crm_ids_of,
    lead_id_by_record,
    same_person_pairs,
    write_target_query,
    write_targets,
)
from storage.leads import resolve_leads as resolve_with_fields
from storage.models import Lead, LeadCrmId


def resolve_leads(session: Any, events: list[Event]) -> list[Lead]:
    """Resolve as ingest does: with each event's canonical attributes from its CRM's field table."""
    return resolve_with_fields(session, events, [lead_fields(e.crm, e.properties) for e in events])


def contact_event(object_id: str, email: str | None = None, **props: Any) -> Event:
    now = datetime.now(UTC)
    return Event(source="s", crm="hubspot", object_type="contact", object_id=object_id, event_type="property_change",
                 occurred_at=now, received_at=now, properties={**({"email": email} if email else {}), **props},
                 dedupe_key=uuid.uuid4().hex, email=email)


def web_event(user_id: str, email: str) -> Event:
    now = datetime.now(UTC)
    return Event(source="web", crm="web", object_type="person", object_id=user_id, event_type="page",
                 occurred_at=now, received_at=now, properties={}, dedupe_key=uuid.uuid4().hex, email=email)


def test_matches_by_id_then_email_and_creates_the_rest(db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    with db.session() as session:
        known = Lead(email=f"known-{tag}@acme.io", properties={})
        session.add_all([known, LeadCrmId(lead=known, crm="hubspot", object_type="contact", object_id=f"h-{tag}")])
    with db.session() as session:
        found = resolve_leads(session, [
            contact_event(f"h-{tag}", firstname="Ada"),
            web_event(f"u-{tag}", f"KNOWN-{tag}@acme.io"),  # same person seen on the website: attached by e-mail
            contact_event(f"new-{tag}", f"new-{tag}@acme.io"),
            contact_event(f"new-{tag}"),  # the same new contact twice in one batch: one lead
        ])
        ids = [lead.id for lead in found]
    assert ids[0] == ids[1] == known.id
    assert ids[2] == ids[3] != known.id
    with db.session() as session:
        row = session.get(Lead, known.id)
        assert row is not None and row.first_name == "Ada" and row.external_id == f"u-{tag}"
        assert session.scalar(select(func.count()).select_from(LeadCrmId).where(LeadCrmId.object_id == f"new-{tag}")) == 1


def test_same_person_pairs_fold_leads_of_one_email_from_different_sources_only(db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    email = f"ana-{tag}@acme.io"
    with db.session() as session:
        contact = Lead(email=email, properties={})  # oldest: kept
        twin = Lead(email=email, properties={})  # a second HubSpot contact with the e-mail: another person here
        sf_lead = Lead(email=email, properties={})
        visitor = Lead(email=email, external_id=f"u-{tag}", properties={})
        other = Lead(email=f"bo-{tag}@acme.io", properties={})
        session.add_all([contact, twin, sf_lead, visitor, other])
        session.flush()
        session.add_all([LeadCrmId(lead=contact, crm="hubspot", object_type="contact", object_id=f"h1-{tag}"),
                         LeadCrmId(lead=twin, crm="hubspot", object_type="contact", object_id=f"h2-{tag}"),
                         LeadCrmId(lead=sf_lead, crm="salesforce", object_type="lead", object_id=f"00Q{tag}"),
                         LeadCrmId(lead=other, crm="salesforce", object_type="lead", object_id=f"00Qb{tag}")])
        ids = {name: lead.id for name, lead in
               (("contact", contact), ("twin", twin), ("sf", sf_lead), ("visitor", visitor), ("other", other))}
    with db.session() as session:
        pairs = [(keep.id, gone.id) for keep, gone in same_person_pairs(session, [ids["sf"], ids["other"]])]
        assert pairs == [(ids["contact"], ids["sf"]), (ids["contact"], ids["visitor"])]
        assert same_person_pairs(session, [ids["other"]]) == []


def test_a_lead_created_meanwhile_is_reused_and_the_transaction_survives(db: Database,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker inserts the same contact between our lookup and our insert (the PostgreSQL race).

    Before the savepoint opened ahead of our inserts, the unique-key conflict broke the whole transaction:
    the retry failed and the batch's other changes were lost with it.
    """
    tag = uuid.uuid4().hex[:8]
    real_index = leads_module._LeadIndex
    raced: list[int] = []

    class RacedIndex(real_index):  # type: ignore[misc, valid-type]
        def __init__(self, session: Any, events: Any, emails: Any) -> None:
            super().__init__(session, events, emails)
            if not raced:  # the other worker's rows land right after our lookup found nothing
                raced.append(session.execute(insert(Lead).values(email=None, properties={})
                                             .returning(Lead.id)).scalar_one())
                session.execute(insert(LeadCrmId).values(lead_id=raced[0], crm="hubspot", object_type="contact",
                                                         object_id=f"race-{tag}"))

    monkeypatch.setattr(leads_module, "_LeadIndex", RacedIndex)
    with db.session() as session:
        earlier = Lead(properties={})  # a change made before resolution, same transaction
        session.add_all([earlier, LeadCrmId(lead=earlier, crm="hubspot", object_type="contact",
                                            object_id=f"earlier-{tag}")])
        session.flush()
        found = resolve_leads(session, [contact_event(f"race-{tag}", f"race-{tag}@acme.io", jobtitle="CTO")])
    assert raced and found[0].id == raced[0]
    with db.session() as session:
        rows = session.execute(select(LeadCrmId.object_id, Lead).join(Lead, Lead.id == LeadCrmId.lead_id).where(
            LeadCrmId.object_id.in_([f"race-{tag}", f"earlier-{tag}"]))).all()
        assert len(rows) == 2  # nothing duplicated, and the earlier change was committed with the rest
        race = next(lead for object_id, lead in rows if object_id == f"race-{tag}")
        assert race.email == f"race-{tag}@acme.io" and race.title == "CTO"


def test_several_records_per_lead_and_the_one_each_crm_writes(db: Database) -> None:
    """A converted Salesforce Lead keeps its Lead row and gains its Contact: writes go to the Contact."""
    tag = uuid.uuid4().hex[:6]
    with db.session() as session:
        converted, fresh = Lead(properties={}, score=70), Lead(properties={}, score=40)
        session.add_all([
            converted, fresh,
            LeadCrmId(lead=converted, crm="salesforce", object_type="lead", object_id=f"00Q{tag}"),
            LeadCrmId(lead=converted, crm="hubspot", object_type="contact", object_id=f"h1-{tag}"),
            LeadCrmId(lead=converted, crm="salesforce", object_type="contact", object_id=f"003{tag}"),
            LeadCrmId(lead=converted, crm="hubspot", object_type="contact", object_id=f"h2-{tag}"),  # merged into
            LeadCrmId(lead=fresh, crm="salesforce", object_type="lead", object_id=f"00Q{tag}x"),
        ])
    with db.session() as session:
        ids = [converted.id, fresh.id]
        rows = session.execute(write_target_query("salesforce", Lead.score).where(LeadCrmId.lead_id.in_(ids)))
        assert sorted(write_targets("salesforce", rows)) == [(converted.id, f"003{tag}", 70),
                                                             (fresh.id, f"00Q{tag}x", 40)]
        assert crm_id_map(crm_ids_of(session, ids)[converted.id]) == {"salesforce": f"003{tag}",
                                                                      "hubspot": f"h2-{tag}"}
        assert lead_id_by_record(session, "salesforce", "lead", f"00Q{tag}") == converted.id
        assert lead_id_by_record(session, "salesforce", "contact", f"00Q{tag}") is None


def _plan(db: Database, generic_sql: str, sqlite_sql: str, args: tuple[str, ...]) -> str:
    """The plan the database picks for a batch lookup, as PostgreSQL's generic plan (what a prepared statement
    settles on after a few runs, on whatever statistics the table had) or SQLite's query plan."""
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            conn.exec_driver_sql(f"PREPARE lookup AS {generic_sql}")
            placeholders = ", ".join(f"'{a}'" for a in args)
            rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE lookup({placeholders})").all()
            conn.exec_driver_sql("DEALLOCATE lookup")
            conn.exec_driver_sql("RESET plan_cache_mode")
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sqlite_sql}", args).all()
        conn.rollback()
    return "\n".join(str(r[-1]) for r in rows)


def test_batch_lookups_search_the_index_on_a_young_unanalysed_table(db: Database) -> None:
    """A record lookup and a lead-id lookup are index searches even before the table has statistics.

    bench/e2e on a fresh PostgreSQL database: with the key ordered (crm, object_type, object_id) the generic plan
    filtered `object_id IN (...)` over every row of the CRM, 9-12 ms a batch and growing with the table.
    """
    with db.session(write=True) as session:
        leads = [Lead(email=f"p{i}@acme.io") for i in range(2000)]
        session.add_all(leads)
        session.flush()
        session.execute(insert(LeadCrmId), [
            {"lead_id": lead.id, "crm": "hubspot", "object_type": "contact", "object_id": str(1000 + i),
             "created_at": datetime.now(UTC)} for i, lead in enumerate(leads)])
    by_record = _plan(
        db, "SELECT lead_id FROM lead_crm_ids WHERE crm = $1 AND object_type = $2 AND object_id IN ($3, $4)",
        "SELECT lead_id FROM lead_crm_ids WHERE crm = ? AND object_type = ? AND object_id IN (?, ?)",
        ("hubspot", "contact", "1001", "1002"))
    by_lead = _plan(
        db, "SELECT id FROM lead_crm_ids WHERE crm = $1 AND object_type IN ($2) AND lead_id IN ($3, $4)",
        "SELECT id FROM lead_crm_ids WHERE crm = ? AND object_type IN (?) AND lead_id IN (?, ?)",
        ("hubspot", "contact", "1", "2"))
    if db.engine.dialect.name == "postgresql":
        cond = [line for line in by_record.splitlines() if "Index Cond" in line]
        assert cond and "object_id" in cond[0], by_record
        assert "Filter" not in by_record, by_record
        cond = [line for line in by_lead.splitlines() if "Index Cond" in line]
        assert cond and "lead_id" in cond[0], by_lead
    else:
        assert "(object_id=? AND object_type=? AND crm=?)" in by_record, by_record
        assert "lead_id=?" in by_lead, by_lead
