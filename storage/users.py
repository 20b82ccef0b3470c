"""Admin UI users and API tokens: argon2id password hashes, tokens stored as SHA-256 hashes and shown once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.records import utcnow
from storage.models import ApiToken, User

ROLES = ("admin", "viewer")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a cap keeps a hostile log-in form from costing much
TOKEN_PREFIX = "lbt_"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
# RFC 9106's second recommended option (argon2id, 64 MiB, t=3, p=4): about 0.2 s per hash on a laptop core.
_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified when an e-mail is unknown, so a failed log-in takes as long whether or not the account exists.
    return _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user or token operation was refused; the message says why."""


@dataclass(frozen=True)
class NewToken:
    """A freshly created API token: `token` is the only time the plaintext exists outside the caller."""

    id: int
    name: str
    token: str
    user_id: int
    created_at: datetime


def normalise_email(email: str) -> str:
    """Lower-case, trimmed e-mail; raises UserError when it does not look like one."""
    value = (email or "").strip().lower()
    if not _EMAIL.match(value) or len(value) > 320:
        raise UserError(f"{email!r} is not an e-mail address")
    return value


def check_password(password: str) -> None:
    """Refuse passwords too short or absurdly long."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"a password must be at most {MAX_PASSWORD} characters")


def check_role(role: str) -> None:
    """Refuse unknown roles."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted, parameters embedded)."""
    return _hasher.hash(password)


def create_user(session: Session, *, email: str, password: str, role: str) -> User:
    """Add a user with a hashed password; refuses duplicates, weak passwords and unknown roles."""
    address = normalise_email(email)
    check_role(role)
    check_password(password)
    if session.scalars(select(User).where(User.email == address)).first() is not None:
        raise UserError(f"a user {address} already exists")
    user = User(email=address, password_hash=hash_password(password), role=role, created_at=utcnow())
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user whose e-mail and password match, or None (same work either way)."""
    try:
        address = normalise_email(email)
    except UserError:
        address = ""
    user = session.scalars(select(User).where(User.email == address)).first() if address else None
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _hasher.verify(user.password_hash if user is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def get_user(session: Session, user_id: int) -> User | None:
    """A user by id."""
    return session.get(User, user_id)


def find_user(session: Session, email_or_id: str) -> User:
    """A user by e-mail or numeric id, or raise UserError."""
    if email_or_id.isdigit():
        user = session.get(User, int(email_or_id))
    else:
        user = session.scalars(select(User).where(User.email == email_or_id.strip().lower())).first()
    if user is None:
        raise UserError(f"no user {email_or_id!r}")
    return user


def list_users(session: Session) -> list[User]:
    """All users, oldest first."""
    return list(session.scalars(select(User).order_by(User.id)))


def admin_count(session: Session) -> int:
    """How many admins exist."""
    return int(session.scalar(select(func.count()).select_from(User).where(User.role == "admin")) or 0)


def set_role(session: Session, user: User, role: str) -> User:
    """Change a user's role; the last admin cannot be demoted."""
    check_role(role)
    if user.role == "admin" and role != "admin" and admin_count(session) <= 1:
        raise UserError("the last admin cannot be demoted; make another admin first")
    user.role = role
    return user


def set_password(session: Session, user: User, password: str) -> User:
    """Replace a user's password."""
    check_password(password)
    user.password_hash = hash_password(password)
    return user


def delete_user(session: Session, user: User) -> None:
    """Remove a user (and their tokens); the last admin cannot be removed."""
    if user.role == "admin" and admin_count(session) <= 1:
        raise UserError("the last admin cannot be removed")
    session.delete(user)


# --- API tokens -------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """SHA-256 of a token: tokens are 256 random bits, so a fast hash is as good as a slow one here."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> NewToken:
    """Make an API token for `user` (it acts with the user's role); the plaintext is returned only now."""
    label = (name or "").strip()
    if not label or len(label) > 100:
        raise UserError("a token name must be 1-100 characters")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=label, token_hash=token_hash(plaintext), created_at=utcnow())
    session.add(row)
    session.flush()
    return NewToken(id=row.id, name=row.name, token=plaintext, user_id=user.id, created_at=row.created_at)


def token_user(session: Session, token: str, now: datetime | None = None) -> tuple[ApiToken, User] | None:
    """The live token and its user for a presented token, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = token_hash(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    # The lookup is by hash; compare again in constant time so timing says nothing about near misses.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    user = session.get(User, row.user_id)
    if user is None:
        return None
    moment = now or utcnow()
    # Touch last_used_at at most once a minute: an API client must not turn every read into a write.
    if row.last_used_at is None or moment - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = moment
    return row, user


def list_tokens(session: Session, user: User | None = None) -> list[ApiToken]:
    """Tokens (of one user, or all), newest first."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int, *, owner: User | None = None) -> ApiToken:
    """Revoke a token (only the owner's, when `owner` is given)."""
    row = session.get(ApiToken, token_id)
    if row is None or (owner is not None and row.user_id != owner.id):
        raise UserError(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
