"""Sources: list, create (secret shown once), enable/disable, rotate the secret, recent deliveries."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.pages import bp, db
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
    """Create a source and show its secret this one time."""
    settings = services().settings
    with db(write=True) as session:
        info, secret = ops.create_source(
            session, settings, security.actor(), kind=request.form.get("kind", ""), name=request.form.get("name", ""),
            secret=request.form.get("secret") or None, org_id=request.form.get("org_id") or None,
            signature_version=request.form.get("signature_version") or "v3",
        )
    return render_template("admin/source_secret.html", source=info, secret=secret, steps=ops.setup_steps(info),
                           created=True), 201


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
    """Give a source a new secret (shown once); the old one keeps working for the overlap."""
    hours = form_float("overlap_hours", label="the overlap", low=0, high=ops.MAX_OVERLAP_HOURS)
    with db(write=True) as session:
        info, secret = ops.rotate_secret(session, services().settings, security.actor(), source_id,
                                         overlap_hours=hours, secret=request.form.get("secret") or None)
    return render_template("admin/source_secret.html", source=info, secret=secret, steps=ops.setup_steps(info),
                           created=False)
