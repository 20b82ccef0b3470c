"""Field mapping: which CRM fields receive leadbridge's outputs, and a test write to one record."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin import pages
from bridge.admin.pages import bp, db
from services import mappings as ops
from bridge.extensions import services


@bp.get("/mappings")
def mappings() -> ResponseReturnValue:
    """Every CRM object's output -> field table."""
    with db() as session:
        groups = ops.all_mappings(session)
    return render_template("admin/mappings.html", groups=groups, result=None)


@bp.post("/mappings/<crm>/<object_type>")
@security.admin_only
def save_mappings(crm: str, object_type: str) -> ResponseReturnValue:
    """Save one object's field names (empty = do not write that output)."""
    names = {output: request.form.get(f"field_{output}", "") for output in ops.OUTPUTS
             if f"field_{output}" in request.form}
    with db(write=True) as session:
        ops.save_mappings(session, security.actor(), crm, object_type, names)
    return pages.done(f"Field mapping for {crm} {object_type} saved.", "admin.mappings")


@bp.post("/mappings/test-write")
@security.admin_only
def test_write() -> ResponseReturnValue:
    """Write leadbridge's fields to one CRM record now and show what the CRM answered."""
    with db(write=True) as session:
        result = ops.trial_write(session, services().settings, services().redis, security.actor(),
                                 crm=request.form.get("crm", ""), record_id=request.form.get("record_id", ""),
                                 object_type=request.form.get("object_type") or None)
        groups = ops.all_mappings(session)
    return render_template("admin/mappings.html", groups=groups, result=result)
