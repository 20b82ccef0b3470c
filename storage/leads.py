"""Resolve events to leads and accounts: by CRM id first, then by e-mail; create what is new.

Callers pass each event's canonical attributes (connectors.registry.lead_fields / account_fields), so
vendor field names stay in connectors/.

Resolution is batched: one query finds every lead a batch of events mentions, new leads are created
together, and attribute changes are flushed once, so a 100-event delivery costs a handful of queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, false, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from core.records import Event, utcnow
from core.values import clean_count
from storage.inbox import to_event
from storage.models import (Account, AccountCrmId, DeadLetter, InboxEvent, Lead, LeadCrmId, Outcome, OutboxItem,
                            ScoreHistory)

# (crm, object_type) of the records that are a person we score: CRM records are LeadCrmId rows, a web user is
# Lead.external_id.
LEAD_KINDS = frozenset({("hubspot", "contact"), ("salesforce", "lead"), ("salesforce", "contact"),
                        ("web", "person")})
ACCOUNT_KINDS = frozenset({("hubspot", "company"), ("salesforce", "account")})
# The person records each CRM writes scores to, preferred first: a converted Salesforce Lead is read-only, its
# Contact takes the writes.
WRITE_TYPES: dict[str, tuple[str, ...]] = {"hubspot": ("contact",), "salesforce": ("contact", "lead")}
LEAD_ATTRIBUTES = ("email", "first_name", "last_name", "title", "country")


def is_lead_event(event: Event) -> bool:
    """True when the event is about a person we score."""
    return (event.crm, event.object_type) in LEAD_KINDS


def is_account_event(event: Event) -> bool:
    """True when the event is about a company."""
    return (event.crm, event.object_type) in ACCOUNT_KINDS


def record_condition(records: Iterable[tuple[str, str, str]]) -> ColumnElement[bool]:
    """LeadCrmId rows matching any of the (crm, object type, object id) records: one IN per kind, indexed."""
    kinds: dict[tuple[str, str], set[str]] = {}
    for crm, object_type, object_id in records:
        kinds.setdefault((crm, object_type), set()).add(object_id)
    return or_(false(), *(and_(LeadCrmId.crm == crm, LeadCrmId.object_type == object_type,
                               LeadCrmId.object_id.in_(sorted(ids)))
                          for (crm, object_type), ids in sorted(kinds.items())))


def lead_id_by_record(session: Session, crm: str, object_type: str, object_id: str) -> int | None:
    """The lead a CRM record belongs to, if any."""
    return session.scalar(select(LeadCrmId.lead_id).where(record_condition([(crm, object_type, object_id)])))


def add_crm_id(session: Session, lead: Lead, crm: str, object_type: str, object_id: str) -> LeadCrmId:
    """Record that `lead` stands for a CRM record (flushed with the session; the lead may be new)."""
    row = LeadCrmId(lead=lead, crm=crm, object_type=object_type, object_id=object_id, created_at=utcnow())
    session.add(row)
    return row


def crm_ids_of(session: Session, lead_ids: Iterable[int]) -> dict[int, list[LeadCrmId]]:
    """Each lead's CRM records, oldest first, in one query."""
    out: dict[int, list[LeadCrmId]] = {}
    ids = sorted(set(lead_ids))
    if ids:
        query = select(LeadCrmId).where(LeadCrmId.lead_id.in_(ids)).order_by(LeadCrmId.id)
        for row in session.scalars(query):
            out.setdefault(row.lead_id, []).append(row)
    return out


def crm_id_map(rows: Iterable[LeadCrmId]) -> dict[str, str]:
    """{crm: record id} of one lead's rows: the record each CRM writes to (WRITE_TYPES), else the newest."""
    best: dict[str, tuple[tuple[int, int], str]] = {}
    for row in rows:
        rank = _write_rank(row.crm, row.object_type, row.id)
        if row.crm not in best or rank > best[row.crm][0]:
            best[row.crm] = (rank, row.object_id)
    return {crm: object_id for crm, (_, object_id) in best.items()}


def account_crm_id_map(session: Session, account_id: int) -> dict[str, str]:
    """{crm: record id} of one account: its newest row per CRM."""
    rows = session.execute(select(AccountCrmId.crm, AccountCrmId.object_id)
                           .where(AccountCrmId.account_id == account_id).order_by(AccountCrmId.id))
    return dict(rows.all())


def write_target_query(crm: str, *columns: Any) -> Select[Any]:
    """(lead id, row id, object type, object id, *columns) of every record `crm` writes; see write_targets."""
    return (select(LeadCrmId.lead_id, LeadCrmId.id, LeadCrmId.object_type, LeadCrmId.object_id, *columns)
            .join(Lead, Lead.id == LeadCrmId.lead_id)
            .where(LeadCrmId.crm == crm, LeadCrmId.object_type.in_(WRITE_TYPES[crm])))


def write_targets(crm: str, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """One (lead id, object id, *columns) per lead from write_target_query rows: the record written to."""
    best: dict[int, tuple[tuple[int, int], tuple[Any, ...]]] = {}
    for lead_id, row_id, object_type, object_id, *columns in rows:
        rank = _write_rank(crm, object_type, row_id)
        if lead_id not in best or rank > best[lead_id][0]:
            best[lead_id] = (rank, (lead_id, object_id, *columns))
    return [picked for _, picked in best.values()]


def _write_rank(crm: str, object_type: str, row_id: int) -> tuple[int, int]:
    # Higher is preferred: a type the CRM writes (earlier in WRITE_TYPES first), then the newest row.
    types = WRITE_TYPES.get(crm, ())
    return (len(types) - types.index(object_type) if object_type in types else 0, row_id)


def resolve_lead(session: Session, event: Event, fields: Mapping[str, Any]) -> Lead:
    """Find or create the lead one event is about (see resolve_leads)."""
    return resolve_leads(session, [event], [fields])[0]


def resolve_leads(session: Session, events: Sequence[Event], lead_fields: Sequence[Mapping[str, Any]], *,
                  _attempt: int = 1) -> list[Lead]:
    """The lead each event is about, in order: matched by CRM id, then e-mail, else created; attributes applied.

    `lead_fields` holds each event's canonical lead attributes, in the same order.
    """
    fields = [dict(f) for f in lead_fields]
    emails = [_clean_email(e.email or f.get("email")) for e, f in zip(events, fields)]
    index = _LeadIndex(session, events, [m for m in emails if m])
    leads: list[Lead] = []
    try:
        # The savepoint opens before anything of ours is added: begin_nested() flushes what is pending,
        # so leads added before it would be inserted outside the savepoint, and a conflict would then
        # leave the whole transaction unusable instead of just this attempt.
        with session.begin_nested():
            for event, email, found in zip(events, emails, fields):
                lead = index.get(event, email)
                if lead is None:
                    lead = Lead(email=email, properties={}, created_at=utcnow(), updated_at=utcnow())
                    session.add(lead)
                    index.attach(lead, event)
                elif not index.has_record(lead, event):
                    index.attach(lead, event)
                _apply_lead_fields(lead, found, email)
                leads.append(lead)
            session.flush()
    except IntegrityError:
        # Another worker created one of these leads at the same moment (PostgreSQL): the savepoint took our
        # new rows back with it; resolve again against theirs.
        if _attempt >= 3:
            raise
        return resolve_leads(session, events, lead_fields, _attempt=_attempt + 1)
    accounts = _AccountIndex(session)
    for lead, found, email in zip(leads, fields, emails):
        if found.get("company") and lead.account_id is None:
            lead.account_id = accounts.for_company(str(found["company"]), email, found).id
    return leads


@dataclass
class Linked:
    """What linking records to leads did: leads that gained a record, and leads folded into another."""

    # lead id -> the CRMs in which it gained a record (its write target there may have moved)
    gained: dict[int, set[str]] = field(default_factory=dict)
    # folded lead id -> (the lead it became, the records it stood for): its events now belong to the other
    merged: dict[int, tuple[Lead, set[tuple[str, str, str]]]] = field(default_factory=dict)


def link_records(session: Session, links: Sequence[tuple[Lead, tuple[str, str, str]]]) -> Linked:
    """Make each (lead, record) pair one lead: attach a record nobody has, fold the lead that has it into `lead`.

    For records a CRM says are the same person (a converted Salesforce Lead's Contact): the Contact's events,
    earlier or later, then resolve to the Lead's lead. A lead that already stood for the record (its Contact
    event came first) is merged into `lead` (merge_leads), so no second lead is left.
    """
    done = Linked()
    for lead, record in links:
        lead = _surviving(lead, done)
        owner = session.scalar(select(LeadCrmId.lead_id).where(record_condition([record])))
        if owner is None:
            add_crm_id(session, lead, *record)
            done.gained.setdefault(lead.id, set()).add(record[0])
        elif owner != lead.id:
            other = session.get(Lead, owner)
            if other is None:
                continue
            records = merge_leads(session, keep=lead, gone=other)
            done.merged[owner] = (lead, records)
            done.gained.setdefault(lead.id, set()).update(crm for crm, _, _ in records if crm != "web")
            done.gained.pop(owner, None)
            for folded, (target, held) in list(done.merged.items()):
                if target.id == owner:  # folded earlier into the lead just folded: follow it
                    done.merged[folded] = (lead, held)
        session.flush()
    return done


def same_person_pairs(session: Session, lead_ids: Iterable[int]) -> list[tuple[Lead, Lead]]:
    """(keep, gone) pairs: a lead among `lead_ids` and another lead with its e-mail, their records from different
    sources (a HubSpot contact and a Salesforce Lead, say); the oldest lead of an e-mail is kept.

    resolve_leads matches by e-mail, but a HubSpot creation webhook carries none: the contact's lead learns its
    e-mail only from enrichment, after the same person's Salesforce Lead may have become a lead of its own.
    A lead folds in only where it shares no source with the leads kept so far (two HubSpot contacts with one
    e-mail stay two leads, as resolve_leads keeps them).
    """
    emails = sorted(set(session.scalars(select(Lead.email).where(Lead.id.in_(list(lead_ids)),
                                                                 Lead.email.is_not(None)))))
    if not emails:
        return []
    leads = list(session.scalars(select(Lead).where(Lead.email.in_(emails)).order_by(Lead.id)))
    by_email: dict[str, list[Lead]] = {}
    for lead in leads:
        by_email.setdefault(str(lead.email), []).append(lead)
    crm_rows = crm_ids_of(session, [lead.id for lead in leads]) if len(leads) > len(emails) else {}
    pairs: list[tuple[Lead, Lead]] = []
    for same in by_email.values():
        if len(same) < 2:
            continue
        keep, rest = same[0], same[1:]
        held = _sources(keep, crm_rows)
        for other in rest:
            theirs = _sources(other, crm_rows)
            if not theirs & held:
                pairs.append((keep, other))
                held |= theirs
    return pairs


def _sources(lead: Lead, crm_rows: Mapping[int, Sequence[LeadCrmId]]) -> set[str]:
    return {row.crm for row in crm_rows.get(lead.id, [])} | ({"web"} if lead.external_id else set())


def _surviving(lead: Lead, done: Linked) -> Lead:
    return done.merged[lead.id][0] if lead.id in done.merged else lead


def merge_leads(session: Session, *, keep: Lead, gone: Lead) -> set[tuple[str, str, str]]:
    """Fold `gone` into `keep`: its CRM records, scores, outcomes, queued work; then delete it.

    Attributes `keep` lacks are taken from `gone`; the newer score stays until `keep` is scored again. Returns
    the (source, object type, id) records `gone` stood for (whose stored events are now `keep`'s). Redis is the
    caller's part (storage knows no feature store).
    """
    rows = list(session.scalars(select(LeadCrmId).where(LeadCrmId.lead_id == gone.id)))
    records = {(row.crm, row.object_type, row.object_id) for row in rows}
    for row in rows:
        row.lead = keep
        row.lead_id = keep.id
    if gone.external_id:
        records.add(("web", "person", gone.external_id))
        if keep.external_id is None:
            web_id, gone.external_id = gone.external_id, None
            session.flush()  # the column is unique: free it before `keep` takes it
            keep.external_id = web_id
    for name in ("email", *LEAD_TEXT_LENGTHS, "account_id", "enriched_at"):
        if getattr(keep, name) is None and getattr(gone, name) is not None:
            setattr(keep, name, getattr(gone, name))
    keep.properties = {**(gone.properties or {}), **(keep.properties or {})}
    if gone.created_at is not None and (keep.created_at is None or gone.created_at < keep.created_at):
        keep.created_at = gone.created_at
    if gone.scored_at is not None and (keep.scored_at is None or gone.scored_at > keep.scored_at):
        for name in ("score", "probability", "grade", "reasons", "model_version", "scored_at", "score_event_at"):
            setattr(keep, name, getattr(gone, name))
    # An outcome both leads hold (the same source and time) is kept once: the unique key is per lead.
    twin = aliased(Outcome)
    session.execute(delete(Outcome).where(Outcome.lead_id == gone.id, select(twin.id).where(
        twin.lead_id == keep.id, twin.source == Outcome.source, twin.occurred_at == Outcome.occurred_at).exists())
        .execution_options(synchronize_session=False))
    for model in (Outcome, ScoreHistory, OutboxItem, DeadLetter):
        session.execute(update(model).where(model.lead_id == gone.id).values(lead_id=keep.id)
                        .execution_options(synchronize_session=False))
    session.delete(gone)
    session.flush()
    return records


def processed_events_of(session: Session, records: Iterable[tuple[str, str, str]]) -> list[Event]:
    """The processed inbox events about these (source, object type, id) records, oldest first."""
    kinds: dict[tuple[str, str], set[str]] = {}
    for crm, object_type, object_id in records:
        kinds.setdefault((crm, object_type), set()).add(object_id)
    if not kinds:
        return []
    match = or_(*(and_(InboxEvent.crm == crm, InboxEvent.object_type == object_type,
                       InboxEvent.object_id.in_(sorted(ids))) for (crm, object_type), ids in sorted(kinds.items())))
    rows = session.scalars(select(InboxEvent).where(match, InboxEvent.status == "done")
                           .order_by(InboxEvent.occurred_at, InboxEvent.id))
    return [to_event(row) for row in rows]


class _LeadIndex:
    """Every lead a batch mentions, with its CRM records, in one query; kept current as leads are created.

    A key is (crm, object type, id) for a CRM record and ("web", "person", id) for Lead.external_id.
    """

    def __init__(self, session: Session, events: Sequence[Event], emails: list[str]) -> None:
        self.session = session
        self.by_key: dict[tuple[str, str, str], Lead] = {}
        self.by_email: dict[str, list[Lead]] = {}
        self.crms: dict[Lead, set[str]] = {}  # the CRMs (and "web") each lead has a record of
        records = [(e.crm, e.object_type, e.object_id) for e in events if e.crm != "web"]
        web_ids = sorted({e.object_id for e in events if e.crm == "web"})
        # Each way of matching is its own indexed lookup; a UNION rather than an OR of them, which PostgreSQL
        # could only answer by filtering every lead against the subquery.
        # The two leads columns stay one OR (a BitmapOr of their indexes; one scan where the table is too young
        # to have statistics, where a UNION of the two scanned it twice).
        matches: list[Select[Any]] = []
        if records:
            matches.append(select(LeadCrmId.lead_id).where(record_condition(records)))
        on_lead = [*([Lead.external_id.in_(web_ids)] if web_ids else []),
                   *([Lead.email.in_(sorted(set(emails)))] if emails else [])]
        if on_lead:
            matches.append(select(Lead.id).where(or_(*on_lead)))
        if matches:
            # Three short queries rather than one join: the ids (the UNION above), then the leads by primary key
            # and their records by lead id. Filtering leads by the UNION as a subquery had PostgreSQL hash it
            # against a scan of every lead, per batch (bench/e2e: each ingest batch's lookup three times slower).
            ids = sorted(set(session.scalars(union_all(*matches))))
            if ids:
                rows: dict[int, list[LeadCrmId]] = {}
                for row in session.scalars(select(LeadCrmId).where(LeadCrmId.lead_id.in_(ids))
                                           .order_by(LeadCrmId.id)):
                    rows.setdefault(row.lead_id, []).append(row)
                for lead in session.scalars(select(Lead).where(Lead.id.in_(ids)).order_by(Lead.id)):
                    for row in rows.get(lead.id) or [None]:
                        self._add(lead, row)

    def _add(self, lead: Lead, row: LeadCrmId | None) -> None:
        crms = self.crms.setdefault(lead, set())
        if lead.external_id is not None:
            self.by_key[("web", "person", lead.external_id)] = lead
            crms.add("web")
        if row is not None:
            self.by_key[(row.crm, row.object_type, row.object_id)] = lead
            crms.add(row.crm)
        if lead.email:
            bucket = self.by_email.setdefault(lead.email, [])
            if lead not in bucket:
                bucket.append(lead)

    def has_record(self, lead: Lead, event: Event) -> bool:
        """True when the lead already has a record of the event's source (a column held one id per CRM)."""
        return event.crm in self.crms.get(lead, set())

    def attach(self, lead: Lead, event: Event) -> None:
        """Give the lead the event's record: a LeadCrmId row, or the web user id."""
        if event.crm == "web":
            lead.external_id = event.object_id
            row = None
        else:
            row = add_crm_id(self.session, lead, event.crm, event.object_type, event.object_id)
        self._add(lead, row)

    def get(self, event: Event, email: str | None) -> Lead | None:
        lead = self.by_key.get((event.crm, event.object_type, event.object_id))
        if lead is None and email:
            # Same person seen through another channel: attach only to a lead with no id of this source yet.
            lead = next((candidate for candidate in self.by_email.get(email, [])
                         if not self.has_record(candidate, event)), None)
        return lead


class _AccountIndex:
    """Accounts by domain and name, loaded on demand and shared across one batch."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.cache: dict[tuple[str, str], Account] = {}

    def for_company(self, company: str, email: str | None, fields: dict[str, Any]) -> Account:
        # Behavioural and lead events name a company but carry no account id: match on the e-mail domain.
        domain = email.split("@", 1)[1] if email and "@" in email else None
        name = company[:255]
        account = self.cache.get(("domain", domain or "")) or self.cache.get(("name", name))
        if account is None and domain:
            account = self.session.scalars(select(Account).where(Account.domain == domain)).first()
        if account is None:
            account = self.session.scalars(select(Account).where(Account.name == name)).first()
        if account is None:
            account = Account(domain=domain, name=name, properties={}, updated_at=utcnow())
            self.session.add(account)
            self.session.flush()
        self.cache[("domain", domain or "")] = account
        self.cache[("name", name)] = account
        _apply_account_fields(account, {k: fields[k] for k in ("industry", "employees", "country") if k in fields})
        return account


def resolve_account(session: Session, event: Event, account_fields: Mapping[str, Any]) -> Account:
    """Find or create the account a company event is about and apply its firmographics (canonical attributes)."""
    account = session.scalars(select(Account).join(AccountCrmId, AccountCrmId.account_id == Account.id).where(
        AccountCrmId.crm == event.crm, AccountCrmId.object_type == event.object_type,
        AccountCrmId.object_id == event.object_id)).first()
    fields = dict(account_fields)
    if account is None:
        domain = _domain(fields.get("domain"))
        if domain:
            account = session.scalars(select(Account).where(Account.domain == domain)).first()
        if account is None:
            account = Account(domain=domain, properties={}, updated_at=utcnow())
            session.add(account)
        # The account takes this CRM's id unless it has one (matched by domain; a column held one per CRM).
        if account.id is None or session.scalar(select(AccountCrmId.id).where(
                AccountCrmId.account_id == account.id, AccountCrmId.crm == event.crm)) is None:
            session.add(AccountCrmId(account=account, crm=event.crm, object_type=event.object_type,
                                     object_id=event.object_id, created_at=utcnow()))
    _apply_account_fields(account, fields)
    return account


# Lead text columns and their lengths: a longer value is cut to fit (PostgreSQL refuses what SQLite would keep).
LEAD_TEXT_LENGTHS = {"first_name": 100, "last_name": 100, "title": 200, "country": 100}


def apply_enrichment(lead: Lead, *, email: str | None, first_name: str | None, last_name: str | None,
                     title: str | None, country: str | None) -> None:
    """Fill what the CRM knows about a lead into attributes we do not have yet."""
    if email and not lead.email:
        lead.email = _clean_email(email)
    for name, value in (("first_name", first_name), ("last_name", last_name), ("title", title), ("country", country)):
        if value and not getattr(lead, name):
            setattr(lead, name, str(value)[:LEAD_TEXT_LENGTHS[name]])


CRM_READS_KEY = "crm_reads"  # Lead.properties: the mapped values enrichment read, per record


def crm_values_event(crm: str, object_type: str, record_id: str, values: Mapping[str, Any], at: datetime,
                     received_at: datetime | None = None) -> Event:
    """The event a CRM read's mapped values become: a change of those properties at `at` (the record's last
    modification), so "latest wins" orders it against webhook values by when each value held."""
    ms = int(at.timestamp() * 1000)
    return Event(source="enrichment", crm=crm, object_type=object_type, object_id=record_id,  # type: ignore[arg-type]
                 event_type="property_change", occurred_at=at, received_at=received_at or at,
                 properties=dict(values), dedupe_key=f"enrich-values:{crm}:{record_id}:{ms}")


def remember_crm_values(lead: Lead, crm: str, object_type: str, record_id: str, values: Mapping[str, Any],
                        at: datetime) -> None:
    """Keep a read's mapped values on the lead row (the newest read per record), so training from the stored
    events sees what the online store was given (storage.outcomes.load_events)."""
    reads = dict((lead.properties or {}).get(CRM_READS_KEY) or {})
    key = f"{crm}:{object_type}:{record_id}"
    stamp = at.astimezone(UTC).isoformat()
    previous = reads.get(key) or {}
    if previous.get("at") and datetime.fromisoformat(previous["at"]) > at:
        return
    plain = {k: v for k, v in values.items() if v is None or isinstance(v, (str, int, float, bool))}
    reads[key] = {"at": stamp, "values": plain}
    lead.properties = {**(lead.properties or {}), CRM_READS_KEY: reads}


def stored_crm_values(properties: Mapping[str, Any] | None) -> list[tuple[str, str, str, dict[str, Any], datetime]]:
    """(crm, object type, record id, values, at) of each read `remember_crm_values` kept."""
    out = []
    for key, read in ((properties or {}).get(CRM_READS_KEY) or {}).items():
        crm, object_type, record_id = key.split(":", 2)
        out.append((crm, object_type, record_id, dict(read.get("values") or {}), datetime.fromisoformat(read["at"])))
    return out


def _apply_lead_fields(lead: Lead, fields: dict[str, Any], email: str | None) -> None:
    if email and lead.email != email:
        lead.email = email
    for name, length in LEAD_TEXT_LENGTHS.items():
        value = fields.get(name)
        if value and getattr(lead, name) != str(value)[:length]:
            setattr(lead, name, str(value)[:length])
    extra = {k: v for k, v in fields.items() if k not in LEAD_ATTRIBUTES}
    if extra and any((lead.properties or {}).get(k) != v for k, v in extra.items()):
        lead.properties = {**(lead.properties or {}), **extra}


def _apply_account_fields(account: Account, fields: dict[str, Any]) -> None:
    if fields.get("name") and account.name != str(fields["name"])[:255]:
        account.name = str(fields["name"])[:255]
    if fields.get("industry") and account.industry != str(fields["industry"])[:100]:
        account.industry = str(fields["industry"])[:100]
    if fields.get("country") and account.country != str(fields["country"])[:100]:
        account.country = str(fields["country"])[:100]
    employees = clean_count(fields.get("employees"))  # None for what the column cannot hold (1e30, inf)
    if employees is not None and account.employees != employees:
        account.employees = employees


def _clean_email(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    return value.strip().lower()[:320]


def _domain(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower().removeprefix("https://").removeprefix("http://").removeprefix("www.")
    return text.split("/", 1)[0][:255] or None
