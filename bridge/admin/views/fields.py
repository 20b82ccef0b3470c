"""Fields: the company's own CRM properties as model features (the feature schema), discovery and history."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.forms import form_int
from bridge.admin.pages import bp, db
from bridge.extensions import services
from core.feature_schema import DEFAULT_TOP_N, FIELD_KINDS, MAX_TOP_N, FeatureSchema
from services import fields as ops

# The map form can be prefilled from the query string (a discovered row's "Map", a mapped row's "Edit").
PREFILL = ("crm", "object_type", "property", "kind", "label", "feature", "top_n", "fit")


@bp.get("/fields")
def fields() -> ResponseReturnValue:
    """The schema in force, the map form, what each configured CRM offers, and the version history."""
    svc = services()
    with db() as session:
        schema = ops.current_schema(session)
        history = ops.history_entries(session, 50)
    discovered = ops.discover_for_page(svc.settings, schema, redis_client=svc.redis)
    prefill = {name: request.args.get(name, "")[:200] for name in PREFILL}
    return render_template("admin/fields.html", schema=schema, history=history, discovered=discovered,
                           prefill=prefill, kinds=FIELD_KINDS, default_top_n=DEFAULT_TOP_N, max_top_n=MAX_TOP_N)


@bp.post("/fields/map")
@security.admin_only
def map_field() -> ResponseReturnValue:
    """Map one property (or change how it is mapped); refusals come back as a message on the page."""
    svc = services()
    form = request.form
    field = ops.make_field(form.get("crm", ""), form.get("object_type", ""), form.get("property", ""),
                           form.get("kind", ""), feature=form.get("feature") or None, label=form.get("label", ""),
                           fit=form.get("fit") == "on",
                           top_n=form_int("top_n", label="top N", low=1, high=MAX_TOP_N, default=DEFAULT_TOP_N) or DEFAULT_TOP_N)
    with db() as session:
        ops.check_mapped_field(session, field)  # refusals that need no CRM come first
    field, warnings = ops.check_in_crm(svc.settings, field, redis_client=svc.redis)
    with db(write=True) as session:
        schema = ops.map_field(session, security.actor(), field, force=form.get("force") == "on")
    _announce(schema, f"Mapped {field.crm} {field.object_type}.{field.property} as {field.kind} feature "
                      f"{field.feature!r}: feature schema version {schema.version}. Models trained from now on can use it; "
                      "workers switch with their next batch.", warnings)
    return redirect(url_for("admin.fields"))


@bp.post("/fields/unmap")
@security.admin_only
def unmap_field() -> ResponseReturnValue:
    """Stop using one property as a feature."""
    form = request.form
    with db(write=True) as session:
        schema = ops.unmap_field(session, security.actor(), form.get("crm", ""), form.get("object_type", ""),
                                 form.get("property", ""), force=form.get("force") == "on")
    _announce(schema, f"Unmapped {form.get('crm')} {form.get('object_type')}.{form.get('property')}: feature "
                      f"schema version {schema.version}. Workers stop reading it with their next batch.", [])
    return redirect(url_for("admin.fields"))


def _announce(schema: FeatureSchema, message: str, warnings: list[str]) -> None:
    if not ops.announce_schema(services().redis, schema):
        warnings = [*warnings, "Redis could not be told; workers pick the change up within a minute."]
    flash(message, "info")
    for warning in warnings:
        flash(warning, "warning")
