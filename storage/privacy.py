"""Forget a person: purge their events, features, scores and queued work; keep an audit entry without PII.

A person is whatever identifies them here: their leads, e-mail addresses and CRM / web ids. They may
have no lead yet (events still pending in the inbox, or set aside as dead letters), so a person is found
through the inbox as well as the leads table (`find_person`), and everything found is purged in the
caller's transaction (`forget_person`): a pending row deleted there can never recreate the lead later.
Clearing the leadbridge fields on the CRM record is the caller's part (it needs a connector; storage
imports none): see cli/privacy_commands.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from core import keys
from core.records import utcnow
from storage.leads import LEAD_KINDS, crm_ids_of, record_condition
from storage.models import AuditEntry, DeadLetter, InboxEvent, Lead, LeadCrmId, OutboxItem

# Object types that are a person, per source (HubSpot contact, Salesforce Lead/Contact, web user).
PERSON_TYPES: dict[str, tuple[str, ...]] = {}
for _crm, _type in sorted(LEAD_KINDS):
    PERSON_TYPES.setdefault(_crm, ())
    PERSON_TYPES[_crm] += (_type,)
UNPROCESSED = ("pending", "failed", "dead", "discarded")  # inbox rows no worker has turned into lead data
CHUNK = 500  # ids per IN (...) clause

# Redis keys that hold something about one person, derived from core.keys so a renamed or added key is purged
# too: every template naming a lead id ({lead}) or a person reference ({ref}: a CRM id or an e-mail).
LEAD_KEYS = tuple(t for t in keys.templates().values() if "{lead}" in t)
REF_KEYS = tuple(t for t in keys.templates().values() if "{ref}" in t)
# Keys (by their fixed prefix) that hold lead ids among other leads' (set members, hash fields, sorted-set
# members, writes in flight): the ids are removed from them, the key stays.
MEMBER_KEYS = tuple(keys.prefix_of(t) for t in keys.LEAD_MEMBER_KEYS)


@dataclass
class Person:
    """What identifies one person: lead ids, e-mail addresses and (source, object type, id) records."""

    lead_ids: set[int] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    records: set[tuple[str, str, str]] = field(default_factory=set)
    other_leads: bool = True  # how it was found (find_person): forget_person looks again the same way

    def __bool__(self) -> bool:
        return bool(self.lead_ids or self.emails or self.records)

    def crm_records(self) -> list[tuple[str, str]]:
        """(crm, record id) of the person's HubSpot contacts and Salesforce Leads/Contacts, sorted."""
        return sorted({(crm, oid) for crm, _, oid in self.records if crm in ("hubspot", "salesforce")})

    def refs(self) -> set[str]:
        """E-mails and every record id: what caches keyed by person (not by lead id) are keyed by."""
        return self.emails | {oid for _, _, oid in self.records}


def lead_records(lead: Lead, crm_ids: Iterable[LeadCrmId]) -> set[tuple[str, str, str]]:
    """The (source, object type, id) records a lead stands for: its CRM id rows and its web user id."""
    out = {(row.crm, row.object_type, row.object_id) for row in crm_ids}
    if lead.external_id:
        out.add(("web", "person", lead.external_id))
    return out


def find_person(session: Session, *, lead_ids: Iterable[int] = (), emails: Iterable[str] = (),
                records: Iterable[tuple[str, str, str]] = (), other_leads: bool = True) -> Person:
    """Everything that identifies the person the given ids name, gathered from the leads and the inbox.

    Leads give their e-mail and CRM / web ids; inbox rows give the e-mail they carry and the record they
    are about, and identify events the anonymous id they joined. `other_leads=False` keeps to the leads
    named by `lead_ids` and `records` and their own ids (a CRM deletion names one record: another CRM's
    lead with the same e-mail stays; its rows that carry the e-mail go, as the e-mail is the person's).
    """
    person = Person({int(i) for i in lead_ids}, {e.strip().lower() for e in emails if e and e.strip()},
                    set(records), other_leads)
    for _ in range(4):  # a few rounds: e-mail -> record -> the other e-mail it had -> ...
        size = (len(person.lead_ids), len(person.emails), len(person.records))
        leads = _leads_of(session, person, by_email=other_leads)
        crm_ids = crm_ids_of(session, [lead.id for lead in leads])
        for lead in leads:
            person.lead_ids.add(lead.id)
            person.records |= lead_records(lead, crm_ids.get(lead.id, []))
            if lead.email:
                person.emails.add(lead.email.lower())
        for crm, object_type, object_id, email in session.execute(
                select(InboxEvent.crm, InboxEvent.object_type, InboxEvent.object_id, InboxEvent.email)
                .where(_inbox_match(person)).distinct()):
            if email:
                person.emails.add(email.lower())
            if other_leads and object_type in PERSON_TYPES.get(crm, ()):
                person.records.add((crm, object_type, object_id))
        if other_leads:
            person.records |= _anonymous_ids(session, person)
        if (len(person.lead_ids), len(person.emails), len(person.records)) == size:
            break
    return person


def _leads_of(session: Session, person: Person, *, by_email: bool) -> list[Lead]:
    conditions: list[ColumnElement[bool]] = []
    if person.lead_ids:
        conditions.append(Lead.id.in_(sorted(person.lead_ids)))
    if by_email and person.emails:
        conditions.append(Lead.email.in_(sorted(person.emails)))
    crm_records = [record for record in person.records if record[0] != "web"]
    if crm_records:
        conditions.append(Lead.id.in_(select(LeadCrmId.lead_id).where(record_condition(crm_records))))
    web_ids = sorted({oid for crm, _, oid in person.records if crm == "web"})
    if web_ids:
        conditions.append(Lead.external_id.in_(web_ids))
    if not conditions:
        return []
    return list(session.scalars(select(Lead).where(or_(*conditions)).order_by(Lead.id)))


def _inbox_match(person: Person) -> ColumnElement[bool]:
    """Inbox rows about the person: their e-mail in the e-mail column, or one of their records."""
    conditions: list[ColumnElement[bool]] = []
    if person.emails:
        conditions.append(InboxEvent.email.in_(sorted(person.emails)))
    by_type: dict[tuple[str, str], list[str]] = {}
    for crm, object_type, object_id in person.records:
        by_type.setdefault((crm, object_type), []).append(object_id)
    for (crm, object_type), ids in sorted(by_type.items()):
        conditions.append(and_(InboxEvent.crm == crm, InboxEvent.object_type == object_type,
                               InboxEvent.object_id.in_(sorted(ids))))
    return or_(*conditions) if conditions else InboxEvent.id.is_(None)


def _anonymous_ids(session: Session, person: Person) -> set[tuple[str, str, str]]:
    """The anonymous web ids the person's identify events joined to their user id (their browsing before)."""
    users = sorted(oid for crm, _, oid in person.records if crm == "web")
    if not users:
        return set()
    found = set()
    rows = session.scalars(select(InboxEvent.properties).where(
        InboxEvent.crm == "web", InboxEvent.object_id.in_(users), InboxEvent.event_type == "identify"))
    for properties in rows:
        meta = (properties or {}).get("_meta") or {}
        anonymous = meta.get("anonymousId") if isinstance(meta, dict) else None
        if isinstance(anonymous, str) and anonymous:
            found.add(("web", "person", anonymous[:64]))
    return found


def _mentions(column: Any, emails: Iterable[str]) -> ColumnElement[bool]:
    """The JSON/text column's text contains one of the e-mails (case-insensitive, LIKE wildcards escaped)."""
    text = func.lower(cast(column, Text))
    return or_(*[text.contains(email, autoescape=True) for email in sorted(emails)])


def _row_match(person: Person) -> ColumnElement[bool]:
    """Inbox rows forget_person deletes: by e-mail or record, and unprocessed rows whose payload names the e-mail."""
    match = [_inbox_match(person)]
    if person.emails:
        # Rows no worker has read yet may carry the e-mail only inside the payload (another property name):
        # they are few (the status index finds them), unlike processed ones.
        match.append(and_(InboxEvent.status.in_(UNPROCESSED), InboxEvent.email.is_(None),
                          _mentions(InboxEvent.properties, person.emails)))
    return or_(*match)


def stored_events(session: Session, person: Person, *, besides: str | None = None) -> int:
    """How many inbox rows forget_person would delete (`besides`: a dedupe key not to count)."""
    query = select(func.count()).select_from(InboxEvent).where(_row_match(person))
    if besides is not None:
        query = query.where(InboxEvent.dedupe_key != besides)
    return int(session.scalar(query) or 0)


def forget_person(session: Session, person: Person, *, redis: Any | None, actor: str) -> dict[str, Any]:
    """Delete everything stored about `person` in the database (and Redis when given); return what was purged.

    In the caller's transaction: inbox rows of any status (by e-mail, by record, and unprocessed rows whose
    payload mentions the e-mail), dead letters, outbox rows, the leads (score history and outcomes go with
    them: ON DELETE CASCADE). The audit entry it adds holds our own lead ids and counts only; its id is
    returned as "audit_id" so a caller can add the CRM outcome to it.

    A worker may be turning one of the person's pending rows into a lead right now (PostgreSQL): deleting
    that row waits for the worker's commit, so the person is looked up once more afterwards and whatever it
    committed goes too.
    """
    purged: dict[str, Any] = {"leads": 0, "dead_letters": 0, "outbox": 0, "events": 0}
    gone: set[int] = set()
    for _ in range(3):
        for name, count in _purge_rows(session, person).items():
            purged[name] += count
        gone |= person.lead_ids
        again = find_person(session, emails=person.emails, records=person.records, other_leads=person.other_leads)
        again.lead_ids -= gone
        if not again.lead_ids and not stored_events(session, again):
            break
        person = Person(again.lead_ids, person.emails | again.emails, person.records | again.records,
                        person.other_leads)
    lead_ids = sorted(gone)
    if redis is not None:
        purged["redis_keys"] = forget_in_redis(redis, lead_ids, person.refs())
    # The audit entry names our own lead ids and counts only: no e-mail, no name, no CRM id or payload.
    target = "lead:" + ",".join(map(str, lead_ids)) if lead_ids else "person without a lead"
    entry = AuditEntry(actor=actor, action="privacy.forget", target=target[:200], before=None, after=dict(purged),
                       created_at=utcnow())
    session.add(entry)
    session.flush()
    purged["audit_id"] = entry.id
    return purged


def _purge_rows(session: Session, person: Person) -> dict[str, int]:
    """One pass of forget_person over the database: rows first, then the leads."""
    lead_ids = sorted(person.lead_ids)
    row_ids = list(session.scalars(select(InboxEvent.id).where(_row_match(person))))
    letters = [DeadLetter.lead_id.in_(lead_ids)] if lead_ids else []
    letters += [DeadLetter.inbox_id.in_(chunk) for chunk in _chunks(row_ids)]
    if person.emails:
        letters += [_mentions(DeadLetter.payload, person.emails), _mentions(DeadLetter.error, person.emails)]
    outbox = [OutboxItem.lead_id.in_(lead_ids)] if lead_ids else []
    for crm, record_id in person.crm_records():
        outbox.append(and_(OutboxItem.target == crm, OutboxItem.object_id == record_id))
    if person.emails:
        outbox.append(_mentions(OutboxItem.payload, person.emails))
    purged = {
        "dead_letters": _delete(session, DeadLetter, letters),
        "outbox": _delete(session, OutboxItem, outbox),
        "events": sum(_delete(session, InboxEvent, [InboxEvent.id.in_(chunk)]) for chunk in _chunks(row_ids)),
        "leads": 0,
    }
    for lead in session.scalars(select(Lead).where(Lead.id.in_(lead_ids))):
        session.delete(lead)  # score history and outcomes go with it (ON DELETE CASCADE)
        purged["leads"] += 1
    session.flush()
    return purged


def forget_lead(session: Session, lead: Lead, *, redis: Any | None, actor: str) -> dict[str, Any]:
    """Forget the person one lead stands for (its records and e-mail; not other leads with that e-mail)."""
    person = find_person(session, lead_ids=[lead.id], other_leads=False)
    return forget_person(session, person, redis=redis, actor=actor)


def _delete(session: Session, model: Any, conditions: Sequence[ColumnElement[bool]]) -> int:
    if not conditions:
        return 0
    return int(session.execute(delete(model).where(or_(*conditions))).rowcount or 0)


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[i:i + CHUNK]) for i in range(0, len(ids), CHUNK)]


def _key_pattern(template: str, names: str) -> str:
    # The person's placeholder matches their names; any other (a CRM, a stream, a rule id) one key segment.
    out = []
    for part in re.split(r"(\{\w+\})", template):
        if part in ("{lead}", "{ref}"):
            out.append(names)
        elif part.startswith("{") and part.endswith("}"):
            out.append(r"[^:]*")
        else:
            out.append(re.escape(part))
    return "".join(out)


def forget_in_redis(redis: Any, lead_ids: Iterable[int], refs: Iterable[str] = ()) -> int:
    """Remove every Redis key about these leads (and person refs), and the lead ids inside shared keys.

    Online features, writeback marks, fingerprints and writes in flight, alert cooldowns, repair claims and
    the enrichment cache (keyed by HubSpot id or e-mail). One SCAN over leadbridge's keys finds them, so a key
    whose name is built from data (a stream, a rule id, an account) is found too. Returns keys and entries
    removed.
    """
    leads = sorted({str(i) for i in lead_ids})
    refs = sorted({r for r in refs if r})
    patterns = []
    if leads:
        names = "(?:" + "|".join(re.escape(i) for i in leads) + ")"
        patterns += [_key_pattern(t, names) for t in LEAD_KEYS]
    if refs:
        names = "(?:" + "|".join(re.escape(r) for r in refs) + ")"
        patterns += [_key_pattern(t, names) for t in REF_KEYS]
    if not patterns:
        return 0
    own = re.compile("^(?:" + "|".join(patterns) + ")$")
    doomed: list[str] = []
    holders: list[str] = []
    for raw in redis.scan_iter(match=keys.PREFIX + "*", count=1000):
        key = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        if own.match(key):
            doomed.append(key)
        elif leads and key.startswith(MEMBER_KEYS):
            holders.append(key)
    removed = 0
    for start in range(0, len(doomed), CHUNK):
        removed += int(redis.delete(*doomed[start:start + CHUNK]))
    for start in range(0, len(holders), CHUNK):
        chunk = holders[start:start + CHUNK]
        pipe = redis.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
        kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in pipe.execute()]
        removers = {"set": pipe.srem, "hash": pipe.hdel, "zset": pipe.zrem}
        for key, kind in zip(chunk, kinds):
            if kind in removers:
                removers[kind](key, *leads)
        removed += sum(int(n or 0) for n in pipe.execute())
    return removed
