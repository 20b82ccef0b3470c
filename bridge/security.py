"""Log-in, server-side sessions, CSRF, roles, API tokens and log-in rate limiting for the admin UI and API.

A browser session is a random id in Flask's signed, HttpOnly, SameSite=Lax cookie (Secure when the
public URL is https); the id points at a Redis record, so logging out or removing a user ends the session
at once. The user and role are read from the database on every request. Every unsafe request of the admin
UI must carry the session's CSRF token. The JSON API takes `Authorization: Bearer <token>` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, g, request, session
from werkzeug.exceptions import HTTPException

from bridge.extensions import services
from core.keys import LOGIN_FAILURES_ACCOUNT_KEY, LOGIN_FAILURES_ADDRESS_KEY, SESSION_KEY
from storage.models import User
from storage.users import authenticate, get_user, token_user

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

SESSION_IDLE = timedelta(hours=8)  # a session unused this long ends
SESSION_MAX = timedelta(hours=24)  # and none lives longer than this
LOGIN_WINDOW = 15 * 60  # seconds over which failed log-ins are counted
LOGIN_MAX_PER_ACCOUNT = 5
LOGIN_MAX_PER_ADDRESS = 20
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class TooManyAttempts(HTTPException):
    """Log-in refused because of recent failures (429, with Retry-After)."""

    code = 429
    description = "too many failed log-in attempts; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed log-in attempts; try again in {max(1, retry_after // 60 + 1)} minute(s)")
        self.retry_after = retry_after

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), ("Retry-After", str(self.retry_after))]


@dataclass(frozen=True)
class Principal:
    """Who is making this request, as far as authorization cares."""

    user_id: int
    email: str
    role: str
    via: str  # "session" or "token"
    token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role == "admin"


def init_app(app: Flask) -> None:
    """Cookie settings, the CSRF helper for templates, and security headers on admin pages."""
    settings = app.config["LEADBRIDGE_SETTINGS"]
    app.config.update(
        SESSION_COOKIE_NAME="leadbridge_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Browsers drop Secure cookies on plain http (other than localhost); follow what the public URL says.
        SESSION_COOKIE_SECURE=settings.base_url().startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_MAX,
    )
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["CSRF_FIELD"] = CSRF_FIELD


# --- sessions ---------------------------------------------------------------------------------------


def _session_key(sid: str) -> str:
    return SESSION_KEY.format(digest=hashlib.sha256(sid.encode()).hexdigest())


def session_digest() -> str | None:
    """A name for this browser session that does not reveal its id (None without a session)."""
    sid = session.get("sid")
    return hashlib.sha256(sid.encode()).hexdigest() if isinstance(sid, str) else None


def login(user: User) -> None:
    """Start a fresh session for `user` (a new id and CSRF token, so a planted session id is useless)."""
    sid = secrets.token_urlsafe(32)
    now = int(time.time())
    redis = services().redis
    key = _session_key(sid)
    redis.hset(key, mapping={"user_id": user.id, "created": now})
    redis.expire(key, int(SESSION_IDLE.total_seconds()))
    session.clear()
    session.permanent = True
    session["sid"] = sid
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    g.pop("principal", None)


def logout() -> None:
    """End the current session everywhere (the Redis record goes, then the cookie)."""
    sid = session.get("sid")
    if sid:
        services().redis.delete(_session_key(sid))
    session.clear()
    g.pop("principal", None)


def _session_principal() -> Principal | None:
    sid = session.get("sid")
    if not isinstance(sid, str):
        return None
    redis = services().redis
    key = _session_key(sid)
    record = redis.hgetall(key)
    if not record:
        return None
    created = int(record.get(b"created", b"0"))
    if time.time() - created > SESSION_MAX.total_seconds():
        redis.delete(key)
        return None
    redis.expire(key, int(SESSION_IDLE.total_seconds()))  # sliding idle timeout
    with services().db.session() as db:
        user = get_user(db, int(record[b"user_id"]))
        if user is None:
            redis.delete(key)
            return None
        return Principal(user.id, user.email, user.role, "session")


def _token_principal() -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    with services().db.session(write=True) as db:  # write: it may touch last_used_at
        found = token_user(db, token.strip())
        if found is None:
            return None
        row, user = found
        return Principal(user.id, user.email, user.role, "token", row.id)


def session_principal() -> Principal | None:
    """The logged-in browser user of this request, or None."""
    if "principal" not in g:
        g.principal = _session_principal()
    return g.principal


def token_principal() -> Principal | None:
    """The user of this request's API token, or None."""
    if "principal" not in g:
        g.principal = _token_principal()
    return g.principal


def current() -> Principal | None:
    """Whoever this request was authenticated as (set by the blueprint's check), or None."""
    return g.get("principal")


def sees_personal_data() -> bool:
    """Whether this request may see personal data unmasked in payloads (admins only; viewers see it masked)."""
    principal = current()
    return bool(principal and principal.is_admin)


def actor() -> str:
    """How the audit log names who made this request."""
    principal = current()
    if principal is None:
        return "anonymous"
    return principal.email if principal.via == "session" else f"{principal.email} (api token)"


def admin_only(view: F) -> F:
    """Refuse a view to anyone but an admin (403; the blueprint already refused the unauthenticated)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = current()
        if principal is None:
            abort(401)
        if not principal.is_admin:
            abort(403, "this needs the admin role")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --- CSRF -------------------------------------------------------------------------------------------


def csrf_token() -> str:
    """This session's CSRF token (created on first use, also before log-in so the log-in form has one)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf() -> None:
    """Abort with 400 unless an unsafe request carries the session's CSRF token (form field or header)."""
    if request.method not in UNSAFE_METHODS:
        return
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        log.info("admin.csrf_rejected", extra={"path": request.path})
        abort(400, "the form's CSRF token is missing or does not match your session; reload the page and try again")


# --- log-in with rate limiting ----------------------------------------------------------------------


def _failure_keys(email: str) -> tuple[str, str]:
    # Hash the e-mail: a Redis key listing must not show who tried to log in.
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return (LOGIN_FAILURES_ACCOUNT_KEY.format(digest=account),
            LOGIN_FAILURES_ADDRESS_KEY.format(address=request.remote_addr or "unknown"))


def check_login_allowed(email: str) -> None:
    """Raise TooManyAttempts when this account or this address failed too often recently."""
    redis = services().redis
    account_key, address_key = _failure_keys(email)
    pipe = redis.pipeline()
    pipe.get(account_key)
    pipe.ttl(account_key)
    pipe.get(address_key)
    pipe.ttl(address_key)
    account_fails, account_ttl, address_fails, address_ttl = pipe.execute()
    if int(account_fails or 0) >= LOGIN_MAX_PER_ACCOUNT:
        raise TooManyAttempts(max(int(account_ttl), 1))
    if int(address_fails or 0) >= LOGIN_MAX_PER_ADDRESS:
        raise TooManyAttempts(max(int(address_ttl), 1))


def _record_failure(email: str) -> None:
    redis = services().redis
    pipe = redis.pipeline()
    for key in _failure_keys(email):
        # The window starts at the first failure (SET NX with a TTL, then count; works on Redis 6.2 too).
        pipe.set(key, 0, ex=LOGIN_WINDOW, nx=True)
        pipe.incr(key)
    pipe.execute()


def attempt_login(email: str, password: str) -> User | None:
    """Check the rate limit, then the password; start a session on success. None when they do not match."""
    check_login_allowed(email)
    with services().db.session(write=True) as db:
        user = authenticate(db, email, password)
    if user is None:
        _record_failure(email)
        log.info("admin.login_failed", extra={"address": request.remote_addr})
        return None
    services().redis.delete(_failure_keys(email)[0])
    login(user)
    log.info("admin.login", extra={"user_id": user.id})
    return user
