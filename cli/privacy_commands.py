"""`leadbridge forget EMAIL|ID`: purge everything stored about one person (GDPR right to erasure)."""

from __future__ import annotations

import click
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cli.context import configure_logging, embedded_services, fail, settings_or_exit
from storage.models import Lead

# Prefixes that pin an ID to one column, for when a bare number could mean several people.
PREFIXES = {"lead": "id", "hubspot": "hubspot_id", "salesforce": "salesforce_id", "web": "external_id"}
_COLUMN_NAMES = {"id": "leadbridge id", "hubspot_id": "HubSpot id", "salesforce_id": "Salesforce id",
                 "external_id": "web user id"}


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
        column = PREFIXES[prefix.lower()]
        if column == "id":
            if not rest.isdigit():
                return []
            return list(session.scalars(select(Lead).where(Lead.id == int(rest))))
        return list(session.scalars(select(Lead).where(getattr(Lead, column) == rest)))
    conditions = [Lead.hubspot_id == ref, Lead.salesforce_id == ref, Lead.external_id == ref]
    if ref.isdigit():
        conditions.append(Lead.id == int(ref))
    found = list(session.scalars(select(Lead).where(or_(*conditions)).order_by(Lead.id)))
    if len(found) > 1:
        options = []
        for lead in found:
            for column, name in _COLUMN_NAMES.items():
                if str(getattr(lead, column)) == ref:
                    prefix = next(p for p, c in PREFIXES.items() if c == column)
                    options.append(f"{prefix}:{ref} ({name} of lead {lead.id})")
        raise AmbiguousReference(f"{ref!r} names {len(found)} different people; say which: " + ", ".join(options))
    return found


@click.command(name="forget")
@click.argument("reference")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def forget(reference: str, yes: bool) -> None:
    """Purge a person's events, features, scores and queued work; keep an audit entry without personal data.

    REFERENCE is an e-mail address, a leadbridge lead id, a HubSpot or Salesforce id, or a web user id.
    Prefix an id with lead:, hubspot:, salesforce: or web: when a bare number is ambiguous.
    Records in the CRM itself are not touched.
    """
    import redis

    from core.runtime import redis_client
    from storage.db import Database
    from storage.privacy import forget_lead

    if not reference.strip():
        fail("give an e-mail address or an id")
    settings = settings_or_exit()
    configure_logging(settings)
    with embedded_services(settings) as urls:
        database = Database(urls.database_url)
        client = redis_client(urls.redis_url)
        try:
            with database.session() as session:
                try:
                    leads = matching_leads(session, reference)
                except AmbiguousReference as exc:
                    fail(str(exc))
                if not leads:
                    fail(f"no lead matches {reference!r}; nothing was deleted", code=1)
                ids = [lead.id for lead in leads]
            noun = "lead" if len(ids) == 1 else "leads"
            if not yes and not click.confirm(
                    f"Forget {noun} {', '.join(map(str, ids))} (events, features, scores, queued work)?"):
                fail("cancelled; nothing was deleted", code=1)
            client.ping()  # Redis must be reachable before the database is touched: all or nothing
            with database.session(write=True) as session:
                reports = []
                for lead_id in ids:
                    lead = session.get(Lead, lead_id)
                    if lead is not None:  # a webhook deletion may have purged it since
                        reports.append((lead_id, forget_lead(session, lead, redis=client, actor="cli:forget")))
        except redis.RedisError as exc:
            fail(f"could not reach Redis at the configured REDIS_URL ({type(exc).__name__}); nothing was deleted")
        except Exception as exc:  # noqa: BLE001 - the database's own complaint, without a traceback
            fail(f"forget failed: {type(exc).__name__}: {exc}")
        finally:
            database.dispose()
    for lead_id, purged in reports:
        click.echo(f"forgot lead {lead_id}: {purged.get('events', 0)} events, {purged.get('outbox', 0)} queued writes, "
                   f"{purged.get('redis_keys', 0)} Redis keys; scores and outcomes deleted with it")
    click.echo("an audit entry (action privacy.forget, lead id and counts only) records each deletion")
