"""Continual learning on the live path: the online challenger, the prequential gate, ADWIN on live errors.

One pass (`learn_online`, beat every five minutes; one process at a time holds the lock):
1. Labels that matured since the last pass (scoring.labels: wins at once, losses after the maturity window)
   get their feature vector as it was at the decision time, rebuilt by the offline point-in-time code
   (scoring.training_set.EventIndex): nothing that happened later reaches the learner.
2. Test, then train: each label is first predicted by the champion (the XGBoost model in force, when it was
   trained before the label was known; else the score the lead had at its decision time), by the online
   learner, and by their blend on log-odds; the three predictions are stored (`prequential_scores`), and only
   then does the online learner learn the label.
3. The learner is saved as an HMAC-authenticated snapshot (`online_models`); a pass that finds none it can
   read (new install, changed key, or a changed feature schema) rebuilds it by replaying every stored label
   in order.
4. The gate compares champion and blend on the newest `gate_labels` labels both predicted: the blend serves
   (workers read `ONLINE_SERVING_KEY`) while it wins by the promotion margin, and stops when it loses.
   Reasons and grades always come from the champion. Each change is audited and kept as a model event.
5. ADWIN watches the champion's live error stream |y - p| in label order. A detected change is a model event,
   and asks for a retraining whose window starts at the decision time of the oldest label ADWIN still holds.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.keys import ADWIN_RETRAIN_KEY, ONLINE_LOCK_KEY, ONLINE_SEEN_KEY, ONLINE_SERVING_KEY
from core.records import utcnow
from storage.db import Database
from tasks.learning import LearningConfig, config_of, exclusive
from tasks.resources import resources
from tasks.schedule import periodic

log = logging.getLogger(__name__)

MAX_LABELS_PER_PASS = 5000  # a backlog (first pass after an upgrade) is worked through over several passes
MIN_GATE_LABELS = 100  # AUC on fewer labels is noise; both classes need MIN_GATE_CLASS each
MIN_GATE_CLASS = 20
FULL_PASS_EVERY = 6 * 3600  # seconds: a pass runs at least this often even when nothing seems new


@dataclass
class OnlinePass:
    """What one online-learning pass did."""

    learned: int = 0
    tested: dict[str, int] = field(default_factory=dict)
    rebuilt: bool = False
    snapshot: str | None = None
    serving: bool = False
    gate: dict[str, Any] = field(default_factory=dict)
    adwin_change: dict[str, Any] | None = None


def _to_dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _vectors_at(index: Any, labels: Sequence[Any]) -> tuple[list[dict[str, Any]], Any]:
    """Each label's feature vector as of its decision time (the offline point-in-time code), and the same as a
    frame for the champion."""
    import pandas as pd

    vectors = [index.features_at(label.lead_id, label.decision_time) for label in labels]
    return vectors, pd.DataFrame(vectors, columns=list(index.schema.feature_names))


def _champion_predictions(champion: Any, frame: Any, labels: Sequence[Any], history: Mapping[str, Any]
                          ) -> list[tuple[float, str] | None]:
    """The champion's probability per label: the model in force on the rebuilt vector when it was trained before
    the label was known (an honest test, on the same vector the online learner sees), else the lead's live
    score at its decision time (scoring.dataset's prequential lookup), else None."""
    from scoring.dataset import live_score_at
    from scoring.scorer import score_frame

    out: list[tuple[float, str] | None] = [None] * len(labels)
    if champion is not None:
        trained_at = champion.metadata.get("trained_at")
        trained = _to_dt(trained_at) if trained_at else None
        fresh = [i for i, label in enumerate(labels) if trained is not None and trained < label.labelled_at]
        if fresh:
            batch = score_frame(frame.iloc[fresh].reset_index(drop=True), champion, reasons="none")
            for j, i in enumerate(fresh):
                out[i] = (float(batch.probabilities[j]), champion.version)
    for i, label in enumerate(labels):
        if out[i] is None:
            live = live_score_at(history, label.lead_id, label.decision_time)
            if live is not None:
                out[i] = (float(live.probability), live.model_version.split("+")[0])
    return out


def _auc(y: Sequence[int], p: Sequence[float]) -> float | None:
    from scoring.prequential import auc

    if sum(y) < MIN_GATE_CLASS or len(y) - sum(y) < MIN_GATE_CLASS:
        return None
    return float(auc(list(y), list(p)))


def gate_decision(champion: Sequence[Any], blend: Sequence[Any], margin: float, limit: int) -> dict[str, Any]:
    """Compare champion and blend on the newest `limit` labels both predicted: serve the blend when its AUC beats
    the champion's by `margin`; {serve, reason, labels, auc_champion, auc_blend}."""
    by_lead = {s.lead_id: s for s in champion}
    pairs = [(by_lead[s.lead_id], s) for s in blend if s.lead_id in by_lead][-limit:]
    y = [int(c.won) for c, _ in pairs]
    out: dict[str, Any] = {"labels": len(pairs), "auc_champion": None, "auc_blend": None, "margin": margin}
    if len(pairs) < MIN_GATE_LABELS:
        return {**out, "serve": False, "reason": f"{len(pairs)} labels both models predicted; "
                                                 f"the gate needs {MIN_GATE_LABELS}"}
    a_champion = _auc(y, [c.probability for c, _ in pairs])
    a_blend = _auc(y, [b.probability for _, b in pairs])
    out.update(auc_champion=a_champion, auc_blend=a_blend)
    if a_champion is None or a_blend is None:
        return {**out, "serve": False, "reason": f"fewer than {MIN_GATE_CLASS} labels of a class in the window"}
    if a_blend >= a_champion + margin:
        return {**out, "serve": True, "reason": f"blend AUC {a_blend:.4f} beats champion {a_champion:.4f} "
                                                f"by >= {margin} on {len(pairs)} labels"}
    return {**out, "serve": False, "reason": f"blend AUC {a_blend:.4f} does not beat champion {a_champion:.4f} "
                                             f"by {margin} on {len(pairs)} labels"}


def label_definition(config: LearningConfig, outcomes: int = 0) -> str:
    """What a label means (the label policy and the outcome definition's version): the learner is rebuilt when it
    changes."""
    base = f"maturity={config.maturity_days:g}d gap={config.decision_gap_hours:g}h"
    return f"{base} outcomes=v{outcomes}" if outcomes else base


def what_is_new(db: Database, config: LearningConfig, now: datetime) -> str:
    """A cheap fingerprint of what could have matured: the newest outcome id and how many leads are older than
    the maturity window (wins mature when recorded; losses when their lead has waited out the window)."""
    from sqlalchemy import func, select

    from storage.models import Lead, Outcome

    with db.session() as session:
        newest = session.scalar(select(func.max(Outcome.id)))
        old = session.scalar(select(func.count()).select_from(Lead).where(
            Lead.created_at <= now - timedelta(days=config.maturity_days)))
    return f"{newest or 0}:{old or 0}"


def learn_online_now(db: Database, redis: Any, config: LearningConfig, key: bytes, *, now: datetime | None = None,
                     actor: str = "beat", limit: int = MAX_LABELS_PER_PASS) -> OnlinePass:
    """One pass of the module's steps 1-5; returns what it did."""
    from scoring.dataset import lead_histories
    from scoring.features import ACTIVITY_TYPES
    from scoring.labels import label_leads
    from scoring.model import BundleError, ModelBundle
    from scoring.online import OnlineModel, OnlineModelError, blend
    from scoring.training_set import EventIndex
    from storage.bands import outcome_version
    from storage.feature_schema import active_schema
    from storage.model_registry import champion as champion_row
    from storage.outcomes import load_events, score_history, stored_outcomes
    from storage.prequential import Scored, add_scores, latest_snapshot, learned_leads, save_snapshot

    now = now or utcnow()
    result = OnlinePass()
    with db.session() as session:
        schema = active_schema(session)
        stored = load_events(session, ACTIVITY_TYPES, until=now)
        labels = label_leads(lead_histories(stored), stored_outcomes(session, until=now), now, config.policy)
        learned = learned_leads(session)
        snap = latest_snapshot(session)
        row = champion_row(session, "lead")
        champion_path = row.path if row is not None else None
        outcomes_version = outcome_version(session)
    labels = [label for label in labels if label.lead_id.isdigit()]
    index = EventIndex(stored.events, stored.lead_of, schema=schema)

    definition = label_definition(config, outcomes_version)
    model: OnlineModel | None = None
    # Another feature schema, another label definition or another kind of learner: start over (by replay).
    if (snap is not None and snap.schema_version == str(schema.version) and snap.definition == definition
            and snap.kind == config.online_model):
        try:
            model = OnlineModel.from_bytes(snap.state, key)
        except OnlineModelError as exc:
            log.warning("learning.online.snapshot_unreadable", extra={"version": snap.version, "error": str(exc)[:200]})
    if model is None:
        # Rebuild: replay every label already learned, in label order, on vectors rebuilt as of their decision
        # times (no pickle needed to survive a lost snapshot, a rotated key or a new feature schema).
        model = OnlineModel(config.online_model, seed=0, columns=list(schema.feature_names),
                            schema_version=str(schema.version))
        replay = [label for label in labels if int(label.lead_id) in learned]
        for label, vector in zip(replay, _vectors_at(index, replay)[0]):
            model.learn(vector, label.won)
        result.rebuilt = True
    new = [label for label in labels if int(label.lead_id) not in learned][:limit]
    champion = None
    if champion_path:
        try:
            champion = ModelBundle.load(champion_path)
        except BundleError as exc:
            log.warning("learning.online.champion_unreadable", extra={"error": str(exc)[:200]})
    scored: list[Scored] = []
    if new:
        vectors, frame = _vectors_at(index, new)
        with db.session() as session:
            history = score_history(session, [int(label.lead_id) for label in new])
        champion_p = _champion_predictions(champion, frame, new, history)
        version = f"online-{model.n_learned}"
        for label, vector, pc in zip(new, vectors, champion_p):
            lead = int(label.lead_id)
            po = model.predict_proba(vector)  # test first: the label is not learned yet
            common = {"won": label.won, "decision_time": label.decision_time, "labelled_at": label.labelled_at}
            scored.append(Scored(lead_id=lead, model="online", model_version=version, probability=po, **common))
            if pc is not None:
                scored.append(Scored(lead_id=lead, model="champion", model_version=pc[1], probability=pc[0], **common))
                scored.append(Scored(lead_id=lead, model="blend", model_version=f"{pc[1]}+{version}"[:64],
                                     probability=blend(pc[0], po, config.online_blend_weight), **common))
            model.learn(vector, label.won)
        result.learned = len(new)
        result.tested = {m: sum(1 for s in scored if s.model == m) for m in ("champion", "online", "blend")}
    # Unique even for two passes at one instant (a rebuild right after a pass that learned nothing new).
    snapshot = f"online-{model.n_learned}-{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    with db.session(write=True) as session:
        add_scores(session, scored)
        if result.rebuilt or scored:
            save_snapshot(session, version=snapshot, kind=model.kind, schema_version=str(schema.version),
                          definition=definition,
                          learned=model.n_learned, positives=model.n_positive, state=model.to_bytes(key))
            result.snapshot = snapshot
        if result.rebuilt:
            from storage.prequential import record_event

            record_event(session, "online_rebuilt", {"replayed": model.n_learned, "schema": str(schema.version),
                                                     "definition": definition, "kind": model.kind},
                         model_version=snapshot, at=now)
        else:
            current = latest_snapshot(session)
            result.snapshot = current.version if current is not None else snapshot
    result.gate = _apply_gate(db, redis, config, result.snapshot, actor=actor, now=now)
    result.serving = bool(result.gate.get("serve"))
    result.adwin_change = _watch_errors(db, redis, config, now=now)
    return result


def _apply_gate(db: Database, redis: Any, config: LearningConfig, snapshot: str | None, *, actor: str,
                now: datetime) -> dict[str, Any]:
    """Run the gate; publish (or withdraw) the blend; audit and record a change of serving."""
    from scoring.champion import definition_mismatch
    from storage.audit import record
    from storage.bands import outcome_changed_at, outcome_version
    from storage.model_registry import champion as champion_row
    from storage.prequential import last_event, record_event, scores_of

    with db.session() as session:
        # Under one outcome definition only: the labels recorded since it was saved, and a champion trained under it.
        definition, since = outcome_version(session), outcome_changed_at(session)
        row = champion_row(session, "lead")
        trained_under = int((row.params or {}).get("outcome_definition", 0)) if row is not None else definition
        champion = scores_of(session, "champion", limit=config.online_gate_labels * 2, recorded_since=since)
        blended = scores_of(session, "blend", limit=config.online_gate_labels * 2, recorded_since=since)
        before = last_event(session, ["online_serving"])
    stale = definition_mismatch(definition, trained_under)
    if stale is not None:
        decision = {"labels": 0, "auc_champion": None, "auc_blend": None, "margin": config.promotion_margin,
                    "serve": False, "reason": f"{stale}; the blend waits for a champion trained under v{definition}"}
    else:
        decision = gate_decision(champion, blended, config.promotion_margin, config.online_gate_labels)
    was_serving = bool(before is not None and before.detail.get("serve"))
    serve = bool(decision["serve"]) and snapshot is not None
    if serve:
        redis.set(ONLINE_SERVING_KEY, json.dumps({"version": snapshot, "weight": config.online_blend_weight}))
    else:
        redis.delete(ONLINE_SERVING_KEY)
    if serve != was_serving:
        detail = {**decision, "serve": serve, "snapshot": snapshot, "weight": config.online_blend_weight}
        with db.session(write=True) as session:
            record_event(session, "online_serving", detail, model_version=snapshot, at=now)
            record(session, actor=actor, action="model.online_blend_" + ("on" if serve else "off"),
                   target=f"online:{snapshot}", before={"serving": was_serving}, after=detail)
        log.info("learning.online.serving", extra={"serve": serve, "reason": decision["reason"][:200]})
    return decision


def _watch_errors(db: Database, redis: Any, config: LearningConfig, *, now: datetime) -> dict[str, Any] | None:
    """Feed the champion's live errors since the last reset to ADWIN; on a new change, record it and ask for a
    retraining on the window ADWIN keeps. Returns the change (or None)."""
    from scoring.drift import ErrorDriftDetector, adwin_window_start
    from storage.model_registry import champion as champion_row
    from storage.prequential import last_event, record_event, scores_of

    with db.session() as session:
        # ADWIN restarts after each change it reported and when another champion was promoted: the errors
        # before belong to another regime or another model.
        reported = last_event(session, ["adwin_change"])
        row = champion_row(session, "lead")
        resets = [t for t in (reported.at if reported is not None else None,
                              row.promoted_at if row is not None else None) if t is not None]
        since = max(resets) if resets else None
        # Replaying the same stream gives the same detections (ADWIN is deterministic): only labels stored
        # since the last pass can raise a new change.
        stream = [s for s in scores_of(session, "champion", since=since) if since is None or s.labelled_at > since]
    detector = ErrorDriftDetector(config.adwin_delta)
    change: dict[str, Any] | None = None
    times: list[datetime] = []
    for s in stream:
        times.append(s.decision_time)
        if detector.update(int(s.won), s.probability) and change is None:
            change = {"labels": len(times), "labelled_at": s.labelled_at.isoformat()}
    if change is None:
        return None
    # The window is the one ADWIN keeps now, after the whole stream: the labels of the current regime.
    start = adwin_window_start(times, detector.width)
    change.update(width=detector.width, detections=detector.detections,
                  window_start=start.isoformat() if start else None)
    asked = config.adwin_retrain and bool(redis.set(ADWIN_RETRAIN_KEY, now.isoformat(), nx=True,
                                                     ex=max(60, int(config.drift_retrain_cooldown_hours * 3600))))
    change["retrain"] = "asked" if asked else ("off" if not config.adwin_retrain else "cooldown")
    with db.session(write=True) as session:
        record_event(session, "adwin_change", change, at=now)
    log.info("learning.adwin.change", extra={"width": change["width"], "window_start": change["window_start"],
                                             "retrain": change["retrain"]})
    if asked:
        from tasks.learning import retrain

        retrain.delay(reason="adwin", force=True, window_start=change["window_start"])
    return change


# The online challenger learns each matured outcome (test first); the gate and ADWIN run on its records.
@periodic("tasks.online_learning.learn_online", every=300.0, soft_time_limit=540, time_limit=600)
def learn_online() -> dict[str, Any]:
    """Beat: one online-learning pass (test-then-train, gate, ADWIN); one process at a time."""
    res = resources()
    config = config_of(res)
    if not config.online:
        res.redis.delete(ONLINE_SERVING_KEY)
        return {"status": "off"}
    now = utcnow()
    with exclusive(res.redis, ONLINE_LOCK_KEY, 600, now.isoformat()) as held:
        if not held:
            return {"status": "skipped", "reason": "another pass is running"}
        seen = what_is_new(res.db, config, now)
        if seen == "0:0" or res.redis.get(ONLINE_SEEN_KEY) == seen.encode():
            return {"status": "skipped", "reason": "no outcome has matured since the last pass"}
        done = learn_online_now(res.db, res.redis, config, res.online_key(), now=now)
        res.redis.set(ONLINE_SEEN_KEY, seen, ex=FULL_PASS_EVERY)
    if done.learned or done.rebuilt:
        log.info("learning.online.pass", extra={"learned": done.learned, "rebuilt": done.rebuilt,
                                                "serving": done.serving})
    return {"status": "ok", "learned": done.learned, "rebuilt": done.rebuilt, "serving": done.serving,
            "adwin_change": done.adwin_change}
