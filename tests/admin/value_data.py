"""A pilot with eight weeks of leads and their CRM facts in the database, for the Value page, API and CLI tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from scoring.experiment import CONTROL, PILOT
from services.pilots import PilotInput, start_pilot
from storage.db import Database
from storage.models import Lead, PilotFacts, ScoreHistory
from storage.pilots import insert_groups

WEEKS = 8
LEADS_PER_WEEK = 30


def seed_pilot(db: Database, now: datetime, *, seed: int = 7) -> dict[str, int]:
    """A running pilot started WEEKS ago; each week's leads cross 75, are touched (pilot in minutes, control in
    hours), some qualify, open an opportunity and close. Returns the leads per group."""
    rng = random.Random(seed)
    start = now - timedelta(weeks=WEEKS)
    with db.session() as session:
        pilot = start_pilot(session, "ann", PilotInput(name="Pod A, Q1", control_share=0.3, threshold=75,
                                                       horizon=400))
        pilot.started_at = start
        groups: dict[int, tuple[str, str | None]] = {}
        for n in range(WEEKS * LEADS_PER_WEEK):
            created = start + timedelta(hours=n * WEEKS * 7 * 24 / (WEEKS * LEADS_PER_WEEK))
            group = CONTROL if rng.random() < 0.3 else PILOT
            lead = Lead(email=f"lead{n}@value.example", created_at=created, properties={})
            session.add(lead)
            session.flush()
            groups[lead.id] = (group, None)
            crossed = created + timedelta(minutes=rng.randint(5, 600))
            session.add(ScoreHistory(lead_id=lead.id, score=80, probability=0.3, reasons=[], model_version="m1",
                                     feature_time=crossed, created_at=crossed))
            touch = crossed + timedelta(minutes=rng.lognormvariate(1.4, 0.6) if group == PILOT
                                        else 60 * rng.lognormvariate(1.8, 0.6))
            qualified = rng.random() < (0.5 if group == PILOT else 0.4)
            won = rng.random() < (0.45 if group == PILOT else 0.3)
            closed = touch + timedelta(days=rng.randint(5, 25)) if qualified else None
            session.add(PilotFacts(
                lead_id=lead.id, first_touch_at=touch if touch < now else None,
                sql_at=touch + timedelta(days=1) if qualified else None,
                opportunity_at=touch + timedelta(days=2) if qualified else None,
                amount=float(rng.randint(2, 30) * 1000) if qualified else 0.0,
                closed_at=closed if closed and closed < now else None,
                won=won if closed and closed < now else None, read_at=now))
        insert_groups(session, pilot.id, groups, start)
    return {g: sum(1 for v in groups.values() if v[0] == g) for g in (PILOT, CONTROL)}
