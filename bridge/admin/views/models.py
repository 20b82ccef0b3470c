"""Model: versions with metrics against the baselines, feature importance, drift, promote and roll back."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.pages import bp, db
from services import models as ops
from bridge.extensions import services
from storage.models import ModelVersion


@bp.get("/models")
def models() -> ResponseReturnValue:
    """Every registered version, the champion first in mind."""
    with db() as session:
        infos = [ops.describe(row) for row in ops.list_models(session)]
    champions = {info.row.kind: info for info in infos if info.row.status == "champion"}
    return render_template("admin/models.html", infos=infos, champions=champions, metric_names=ops.METRICS,
                           lower_is_better=ops.LOWER_IS_BETTER)


def _announce(row: ModelVersion, label: str) -> None:
    if ops.announce_champion(services().redis, row):
        flash(label + " Workers switch to it with their next task.", "info")
    else:
        flash(label + " Redis could not be told, so workers keep the old model until it can.", "error")


@bp.post("/models/<version>/promote")
@security.admin_only
def promote_model(version: str) -> ResponseReturnValue:
    """Make a version the champion of its kind."""
    with db(write=True) as session:
        row = ops.promote(session, security.actor(), version)
        label = f"{row.version} is now the {row.kind} champion."
    _announce(row, label)
    return redirect(url_for("admin.models"))


@bp.post("/models/rollback")
@security.admin_only
def rollback_model() -> ResponseReturnValue:
    """Restore the previous champion of a kind."""
    with db(write=True) as session:
        row = ops.rollback(session, security.actor(), request.form.get("kind", "lead"))
        label = f"Rolled back: {row.version} is the {row.kind} champion again."
    _announce(row, label)
    return redirect(url_for("admin.models"))
