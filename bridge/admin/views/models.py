"""Model: versions with metrics against the baselines, feature importance, drift, promote and roll back; drift and
live quality over time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin import charts
from bridge.admin.pages import bp, db
from bridge.extensions import services
from core.records import utcnow
from services import learning
from services import models as ops
from storage.models import ModelVersion


@bp.get("/models")
def models() -> ResponseReturnValue:
    """Every registered version, the champion first in mind."""
    now = utcnow()
    with db() as session:
        infos = [ops.describe(row) for row in ops.list_models(session)]
        quality = learning.live_quality(session, now=now)
        drift = learning.drift_history(session, now=now)
    champions = {info.row.kind: info for info in infos if info.row.status == "champion"}
    return render_template("admin/models.html", infos=infos, champions=champions, metric_names=ops.METRICS,
                           lower_is_better=ops.LOWER_IS_BETTER, quality=quality, drift=drift,
                           learning_charts=learning_charts(quality, drift))


MODEL_LINES = {"champion": ("champion (XGBoost)", "s1"), "online": ("online learner", "s3"), "blend": ("blend", "s2")}
FEATURE_CSS = ("s2", "s3", "s5", "s6")
MARK_STYLE = {"drift_alert": ("drift alert", "m1"), "adwin_change": ("ADWIN change", "m2"),
              "retrain_promoted": ("retrained: promoted", "m3"), "retrain_kept": ("retrained: champion kept", "m4"),
              "blend_on": ("blend on", "m5"), "blend_off": ("blend off", "m6")}


def _marks(events: list[learning.ModelEventMark]) -> tuple[list[charts.Marker], list[tuple[str, str]]]:
    """The chart's marks and their key entries (kinds present only, with how many)."""
    marks = [charts.Marker(e.at, e.text, MARK_STYLE[e.mark][1]) for e in events if e.mark in MARK_STYLE]
    counts = {kind: sum(1 for e in events if e.mark == kind) for kind in MARK_STYLE}
    keys = [(f"{text} ({counts[kind]})" if counts[kind] > 1 else text, css)
            for kind, (text, css) in MARK_STYLE.items() if counts[kind]]
    return marks, keys


def learning_charts(quality: learning.LiveQuality, drift: learning.DriftHistory) -> dict[str, Any]:
    """The two charts of "Drift and live quality" on one weekly axis, each point at the end of its week, the events
    marked on both; with their keys."""
    step = timedelta(days=quality.step_days)
    starts = [end - step for end in quality.week_ends]
    marks, mark_keys = _marks(quality.events)
    lines = [charts.Line(MODEL_LINES[m.model][0], [p.roc_auc for p in m.points], MODEL_LINES[m.model][1])
             for m in quality.models]
    out: dict[str, Any] = {
        "quality": charts.time_chart(starts, step, lines, label=f"live ROC AUC per model, {quality.window_days}-day "
                                     "windows", unit=lambda v: f"{v:.2f}", marks=marks, at_end=True, legend=False),
        "quality_key": charts.key([(line.label, line.css) for line in lines], mark_keys),
    }
    # Each week's newest drift check.
    newest: list[learning.DriftPoint | None] = []
    for start, end in zip(starts, drift.week_ends):
        inside = [c for c in drift.checks if start <= c.at < end or (c.at == end and end == drift.week_ends[-1])]
        newest.append(inside[-1] if inside else None)
    drift_lines = [charts.Line("score", [c.score_psi if c else None for c in newest], "s1")]
    for n, name in enumerate(drift.features):
        values = [next((f.psi for f in c.features if f.feature == name), None) if c else None for c in newest]
        drift_lines.append(charts.Line(name, values, FEATURE_CSS[n % len(FEATURE_CSS)]))
    if drift.threshold is not None:
        drift_lines.append(charts.Line(f"alert threshold {drift.threshold:g}", [drift.threshold] * len(starts),
                                       "s4 dashed"))
    drift_marks, drift_keys = _marks(drift.events)
    out["drift"] = charts.time_chart(starts, step, drift_lines, label="PSI of the score and the top features per week",
                                     unit=lambda v: f"{v:.3g}", marks=drift_marks, at_end=True, legend=False)
    out["drift_key"] = charts.key([(line.label, line.css) for line in drift_lines], drift_keys)
    return out


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
