"""Continual learning as the admin and the API see it: live quality per model, drift over time, the events to mark.

Both series share one time axis: weekly steps ending at `now`, back to where the stored history starts (at most
`weeks` of them), so the models page can draw them one above the other and mark the same events on both.

Live quality (`live_quality`) compares the champion, the online learner and their blend prequentially: each
matured label as each model predicted it before learning it (`prequential_scores`). Every model is measured on the
SAME labels, those all three scored (a label with no champion score, e.g. a lead scored before any champion
existed, has only an online row and is left out, and counted). The point of week k is the ROC AUC, log loss and
calibration error (ECE, 10 bins) of the labels that arrived (by `labelled_at`) in the `window_days` up to the end
of week k: trailing 28-day windows stepped weekly by default, so a point moves with a month of outcomes rather than
a week's handful. A window with fewer than `min_labels` labels, or with only one class, has counts but no metrics.

Drift (`drift_history`) reads the drift checks (`model_events`, kind drift_check): the population stability index
(PSI) of the live score and of each feature against the training data, with the alert threshold. The features
shown are the `top` with the highest latest PSI (each feature's newest measured value: a check that could not
measure a feature does not hide it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.records import utcnow
from scoring.prequential import PrequentialRecord, window_metrics
from storage import prequential as store
from storage.models import ModelEvent

MODELS = store.MODELS  # champion, online, blend
STEP = timedelta(days=7)
WEEKS = 26
WINDOW_DAYS = 28
MIN_LABELS = 20
TOP_FEATURES = 4
MARKED = ("drift_check", "adwin_change", "retrain", "online_serving")
MAX_EVENTS = 20_000
MARK_KINDS = ("drift_alert", "adwin_change", "retrain_promoted", "retrain_kept", "blend_on", "blend_off")


@dataclass(frozen=True)
class ModelEventMark:
    """An event to mark on the charts: what happened (`mark`, one of MARK_KINDS), when, and a sentence."""

    at: datetime
    mark: str
    text: str
    model_version: str | None


@dataclass(frozen=True)
class QualityPoint:
    """One model's quality on the labels of [start, end) (None: fewer than min_labels, or a single class)."""

    start: datetime
    end: datetime
    labels: int
    positives: int
    roc_auc: float | None
    log_loss: float | None
    ece: float | None


@dataclass(frozen=True)
class ModelQuality:
    """One model's rolling quality, a point per week."""

    model: str
    points: list[QualityPoint]


@dataclass(frozen=True)
class LiveQuality:
    """The prequential comparison of champion, online learner and blend on the same labels."""

    generated_at: datetime
    step_days: int
    window_days: int
    min_labels: int
    week_ends: list[datetime]
    labels: int  # labels every model scored, in any window shown
    positives: int
    unmatched: int  # labels in the same time left out: not every model scored them
    models: list[ModelQuality]
    events: list[ModelEventMark]


@dataclass(frozen=True)
class FeaturePsi:
    """A feature's PSI in one drift check (None: it could not be measured)."""

    feature: str
    psi: float | None


@dataclass(frozen=True)
class DriftPoint:
    """One drift check: the score's PSI, the top features' PSI, and whether it alerted."""

    at: datetime
    model_version: str | None
    score_psi: float | None
    features: list[FeaturePsi]
    alert: bool
    threshold: float | None
    live_rows: int | None


@dataclass(frozen=True)
class DriftHistory:
    """PSI over time from the drift checks, for the features with the highest latest PSI."""

    generated_at: datetime
    step_days: int
    week_ends: list[datetime]
    threshold: float | None
    features: list[str]
    checks: list[DriftPoint]
    events: list[ModelEventMark]


def week_ends(session: Session, now: datetime, weeks: int = WEEKS) -> list[datetime]:
    """The end of each weekly step, oldest first: `now`, and a week before it, ... back to the week holding the first
    stored label or model event (at least one, at most `weeks`)."""
    first = store.first_moment(session)
    count = 1 if first is None or first >= now else math.ceil((now - first) / STEP)
    count = max(1, min(weeks, count))
    return [now - STEP * (count - 1 - k) for k in range(count)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _mark(event: ModelEvent) -> ModelEventMark | None:
    """The mark of an event, or None when it is not one to show (a drift check that did not alert)."""
    detail = event.detail if isinstance(event.detail, dict) else {}
    version = event.model_version
    if event.kind == "drift_check":
        if not detail.get("alert"):
            return None
        score, threshold = _number(detail.get("score")), _number(detail.get("threshold"))
        text = "Drift alert"
        if score is not None:
            text += f": score PSI {score:.3f}"
            if threshold is not None:
                text += f" (threshold {threshold:g})"
        rows = detail.get("live_rows")
        if isinstance(rows, int) and not isinstance(rows, bool):
            text += f" on {rows:,} live leads"
        return ModelEventMark(event.at, "drift_alert", text, version)
    if event.kind == "adwin_change":
        labels = detail.get("labels")
        width = detail.get("width")
        text = "ADWIN saw the champion's live error change"
        if isinstance(width, int) and isinstance(labels, int):
            text += f" (it keeps the newest {width:,} of {labels:,} labels)"
        return ModelEventMark(event.at, "adwin_change", text, version)
    if event.kind == "retrain":
        reason = str(detail.get("reason") or "scheduled")[:40]
        if detail.get("promoted"):
            return ModelEventMark(event.at, "retrain_promoted", f"Retrained ({reason}): {version or 'the new model'} "
                                                                f"was promoted", version)
        return ModelEventMark(event.at, "retrain_kept", f"Retrained ({reason}): the champion was kept", version)
    if event.kind == "online_serving":
        serve = bool(detail.get("serve"))
        a_champion, a_blend = _number(detail.get("auc_champion")), _number(detail.get("auc_blend"))
        text = "Blend switched on" if serve else "Blend switched off"
        if a_champion is not None and a_blend is not None:
            text += f": blend AUC {a_blend:.3f} vs champion {a_champion:.3f}"
            labels = detail.get("labels")
            if isinstance(labels, int) and not isinstance(labels, bool):
                text += f" on {labels:,} labels"
        return ModelEventMark(event.at, "blend_on" if serve else "blend_off", text, version)
    return None


def _events(session: Session, since: datetime, until: datetime) -> list[ModelEvent]:
    # Drift checks run hourly: two years of them fit under the limit.
    return [e for e in store.events_of(session, kinds=MARKED, since=since, limit=MAX_EVENTS) if e.at <= until]


def marks(session: Session, since: datetime, until: datetime) -> list[ModelEventMark]:
    """The events to mark in [since, until], oldest first: drift alerts, ADWIN changes, retrainings (promoted or
    kept) and the blend switched on or off."""
    return _marks_of(_events(session, since, until))


def _marks_of(events: list[ModelEvent]) -> list[ModelEventMark]:
    return [mark for mark in map(_mark, events) if mark is not None]


def live_quality(session: Session, *, now: datetime | None = None, weeks: int = WEEKS,
                 window_days: int = WINDOW_DAYS, min_labels: int = MIN_LABELS) -> LiveQuality:
    """Rolling ROC AUC, log loss and ECE per model over trailing `window_days`, a point per week, on the labels
    every model scored (see the module's docstring)."""
    now = now or utcnow()
    ends = week_ends(session, now, weeks)
    window = timedelta(days=window_days)
    since = ends[0] - window
    rows = {model: [s for s in store.scores_of(session, model, since=since) if s.labelled_at < now]
            for model in MODELS}
    leads = [{s.lead_id for s in rows[model]} for model in MODELS]
    common = set.intersection(*leads)
    unmatched = len(set.union(*leads) - common)
    by_model = {model: sorted((s for s in rows[model] if s.lead_id in common), key=lambda s: (s.labelled_at, s.lead_id))
                for model in MODELS}
    models = []
    for model in MODELS:
        records = [PrequentialRecord(str(s.lead_id), s.decision_time, s.labelled_at, s.probability, s.won,
                                     s.model_version) for s in by_model[model]]
        points = []
        for end in ends:
            start = end - window
            chosen = [r for r in records if start <= r.labelled_at < end]
            metrics = window_metrics(chosen, start, end)
            enough = metrics.rows >= min_labels and 0 < metrics.positives < metrics.rows
            points.append(QualityPoint(
                start=start, end=end, labels=metrics.rows, positives=metrics.positives,
                roc_auc=_finite(metrics.roc_auc) if enough else None,
                log_loss=_finite(metrics.log_loss) if enough else None,
                ece=_finite(metrics.ece) if enough else None))
        models.append(ModelQuality(model, points))
    measured = by_model["champion"]  # the same labels for every model
    return LiveQuality(generated_at=now, step_days=STEP.days, window_days=window_days, min_labels=min_labels,
                       week_ends=ends, labels=len(measured), positives=sum(1 for s in measured if s.won),
                       unmatched=unmatched, models=models, events=marks(session, ends[0] - STEP, now))


def drift_history(session: Session, *, now: datetime | None = None, weeks: int = WEEKS,
                  top: int = TOP_FEATURES) -> DriftHistory:
    """The drift checks of the weeks shown, with the score's PSI and the `top` features by latest PSI."""
    now = now or utcnow()
    ends = week_ends(session, now, weeks)
    since = ends[0] - STEP
    events = _events(session, since, now)
    checks = []  # (event, its detail, its feature PSIs)
    for event in events:
        if event.kind == "drift_check":
            detail = event.detail if isinstance(event.detail, dict) else {}
            features = detail.get("features") if isinstance(detail.get("features"), dict) else {}
            checks.append((event, detail, features))
    latest: dict[str, float] = {}  # each feature's newest measured PSI
    threshold = None
    for _event, detail, features in checks:
        for name, value in features.items():
            psi = _number(value)
            if psi is not None:
                latest[str(name)] = psi
        if _number(detail.get("threshold")) is not None:  # the newest one set
            threshold = _number(detail.get("threshold"))
    chosen = [name for name, _ in sorted(latest.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    points = []
    for event, detail, features in checks:
        rows = detail.get("live_rows")
        points.append(DriftPoint(
            at=event.at, model_version=event.model_version, score_psi=_number(detail.get("score")),
            features=[FeaturePsi(name, _number(features.get(name))) for name in chosen],
            alert=bool(detail.get("alert")), threshold=_number(detail.get("threshold")),
            live_rows=rows if isinstance(rows, int) and not isinstance(rows, bool) else None))
    return DriftHistory(generated_at=now, step_days=STEP.days, week_ends=ends, threshold=threshold,
                        features=chosen, checks=points, events=_marks_of(events))
