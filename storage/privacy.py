"""Forget a person: purge their events, features, scores and queued work; keep an audit entry without PII."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from core.records import utcnow
from storage.models import AuditEntry, InboxEvent, Lead, OutboxItem

# Redis keys that hold something about one lead (features, writeback state, alert cooldowns).
FEATURE_PREFIX = "lb:fs"
ENRICHED_KEY = "lb:enriched:{crm}:{id}"  # tasks.ingest's enrichment cache


def find_lead(session: Session, ref: str) -> Lead | None:
    """A lead by e-mail, leadbridge id, HubSpot id, Salesforce id or behavioural user id."""
    ref = ref.strip()
    if "@" in ref:
        return session.scalars(select(Lead).where(Lead.email == ref.lower()).order_by(Lead.id)).first()
    conditions = [Lead.hubspot_id == ref, Lead.salesforce_id == ref, Lead.external_id == ref]
    if ref.isdigit():
        conditions.append(Lead.id == int(ref))
    return session.scalars(select(Lead).where(or_(*conditions)).order_by(Lead.id)).first()


def forget_lead(session: Session, lead: Lead, *, redis: Any | None, actor: str) -> dict[str, int]:
    """Delete everything stored about `lead` in the database (and Redis when given); return what was purged."""
    # CRM ids only: an inbox object id is never our own lead id, and "42" may well be someone else's HubSpot id.
    object_ids = [i for i in (lead.hubspot_id, lead.salesforce_id, lead.external_id) if i]
    match = [InboxEvent.object_id.in_(object_ids)]
    if lead.email:
        match.append(InboxEvent.email == lead.email)
    purged = {
        "events": session.execute(delete(InboxEvent).where(or_(*match))).rowcount or 0,
        "outbox": session.execute(delete(OutboxItem).where(OutboxItem.lead_id == lead.id)).rowcount or 0,
    }
    lead_id = lead.id
    refs = [r for r in (lead.email, lead.hubspot_id) if r]
    session.delete(lead)  # score history and outcomes go with it (ON DELETE CASCADE)
    session.flush()
    if redis is not None:
        purged["redis_keys"] = forget_in_redis(redis, lead_id, refs)
    # The audit entry names the internal id and counts only: no e-mail, no name, no CRM payload.
    session.add(AuditEntry(actor=actor, action="privacy.forget", target=f"lead:{lead_id}", before=None,
                           after=purged, created_at=utcnow()))
    return purged


def forget_in_redis(redis: Any, lead_id: int, refs: Sequence[str] = ()) -> int:
    """Remove a lead's online features, queued writebacks, written fingerprints and alert cooldowns.

    `refs` are the e-mail and CRM ids the enrichment cache is keyed by (its key names hold the e-mail).
    """
    lead = str(lead_id)
    keys = [f"{FEATURE_PREFIX}:a:{lead}", f"{FEATURE_PREFIX}:t:{lead}"]
    keys.extend(ENRICHED_KEY.format(crm=crm, id=ref) for ref in refs for crm in ("hubspot", "salesforce"))
    account = redis.hget(f"{FEATURE_PREFIX}:t:{lead}", "account")
    keys.extend(k.decode() if isinstance(k, bytes) else k for k in redis.scan_iter(f"{FEATURE_PREFIX}:s:{lead}:*"))
    keys.extend(k.decode() if isinstance(k, bytes) else k for k in redis.scan_iter(f"lb:alert:cool:*:{lead}"))
    removed = redis.delete(*keys) if keys else 0
    pipe = redis.pipeline(transaction=False)
    if account:
        pipe.zrem(f"{FEATURE_PREFIX}:acct:{account.decode() if isinstance(account, bytes) else account}", lead)
    for crm in ("hubspot", "salesforce"):
        pipe.srem(f"lb:dirty:{crm}", lead)
        pipe.hdel(f"lb:written:{crm}", lead)
        pipe.hdel(f"lb:inflight:{crm}", lead)  # a write under way: its values are no one's business now
    pipe.execute()
    return int(removed)
