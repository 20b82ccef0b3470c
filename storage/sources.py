"""Webhook sources: create, list, enable/disable, rotate secrets, and find the secrets valid right now."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from core.records import utcnow
from storage.crypto import decrypt, encrypt, is_encrypted, mask
from storage.models import Source

KINDS = ("hubspot", "salesforce", "events")
SIGNATURE_VERSIONS = ("v1", "v2", "v3")


class SourceError(ValueError):
    """A source operation was refused; the message says why."""


@dataclass(frozen=True)
class SourceView:
    """What callers see of a source (the secret only when it was just created or rotated)."""

    id: int
    name: str
    kind: str
    slug: str
    enabled: bool
    org_id: str | None
    signature_version: str
    created_at: datetime
    secret: str | None = None

    def webhook_path(self) -> str:
        """The path webhooks for this source are posted to."""
        return f"/webhooks/{self.kind}/{self.slug}"


def _view(source: Source, *, with_secret: bool = False) -> SourceView:
    return SourceView(
        id=source.id, name=source.name, kind=source.kind, slug=source.slug, enabled=source.enabled,
        org_id=source.org_id, signature_version=source.signature_version, created_at=source.created_at,
        secret=decrypt(source.secret) if with_secret else None,
    )


def new_secret(kind: str) -> str:
    """A strong random webhook secret (256 bits); Standard Webhooks secrets use their `whsec_<base64>` form."""
    if kind == "events":
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(32)


def check_secret(kind: str, secret: str) -> None:
    """Refuse secrets that are too short, or that Standard Webhooks cannot use."""
    if len(secret) < 16:
        raise SourceError("a secret must be at least 16 characters")
    if kind == "events":
        try:
            raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise SourceError("an events secret must be base64, optionally prefixed with whsec_") from None
        if len(raw) < 16:
            raise SourceError("an events secret must decode to at least 16 bytes")


def create_source(
    session: Session,
    *,
    kind: str,
    name: str,
    secret: str | None = None,
    org_id: str | None = None,
    signature_version: str = "v3",
) -> SourceView:
    """Create a source; returns it with its secret (the only time the secret is shown)."""
    if kind not in KINDS:
        raise SourceError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    name = name.strip()
    if not name or len(name) > 100:
        raise SourceError("name must be 1-100 characters")
    if signature_version not in SIGNATURE_VERSIONS:
        raise SourceError(f"signature version must be one of {', '.join(SIGNATURE_VERSIONS)}")
    if secret is not None:
        check_secret(kind, secret)
    if kind == "salesforce" and not org_id:
        raise SourceError("a salesforce source needs --org-id (Outbound Messages are checked against it)")
    if kind == "hubspot" and org_id and not org_id.isdigit():
        raise SourceError("a HubSpot org id is the numeric portal id")
    if session.scalars(select(Source).where(Source.name == name)).first() is not None:
        raise SourceError(f"a source named {name!r} already exists")
    plaintext = secret or new_secret(kind)
    source = Source(
        name=name, kind=kind, slug=secrets.token_urlsafe(16), secret=encrypt(plaintext),
        org_id=(org_id or None), signature_version=signature_version, enabled=True, created_at=utcnow(),
    )
    session.add(source)
    session.flush()
    return replace(_view(source), secret=plaintext)


def list_sources(session: Session) -> list[SourceView]:
    """All sources, oldest first, without secrets."""
    return [_view(s) for s in session.scalars(select(Source).order_by(Source.id))]


def get_source(session: Session, name_or_id: str) -> Source:
    """Find a source by name or numeric id, or raise SourceError."""
    query = select(Source).where(Source.name == name_or_id)
    if name_or_id.isdigit():
        query = select(Source).where((Source.name == name_or_id) | (Source.id == int(name_or_id)))
    source = session.scalars(query).first()
    if source is None:
        raise SourceError(f"no source named {name_or_id!r}")
    return source


def set_enabled(session: Session, name_or_id: str, enabled: bool) -> SourceView:
    """Enable or disable a source (a disabled source's deliveries are refused with 403)."""
    source = get_source(session, name_or_id)
    source.enabled = enabled
    return _view(source)


def rotate_secret(
    session: Session, name_or_id: str, *, overlap: timedelta, secret: str | None = None, now: datetime | None = None
) -> SourceView:
    """Give a source a new secret; the old one stays valid for `overlap` so no delivery is refused mid-change."""
    return rotate_source_secret(get_source(session, name_or_id), overlap=overlap, secret=secret, now=now)


def rotate_source_secret(
    source: Source, *, overlap: timedelta, secret: str | None = None, now: datetime | None = None
) -> SourceView:
    """rotate_secret for a source already loaded."""
    if secret is not None:
        check_secret(source.kind, secret)
    plaintext = secret or new_secret(source.kind)
    source.previous_secret = source.secret if is_encrypted(source.secret) else encrypt(source.secret)
    source.previous_secret_expires_at = (now or utcnow()) + overlap
    source.secret = encrypt(plaintext)
    return replace(_view(source), secret=plaintext)


def valid_secrets(source: Source, now: datetime | None = None) -> list[str]:
    """The secrets a delivery may be signed with right now (current, plus the previous one during overlap)."""
    found = [decrypt(source.secret)]
    if source.previous_secret and previous_secret_valid_until(source, now):
        found.append(decrypt(source.previous_secret))
    return found


def secret_hint(source: Source) -> str:
    """The current secret masked for display (only its last characters)."""
    return mask(decrypt(source.secret))


def previous_secret_valid_until(source: Source | ReceivingSource, now: datetime | None = None) -> datetime | None:
    """When the rotated-out secret stops being accepted, or None when no old secret is valid now."""
    expires = source.previous_secret_expires_at
    if source.previous_secret and expires is not None and (now or utcnow()) < expires:
        return expires
    return None


def encrypt_plaintext_secrets(session: Session) -> int:
    """Encrypt secrets stored before encryption at rest existed; returns how many sources changed."""
    changed = 0
    for source in session.scalars(select(Source)):
        touched = False
        if not is_encrypted(source.secret):
            source.secret = encrypt(source.secret)
            touched = True
        if source.previous_secret and not is_encrypted(source.previous_secret):
            source.previous_secret = encrypt(source.previous_secret)
            touched = True
        changed += touched
    return changed


@dataclass(frozen=True)
class SourceSettings:
    """A source's id and settings: what every view of a source starts with."""

    id: int
    name: str
    kind: str
    enabled: bool
    org_id: str | None
    signature_version: str


@dataclass(frozen=True)
class ReceivingSource(SourceSettings):
    """What the webhook endpoint needs of a source, its secrets decrypted (read afresh for every delivery)."""

    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None

    def valid_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a delivery may be signed with right now (the old one only until its overlap ends)."""
        if self.previous_secret and previous_secret_valid_until(self, now):
            return [self.secret, self.previous_secret]
        return [self.secret]


_RECEIVING = select(
    Source.id, Source.name, Source.kind, Source.enabled, Source.org_id, Source.signature_version, Source.secret,
    Source.previous_secret, Source.previous_secret_expires_at,
).where(Source.slug == bindparam("slug"), Source.kind == bindparam("kind"))


def receiving_source(connection: Connection, kind: str, slug: str) -> ReceivingSource | None:
    """The source a webhook URL points at, ready to verify deliveries, or None.

    Read on every delivery (so a disabled source or a rotated secret counts at once), with a Core query
    that costs a tenth of an ORM session's, and secrets decrypted once per process.
    """
    row = connection.execute(_RECEIVING, {"slug": slug, "kind": kind}).first()
    if row is None:
        return None
    return ReceivingSource(
        id=row.id, name=row.name, kind=row.kind, enabled=bool(row.enabled), org_id=row.org_id,
        signature_version=row.signature_version, secret=_plaintext(row.secret),
        previous_secret=_plaintext(row.previous_secret) if row.previous_secret else None,
        previous_secret_expires_at=row.previous_secret_expires_at,
    )


@lru_cache(maxsize=1024)
def _plaintext(stored: str) -> str:
    # Fernet tokens are authenticated: a stored value decrypts to one plaintext under the process's key.
    return decrypt(stored)


def find_by_slug(session: Session, kind: str, slug: str) -> Source | None:
    """The source a webhook URL points at, or None."""
    return session.scalars(select(Source).where(Source.slug == slug, Source.kind == kind)).first()
