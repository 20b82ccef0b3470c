"""Drift and live quality (services.learning) on stored prequential scores and model events: the numbers by hand
and against scikit-learn, the JSON API, and the models page's section with its empty state."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from core.records import utcnow
from scoring.metrics import expected_calibration_error
from scoring.prequential import auc
from services import learning
from storage.db import Database
from storage.models import Lead
from storage.prequential import Scored, add_scores, record_event
from tests.admin.learning_data import seed_learning

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def make_leads(db: Database, count: int) -> list[int]:
    """`count` leads; their ids."""
    with db.session() as session:
        leads = [Lead(email=f"l{i}@example.com", properties={}) for i in range(count)]
        session.add_all(leads)
        session.flush()
        return [lead.id for lead in leads]


def store(db: Database, labels: list[tuple[int, datetime, bool, dict[str, float]]]) -> None:
    """(lead, labelled_at, won, {model: probability}) as prequential scores."""
    with db.session() as session:
        add_scores(session, [Scored(lead_id=lead, model=model, model_version=f"{model}-v", probability=p, won=won,
                                    decision_time=at - 5 * DAY, labelled_at=at)
                             for lead, at, won, by_model in labels for model, p in by_model.items()])


@pytest.fixture()
def by_hand(clean_db: Database) -> dict[str, Any]:
    """Three weeks of labels before NOW: week 1 has 3 (too few), week 2 four lost (one class), week 3 four that
    give AUC 0.75 / 1.0 / 0.5; plus a label in week 3 only the online learner scored."""
    leads = make_leads(clean_db, 12)
    week3 = [(True, 0.9, 0.8, 0.5), (True, 0.4, 0.7, 0.5), (False, 0.6, 0.3, 0.5), (False, 0.1, 0.2, 0.5)]
    labels = [(leads[i], NOW - 20 * DAY + i * DAY, i == 0, {"champion": 0.3, "online": 0.3, "blend": 0.3})
              for i in range(3)]
    labels += [(leads[3 + i], NOW - 13 * DAY + i * DAY, False, {"champion": 0.2, "online": 0.4, "blend": 0.3})
               for i in range(4)]
    labels += [(leads[7 + i], NOW - 6 * DAY + i * DAY, won, {"champion": c, "online": o, "blend": b})
               for i, (won, c, o, b) in enumerate(week3)]
    labels.append((leads[11], NOW - 2 * DAY, False, {"online": 0.99}))  # would spoil the online AUC if counted
    store(clean_db, labels)
    return {"week3": week3}


def test_weekly_windows_measure_every_model_on_the_same_labels(clean_db: Database, by_hand: dict[str, Any]) -> None:
    with clean_db.session() as session:
        view = learning.live_quality(session, now=NOW, window_days=7, min_labels=4)
    assert view.week_ends == [NOW - 14 * DAY, NOW - 7 * DAY, NOW]
    assert (view.labels, view.positives, view.unmatched) == (11, 3, 1)
    assert [m.model for m in view.models] == ["champion", "online", "blend"]
    for m in view.models:
        assert [(p.start, p.end) for p in m.points] == [(e - 7 * DAY, e) for e in view.week_ends]
        assert [(p.labels, p.positives) for p in m.points] == [(3, 1), (4, 0), (4, 2)]
        assert [p.roc_auc for p in m.points[:2]] == [None, None]  # too few labels; then a single class
        assert m.points[0].log_loss is None and m.points[1].ece is None
    champion, online, blend = (m.points[-1] for m in view.models)
    # Champion: of the 4 (won, lost) pairs, 0.4 < 0.6 is the one ranked wrong.
    assert champion.roc_auc == 0.75 and online.roc_auc == 1.0 and blend.roc_auc == 0.5
    assert champion.log_loss == pytest.approx(-(math.log(0.9) + math.log(0.4)) / 2, abs=1e-6)
    assert champion.ece == pytest.approx((0.1 + 0.6 + 0.6 + 0.1) / 4, abs=1e-6)  # each in its own bin
    assert blend.ece == 0.0 and blend.log_loss == pytest.approx(math.log(2), abs=1e-6)
    y = [int(w) for w, *_ in by_hand["week3"]]
    for column, point in ((1, champion), (2, online), (3, blend)):
        p = [row[column] for row in by_hand["week3"]]
        assert point.roc_auc == pytest.approx(roc_auc_score(y, p)) and point.roc_auc == pytest.approx(auc(y, p))
        assert point.log_loss == pytest.approx(log_loss(y, p), abs=1e-6)


def test_trailing_windows_agree_with_scikit_learn(clean_db: Database) -> None:
    """Six weeks of random labels, 28-day windows a week apart: each point is the label set of its window."""
    rng = random.Random(7)
    leads = make_leads(clean_db, 240)
    labels = []
    for lead in leads:
        at = NOW - timedelta(seconds=rng.uniform(0, 41 * 86400))
        won = rng.random() < 0.3
        labels.append((lead, at, won, {model: min(0.99, max(0.01, rng.gauss(0.55 if won else 0.35, 0.2)))
                                       for model in ("champion", "online", "blend")}))
    store(clean_db, labels)
    with clean_db.session() as session:
        view = learning.live_quality(session, now=NOW)
    assert len(view.week_ends) == 6 and view.week_ends[-1] == NOW
    for m in view.models:
        for point in m.points:
            inside = [(int(won), by_model[m.model]) for _, at, won, by_model in labels if point.start <= at < point.end]
            y, p = [w for w, _ in inside], [q for _, q in inside]
            assert point.labels == len(inside) and point.positives == sum(y)
            assert point.labels >= learning.MIN_LABELS
            assert point.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-6)
            assert point.log_loss == pytest.approx(log_loss(y, p), abs=1e-6)
            assert point.ece == pytest.approx(expected_calibration_error(np.array(y), np.array(p)), abs=1e-6)


def _events(db: Database) -> None:
    with db.session() as session:
        record_event(session, "drift_check", {"features": {"a": 0.05, "b": 0.2, "c": 0.5, "d": 0.1},
                                              "score": 0.08, "alert": True, "live_rows": 300, "threshold": 0.2},
                     model_version="m1", at=NOW - 12 * DAY)
        record_event(session, "drift_check", {"features": {"a": 0.04, "b": 0.3, "c": None, "d": 0.12, "e": 0.01},
                                              "score": 0.1, "alert": False, "live_rows": 310, "threshold": 0.25},
                     model_version="m1", at=NOW - 2 * DAY)
        record_event(session, "adwin_change", {"labels": 400, "width": 150, "window_start": None}, at=NOW - 11 * DAY)
        record_event(session, "retrain", {"reason": "adwin", "promoted": True}, model_version="m2", at=NOW - 10 * DAY)
        record_event(session, "retrain", {"reason": "schedule", "promoted": False}, model_version="m3",
                     at=NOW - 5 * DAY)
        record_event(session, "online_serving", {"serve": True, "auc_champion": 0.7, "auc_blend": 0.75,
                                                 "labels": 120}, at=NOW - 4 * DAY)
        record_event(session, "online_serving", {"serve": False, "auc_champion": 0.72, "auc_blend": 0.71,
                                                 "labels": 120}, at=NOW - 3 * DAY)
        record_event(session, "online_rebuilt", {"replayed": 5}, at=NOW - 1 * DAY)
        record_event(session, "drift_check", {"features": {"a": 0.9}, "score": 0.9, "alert": True}, at=NOW + DAY)


def test_drift_history_ranks_features_by_their_latest_psi_and_marks_events(clean_db: Database) -> None:
    _events(clean_db)
    with clean_db.session() as session:
        drift = learning.drift_history(session, now=NOW, top=2)
        quality = learning.live_quality(session, now=NOW)
    assert drift.week_ends == [NOW - 7 * DAY, NOW]
    # c's newest measured PSI (0.5, in the older check) beats b's 0.3; the check after NOW is not shown.
    assert drift.features == ["c", "b"] and drift.threshold == 0.25
    assert [(c.at, c.score_psi, c.alert, c.live_rows) for c in drift.checks] == [
        (NOW - 12 * DAY, 0.08, True, 300), (NOW - 2 * DAY, 0.1, False, 310)]
    assert [[(f.feature, f.psi) for f in c.features] for c in drift.checks] == [
        [("c", 0.5), ("b", 0.2)], [("c", None), ("b", 0.3)]]
    expected = ["drift_alert", "adwin_change", "retrain_promoted", "retrain_kept", "blend_on", "blend_off"]
    assert [e.mark for e in drift.events] == expected  # the quiet check and the rebuild are not marked
    assert quality.events == drift.events and quality.labels == 0 and quality.week_ends == drift.week_ends
    texts = [e.text for e in drift.events]
    assert texts[0] == "Drift alert: score PSI 0.080 (threshold 0.2) on 300 live leads"
    assert texts[2] == "Retrained (adwin): m2 was promoted" and texts[3] == "Retrained (schedule): the champion was kept"
    assert texts[4] == "Blend switched on: blend AUC 0.750 vs champion 0.700 on 120 labels"


def test_an_empty_history_is_one_week_with_nothing_in_it(clean_db: Database) -> None:
    with clean_db.session() as session:
        quality = learning.live_quality(session, now=NOW)
        drift = learning.drift_history(session, now=NOW)
    assert quality.week_ends == drift.week_ends == [NOW]
    assert quality.labels == 0 and all(p.roc_auc is None and p.labels == 0 for m in quality.models for p in m.points)
    assert drift.checks == [] and drift.features == [] and drift.threshold is None and drift.events == []


@pytest.fixture()
def api(admin_app: Any, make_token: Callable[[str], str]) -> Callable[..., Any]:
    """GET on the API with a viewer token."""
    client = admin_app.test_client()
    headers = {"Authorization": f"Bearer {make_token('viewer')}"}
    return lambda path, **kw: client.get("/api" + path, headers=headers, **kw)


def test_api_returns_the_live_quality_and_drift_as_json(api: Any, clean_db: Database) -> None:
    now = utcnow()
    leads = make_leads(clean_db, 90)
    with clean_db.session() as session:
        seeded = seed_learning(session, leads, now)
    body = api("/models/live-quality?weeks=2&window_days=14").json
    assert set(body) == {"generated_at", "step_days", "window_days", "min_labels", "week_ends", "labels",
                         "positives", "unmatched", "models", "events"}
    assert body["window_days"] == 14 and body["step_days"] == 7 and len(body["week_ends"]) == 2
    assert [m["model"] for m in body["models"]] == ["champion", "online", "blend"]
    point = body["models"][0]["points"][-1]
    assert set(point) == {"start", "end", "labels", "positives", "roc_auc", "log_loss", "ece"}
    assert point["labels"] >= 20 and 0.5 < point["roc_auc"] <= 1 and point["log_loss"] > 0
    assert datetime.fromisoformat(point["end"]) - datetime.fromisoformat(point["start"]) == 14 * DAY
    assert [e["mark"] for e in body["events"]] == ["adwin_change", "retrain_promoted", "drift_alert", "blend_on"]
    drift = api("/models/drift?top=3").json
    assert drift["features"] == seeded["features"][:3] and drift["threshold"] == 0.25
    assert len(drift["checks"]) == seeded["checks"] and len(drift["week_ends"]) == 3
    assert [f["feature"] for f in drift["checks"][-1]["features"]] == drift["features"]
    assert drift["checks"][-1]["alert"] is True and len(drift["events"]) == seeded["marks"]
    for bad in ("/models/live-quality?weeks=0", "/models/live-quality?window_days=3", "/models/drift?top=x"):
        response = api(bad)
        assert response.status_code == 400 and response.json["error"], bad


def test_models_page_draws_both_charts_or_says_why_not(admin_client: Any, clean_db: Database) -> None:
    html = admin_client.get("/admin/models").text
    assert "Drift and live quality" in html and "No matured outcomes yet" in html
    assert 'class="chart time' not in html
    leads = make_leads(clean_db, 60)
    with clean_db.session() as session:
        seed_learning(session, leads, utcnow())
    html = admin_client.get("/admin/models").text
    assert "No matured outcomes yet" not in html
    section = html[html.index('id="learning"'):html.index('class="card model"') if 'class="card model"' in html
                   else len(html)]
    drawn = re.findall(r'<svg class="chart time.*?</svg>', section)
    assert len(drawn) == 2
    assert [len(re.findall(r'<g class="mark ', svg)) for svg in drawn] == [4, 4]
    assert "ADWIN change" in section and "retrained: promoted" in section and "alert threshold 0.25" in section
