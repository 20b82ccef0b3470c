"""Sources: list, create (secret shown once, after a redirect), enable/disable, rotate the secret (confirmed),
recent deliveries."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.pages import bp, db
from services import OperationError
from services import sources as ops
from bridge.admin.forms import form_float
from bridge.extensions import services
from storage.sources import KINDS, SIGNATURE_VERSIONS


@bp.get("/sources")
def sources() -> ResponseReturnValue:
    """All sources and the form to add one."""
    with db() as session:
        rows = ops.list_sources(session, services().settings)
    return render_template("admin/sources.html", sources=rows, kinds=KINDS, versions=SIGNATURE_VERSIONS)


@bp.post("/sources")
@security.admin_only
def create_source() -> ResponseReturnValue:
    """Create a source, then send the browser to the page that shows its secret once (a refresh sends nothing)."""
    svc = services()
    with db(write=True) as session:
        info, secret = ops.create_source(
            session, svc.settings, security.actor(), kind=request.form.get("kind", ""), name=request.form.get("name", ""),
            secret=request.form.get("secret") or None, org_id=request.form.get("org_id") or None,
            signature_version=request.form.get("signature_version") or "v3",
        )
    return _show_secret_next(info.id, secret, created=True)


def _show_secret_next(source_id: int, secret: str, *, created: bool) -> ResponseReturnValue:
    """Post/Redirect/Get: keep the secret for this session's next page, and send the browser there."""
    ops.keep_secret_to_show(services().redis, _owner(), source_id, secret, created=created)
    return redirect(url_for("admin.source_secret", source_id=source_id), 303)


def _owner() -> str:
    # The blueprint only lets logged-in sessions this far, so there is always a session to name.
    owner = security.session_digest()
    if owner is None:
        abort(401)
    return owner


@bp.get("/sources/<int:source_id>/secret")
def source_secret(source_id: int) -> ResponseReturnValue:
    """The secret just created or rotated, shown this once; afterwards the page says it was shown."""
    svc = services()
    with db() as session:
        info = ops.get_source(session, svc.settings, source_id)
    principal = security.current()
    kept = ops.take_secret_to_show(svc.redis, _owner(), source_id) if principal and principal.is_admin else None
    secret, created = kept if kept else (None, False)
    return render_template("admin/source_secret.html", source=info, secret=secret, steps=ops.setup_steps(info),
                           created=created)


@bp.get("/sources/<int:source_id>")
def source(source_id: int) -> ResponseReturnValue:
    """One source: URL, masked secret, setup steps, rotation and its recent deliveries."""
    with db() as session:
        info = ops.get_source(session, services().settings, source_id)
        events = ops.recent_events(session, source_id, limit=25)
        counts = ops.status_counts(session, source_id)
    return render_template("admin/source.html", source=info, steps=ops.setup_steps(info), events=events,
                           counts=counts, overlap=services().settings.secret_rotation_overlap_hours)


@bp.post("/sources/<int:source_id>/enabled")
@security.admin_only
def set_source_enabled(source_id: int) -> ResponseReturnValue:
    """Enable or disable a source."""
    enabled = request.form.get("enabled") == "true"
    with db(write=True) as session:
        info = ops.set_enabled(session, services().settings, security.actor(), source_id, enabled)
    flash(f"Source {info.name!r} {'enabled' if info.enabled else 'disabled'}.", "info")
    return redirect(url_for("admin.source", source_id=source_id))


@bp.post("/sources/<int:source_id>/rotate")
@security.admin_only
def rotate_source_secret(source_id: int) -> ResponseReturnValue:
    """Give a source a new secret (shown once, after a redirect); the old one keeps working for the overlap.

    The form's confirmation box must be ticked: a rotation the vendor side is not told about breaks deliveries
    once the overlap ends, so it is never done by a stray click.
    """
    if request.form.get("confirm") != "yes":
        raise OperationError("tick the box to confirm the rotation: the vendor side must be given the new secret "
                             "before the old one stops working")
    hours = form_float("overlap_hours", label="the overlap", low=0, high=ops.MAX_OVERLAP_HOURS)
    with db(write=True) as session:
        _info, secret = ops.rotate_secret(session, services().settings, security.actor(), source_id,
                                          overlap_hours=hours, secret=request.form.get("secret") or None)
    return _show_secret_next(source_id, secret, created=False)
