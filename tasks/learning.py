"""Learning loop (beat): collect outcomes, retrain, judge the challenger, drift checks, account scores.

Each Celery task is a thin wrapper around a plain function that takes its dependencies (database,
Redis, connectors, config), so the CLI (`leadbridge train --from-events`, `leadbridge model ...`) and
tests call the same code.

- `collect_outcomes`: every configured CRM's won/lost outcomes since the last read -> `outcomes`.
- `retrain`: when due (every `retrain_every_hours`, default weekly) or on drift: labels with the
  maturity window, features as of each lead's decision time, a challenger trained like `leadbridge
  train`, judged against the champion on the newest labels; promoted when it wins by the margin
  (and enough outcomes exist for a model to replace the rules), else kept as a challenger.
- `check_drift`: PSI of the champion's features and scores, live window vs its training data; an
  alert goes to the model's row (admin), the audit log and Slack, and can trigger a retrain.
- `score_accounts`: account score/grade/reasons from contacts, written to HubSpot companies and
  Salesforce Accounts.
- `sync_champion`: keeps the Redis champion key in line with the `models` table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.keys import ACCOUNT_VERSION_KEY, DRIFT_RETRAIN_KEY, OUTCOMES_SINCE_KEY, RETRAIN_LOCK_KEY
from core.records import utcnow
from storage.db import Database
from tasks.resources import Resources, resources
from tasks.schedule import periodic

log = logging.getLogger(__name__)

OUTCOME_OVERLAP = timedelta(hours=1)  # re-read a little: CRM clocks and indexing lag
LIVE_WINDOW_LIMIT = 5000
MIN_DRIFT_ROWS = 100  # PSI over ten bins is noise below this
MIN_TRAINING_LABELS = 50
# An ADWIN window narrower than this is widened to the newest this many labels (bench.drift's tuned value: a
# window of a few dozen labels right after a change trains a worse model than the stale one).
ADWIN_MIN_WINDOW_LABELS = 300
REPLAY_FLOOR = 0.5
REPLAY_ERROR_POWER = 0.5


@dataclass(frozen=True)
class LearningConfig:
    """Knobs of the learning loop (read from Settings when the fields exist, else these defaults)."""

    maturity_days: float = 90.0
    decision_gap_hours: float = 24.0
    promotion_margin: float = 0.005
    promotion_metric: str = "roc_auc"
    psi_threshold: float = 0.2
    drift_window_days: float = 7.0
    retrain_on_drift: bool = True
    retrain_every_hours: float = 168.0
    drift_retrain_cooldown_hours: float = 24.0
    min_outcomes: int = 500
    min_positives: int = 50
    models_dir: Path = Path(".leadbridge/models")
    # The online challenger and ADWIN (tasks.online_learning)
    online: bool = True
    # linear: alone 0.04-0.05 AUC above ARF and ~0.35 above HAT in bench.drift; ARF scores ~100x slower (bench.scoring)
    online_model: str = "linear"
    online_blend_weight: float = 0.5
    online_gate_labels: int = 500
    adwin_delta: float = 0.002
    adwin_retrain: bool = True
    # Experience-Delayed Replay weights in batch retraining (scoring.replay): off by default, since bench.drift
    # measured them ~0.01 AUC below unweighted training on its funnels (noisy labels: the error term mostly
    # up-weights noise).
    replay_weights: bool = False

    # Settings field -> config field; read with getattr so the loop runs before Settings declares them.
    SETTINGS: ClassVar[dict[str, str]] = {
        "learning_maturity_days": "maturity_days", "learning_decision_gap_hours": "decision_gap_hours",
        "learning_promotion_margin": "promotion_margin", "learning_promotion_metric": "promotion_metric",
        "learning_psi_threshold": "psi_threshold", "learning_drift_window_days": "drift_window_days",
        "learning_retrain_on_drift": "retrain_on_drift", "learning_retrain_every_hours": "retrain_every_hours",
        "learning_drift_retrain_cooldown_hours": "drift_retrain_cooldown_hours",
        "min_outcomes": "min_outcomes", "min_positives": "min_positives",
        "learning_online": "online", "learning_online_model": "online_model",
        "learning_online_blend_weight": "online_blend_weight", "learning_online_gate_labels": "online_gate_labels",
        "learning_adwin_delta": "adwin_delta", "learning_adwin_retrain": "adwin_retrain",
        "learning_replay_weights": "replay_weights",
    }

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> LearningConfig:
        """The config for these Settings (and explicit overrides, e.g. from CLI flags)."""
        values: dict[str, Any] = {"models_dir": Path(settings.data_dir) / "models"}
        for setting, name in cls.SETTINGS.items():
            value = getattr(settings, setting, None)
            if value is not None:
                values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def policy(self) -> Any:
        """The label policy (maturity window and decision gap)."""
        from scoring.labels import LabelPolicy

        return LabelPolicy(maturity=timedelta(days=self.maturity_days), gap=timedelta(hours=self.decision_gap_hours))


def config_of(res: Resources) -> LearningConfig:
    """This process's learning config."""
    return LearningConfig.from_settings(res.settings)


# ---- outcomes -------------------------------------------------------------------------------------


def collect_outcomes_from(db: Database, redis: Any, connectors: Mapping[str, Any], now: datetime | None = None
                          ) -> dict[str, dict[str, int]]:
    """Read outcomes changed since the last read from each connector and record them; counts per CRM."""
    from connectors.registry import outcomes_kept
    from storage.bands import outcome_rules
    from storage.outcomes import record_outcomes

    now = now or utcnow()
    out: dict[str, dict[str, int]] = {}
    for crm, connector in connectors.items():
        if connector is None:
            continue
        key = OUTCOMES_SINCE_KEY.format(crm=crm)
        raw = redis.get(key)
        since = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw) - OUTCOME_OVERLAP if raw else None
        outcomes = connector.read_outcomes(since)
        with db.session(write=True) as session:
            # The read finds outcomes by the default rules: keep those the definition in force counts.
            outcomes = outcomes_kept(crm, outcomes, outcome_rules(session).get(crm))
            result = record_outcomes(session, crm, outcomes)
        redis.set(key, now.isoformat())
        out[crm] = {"read": len(outcomes), "recorded": result.recorded, "duplicates": result.duplicates,
                    "unknown_leads": result.unknown_leads}
    return out


@periodic("tasks.learning.collect_outcomes", every=900.0, soft_time_limit=240, time_limit=300)
def collect_outcomes() -> dict[str, dict[str, int]]:
    """Beat: read won/lost outcomes from every configured CRM into the outcomes table."""
    from connectors.base import ConnectorError

    res = resources()
    connectors = {crm: res.connector(crm) for crm in ("hubspot", "salesforce")}
    try:
        counts = collect_outcomes_from(res.db, res.redis, connectors)
    except ConnectorError as exc:
        log.warning("learning.outcomes.failed", extra={"error": type(exc).__name__, "vendor": exc.vendor})
        return {}
    if any(c.get("recorded") for c in counts.values()):
        log.info("learning.outcomes.recorded", extra={"counts": counts})
    return counts


# ---- retraining ---------------------------------------------------------------------------------


@dataclass
class RetrainResult:
    """What one retraining run did."""

    status: str  # promoted | kept | skipped
    reason: str
    version: str | None = None
    path: str | None = None
    labelled: int = 0
    positives: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)


# ---- datasets from the stored history ------------------------------------------------------------


def training_data(session: Session, now: datetime, policy: Any,
                  progress: Callable[[str, int, int | None], None] | None = None, schema: Any = None) -> Any:
    """scoring.dataset.TrainingData from the inbox and outcomes tables, as of `now` (with the mapped features of
    `schema`, default the one in force)."""
    from scoring.dataset import training_frame
    from scoring.features import ACTIVITY_TYPES
    from storage.feature_schema import active_schema
    from storage.outcomes import count_outcomes, load_events, oldest_lead_created, stored_outcomes

    step = progress or (lambda _what, _n, _total=None: None)
    schema = schema if schema is not None else active_schema(session)
    stored = load_events(session, ACTIVITY_TYPES, until=now, progress=lambda n: step("reading events", n, None))
    return training_frame(stored, stored_outcomes(session, until=now), now, policy,
                          outcomes_total=count_outcomes(session), oldest_lead=oldest_lead_created(session),
                          progress=progress, schema=schema)


def prequential_report(session: Session, *, now: datetime | None = None, policy: Any = None, window_days: int = 28,
                       step_days: int = 7) -> dict[str, Any]:
    """scoring.dataset.prequential_report over the stored events, outcomes and score history."""
    from scoring import dataset
    from scoring.features import ACTIVITY_TYPES
    from storage.outcomes import load_events, score_history, stored_outcomes

    now = now or utcnow()
    stored = load_events(session, ACTIVITY_TYPES, until=now)
    return dataset.prequential_report(stored, stored_outcomes(session, until=now),
                                      lambda ids: score_history(session, ids), now=now, policy=policy,
                                      window_days=window_days, step_days=step_days)


def unique_version(registry: Any, bundle: Any) -> str:
    """The bundle's version, with a -2, -3 ... suffix when that name is taken (two runs in one second)."""
    base = bundle.version
    version, n = base, 2
    while registry.path_of(version).exists():
        version = f"{base}-{n}"
        n += 1
    bundle.metadata["version"] = version
    return version


def retrain_from_events(
    db: Database,
    redis: Any,
    config: LearningConfig,
    *,
    reason: str = "schedule",
    actor: str = "beat",
    now: datetime | None = None,
    promote: bool = True,
    seed: int = 0,
    progress: Callable[[str, int, int | None], None] | None = None,
    window_start: datetime | None = None,
) -> RetrainResult:
    """Train a challenger from stored events and outcomes, record it, and promote it if it wins.

    `window_start` (ADWIN's window; default: the one kept at ADWIN's last reported change) keeps the labels decided
    from then on, widened to the newest ADWIN_MIN_WINDOW_LABELS (see _restrict_window).
    """
    from scoring.champion import train_challenger
    from scoring.dataset import label_counts
    from scoring.model import BundleError, ModelBundle
    from scoring.registry import ModelRegistry
    from scoring.rules import use_trained_model
    from scoring.training import TrainingError
    from scoring.training_set import train_options
    from storage.bands import outcome_version
    from storage.feature_schema import active_schema
    from storage.model_registry import champion, promote_in_session, record_model, set_champion_key

    now = now or utcnow()
    step = progress or (lambda _what, _n, _total=None: None)
    with db.session() as session:
        schema = active_schema(session)  # the model records it, and serves only while it is in force
        data = training_data(session, now, config.policy, progress=step, schema=schema)
        current = champion(session, "lead")
        champion_path = current.path if current is not None else None
        champion_version = current.version if current is not None else None
        # The gate compares models only under one outcome definition (see train_challenger).
        definition = outcome_version(session)
        champion_definition = int((current.params or {}).get("outcome_definition", 0)) if current is not None else 0
    if window_start is None:
        window_start = adwin_window(db)  # every retraining reads the window ADWIN keeps, once it reported one
    window_note = _restrict_window(data, window_start) if window_start is not None else None
    counts = label_counts(data.labels)
    base = RetrainResult(status="skipped", reason="", labelled=counts["labelled"], positives=counts["positives"])
    if counts["labelled"] < MIN_TRAINING_LABELS or not counts["positives"] or not counts["negatives"]:
        base.reason = (f"not enough labels yet: {counts['labelled']} labelled ({counts['positives']} won, "
                       f"{counts['negatives']} lost/matured); need {MIN_TRAINING_LABELS} with both outcomes")
        return base
    champion_bundle = None
    if champion_path:
        try:
            champion_bundle = ModelBundle.load(champion_path)
        except BundleError as exc:
            log.warning("learning.champion_unreadable", extra={"version": champion_version, "error": str(exc)[:200]})
    weights, weights_note = replay_weights(db, data) if config.replay_weights else (None, None)
    step("training", 0, None)
    try:
        result = train_challenger(data.frame, train_options(schema), champion=champion_bundle, margin=config.promotion_margin,
                                  metric=config.promotion_metric, seed=seed, now=now,
                                  progress=lambda what: step(f"training: {what}", 1, None),
                                  reference_rows=data.reference_rows, sample_weight=weights,
                                  definition=definition, champion_definition=champion_definition)
    except TrainingError as exc:
        base.reason = f"training failed: {exc}"
        return base
    experiment = result.experiment
    bundle = experiment.bundle
    bundle.metadata["label_policy"] = {"maturity_days": config.maturity_days,
                                       "decision_gap_hours": config.decision_gap_hours}
    bundle.metadata["retrain_reason"] = reason
    registry = ModelRegistry(config.models_dir)
    unique_version(registry, bundle)
    registered = registry.register(bundle, status="challenger")
    decision = result.decision
    enough = use_trained_model(counts["labelled"], counts["positives"], min_outcomes=config.min_outcomes,
                               min_positives=config.min_positives)
    will_promote = promote and decision.promote and enough
    if decision.promote and not enough:
        why = (f"{decision.reason}; but only {counts['labelled']} outcomes ({counts['positives']} won) of the "
               f"{config.min_outcomes} ({config.min_positives} won) a model needs to replace the rules: kept")
    elif decision.promote and not promote:
        why = f"{decision.reason}; promotion not requested: kept as a challenger"
    else:
        why = decision.reason
    metrics: dict[str, Any] = {
        **experiment.metrics, "baselines": experiment.baselines,
        "feature_importance": bundle.metadata.get("feature_importance", {}),
        "champion_comparison": {**bundle.metadata["champion_comparison"], "outcome": why},
        "training": {"reason": reason, "labelled": counts["labelled"], "positives": counts["positives"],
                     "holdout_rows": len(result.y_holdout), "events": data.events,
                     "leads_seen": data.leads_seen, "maturity_days": config.maturity_days,
                     "dropped_for_retention": data.dropped_for_retention,
                     "decision_gap_hours": config.decision_gap_hours, "window": window_note,
                     "replay_weights": weights_note},
        "dropped_columns": experiment.dropped,
    }
    with db.session(write=True) as session:
        row = record_model(session, registered, kind="lead", status="challenger", metrics=metrics,
                           labelled_outcomes=counts["labelled"], window=(data.window_start, data.window_end))
        if will_promote:
            promote_in_session(session, row.version, actor, how=f"auto:{reason}")
        from storage.prequential import record_event

        record_event(session, "retrain", {"reason": reason, "promoted": will_promote, "labelled": counts["labelled"],
                                          "window_start": data.window_start.isoformat() if data.window_start else None,
                                          "window": window_note, "outcome": why[:300]},
                     model_version=row.version, at=now)
    if will_promote:
        set_champion_key(redis, registered["version"])
    from scoring.training import report_of

    return RetrainResult(
        status="promoted" if will_promote else "kept", reason=why, version=registered["version"],
        path=registered["path"], labelled=counts["labelled"], positives=counts["positives"],
        metrics=experiment.metrics, baselines=experiment.baselines, decision=decision.to_json(),
        report={**report_of(experiment), "champion_comparison": metrics["champion_comparison"],
                "training": metrics["training"]},
    )


def adwin_window(db: Database) -> datetime | None:
    """The start of the window ADWIN kept at its last reported change (None before any)."""
    from storage.prequential import last_event

    with db.session() as session:
        change = last_event(session, ["adwin_change"])
    start = (change.detail or {}).get("window_start") if change is not None else None
    return datetime.fromisoformat(start) if start else None


def replay_weights(db: Database, data: Any) -> tuple[Any, dict[str, Any]]:
    """Experience-Delayed Replay weights (scoring.replay.edr_weights) for the rows of `data.frame`: the delay is
    decision time -> label, the error |y - p| of the score the lead had at its decision time (0.5 when it had
    none); and a summary for the model's record."""
    import numpy as np

    from scoring.dataset import prequential_records
    from scoring.replay import DEFAULT_HALF_LIFE_DAYS, edr_weights
    from scoring.training_set import ID_COLUMN
    from storage.outcomes import score_history

    with db.session() as session:
        history = score_history(session, [int(label.lead_id) for label in data.labels if label.lead_id.isdigit()])
    records, _untested = prequential_records(data.labels, history)
    live = {record.lead_id: record.probability for record in records}
    by_lead = {label.lead_id: label for label in data.labels}
    rows = [by_lead[str(lead)] for lead in data.frame[ID_COLUMN]]
    delays = [(label.labelled_at - label.decision_time) / timedelta(days=1) for label in rows]
    errors = [abs(int(label.won) - live[label.lead_id]) if label.lead_id in live else 0.5 for label in rows]
    # The gentle tilt bench.drift measured (its edr strategy, --edr): a high floor and a square-root error term.
    weights = edr_weights(delays, errors, [label.won for label in rows], floor=REPLAY_FLOOR,
                          error_power=REPLAY_ERROR_POWER)
    return weights, {"half_life_days": DEFAULT_HALF_LIFE_DAYS, "error_power": REPLAY_ERROR_POWER, "floor": REPLAY_FLOOR,
                     "with_live_score": sum(1 for label in rows if label.lead_id in live), "rows": len(rows),
                     "min": float(np.min(weights)) if len(weights) else None,
                     "max": float(np.max(weights)) if len(weights) else None}


def _restrict_window(data: Any, start: datetime) -> dict[str, Any]:
    """Keep in `data` (frame and labels) the labels decided at or after `start` (ADWIN's window), widened to the
    newest ADWIN_MIN_WINDOW_LABELS when the window holds fewer (as bench.drift measured it); say what was done."""
    from scoring.training_set import ID_COLUMN

    ordered = sorted(data.labels, key=lambda label: label.decision_time)
    kept = [label for label in ordered if label.decision_time >= start]
    if len(kept) < ADWIN_MIN_WINDOW_LABELS:
        kept = ordered[-ADWIN_MIN_WINDOW_LABELS:]
    won = sum(1 for label in kept if label.won)
    note: dict[str, Any] = {"start": start.isoformat(), "labels_in_window": len(kept), "labels_total": len(data.labels)}
    if len(kept) == len(data.labels) or not won or won == len(kept):
        note["applied"] = False
        note["why"] = (f"the window holds {len(kept)} labels ({won} won) of {len(data.labels)}: trained on all"
                       if len(kept) < len(data.labels) else "every label is in the window")
        return note
    keep = {label.lead_id for label in kept}
    data.frame = data.frame[data.frame[ID_COLUMN].astype(str).isin(keep).to_numpy()].reset_index(drop=True)
    data.labels = [label for label in data.labels if label.lead_id in keep]
    data.window_start = min(label.decision_time for label in kept)
    note["applied"] = True
    return note


@contextmanager
def exclusive(redis: Any, key: str, seconds: int, token: str) -> Iterator[bool]:
    """Hold `key` as a lock for one run across all workers: yields False when another run holds it. Released
    only by its holder (a run that outlived `seconds` must not free the next run's lock)."""
    if not redis.set(key, token, nx=True, ex=seconds):
        yield False
        return
    try:
        yield True
    finally:
        if (redis.get(key) or b"").decode() == token:
            redis.delete(key)


def retrain_due(db: Database, config: LearningConfig, now: datetime | None = None) -> bool:
    """True when no lead model was trained in the last `retrain_every_hours`."""
    from sqlalchemy import func

    from storage.models import ModelVersion

    now = now or utcnow()
    with db.session() as session:
        last = session.scalar(select(func.max(ModelVersion.trained_at)).where(ModelVersion.kind == "lead"))
    return last is None or now - last >= timedelta(hours=config.retrain_every_hours)


# Hourly: the task decides itself whether a retraining is due (LearningConfig.retrain_every_hours).
@periodic("tasks.learning.retrain", every=3600.0, soft_time_limit=1500, time_limit=1800)
def retrain(reason: str = "schedule", force: bool = False, window_start: str | None = None) -> dict[str, Any]:
    """Beat (hourly check), drift and ADWIN: retrain when due; one run at a time across all workers.

    `window_start` (ISO time, from ADWIN) limits training to labels decided since then.
    """
    res = resources()
    config = config_of(res)
    if not force and reason == "schedule" and not retrain_due(res.db, config):
        return {"status": "skipped", "reason": "not due"}
    with exclusive(res.redis, RETRAIN_LOCK_KEY, 1900, f"{reason}:{utcnow().isoformat()}") as held:
        if not held:
            return {"status": "skipped", "reason": "another retraining is running"}
        start = datetime.fromisoformat(window_start) if window_start else None
        result = retrain_from_events(res.db, res.redis, config, reason=reason, actor=f"beat:{reason}",
                                     window_start=start)
    log.info("learning.retrain.%s", result.status, extra={"version": result.version, "reason": result.reason[:300]})
    return {"status": result.status, "reason": result.reason, "version": result.version}


# ---- drift --------------------------------------------------------------------------------------


def live_window(db: Database, store: Any, version: str, since: datetime, now: datetime,
                limit: int = LIVE_WINDOW_LIMIT) -> tuple[list[dict[str, Any]], list[float]]:
    """The leads active since `since`, each as of its last activity, and the champion's scores in the window.

    Sampled like a model's drift reference (scoring.training_set.population_rows), so PSI compares
    the same kind of population.
    """
    from storage.models import Lead, ScoreHistory

    with db.session() as session:
        # Leads scored in the window are the candidates (activity is what triggers scoring).
        candidates = [str(i) for (i,) in session.execute(
            select(Lead.id).where(Lead.score_event_at >= since).order_by(Lead.score_event_at.desc()).limit(limit))]
        scores = [float(p) for (p,) in session.execute(
            select(ScoreHistory.probability).where(ScoreHistory.model_version == version,
                                                   ScoreHistory.created_at >= since)
            .order_by(ScoreHistory.id.desc()).limit(limit))]
    recency = store.get_online(candidates, ["days_since_last_activity"], as_of=now) if candidates else []
    window_days = (now - since) / timedelta(days=1)
    rows = []
    for lead, vector in zip(candidates, recency):
        days = vector.get("days_since_last_activity")
        if days is None or days > window_days:
            continue
        # days_since is rounded to 0.01 day (~15 minutes): a little later still holds nothing newer.
        at = now - timedelta(days=days) + timedelta(minutes=8)
        rows.append(store.get_online([lead], as_of=min(at, now))[0])
    return rows, scores


def check_drift_now(db: Database, redis: Any, store: Any, config: LearningConfig, *, now: datetime | None = None,
                    notify: Callable[[Any], None] | None = None, actor: str = "beat") -> Any:
    """PSI of the champion's inputs and scores over the live window; stores the report; returns it (or None)."""
    from scoring.drift import Profile, drift_report
    from scoring.model import BundleError, ModelBundle
    from storage.audit import record
    from storage.model_registry import champion, store_drift_report

    now = now or utcnow()
    with db.session() as session:
        row = champion(session, "lead")
        if row is None:
            return None  # the rules serve: there is no training distribution to compare with
        version, path = row.version, row.path
    try:
        reference = ModelBundle.load(path).metadata.get("drift_reference")
    except BundleError as exc:
        log.warning("learning.drift.unreadable", extra={"version": version, "error": str(exc)[:200]})
        return None
    if not reference:
        return None  # trained before drift references existed (or from a CSV)
    start = now - timedelta(days=config.drift_window_days)
    rows, scores = live_window(db, store, version, start, now)
    report = drift_report(Profile.from_json(reference), rows, scores, checked_at=now, threshold=config.psi_threshold,
                          window=(start, now), model_version=version, min_rows=MIN_DRIFT_ROWS)
    payload = report.to_json()
    if len(rows) < MIN_DRIFT_ROWS:
        payload["note"] = f"only {len(rows)} leads in the live window; need {MIN_DRIFT_ROWS} for a drift check"
    with db.session(write=True) as session:
        store_drift_report(session, version, payload)
        from storage.prequential import record_event

        record_event(session, "drift_check", {"features": payload.get("features") or {}, "score": payload.get("score"),
                                              "alert": bool(report.alert), "live_rows": report.live_rows,
                                              "threshold": report.threshold}, model_version=version, at=now)
        if report.alert:
            record(session, actor=actor, action="model.drift_alert", target=f"model:{version}",
                   after={"drifted": report.drifted[:10], "threshold": report.threshold,
                          "score_psi": payload["score"], "live_rows": report.live_rows})
    if report.alert and notify is not None:
        notify(report)
    return report


@periodic("tasks.learning.check_drift", every=3600.0, soft_time_limit=240, time_limit=300)
def check_drift() -> dict[str, Any]:
    """Beat: drift report for the champion; alert (admin, audit, Slack) and retrain when PSI crosses the threshold."""
    from connectors.base import ConnectorError
    from connectors.slack_learning import build_drift_message

    res = resources()
    config = config_of(res)
    action_taken: list[str] = []

    def notify(report: Any) -> None:
        retrain_now = config.retrain_on_drift and res.redis.set(
            DRIFT_RETRAIN_KEY, report.checked_at.isoformat(), nx=True,
            ex=max(60, int(config.drift_retrain_cooldown_hours * 3600)))
        if retrain_now:
            retrain.delay(reason="drift", force=True)
            action_taken.append("retraining started")
        action = "Retraining started; a challenger is promoted only if it beats the champion." if retrain_now else (
            "Retraining on drift is off or ran recently.")
        notifier = res.slack()
        if notifier is not None:
            url = (res.settings.public_url or "").rstrip("/")
            try:
                notifier.post(build_drift_message(report.model_version or "?", report.top(10), report.threshold,
                                                  report.live_rows, action, f"{url}/admin/models" if url else None))
            except ConnectorError as exc:
                log.warning("learning.drift.slack_failed", extra={"error": type(exc).__name__})

    report = check_drift_now(res.db, res.redis, res.features, config, notify=notify)
    if report is None:
        return {"status": "skipped"}
    return {"status": "alert" if report.alert else "ok", "drifted": report.drifted, "actions": action_taken}


# ---- accounts -----------------------------------------------------------------------------------


def score_accounts_now(res: Resources, *, store: Any = None, crms: Sequence[str] = ("hubspot", "salesforce"),
                       now: datetime | None = None, model_version: str | None = None,
                       everything: bool = False) -> dict[str, int]:
    """Score accounts whose contacts changed since they were last scored; changed ones go to the outbox.

    `store` is the online feature store (the process's when None). Returns how many accounts were scored and
    changed, and per CRM how many records the CRM took now.
    """
    from connectors.base import TransientConnectorError
    from scoring.accounts import ContactScore, score_account
    from storage.models import Account, AccountCrmId, Lead
    from tasks.writeback import ACCOUNTS, FLUSH_LEASE_SECONDS, flush, flush_once, lease

    now = now or utcnow()
    with res.db.session() as session:
        contacts = session.execute(
            select(Lead.id, Lead.account_id, Lead.probability, Lead.score, Lead.grade, Lead.reasons, Lead.scored_at)
            .where(Lead.account_id.is_not(None), Lead.score.is_not(None))).all()
        accounts = {a.id: a for a in session.execute(select(Account.id, Account.scored_at)).all()}
        # (account id, crm) -> the account's record in that CRM; the newest row when it has several.
        crm_ids = {(account_id, crm): object_id for account_id, crm, object_id in session.execute(
            select(AccountCrmId.account_id, AccountCrmId.crm, AccountCrmId.object_id)
            .order_by(AccountCrmId.id))}
    by_account: dict[int, list[Any]] = {}
    for row in contacts:
        by_account.setdefault(row.account_id, []).append(row)
    todo = [aid for aid, rows in by_account.items() if aid in accounts and (
        everything or accounts[aid].scored_at is None
        or any(r.scored_at and r.scored_at > accounts[aid].scored_at for r in rows))]
    lead_ids = [str(r.id) for aid in todo for r in by_account[aid]]
    activity = {}
    if lead_ids:
        vectors = (store or res.features).get_online(lead_ids, ["days_since_last_activity"], as_of=now)
        activity = {lead: v.get("days_since_last_activity") for lead, v in zip(lead_ids, vectors)}
    updates: dict[int, Any] = {}
    for aid in todo:
        members = [ContactScore(r.id, float(r.probability or 0.0), int(r.score or 0), r.grade,
                                engaged=(activity.get(str(r.id)) is not None and activity[str(r.id)] <= 7),
                                reasons=tuple(r.reasons or ())) for r in by_account[aid]]
        updates[aid] = score_account(members)
    changed: list[int] = []
    with res.db.session(write=True) as session:
        for aid, result in updates.items():
            account = session.get(Account, aid)
            if account is None:
                continue
            if (account.score, account.grade, list(account.reasons or [])) != (result.value, result.grade,
                                                                               list(result.reasons)):
                changed.append(aid)
            account.score, account.grade, account.reasons = result.value, result.grade, list(result.reasons)
            account.scored_at = now
    res.redis.set(ACCOUNT_VERSION_KEY, f"account:{model_version or 'rules'}"[:64])
    written = {"hubspot": 0, "salesforce": 0}
    for crm in crms:
        connector = res.connector(crm)
        if connector is None:
            continue
        marked = [aid for aid in changed
                  if (crm_id := crm_ids.get((aid, crm))) and connector.is_account_id(crm_id)]
        if not marked:
            continue
        dirty = ACCOUNTS.dirty.format(crm=crm)
        res.redis.sadd(dirty, *marked)
        # Written now, under the outbox's lease; a flush already holding it (or a vendor asking us to wait)
        # leaves them to the writeback queue.
        with lease(res.redis, ACCOUNTS.lock.format(crm=crm), FLUSH_LEASE_SECONDS) as held:
            try:
                while held and res.redis.scard(dirty):
                    done = flush_once(res, crm, ACCOUNTS)
                    written[crm] += done
                    if not done:
                        break
            except TransientConnectorError:
                log.warning("learning.accounts.write_deferred", extra={"crm": crm})
        if res.redis.scard(dirty):
            flush.delay(crm, ACCOUNTS.kind)
    return {"scored": len(updates), "changed": len(changed), "hubspot": written["hubspot"],
            "salesforce": written["salesforce"]}


@periodic("tasks.learning.score_accounts", every=1800.0, soft_time_limit=240, time_limit=300)
def score_accounts() -> dict[str, int]:
    """Beat: account scores from their contacts, written to HubSpot companies and Salesforce Accounts."""
    from connectors.base import ConnectorError

    res = resources()
    scorer = res.scorer()
    version = scorer.model.version if scorer.model is not None else None
    try:
        return score_accounts_now(res, model_version=version)
    except ConnectorError as exc:
        log.warning("learning.accounts.failed", extra={"error": type(exc).__name__, "vendor": exc.vendor})
        return {}


# ---- champion key -------------------------------------------------------------------------------


@periodic("tasks.learning.sync_champion", every=60.0, soft_time_limit=20, time_limit=30)
def sync_champion() -> str | None:
    """Beat: keep the Redis champion key equal to the champion row, so every worker serves the same model."""
    from storage.model_registry import sync_champion_key

    res = resources()
    return sync_champion_key(res.db, res.redis)
