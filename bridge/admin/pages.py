"""The admin blueprint: authentication, headers, error pages and the database session every page uses.

Every page needs a logged-in user; every change needs the admin role and the session's CSRF token.
The pages call the same operations (services) as the JSON API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from bridge import security
from bridge.extensions import services
from services import OperationError

bp = Blueprint("admin", __name__, url_prefix="/admin")

PUBLIC_ENDPOINTS = frozenset({"admin.login"})
NAV = (
    ("admin.overview", "Overview", False),
    ("admin.sources", "Sources", False),
    ("admin.mappings", "Field mapping", False),
    ("admin.fields", "Fields", False),
    ("admin.alerts", "Alert rules", False),
    ("admin.deliveries", "Deliveries", False),
    ("admin.dead_letters", "Dead letters", False),
    ("admin.leads", "Leads", False),
    ("admin.models", "Model", False),
    ("admin.bands", "Bands & outcomes", False),
    ("admin.value", "Value", False),
    ("admin.audit", "Audit log", True),
    ("admin.users", "Users", True),
    ("admin.tokens", "API tokens", False),
)


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    """Refuse anonymous visitors (to the log-in page) and unsafe requests without the CSRF token."""
    security.check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if security.session_principal() is None:
        if request.method == "GET":
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        return _error_page(401, "Not logged in", "Your session has ended; log in again.")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    """Admin pages are never cached, framed or sniffed, and run only our own scripts and styles."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    principal = security.current()
    nav = [(endpoint, label) for endpoint, label, admin_only in NAV
           if principal is not None and (principal.is_admin or not admin_only)]
    return {"principal": principal, "nav": nav}


def _error_page(status: int, title: str, message: str) -> ResponseReturnValue:
    return render_template("admin/error.html", status=status, title=title, message=message), status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    """HTML errors for the pages (the rest of the app answers JSON)."""
    response = _error_page(exc.code or 500, exc.name, exc.description or exc.name)
    if exc.code == 429 and isinstance(exc, security.TooManyAttempts):
        body, status = response  # type: ignore[misc]
        return body, status, {"Retry-After": str(exc.retry_after)}
    return response


@bp.errorhandler(OperationError)
def _operation_error(exc: OperationError) -> ResponseReturnValue:
    """An operation refused: a page that cannot be shown says so; a refused form says why on its page."""
    if request.method == "GET":
        return _error_page(exc.status, "Not found" if exc.status == 404 else "Cannot show this", exc.message)
    flash(exc.message, "error")
    return redirect(_back())


def _local(target: str | None) -> str | None:
    # Only ever send the browser to a page of the admin UI on this host (no open redirect).
    parts = urlsplit(target or "")
    if parts.scheme not in ("", "http", "https") or parts.netloc not in ("", request.host):
        return None
    if not parts.path.startswith("/admin") or "\\" in parts.path:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _back() -> str:
    return _local(request.form.get("next")) or _local(request.referrer) or url_for("admin.overview")


def safe_next(target: str | None) -> str:
    """A post-log-in destination inside the admin UI, or the overview."""
    return _local(target) or url_for("admin.overview")


@contextmanager
def db(write: bool = False) -> Iterator[Session]:
    """A database session for a view (committed when the block ends without an error)."""
    with services().db.session(write=write) as session:
        yield session


def done(message: str, endpoint: str, **values: Any) -> ResponseReturnValue:
    """Post/Redirect/Get after a change: say what happened on the next page, and send the browser there."""
    flash(message, "info")
    return redirect(url_for(endpoint, **values))


def pretty_json(value: Any) -> str:
    """A payload as the detail pages show it: indented, keys sorted, non-ASCII kept readable."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
