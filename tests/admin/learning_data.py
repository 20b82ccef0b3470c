"""Continual-learning history for the admin tests and the walk: prequential scores of the champion, the online learner
and their blend for existing leads, drift checks and the events the models page marks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from storage.prequential import Scored, add_scores, record_event

FEATURES = {"pricing_views_7d": 0.31, "demo_requested": 0.12, "free_email": 0.06, "pages_7d": 0.04,
            "emails_opened_7d": 0.02}
THRESHOLD = 0.25


def seed_learning(session: Session, lead_ids: list[int], now: datetime, days: float = 20.0) -> dict[str, Any]:
    """One label per lead, spread evenly over the `days` before `now` (every third one won), scored by all three
    models; a drift check a week, the last one alerting; and an ADWIN change, a promoting retraining and the blend
    switched on. Returns what the charts should show."""
    rows = []
    count = len(lead_ids)
    for i, lead in enumerate(lead_ids):
        labelled = now - timedelta(days=days) + timedelta(days=days) * (i + 0.5) / count
        won = i % 3 == 0
        wobble = ((i * 37) % 10) / 25  # 0 to 0.36: the classes overlap, so no AUC is a perfect 1
        champion = min(0.95, (0.45 if won else 0.15) + wobble)
        online = min(0.95, (0.35 if won else 0.2) + ((i * 53) % 10) / 25)
        blend = (champion + online) / 2
        common = {"lead_id": lead, "won": won, "decision_time": labelled - timedelta(days=10), "labelled_at": labelled}
        rows += [Scored(model="champion", model_version="m-2024.06", probability=champion, **common),
                 Scored(model="online", model_version="online-1", probability=online, **common),
                 Scored(model="blend", model_version="m-2024.06+online-1", probability=blend, **common)]
    add_scores(session, rows)
    checks = 3
    for k in range(checks):  # drift checks at now - 20 d, - 13 d, - 6 d: one in each week shown
        scale = 0.4 + 0.3 * k
        alert = k == checks - 1
        record_event(session, "drift_check", {
            "features": {name: round(psi * scale, 4) for name, psi in FEATURES.items()} | {"country": None},
            "score": round(0.3 * scale, 4), "alert": alert, "live_rows": 480 + 20 * k, "threshold": THRESHOLD},
            model_version="m-2024.06", at=now - timedelta(days=days - 7 * k))
    record_event(session, "adwin_change", {"labels": 120, "width": 70, "window_start": None},
                 at=now - timedelta(days=9))
    record_event(session, "retrain", {"reason": "adwin", "promoted": True, "labelled": 640, "window_start": None,
                                      "window": "", "outcome": "promoted"}, model_version="m-2024.06",
                 at=now - timedelta(days=8))
    record_event(session, "online_serving", {"serve": True, "reason": "blend wins", "auc_champion": 0.71,
                                             "auc_blend": 0.74, "labels": 100}, model_version="online-1",
                 at=now - timedelta(days=3))
    record_event(session, "online_rebuilt", {"replayed": 10, "schema": "s"}, at=now - timedelta(days=2))  # unmarked
    return {"marks": 4, "features": sorted(FEATURES, key=lambda name: -FEATURES[name])[:4], "checks": checks}
