"""`leadbridge forget EMAIL|ID`: purge everything stored about one person (GDPR right to erasure).

Everything leadbridge keeps goes in one transaction (storage.privacy): the person's leads, events in the
inbox whatever their status (pending ones included, so none can bring the person back), dead letters,
outbox rows, scores, outcomes and Redis state. Then the leadbridge fields on their CRM records are
cleared through the same connectors the workers write with. If a CRM cannot be reached the local purge
stands, the command names the record it could not clear and exits 1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session

from cli.context import configure_logging, embedded_services, fail, settings_or_exit
from core.keys import FLUSH_LOCK_KEY
from core.records import utcnow
from storage.models import AuditEntry, InboxEvent, Lead, LeadCrmId
from storage.privacy import PERSON_TYPES, Person, find_person, stored_events

# Prefixes that pin an ID to one kind of id, for when a bare number could mean several people; and its name.
PREFIXES = {"lead": "leadbridge id", "hubspot": "HubSpot id", "salesforce": "Salesforce id",
            "web": "web user id"}
CRM_LABELS = {"hubspot": "HubSpot", "salesforce": "Salesforce"}
GONE = ("OBJECT_NOT_FOUND", "ENTITY_IS_DELETED")  # the vendor's word for "no such record" in a batch answer
FLUSH_WAIT = 15.0  # seconds to wait for a writeback flush already under way to finish before clearing


class AmbiguousReference(Exception):
    """A bare id names more than one person; the message lists how to pick one."""


def matching_leads(session: Session, ref: str) -> list[Lead]:
    """Every lead `ref` names: all leads with an e-mail, or the one lead an (optionally prefixed) id names.

    Raises:
        AmbiguousReference: a bare id matches different people in different columns (e.g. lead 42 and
            HubSpot contact 42); the caller must say which with a prefix such as `lead:42` or `hubspot:42`.
    """
    ref = ref.strip()
    if "@" in ref:
        # One person may be several leads (a HubSpot contact and a Salesforce lead never merged): forget all.
        return list(session.scalars(select(Lead).where(Lead.email == ref.lower()).order_by(Lead.id)))
    prefix, _, rest = ref.partition(":")
    if rest and prefix.lower() in PREFIXES:
        return list(session.scalars(select(Lead).where(_names(prefix.lower(), rest)).order_by(Lead.id)))
    named_by_any = or_(*(_names(p, ref) for p in PREFIXES))
    found = list(session.scalars(select(Lead).where(named_by_any).order_by(Lead.id)))
    if len(found) > 1:
        named = {p: set(session.scalars(select(Lead.id).where(_names(p, ref)))) for p in PREFIXES}
        options = [f"{p}:{ref} ({name} of lead {lead.id})" for lead in found for p, name in PREFIXES.items()
                   if lead.id in named[p]]
        raise AmbiguousReference(f"{ref!r} names {len(found)} different people; say which: " + ", ".join(options))
    return found


def _names(prefix: str, value: str) -> ColumnElement[bool]:
    """Leads whose id of the kind `prefix` names (see PREFIXES) is `value`."""
    if prefix == "lead":
        return Lead.id == int(value) if value.isdigit() else false()
    if prefix == "web":
        return Lead.external_id == value
    return Lead.id.in_(select(LeadCrmId.lead_id).where(LeadCrmId.crm == prefix, LeadCrmId.object_id == value))


def find_reference(session: Session, ref: str) -> Person:
    """The person `ref` names, with or without a lead: an e-mail, a lead id, or a CRM / web id.

    An id no lead has yet is looked up among the inbox's events (pending ones included).

    Raises:
        AmbiguousReference: see matching_leads; also a bare id that only events name, in several sources.
    """
    ref = ref.strip()
    if "@" in ref:
        return find_person(session, emails=[ref])
    leads = [lead.id for lead in matching_leads(session, ref)]
    prefix, _, rest = ref.partition(":")
    prefix = prefix.lower()
    if rest and prefix in PREFIXES:
        if prefix == "lead":
            return find_person(session, lead_ids=leads) if leads else Person()
        records = [(prefix, object_type, rest) for object_type in PERSON_TYPES[prefix]]
        return find_person(session, lead_ids=leads, records=records)
    if leads:
        return find_person(session, lead_ids=leads)
    found = session.execute(
        select(InboxEvent.crm, InboxEvent.object_type).where(InboxEvent.object_id == ref).distinct()).all()
    records = [(crm, object_type, ref) for crm, object_type in found if object_type in PERSON_TYPES.get(crm, ())]
    sources = sorted({crm for crm, _, _ in records})
    if len(sources) > 1:
        raise AmbiguousReference(f"{ref!r} names records in {len(sources)} sources; say which: "
                                 + ", ".join(f"{crm}:{ref}" for crm in sources))
    return find_person(session, records=records) if records else Person()


# ---- clearing the CRM fields ---------------------------------------------------------------------


@dataclass(frozen=True)
class Clearing:
    """What happened to the leadbridge fields on one CRM record."""

    crm: str
    record_id: str
    outcome: str  # cleared | gone | not_configured | failed
    detail: str = ""  # why it failed (error type and the vendor's message)

    @property
    def label(self) -> str:
        """"HubSpot contact 51", "Salesforce Lead 00Q...": how the operator finds the record."""
        if self.crm == "hubspot":
            return f"HubSpot contact {self.record_id}"
        kind = {"00Q": "Lead", "003": "Contact"}.get(self.record_id[:3], "record")
        return f"Salesforce {kind} {self.record_id}"


def crm_resources(settings: Any, urls: Any, database: Any, client: Any) -> Any:
    """The workers' resources (tasks.resources), so connectors are built as the writeback builds them.

    In sandbox mode (no CRM credentials) the workers of `leadbridge run` write to the sandbox CRM: so does this.
    """
    from pydantic import SecretStr

    from tasks.resources import Resources

    if settings.sandbox_mode:
        from cli.sandbox_mode import plan_sandbox

        env = plan_sandbox(settings).env
        settings = settings.model_copy(update={"hubspot_access_token": SecretStr(env["HUBSPOT_ACCESS_TOKEN"]),
                                               "hubspot_base_url": env["HUBSPOT_BASE_URL"],
                                               "salesforce_session_id": SecretStr(env["SALESFORCE_SESSION_ID"]),
                                               "salesforce_sandbox_url": env["SALESFORCE_SANDBOX_URL"]})
    return Resources(settings, urls, database, client)


def clear_crm_fields(res: Any, records: Sequence[tuple[str, str]]) -> list[Clearing]:
    """Write empty values to the leadbridge fields of these (crm, record id)s, with the admin's field mappings.

    Uses `res.connector(crm)` (tasks.resources): the connector and the mapping the writeback uses. A Salesforce
    Contact also gets the Contact mapping's fields cleared when an admin mapped them differently from Leads.
    """
    from connectors.base import SCORE_FIELDS, ConnectorError
    from storage.field_mappings import mapping_overrides

    empty = {output: None for output in SCORE_FIELDS}
    out: list[Clearing] = []
    for crm in ("hubspot", "salesforce"):
        ids = sorted({rid for c, rid in records if c == crm})
        if not ids:
            continue
        connector = res.connector(crm)
        if connector is None:
            out += [Clearing(crm, rid, "not_configured") for rid in ids]
            continue
        # Patient enough for a 429 or a blip, not for an outage: the operator is waiting.
        connector.retry_attempts, connector.retry_max_elapsed = 3, 15.0
        wait_for_flush(res.redis, crm)
        passes = [(dict(connector.field_names), ids)]
        if crm == "salesforce":
            with res.db.session() as session:
                contact_names = mapping_overrides(session, crm, "Contact")
            contacts = [rid for rid in ids if rid.startswith("003")]
            if contacts and contact_names != passes[0][0]:
                passes.append((contact_names, contacts))
        failed: dict[str, str] = {}
        lead_names = dict(connector.field_names)
        try:
            for names, batch in passes:
                connector.field_names = names
                try:
                    result = connector.write_fields({rid: empty for rid in batch})
                except ConnectorError as exc:
                    result = None
                    for rid in batch:
                        failed.setdefault(rid, f"{type(exc).__name__}: {exc.vendor_message}")
                if result is not None:
                    for rid, message in result.failed.items():
                        failed.setdefault(rid, message)
        finally:
            connector.field_names = lead_names
        for rid in ids:
            message = failed.get(rid)
            if message is None:
                out.append(Clearing(crm, rid, "cleared"))
            elif message.startswith(GONE):
                out.append(Clearing(crm, rid, "gone"))
            else:
                out.append(Clearing(crm, rid, "failed", message[:300]))
    return out


def wait_for_flush(client: Any, crm: str, timeout: float = FLUSH_WAIT) -> None:
    """Let a writeback flush that was under way when the person was purged finish first.

    Such a flush read the person's values before they were deleted; clearing the fields before it lands
    would let it write them back. A flush that starts later finds nothing of the person to write.
    """
    key = FLUSH_LOCK_KEY.format(crm=crm)
    holder = client.get(key)
    deadline = time.monotonic() + timeout
    while holder is not None and client.get(key) == holder and time.monotonic() < deadline:
        time.sleep(0.1)


def crm_summary(clearings: Sequence[Clearing]) -> dict[str, dict[str, int]]:
    """Counts per CRM and outcome, for the audit entry (no record ids: the entry names nothing of the person)."""
    summary: dict[str, dict[str, int]] = {}
    for c in clearings:
        counts = summary.setdefault(c.crm, {"records": 0})
        counts["records"] += 1
        counts[c.outcome] = counts.get(c.outcome, 0) + 1
    return summary


# ---- the command -----------------------------------------------------------------------------------


@click.command(name="forget")
@click.argument("reference")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def forget(reference: str, yes: bool) -> None:
    """Purge a person's events, features, scores and queued work, and clear leadbridge's fields on their CRM records.

    REFERENCE is an e-mail address, a leadbridge lead id, a HubSpot or Salesforce id, or a web user id.
    Prefix an id with lead:, hubspot:, salesforce: or web: when a bare number is ambiguous. A person
    with no lead yet (events still waiting in the inbox) is found and purged too. The CRM records
    themselves stay; only the fields leadbridge writes (score, grade, reasons, tier, model version,
    scored at) are emptied. The audit entry holds lead ids and counts only. Exit status 1 when a CRM
    record could not be cleared (everything stored here is deleted all the same).
    """
    import redis

    from core.runtime import redis_client
    from storage.db import Database
    from storage.privacy import forget_person

    if not reference.strip():
        fail("give an e-mail address or an id")
    settings = settings_or_exit()
    configure_logging(settings)
    with embedded_services(settings) as urls:
        database = Database(urls.database_url)
        client = redis_client(urls.redis_url)
        res = crm_resources(settings, urls, database, client)
        try:
            with database.session() as session:
                try:
                    person = find_reference(session, reference)
                except AmbiguousReference as exc:
                    fail(str(exc))
                held = bool(person.lead_ids) or (bool(person) and stored_events(session, person) > 0)
            # Nothing stored here, but a CRM record named by its id: its fields can still be cleared (a retry).
            targets = person.crm_records() if held else [
                (crm, rid) for crm, rid in _crm_only(reference) if res.connector(crm) is not None]
            if not held and not targets:
                fail(f"no lead matches {reference!r} and no stored event names it; nothing was deleted", code=1)
            if not yes and not click.confirm(_question(person, held, targets)):
                fail("cancelled; nothing was deleted", code=1)
            purged: dict[str, Any] = {}
            if held:
                client.ping()  # Redis must be reachable before the database is touched: all or nothing
                with database.session(write=True) as session:
                    purged = forget_person(session, person, redis=client, actor="cli:forget")
                    if targets:
                        # Recorded before the CRM calls: an interrupted run still shows what was not confirmed.
                        _amend_audit(session, purged["audit_id"],
                                     [Clearing(crm, rid, "pending") for crm, rid in targets])
        except redis.RedisError as exc:
            fail(f"could not reach Redis at the configured REDIS_URL ({type(exc).__name__}); nothing was deleted")
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - the database's own complaint, without a traceback
            fail(f"forget failed: {type(exc).__name__}: {exc}")
        try:
            try:
                clearings = clear_crm_fields(res, targets)
            except Exception as exc:  # noqa: BLE001 - the local purge stands; say what is left
                clearings = [Clearing(crm, rid, "failed", f"{type(exc).__name__}: {exc}") for crm, rid in targets]
            if not held and all(c.outcome == "gone" for c in clearings):
                label = " or ".join(c.label for c in clearings)
                fail(f"no lead matches {reference!r}, no stored event names it and the CRM has no {label}; "
                     "nothing was deleted", code=1)
            try:
                with database.session(write=True) as session:
                    if held:
                        _amend_audit(session, purged["audit_id"], clearings)
                    else:
                        session.add(AuditEntry(actor="cli:forget", action="privacy.forget", target="CRM fields only",
                                               after={"leads": 0, "events": 0, "crm": crm_summary(clearings)},
                                               created_at=utcnow()))
            except Exception as exc:  # noqa: BLE001 - the work is done; only its record is incomplete
                click.echo(f"warning: could not add the CRM outcome to the audit entry ({type(exc).__name__})",
                           err=True)
        finally:
            database.dispose()
    _report(purged, sorted(person.lead_ids), held, clearings)


def _amend_audit(session: Session, audit_id: int, clearings: Sequence[Clearing]) -> None:
    entry = session.get(AuditEntry, audit_id)
    if entry is not None and clearings:
        entry.after = {**(entry.after or {}), "crm": crm_summary(clearings)}


def _crm_only(reference: str) -> list[tuple[str, str]]:
    """A CRM-prefixed id with nothing stored here: its CRM record can still be cleared (e.g. a retry)."""
    prefix, _, rest = reference.strip().partition(":")
    return [(prefix.lower(), rest)] if rest and prefix.lower() in CRM_LABELS else []


def _question(person: Person, held: bool, targets: Sequence[tuple[str, str]]) -> str:
    if not held:
        crm, rid = targets[0]
        return f"Nothing about it is stored here. Clear the leadbridge fields on {Clearing(crm, rid, '').label}?"
    what = "events, features, scores, queued work"
    if person.crm_records():
        what += ", and the leadbridge fields on their CRM records"
    if person.lead_ids:
        ids = sorted(person.lead_ids)
        return f"Forget {'lead' if len(ids) == 1 else 'leads'} {', '.join(map(str, ids))} ({what})?"
    return f"Forget this person (no lead yet: {what})?"


def _report(purged: dict[str, Any], lead_ids: Sequence[int], held: bool, clearings: Sequence[Clearing]) -> None:
    if held:
        ids = ", ".join(map(str, sorted(lead_ids)))
        who = f"{'lead' if len(lead_ids) == 1 else 'leads'} {ids}" if lead_ids else "a person with no lead yet"
        click.echo(f"forgot {who}: {purged.get('events', 0)} events, {purged.get('outbox', 0)} queued writes, "
                   f"{purged.get('dead_letters', 0)} dead letters, {purged.get('redis_keys', 0)} Redis keys and "
                   "entries; scores and outcomes deleted with it")
    problems = []
    for c in clearings:
        if c.outcome == "cleared":
            click.echo(f"cleared the leadbridge fields on {c.label}")
        elif c.outcome == "gone":
            click.echo(f"{c.label} is no longer in the CRM: nothing to clear")
        elif c.outcome == "not_configured":
            click.echo(f"{c.label} was not cleared: {CRM_LABELS[c.crm]} is not configured here, so leadbridge "
                       "writes nothing there")
        else:
            problems.append(c)
    click.echo("an audit entry (action privacy.forget, lead ids and counts only) records the deletion")
    for c in problems:
        click.echo(f"error: the leadbridge fields on {c.label} were NOT cleared ({c.detail}). "
                   f"Everything stored here is deleted; run `leadbridge forget {c.crm}:{c.record_id}` again when "
                   f"{CRM_LABELS[c.crm]} can be reached, or empty those fields in the CRM.", err=True)
    if problems:
        raise SystemExit(1)
