"""Bands and outcomes: the score bands (names, cut-offs, each band's share of the last 7 days' leads) and what counts
as converted per CRM; both editable by admins, each change audited (services.bands)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.pages import bp, db, done
from bridge.extensions import services
from core.outcome_rules import CRITERIA, describe
from services import OperationError
from services import bands as ops

EMPTY_ROWS = 2  # blank rows under the bands, so a band can be added without scripting


@bp.get("/bands")
def bands() -> ResponseReturnValue:
    """The band editor and the outcome definition."""
    with db() as session:
        view = ops.bands_view(session)
        outcomes = ops.outcomes_view(session)
    return render_template("admin/bands.html", view=view, outcomes=outcomes, empty_rows=EMPTY_ROWS)


def _band_rows() -> list[dict[str, Any]]:
    """The bands the form posted (name_N / value_N pairs, blank rows left out), top first."""
    names = request.form.getlist("name")
    values = request.form.getlist("value")
    return [{"name": n.strip(), "value": v.strip()} for n, v in zip(names, values) if n.strip() or v.strip()]


@bp.post("/bands")
@security.admin_only
def save_bands() -> ResponseReturnValue:
    """Store the posted band set (or a preset); the workers' cut-offs follow."""
    preset = request.form.get("preset") or None
    data: Any = preset or {"mode": request.form.get("mode", ""), "bands": _band_rows()}
    with db(write=True) as session:
        version = ops.save_bands(session, security.actor(), data)
    svc = services()
    note = "" if ops.publish_bands(svc.db, svc.redis) else " The workers' cut-offs refresh within 5 minutes."
    return done(f"Bands v{version} saved; the tier field shows them from the next write.{note}", "admin.bands")


@bp.post("/bands/outcomes/<crm>")
@security.admin_only
def save_outcomes(crm: str) -> ResponseReturnValue:
    """Store what counts as converted in one CRM; re-labels its history and queues a retraining."""
    if crm not in CRITERIA:
        raise OperationError(f"unknown CRM {crm!r}", 404, "not_found")
    form = request.form
    data: dict[str, Any] = {"lead_status": [s for s in form.get("lead_status", "").split(",") if s.strip()]}
    if crm == "hubspot":
        data["lifecycle_stage"] = form.get("lifecycle_stage") or None
        data["deal_won"] = form.get("deal_won") == "on"
    else:
        data["lead_converted"] = form.get("lead_converted") == "on"
        data["opportunity_won"] = form.get("opportunity_won") == "on"
    svc = services()
    with db(write=True) as session:
        version, counts = ops.save_outcome_definition(session, security.actor(), crm, data, svc.redis)
        text = describe(crm, ops.outcomes_view(session).rules[crm])
    queued = ops.retrain_after(svc.celery, crm, version)
    retrain = ("A retraining is queued on the new labels." if queued else
               "No worker took the retraining: run `leadbridge model retrain`.")
    return done(f"Outcome definition v{version}: {crm} converted = {text}. Re-labelled: {counts['dropped']} outcomes "
                f"dropped, {counts['added']} added, {counts['after']} now. {retrain}", "admin.bands")
