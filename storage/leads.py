"""Resolve events to leads and accounts: by CRM id first, then by e-mail; create what is new.

Callers pass each event's canonical attributes (connectors.registry.lead_fields / account_fields), so
vendor field names stay in connectors/.

Resolution is batched: one query finds every lead a batch of events mentions, new leads are created
together, and attribute changes are flushed once, so a 100-event delivery costs a handful of queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.records import Event, utcnow
from core.values import clean_count
from storage.models import Account, Lead

# (crm, object_type) -> the Lead column holding that CRM's id
LEAD_ID_COLUMNS = {
    ("hubspot", "contact"): "hubspot_id",
    ("salesforce", "lead"): "salesforce_id",
    ("salesforce", "contact"): "salesforce_id",
    ("web", "person"): "external_id",
}
ACCOUNT_ID_COLUMNS = {("hubspot", "company"): "hubspot_id", ("salesforce", "account"): "salesforce_id"}
# The column of a lead's (or account's) id in each CRM: where the writeback finds the record to write.
CRM_ID_COLUMNS = {"hubspot": "hubspot_id", "salesforce": "salesforce_id"}
LEAD_ATTRIBUTES = ("email", "first_name", "last_name", "title", "country")


def is_lead_event(event: Event) -> bool:
    """True when the event is about a person we score."""
    return (event.crm, event.object_type) in LEAD_ID_COLUMNS


def is_account_event(event: Event) -> bool:
    """True when the event is about a company."""
    return (event.crm, event.object_type) in ACCOUNT_ID_COLUMNS


def resolve_lead(session: Session, event: Event, fields: Mapping[str, Any]) -> Lead:
    """Find or create the lead one event is about (see resolve_leads)."""
    return resolve_leads(session, [event], [fields])[0]


def resolve_leads(session: Session, events: Sequence[Event], lead_fields: Sequence[Mapping[str, Any]], *,
                  _attempt: int = 1) -> list[Lead]:
    """The lead each event is about, in order: matched by CRM id, then e-mail, else created; attributes applied.

    `lead_fields` holds each event's canonical lead attributes, in the same order.
    """
    keys = [(LEAD_ID_COLUMNS[(e.crm, e.object_type)], e.object_id) for e in events]
    fields = [dict(f) for f in lead_fields]
    emails = [_clean_email(e.email or f.get("email")) for e, f in zip(events, fields)]
    index = _LeadIndex(session, keys, [m for m in emails if m])
    leads: list[Lead] = []
    try:
        # The savepoint opens before anything of ours is added: begin_nested() flushes what is pending,
        # so leads added before it would be inserted outside the savepoint, and a conflict would then
        # leave the whole transaction unusable instead of just this attempt.
        with session.begin_nested():
            for (column, object_id), email, found in zip(keys, emails, fields):
                lead = index.get(column, object_id, email)
                if lead is None:
                    lead = Lead(**{column: object_id}, email=email, properties={}, created_at=utcnow(),
                                updated_at=utcnow())
                    session.add(lead)
                    index.add(lead)
                elif getattr(lead, column) is None:
                    setattr(lead, column, object_id)
                    index.add(lead)
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


class _LeadIndex:
    """Every lead a batch mentions, loaded in one query and kept current as leads are created."""

    def __init__(self, session: Session, keys: list[tuple[str, str]], emails: list[str]) -> None:
        self.by_key: dict[tuple[str, str], Lead] = {}
        self.by_email: dict[str, list[Lead]] = {}
        conditions = []
        for column in {c for c, _ in keys}:
            ids = sorted({i for c, i in keys if c == column})
            conditions.append(getattr(Lead, column).in_(ids))
        if emails:
            conditions.append(Lead.email.in_(sorted(set(emails))))
        if conditions:
            for lead in session.scalars(select(Lead).where(or_(*conditions)).order_by(Lead.id)):
                self.add(lead)

    def add(self, lead: Lead) -> None:
        for column in ("hubspot_id", "salesforce_id", "external_id"):
            value = getattr(lead, column)
            if value is not None:
                self.by_key[(column, value)] = lead
        if lead.email:
            bucket = self.by_email.setdefault(lead.email, [])
            if lead not in bucket:
                bucket.append(lead)

    def get(self, column: str, object_id: str, email: str | None) -> Lead | None:
        lead = self.by_key.get((column, object_id))
        if lead is None and email:
            # Same person seen through another channel: attach only to a lead with no id of this kind yet.
            lead = next((candidate for candidate in self.by_email.get(email, []) if getattr(candidate, column) is None),
                        None)
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
    column = ACCOUNT_ID_COLUMNS[(event.crm, event.object_type)]
    account = session.scalars(select(Account).where(getattr(Account, column) == event.object_id)).first()
    fields = dict(account_fields)
    domain = _domain(fields.get("domain"))
    if account is None and domain:
        account = session.scalars(select(Account).where(Account.domain == domain)).first()
    if account is None:
        account = Account(**{column: event.object_id}, domain=domain, properties={}, updated_at=utcnow())
        session.add(account)
    if getattr(account, column) is None:
        setattr(account, column, event.object_id)
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
