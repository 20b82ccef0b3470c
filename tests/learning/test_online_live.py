"""The online challenger on the live path: test-then-train passes, snapshots, the gate, blending, ADWIN."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, select, update

from core.keys import ONLINE_SERVING_KEY
from core.settings import load_settings
from scoring.online import OnlineModel
from storage.db import Database
from storage.models import AuditEntry, Lead, ModelEvent, OnlineSnapshot, PrequentialScore
from storage.prequential import Scored, add_scores, record_event, scores_of
from tasks.learning import ADWIN_MIN_WINDOW_LABELS, LearningConfig, retrain_from_events
from tasks.online_learning import _apply_gate, _watch_errors, gate_decision, learn_online_now
from tasks.resources import Resources
from tests.learning.conftest import DAY, T0, store_world, web_event, wipe_world, world_events

KEY = b"k" * 32


def config(tmp_path: Path, **overrides: Any) -> LearningConfig:
    values: dict[str, Any] = {"maturity_days": 30, "min_outcomes": 50, "min_positives": 10, "models_dir": tmp_path,
                              "online_model": "hat", "adwin_retrain": False}
    values.update(overrides)
    return LearningConfig(**values)


def rows_of(db: Database, model: str) -> list[PrequentialScore]:
    with db.session() as session:
        return list(session.scalars(select(PrequentialScore).where(PrequentialScore.model == model)
                                    .order_by(PrequentialScore.labelled_at, PrequentialScore.id)))


def test_a_pass_tests_each_label_before_learning_it_and_survives_a_restart(
        clean: Database, redis_client: Any, tmp_path: Path) -> None:
    events, outcomes = world_events(leads=400)
    store_world(clean, events, outcomes)
    cfg = config(tmp_path)
    champion = retrain_from_events(clean, redis_client, cfg, now=T0 + 60 * DAY)
    assert champion.status == "promoted", champion.reason
    first = learn_online_now(clean, redis_client, cfg, KEY, now=T0 + 150 * DAY)
    assert first.rebuilt and first.learned > 200
    online, champ, blend = rows_of(clean, "online"), rows_of(clean, "champion"), rows_of(clean, "blend")
    assert len(online) == first.learned
    # Labels known after the champion was trained are predicted by it on the same rebuilt vector.
    assert champ and all(r.model_version == champion.version for r in champ)
    assert len(blend) == len(champ)
    # Test first: the very first label was predicted by a learner that had learned nothing (its prior).
    assert online[0].probability == pytest.approx(OnlineModel("hat", columns=None).predict_proba({}), abs=0.02)
    # ... and the learner did learn: it ranks the later labels better than chance.
    later = online[len(online) // 2:]
    from scoring.prequential import auc

    assert auc([int(r.won) for r in later], [r.probability for r in later]) > 0.65
    with clean.session() as session:
        snap = session.scalars(select(OnlineSnapshot)).one()
    assert snap.learned == first.learned and snap.state[:2] != b"\x80\x04"  # not a bare pickle
    # A second pass at the same moment finds nothing new and keeps the snapshot.
    again = learn_online_now(clean, redis_client, cfg, KEY, now=T0 + 150 * DAY)
    assert again.learned == 0 and not again.rebuilt
    # A restart with another key (or a forged snapshot) cannot load it: the pass rebuilds by replaying every
    # stored label, and learns the same count.
    rebuilt = learn_online_now(clean, redis_client, cfg, b"x" * 32, now=T0 + 150 * DAY)
    assert rebuilt.rebuilt and rebuilt.learned == 0
    with clean.session() as session:
        newest = session.scalars(select(OnlineSnapshot).order_by(OnlineSnapshot.id.desc())).first()
        kinds = [e.kind for e in session.scalars(select(ModelEvent))]
    assert newest.learned == first.learned and kinds.count("online_rebuilt") == 2


def test_no_event_after_the_decision_time_reaches_the_learner(clean: Database, redis_client: Any,
                                                             tmp_path: Path) -> None:
    events, outcomes = world_events(leads=200, seed=5)
    # Every lead requests a demo (the strongest signal) the day before the pass: after every decision time and
    # every label, so the vectors as of the decision times, and all the learner learns, must not change.
    late = [web_event(f"u{i:04d}", "demo_request", T0 + 149 * DAY, f"u{i:04d}:late") for i in range(200)]
    cfg = config(tmp_path)
    probe = {"pricing_views_7d": 3.0, "demo_requests_30d": 1.0, "seniority": "vp"}

    def learned_model(extra: list[Any]) -> tuple[list[float], float]:
        store_world(clean, events + extra, outcomes)
        learn_online_now(clean, redis_client, cfg, KEY, now=T0 + 150 * DAY)
        with clean.session() as session:
            state = session.scalars(select(OnlineSnapshot).order_by(OnlineSnapshot.id.desc())).first().state
        return [r.probability for r in rows_of(clean, "online")], OnlineModel.from_bytes(state, KEY).predict_proba(probe)

    without = learned_model([])
    wipe_world(clean, redis_client)
    with_late = learned_model(late)
    assert without == with_late


def scored(model: str, rows: list[tuple[int, float, bool]]) -> list[Scored]:
    return [Scored(lead_id=lead, model=model, model_version="v", probability=p, won=won,
                   decision_time=T0 + i * DAY, labelled_at=T0 + (i + 1) * DAY)
            for i, (lead, p, won) in enumerate(rows)]


def test_the_gate_serves_the_blend_only_when_it_wins_by_the_margin() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.3
    noise = rng.normal(0, 1, 400)
    champion = scored("champion", [(i, float(1 / (1 + np.exp(-(2 * y[i] - 1 + 1.5 * noise[i])))), bool(y[i]))
                                   for i in range(400)])
    better = scored("blend", [(i, float(1 / (1 + np.exp(-(2 * y[i] - 1 + 0.7 * noise[i])))), bool(y[i]))
                              for i in range(400)])
    same = scored("blend", [(s.lead_id, s.probability, s.won) for s in champion])
    win = gate_decision(champion, better, 0.005, 500)
    assert win["serve"] and win["auc_blend"] > win["auc_champion"] + 0.005 and win["labels"] == 400
    tie = gate_decision(champion, same, 0.005, 500)
    assert not tie["serve"] and "does not beat" in tie["reason"]
    few = gate_decision(champion[:50], better[:50], 0.005, 500)
    assert not few["serve"] and "needs 100" in few["reason"]
    # Only labels both predicted count, and only the newest `limit` of them.
    assert gate_decision(champion, better[:150], 0.005, 120)["labels"] == 120


def test_a_serving_blend_changes_the_probability_but_not_grade_or_reasons(
        clean: Database, redis_client: Any, tmp_path: Path, settings_overrides: dict[str, Any],
        service_urls: Any) -> None:
    events, outcomes = world_events(leads=400)
    leads = store_world(clean, events, outcomes)
    settings = load_settings({**settings_overrides, "min_outcomes": 50, "min_positives": 10}, env_file=None)
    cfg = config(tmp_path)
    assert retrain_from_events(clean, redis_client, cfg, now=T0 + 60 * DAY).status == "promoted"
    res = Resources(settings, service_urls, clean, redis_client)
    learn_online_now(clean, redis_client, cfg, res.online_key(), now=T0 + 150 * DAY)
    redis_client.delete(ONLINE_SERVING_KEY)
    alone = res.scorer()
    assert not alone.blending
    # The gate on a fixture where the blend wins: it is published, audited and recorded as a model event.
    with clean.session(write=True) as session:
        session.execute(delete(PrequentialScore).where(PrequentialScore.model.in_(["champion", "blend"])))
        ids = sorted(leads.values())[:300]
        rng = np.random.default_rng(1)
        y = rng.random(300) < 0.4
        add_scores(session, scored("champion", [(ids[i], float(0.5 + 0.1 * (y[i] - 0.5) + 0.2 * (rng.random() - 0.5)),
                                                 bool(y[i])) for i in range(300)]))
        add_scores(session, scored("blend", [(ids[i], float(0.5 + 0.3 * (y[i] - 0.5) + 0.1 * (rng.random() - 0.5)),
                                              bool(y[i])) for i in range(300)]))
        snapshot = session.scalars(select(OnlineSnapshot)).first().version
    decision = _apply_gate(clean, redis_client, cfg, snapshot, actor="test", now=T0 + 151 * DAY)
    assert decision["serve"]
    assert json.loads(redis_client.get(ONLINE_SERVING_KEY)) == {"version": snapshot, "weight": 0.5}
    with clean.session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "model.online_blend_on")).one()
        assert session.scalars(select(ModelEvent).where(ModelEvent.kind == "online_serving")).one().detail["serve"]
    blended = res.scorer()
    assert blended.blending and blended.version.endswith("+" + snapshot)
    vector = {"pricing_views_7d": 4.0, "demo_requests_30d": 1.0, "seniority": "vp"}
    a = alone.score(vector)
    b = blended.score(vector)
    assert b.grade == a.grade and b.reasons == a.reasons
    assert b.probability != a.probability and b.model_version == blended.version
    # When the blend stops winning, it is withdrawn (and that is audited too).
    with clean.session(write=True) as session:
        session.execute(update(PrequentialScore).where(PrequentialScore.model == "blend").values(probability=0.5))
    assert not _apply_gate(clean, redis_client, cfg, snapshot, actor="test", now=T0 + 152 * DAY)["serve"]
    assert redis_client.get(ONLINE_SERVING_KEY) is None and not res.scorer().blending


def test_adwin_on_the_live_errors_records_a_change_and_its_window(clean: Database, redis_client: Any,
                                                                  tmp_path: Path) -> None:
    with clean.session(write=True) as session:
        people = [Lead(email=f"p{i}@corp.io", properties={}) for i in range(2000)]
        session.add_all(people)
        session.flush()
        leads = [lead.id for lead in people]
    rng = np.random.default_rng(7)
    stream = []
    for i, lead in enumerate(leads):
        y = bool(rng.random() < 0.3)
        right = i < 1200  # the champion is right until label 1200, then its errors jump
        p = (0.8 if y else 0.2) if right else (0.2 if y else 0.8)
        stream.append(Scored(lead_id=lead, model="champion", model_version="v", probability=p, won=y,
                             decision_time=T0 + i * timedelta(hours=1),
                             labelled_at=T0 + i * timedelta(hours=1) + DAY))
    cfg = config(tmp_path)
    with clean.session(write=True) as session:
        add_scores(session, stream[:1000])
    assert _watch_errors(clean, redis_client, cfg, now=T0 + 100 * DAY) is None  # a stationary stream: no change
    with clean.session(write=True) as session:
        add_scores(session, stream[1000:])
    change = _watch_errors(clean, redis_client, cfg, now=T0 + 100 * DAY)
    assert change is not None and 1200 <= change["labels"] <= 1400
    start = datetime.fromisoformat(change["window_start"])
    # The window ADWIN keeps begins near the change (its width is a count of labels, mapped to decision time).
    assert T0 + 1100 * timedelta(hours=1) <= start <= T0 + 1500 * timedelta(hours=1)
    with clean.session() as session:
        assert session.scalars(select(ModelEvent).where(ModelEvent.kind == "adwin_change")).one()
        assert len(scores_of(session, "champion")) == 2000
    # The next pass starts after the reported change: the old regime does not raise it again.
    assert _watch_errors(clean, redis_client, cfg, now=T0 + 101 * DAY) is None


def test_retraining_on_adwin_window_uses_only_the_labels_in_it(clean: Database, redis_client: Any,
                                                               tmp_path: Path) -> None:
    events, outcomes = world_events(leads=400)
    store_world(clean, events, outcomes)
    cfg = config(tmp_path)
    full = retrain_from_events(clean, redis_client, cfg, now=T0 + 150 * DAY)
    start = T0 + 40 * DAY
    windowed = retrain_from_events(clean, redis_client, cfg, now=T0 + 150 * DAY, reason="adwin", window_start=start)
    note = windowed.report["training"]["window"]
    decided_since = sum(1 for label in windowed_labels(clean, cfg) if label.decision_time >= start)
    assert note["applied"] and note["labels_total"] == full.labelled
    assert windowed.labelled == note["labels_in_window"] == max(decided_since, ADWIN_MIN_WINDOW_LABELS)
    assert windowed.labelled < full.labelled
    # A window of a few labels right after a change is widened to the newest ADWIN_MIN_WINDOW_LABELS.
    too_late = retrain_from_events(clean, redis_client, cfg, now=T0 + 150 * DAY, reason="adwin",
                                   window_start=T0 + 149 * DAY)
    assert too_late.report["training"]["window"]["applied"] and too_late.labelled == ADWIN_MIN_WINDOW_LABELS
    # Once ADWIN reported a change, the scheduled retraining reads its window too.
    with clean.session(write=True) as session:
        record_event(session, "adwin_change", {"window_start": start.isoformat()}, at=T0 + 150 * DAY)
    scheduled = retrain_from_events(clean, redis_client, cfg, now=T0 + 151 * DAY)
    assert scheduled.report["training"]["window"]["start"] == start.isoformat()
    assert scheduled.labelled == windowed.labelled
    with clean.session() as session:
        events_ = [e for e in session.scalars(select(ModelEvent).where(ModelEvent.kind == "retrain"))]
    assert [e.detail["reason"] for e in events_] == ["schedule", "adwin", "adwin", "schedule"]


def windowed_labels(db: Database, cfg: LearningConfig) -> list[Any]:
    from scoring.dataset import labelled_leads
    from scoring.features import ACTIVITY_TYPES
    from storage.outcomes import load_events, stored_outcomes

    with db.session() as session:
        return labelled_leads(load_events(session, ACTIVITY_TYPES), stored_outcomes(session), T0 + 150 * DAY,
                              cfg.policy)


def test_the_fingerprint_moves_when_an_outcome_arrives_or_a_lead_matures(clean: Database, tmp_path: Path) -> None:
    from storage.models import Outcome
    from tasks.online_learning import what_is_new

    cfg = config(tmp_path)
    now = T0 + 100 * DAY
    assert what_is_new(clean, cfg, now) == "0:0"  # nothing to learn: the beat task skips its pass
    with clean.session(write=True) as session:
        lead = Lead(email="a@corp.io", properties={}, created_at=T0)
        session.add(lead)
        session.flush()
        lead_id = lead.id
    matured = what_is_new(clean, cfg, now)
    assert matured == "0:1" and what_is_new(clean, cfg, T0 + DAY) == "0:0"
    with clean.session(write=True) as session:
        session.add(Outcome(lead_id=lead_id, won=True, occurred_at=T0 + 5 * DAY, source="test"))
    assert what_is_new(clean, cfg, now) not in (matured, "0:0")


def test_a_new_label_definition_or_learner_kind_starts_the_learner_over(clean: Database, redis_client: Any,
                                                                        tmp_path: Path) -> None:
    events, outcomes = world_events(leads=200, seed=8)
    store_world(clean, events, outcomes)
    first = learn_online_now(clean, redis_client, config(tmp_path), KEY, now=T0 + 150 * DAY)
    assert first.rebuilt and first.learned
    assert not learn_online_now(clean, redis_client, config(tmp_path), KEY, now=T0 + 150 * DAY).rebuilt
    longer = learn_online_now(clean, redis_client, config(tmp_path, maturity_days=45), KEY, now=T0 + 150 * DAY)
    assert longer.rebuilt
    other = learn_online_now(clean, redis_client, config(tmp_path, maturity_days=45, online_model="arf"), KEY,
                             now=T0 + 150 * DAY)
    assert other.rebuilt
    with clean.session() as session:
        newest = session.scalars(select(OnlineSnapshot).order_by(OnlineSnapshot.id.desc())).first()
        rebuilt = [e.detail for e in session.scalars(select(ModelEvent).where(ModelEvent.kind == "online_rebuilt"))]
    assert newest.kind == "arf" and newest.definition == "maturity=45d gap=24h"
    assert [d["definition"] for d in rebuilt] == ["maturity=30d gap=24h", "maturity=45d gap=24h",
                                                  "maturity=45d gap=24h"]


def test_a_worker_pass_reports_an_adwin_change_and_retrains_on_its_window(
        worker_process: Any, clean: Database, redis_client: Any, settings_overrides: dict[str, Any]) -> None:
    from core.keys import ADWIN_RETRAIN_KEY, ONLINE_SEEN_KEY
    from tasks.celery_app import create_celery
    from tests.processes import wait_for

    events, outcomes = world_events(leads=400)
    leads = store_world(clean, events, outcomes)
    redis_client.delete(ADWIN_RETRAIN_KEY, ONLINE_SEEN_KEY)
    # The champion's live record: right on the first 250 labels, wrong on the rest (its error rate jumps).
    rng = np.random.default_rng(2)
    ids = sorted(leads.values())
    stream = []
    for i, lead in enumerate(ids):
        y = bool(rng.random() < 0.3)
        p = (0.85 if y else 0.15) if i < 250 else (0.15 if y else 0.85)
        at = T0 + i * timedelta(hours=2)
        common = {"lead_id": lead, "model_version": "v", "probability": p, "won": y, "decision_time": at,
                  "labelled_at": at + DAY}
        stream += [Scored(model="champion", **common), Scored(model="online", **common)]  # all learned already
    with clean.session(write=True) as session:
        add_scores(session, stream)
    celery = create_celery(load_settings(settings_overrides, env_file=None))
    try:
        celery.send_task("tasks.online_learning.learn_online")

        def events_of(kind: str) -> list[ModelEvent]:
            with clean.session() as session:
                return list(session.scalars(select(ModelEvent).where(ModelEvent.kind == kind)))

        wait_for(lambda: bool(events_of("retrain")), 240, "the retraining ADWIN asked for")
        change = events_of("adwin_change")[0].detail
        assert 250 <= change["labels"] <= 330 and change["retrain"] == "asked"
        retrain = events_of("retrain")[0].detail
        assert retrain["reason"] == "adwin" and retrain["window"]["start"] == change["window_start"]
        assert events_of("online_rebuilt")  # no snapshot existed: the learner replayed every learned label
        # The next pass finds nothing new and skips; the change is not reported twice.
        celery.send_task("tasks.online_learning.learn_online")
        wait_for(lambda: redis_client.get(ONLINE_SEEN_KEY) is not None, 60, "the pass's fingerprint")
        assert len(events_of("adwin_change")) == 1
    finally:
        redis_client.delete(ADWIN_RETRAIN_KEY, ONLINE_SEEN_KEY, "lb:learning:online_lock")
