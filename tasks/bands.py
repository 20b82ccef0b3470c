"""The score bands in force: cut-offs in score points, recomputed from the last 7 days' scores and cached in Redis.

- `refresh_bands_now`: reads the band set in force and the scores of the leads scored in the window, resolves the
  cut-offs (core/bands.py) and each band's share, and caches them under BANDS_KEY. The beat task `refresh_bands`
  runs it every 5 minutes (learning queue); a band change runs it at once (services/bands.py).
- `cutoffs_in_force`: what writeback shows in the tier field; one Redis read per batch, and on a miss (a new
  install, a flushed Redis) one refresh from the database.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.bands import LEGACY_CUTOFFS, WINDOW_DAYS, Cutoffs, cutoffs_from_json, resolve, shares
from core.keys import BANDS_KEY
from core.records import utcnow
from storage.bands import band_set_in_force, recent_scores
from storage.db import Database
from tasks.resources import resources
from tasks.schedule import periodic

log = logging.getLogger(__name__)
REFRESH_SECONDS = 300.0


def bands_report(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """The band set in force with its cut-offs (score points) and each band's share of the window's leads."""
    now = now or utcnow()
    version, band_set = band_set_in_force(session)
    scores = recent_scores(session, now - timedelta(days=WINDOW_DAYS))
    cutoffs = resolve(band_set, scores)
    share = shares(cutoffs, scores)
    return {"version": version, "mode": band_set.mode, "bands": band_set.to_json()["bands"],
            "cutoffs": [[name, lowest] for name, lowest in cutoffs],
            "shares": {name: round(value, 4) for name, value in share.items()},
            "leads": len(scores), "window_days": WINDOW_DAYS, "computed_at": now.isoformat()}


def store_report(redis: Any, report: dict[str, Any]) -> None:
    """Cache a bands report (no expiry: the beat replaces it; a stale one beats none)."""
    redis.set(BANDS_KEY, json.dumps(report))


def refresh_bands_now(db: Database, redis: Any, now: datetime | None = None) -> dict[str, Any]:
    """Recompute the cut-offs in force and cache them; returns the report."""
    with db.session() as session:
        report = bands_report(session, now)
    store_report(redis, report)
    return report


def cached_report(redis: Any) -> dict[str, Any] | None:
    """The cached bands report, or None (missing or unreadable)."""
    raw = redis.get(BANDS_KEY)
    if not raw:
        return None
    try:
        report = json.loads(raw)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def cutoffs_in_force(redis: Any, session: Session | None = None) -> Cutoffs:
    """The cached cut-offs; on a miss, resolved from `session` and cached (without one: the legacy 75/40)."""
    report = cached_report(redis)
    cutoffs = cutoffs_from_json(report.get("cutoffs")) if report else None
    if cutoffs is not None:
        return cutoffs
    if session is None:
        return LEGACY_CUTOFFS
    report = bands_report(session)
    store_report(redis, report)
    return cutoffs_from_json(report["cutoffs"]) or LEGACY_CUTOFFS


@periodic("tasks.bands.refresh_bands", every=REFRESH_SECONDS, soft_time_limit=60, time_limit=90)
def refresh_bands() -> dict[str, Any]:
    """Beat: recompute the quantile cut-offs from the last 7 days' scores and cache them for writeback."""
    res = resources()
    report = refresh_bands_now(res.db, res.redis)
    log.info("bands.refreshed", extra={"version": report["version"], "cutoffs": report["cutoffs"],
                                       "leads": report["leads"]})
    return report
