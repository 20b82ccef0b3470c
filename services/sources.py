"""Webhook source operations: create, enable/disable, rotate the secret, recent deliveries, setup steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services import Conflict, OperationError, clean_text, get_row
from core.keys import SECRET_ONCE_KEY
from core.records import utcnow
from core.settings import Settings
from storage import sources as store
from storage.audit import record
from storage.crypto import CryptoError, decrypt, encrypt
from storage.models import InboxEvent, Source

MAX_OVERLAP_HOURS = 24 * 30
SHOW_ONCE_SECONDS = 600  # long enough to follow the redirect (or come back from a slow network), no longer


@dataclass(frozen=True)
class SourceInfo(store.SourceSettings):
    """A source as the admin pages and the API show it (never with its secret)."""

    webhook_url: str
    secret_hint: str
    previous_secret_valid_until: datetime | None
    created_at: datetime
    last_event_at: datetime | None
    events_24h: int


def _info(session: Session, settings: Settings, source: Source, now: datetime | None = None) -> SourceInfo:
    moment = now or utcnow()
    last, count = session.execute(
        select(func.max(InboxEvent.received_at),
               func.count().filter(InboxEvent.received_at >= moment - timedelta(hours=24)))
        .where(InboxEvent.source_id == source.id)
    ).one()
    return SourceInfo(
        id=source.id, name=source.name, kind=source.kind, enabled=source.enabled, org_id=source.org_id,
        signature_version=source.signature_version,
        webhook_url=settings.base_url() + f"/webhooks/{source.kind}/{source.slug}",
        secret_hint=store.secret_hint(source),
        previous_secret_valid_until=store.previous_secret_valid_until(source, moment),
        created_at=source.created_at, last_event_at=last, events_24h=int(count or 0),
    )


def _source(session: Session, source_id: int) -> Source:
    return get_row(session, Source, source_id, "source")


def _state(source: Source) -> dict[str, Any]:
    return {"name": source.name, "kind": source.kind, "enabled": source.enabled, "org_id": source.org_id,
            "signature_version": source.signature_version}


def _rotation_state(source: Source) -> dict[str, Any]:
    """What a rotation changes, for the audit log. The key names avoid the word "secret": the audit log redacts
    any value under such a key, and these are neither secrets nor derived from one."""
    return {"old_key_accepted_until": (source.previous_secret_expires_at.isoformat()
                                       if source.previous_secret_expires_at else None)}


def list_sources(session: Session, settings: Settings) -> list[SourceInfo]:
    """Every source with its URL, masked secret and last-24-hour event count."""
    return [_info(session, settings, s) for s in session.scalars(select(Source).order_by(Source.id))]


def get_source(session: Session, settings: Settings, source_id: int) -> SourceInfo:
    """One source, or NotFound."""
    return _info(session, settings, _source(session, source_id))


def create_source(
    session: Session, settings: Settings, actor: str, *, kind: str, name: str, secret: str | None = None,
    org_id: str | None = None, signature_version: str = "v3",
) -> tuple[SourceInfo, str]:
    """Create a source; returns it and its plaintext secret (shown to the admin this once)."""
    clean_name = clean_text(name, "name", max_length=100)
    clean_org = clean_text(org_id, "org id", max_length=64, required=False)
    clean_secret = clean_text(secret, "secret", max_length=512, required=False)
    if clean_name and session.scalars(select(Source).where(Source.name == clean_name)).first() is not None:
        raise Conflict(f"a source named {clean_name!r} already exists")
    try:
        view = store.create_source(session, kind=kind, name=clean_name or "", secret=clean_secret,
                                   org_id=clean_org, signature_version=signature_version)
    except store.SourceError as exc:
        raise OperationError(str(exc)) from None
    source = session.get(Source, view.id)
    assert source is not None
    record(session, actor=actor, action="source.create", target=f"source:{source.id}", after=_state(source))
    assert view.secret is not None
    return _info(session, settings, source), view.secret


def set_enabled(session: Session, settings: Settings, actor: str, source_id: int, enabled: bool) -> SourceInfo:
    """Enable or disable a source (a disabled source's deliveries get 403)."""
    source = _source(session, source_id)
    before = _state(source)
    source.enabled = bool(enabled)
    if before["enabled"] != source.enabled:
        record(session, actor=actor, action="source.enable" if enabled else "source.disable",
               target=f"source:{source.id}", before=before, after=_state(source))
    return _info(session, settings, source)


def rotate_secret(
    session: Session, settings: Settings, actor: str, source_id: int, *, overlap_hours: float | None = None,
    secret: str | None = None,
) -> tuple[SourceInfo, str]:
    """Give a source a new secret; the old one keeps working for the overlap. Returns the new plaintext."""
    source = _source(session, source_id)
    hours = settings.secret_rotation_overlap_hours if overlap_hours is None else overlap_hours
    if not 0 <= hours <= MAX_OVERLAP_HOURS:
        raise OperationError(f"the overlap must be between 0 and {MAX_OVERLAP_HOURS} hours")
    clean_secret = clean_text(secret, "secret", max_length=512, required=False)
    before = _rotation_state(source)
    try:
        view = store.rotate_source_secret(source, overlap=timedelta(hours=hours), secret=clean_secret)
    except store.SourceError as exc:
        raise OperationError(str(exc)) from None
    session.flush()
    info = _info(session, settings, source)
    record(session, actor=actor, action="source.rotate_secret", target=f"source:{source.id}",
           before=before, after={**_rotation_state(source), "overlap_hours": hours})
    assert view.secret is not None
    return info, view.secret


def keep_secret_to_show(redis: Redis, owner: str, source_id: int, secret: str, *, created: bool) -> None:
    """Keep a new secret (encrypted, for 10 minutes) for the page the admin's browser is sent to next."""
    value = encrypt(json.dumps({"secret": secret, "created": bool(created)}))
    redis.set(SECRET_ONCE_KEY.format(digest=owner, source=source_id), value, ex=SHOW_ONCE_SECONDS)


def take_secret_to_show(redis: Redis, owner: str, source_id: int) -> tuple[str, bool] | None:
    """The kept secret and whether the source was just created, deleted as it is read (None: shown already)."""
    pipe = redis.pipeline(transaction=True)  # read and delete together: a second tab gets nothing
    key = SECRET_ONCE_KEY.format(digest=owner, source=source_id)
    pipe.get(key)
    pipe.delete(key)
    raw, _ = pipe.execute()
    if raw is None:
        return None
    try:
        kept = json.loads(decrypt(raw.decode() if isinstance(raw, bytes) else str(raw)))
    except (CryptoError, ValueError):  # written under another encryption key: as good as gone
        return None
    return str(kept["secret"]), bool(kept["created"])


def recent_events(session: Session, source_id: int, limit: int = 20) -> list[InboxEvent]:
    """The newest events a source delivered."""
    _source(session, source_id)
    query = (select(InboxEvent).where(InboxEvent.source_id == source_id)
             .order_by(InboxEvent.id.desc()).limit(max(1, min(limit, 200))))
    return list(session.scalars(query))


def status_counts(session: Session, source_id: int) -> dict[str, int]:
    """How many of a source's events are in each inbox status."""
    rows = session.execute(select(InboxEvent.status, func.count()).where(InboxEvent.source_id == source_id)
                           .group_by(InboxEvent.status))
    return {status: int(count) for status, count in rows}


def setup_steps(info: SourceInfo) -> list[str]:
    """Copyable steps for configuring the vendor side of a source."""
    url = info.webhook_url
    if info.kind == "hubspot":
        return [
            ("In your HubSpot developer account open the app that holds the webhook subscriptions "
            "(Apps > your app > Webhooks; for a legacy private app: Settings > Integrations > Private Apps > Webhooks)."),
            f"Set the Target URL to: {url}",
            ("Create subscriptions for contact.creation, contact.propertyChange (email, firstname, lastname, jobtitle, "
            "company, country, lifecyclestage), contact.deletion, contact.privacyDeletion, contact.merge, "
            "contact.associationChange, company.creation, company.propertyChange and deal.propertyChange (dealstage)."),
            ("HubSpot signs every request with the app's client secret (Auth tab). This source must use that secret: "
            "if it was created with a generated one, rotate the secret here and paste the client secret."),
            "Keep the concurrency at 10 or less; leadbridge answers within milliseconds and queues the work.",
            (f"Signature version: {info.signature_version} "
            "(v3 for current apps; v1/v2 only for apps that still send the older headers)."),
        ] + ([f"Deliveries from any portal other than {info.org_id} are refused."] if info.org_id else [])
    if info.kind == "salesforce":
        return [
            "Salesforce Setup > Process Automation > Outbound Messages > New Outbound Message.",
            "Object: Lead (create a second message for Contact if you score contacts too).",
            f"Endpoint URL: {url}",
            ("Fields to send: Id, Email, FirstName, LastName, Company, Title, Country, Industry, NumberOfEmployees, "
            "Status, LeadSource, LastModifiedDate."),
            "Send it from a record-triggered Flow (Action: Outbound Message) on create and on update.",
            (f"Messages are accepted only from organization {info.org_id}; the URL itself is the shared secret, "
            "so treat it like a password."),
            ("JSON relays (Flow HTTP callouts, Platform Event or CDC relays) post to the same URL with "
            "Content-Type: application/json and a header X-Leadbridge-Signature: t=<unix seconds>,v1=<hex "
            "HMAC-SHA256 of '<t>.' + body with this source's secret>."),
        ]
    return [
        f"POST batches of Segment-style events (identify, track, page) as JSON to: {url}",
        "Body: {\"batch\": [ ... ]} with up to 500 events, a JSON array, or a single event object.",
        ("Sign every request with the Standard Webhooks scheme using this source's secret (whsec_...): headers "
        "webhook-id, webhook-timestamp (unix seconds) and webhook-signature."),
        ("Python: from standardwebhooks import Webhook; headers = {'webhook-id': msg_id, 'webhook-timestamp': "
        "str(ts), 'webhook-signature': Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, timezone.utc), "
        "body)}"),
        "Retry on any non-2xx answer; repeated deliveries (same messageId) are answered 200 and stored once.",
    ]
