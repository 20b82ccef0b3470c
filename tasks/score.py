"""Score stage: feature vectors from the online store -> scores, grades, reasons -> history -> actions."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from connectors.registry import PROVIDERS
from core.keys import DIRTY_KEY, FEATURE_TRAITS_KEY, SCORE_ASIDE_KEY
from core.progress import record_progress
from core.records import Score, utcnow
from core.settings import Settings
from scoring.experiment import CONTROL, assign_cluster, assign_group
from scoring.movement import TrendRule
from scoring.scorer import score_frame, to_value  # imported before workers fork, so children share the pages
from storage.dead_letters import clear_lead_failures, count_lead_failure, describe_error, error_kind
from storage.models import LeadCrmId
from storage.pilots import group_states, insert_groups, owners_of
from storage.scores import ScoreChange, apply_scores
from tasks.isolation import isolate, retry_delay
from tasks.resources import Resources, resources

log = logging.getLogger(__name__)



@shared_task(name="tasks.score.score_leads", autoretry_for=(OperationalError,), retry_backoff=1,
             retry_backoff_max=30, retry_jitter=True, max_retries=10, acks_late=True)
def score_leads(lead_ids: list[int], trigger: str = "event", write_all: bool = False, retry: bool = False) -> int:
    """Score these leads now, store what changed, and queue writebacks and alerts; return how many changed.

    `write_all` also writes leads whose score did not change (enrichment has just linked them to a CRM
    record); the writeback stage still skips values the CRM already shows. `retry` marks the task that
    tries again a lead whose scoring failed.
    """
    res = resources()
    also = lead_ids if write_all else ()
    changes = score_isolated(res, lead_ids, trigger, mark_writes=True, also_write=also, retry=retry)
    queue_actions(res, changes, kick=bool(also))
    return len(changes)


def score_isolated(res: Resources, lead_ids: Sequence[int], trigger: str, *, mark_writes: bool = False,
                   also_write: Sequence[int] = (), retry: bool = False) -> list[ScoreChange]:
    """score_and_store, so that a lead whose values break scoring stops no other lead.

    Leads set aside (dead letters of this stage) are skipped. A failing batch is split until the failing
    leads stand alone (tasks.isolation); each is counted, tried again with backoff, and set aside after
    `max_attempts` failures. Transient errors propagate.
    """
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return []
    aside = res.redis.smismember(SCORE_ASIDE_KEY, ids)
    ids = [lead_id for lead_id, skip in zip(ids, aside) if not skip]
    also = {int(i) for i in also_write}

    def run(part: Sequence[int]) -> list[ScoreChange]:
        return score_and_store(res, part, trigger, mark_writes=mark_writes, also_write=[i for i in part if i in also])

    results, failed = isolate(ids, run)
    for lead_id, exc in failed:
        count_score_failure(res, lead_id, exc, trigger)
    if retry and len(failed) < len(ids):
        with res.db.session(write=True) as session:
            clear_lead_failures(session, "score", [i for i in ids if i not in {f for f, _ in failed}])
    changes = [change for part in results for change in part]
    record_progress(res.redis, "score", len(ids) - len(failed))
    return changes


def count_score_failure(res: Resources, lead_id: int, exc: BaseException, trigger: str) -> None:
    """Count a lead's failed scoring (its own transaction); retry it with backoff, or set it aside."""
    features: Any = None
    try:
        # What the scorer was given, for the admin: the vector if it can be read, else the raw traits.
        features = res.features.get_online([str(lead_id)])[0]
    except Exception:  # noqa: BLE001 - the vector may be exactly what is broken
        with contextlib.suppress(Exception):
            traits = res.redis.hgetall(FEATURE_TRAITS_KEY.format(lead=lead_id))
            features = {"raw_traits": {k.decode(errors="replace"): v.decode(errors="replace")
                                       for k, v in traits.items()}}
    payload = {"trigger": trigger, "features": features}
    with res.db.session(write=True) as session:
        letter = count_lead_failure(session, "score", lead_id, describe_error(exc),
                                    max_attempts=res.settings.max_attempts, payload=_json_safe(payload))
        status, attempts = letter.status, letter.attempts
    if status == "open":
        res.redis.sadd(SCORE_ASIDE_KEY, lead_id)
        log.error("score.dead_letter", extra={"lead": lead_id, "attempts": attempts, "error": error_kind(exc)})
        return
    delay = retry_delay(attempts)
    log.warning("score.lead_failed", extra={"lead": lead_id, "attempts": attempts, "error": error_kind(exc),
                                            "retry_in": delay})
    score_leads.apply_async(args=[[lead_id]], kwargs={"trigger": trigger, "retry": True}, countdown=delay)


def _json_safe(value: Any) -> Any:
    """A copy a JSON column can hold: non-finite floats and odd types become text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value if not isinstance(value, str) else value.encode("utf-8", "replace").decode().replace("\x00", "")
    return str(value)


def compute_scores(res: Resources, lead_ids: Sequence[int], as_of: datetime | None = None) -> dict[int, Score]:
    """Scores for `lead_ids` from their online features, all read in one Redis round trip."""
    if not lead_ids:
        return {}
    as_of = as_of or utcnow()
    vectors = res.features.get_online([str(i) for i in lead_ids], as_of=as_of)
    scorer = res.scorer()
    if scorer.model is not None and len(lead_ids) > 1:
        batch = score_frame(pd.DataFrame(vectors), scorer.model, mode=scorer.mode)
        probabilities, values = batch.probabilities, batch.values
        if scorer.blending:  # the online challenger's blend serves: grades and reasons stay the champion's
            probabilities = scorer.blend(probabilities, vectors)
            values = to_value(probabilities, scorer.model, scorer.mode)
        return {
            lead_id: Score(value=int(values[i]), probability=float(probabilities[i]),
                           grade=batch.grades[i], reasons=tuple(batch.reasons[i]),
                           model_version=scorer.version, feature_time=as_of)
            for i, lead_id in enumerate(lead_ids)
        }
    return {lead_id: scorer.score(vector, feature_time=as_of) for lead_id, vector in zip(lead_ids, vectors)}


def score_and_store(res: Resources, lead_ids: Sequence[int], trigger: str, *,
                    mark_writes: bool = False, also_write: Sequence[int] = ()) -> list[ScoreChange]:
    """Compute and persist scores (marking those worth writing for writeback); returns the changes stored."""
    ids = sorted({int(i) for i in lead_ids})
    scores = compute_scores(res, ids)
    marks: dict[str, list[int]] = {}
    with res.db.session(write=True) as session:
        changes = assign_groups(res, session, apply_scores(session, scores, trigger, trend_rule(res.settings)))
        if mark_writes:
            # Marked before the commit (found by drill d): marked after it, a failure in between left a new
            # score stored but never written, as the retry saw no change. A mark whose commit then fails
            # costs the writer one fingerprint comparison.
            worth = {c.lead_id for c in changes if _worth_writing(c, res.settings.write_min_change)}
            marks = mark_dirty(res, session, sorted(worth | {int(i) for i in also_write}))
    if marks:
        # And again once committed (found by drill b): a flush that took the first mark before the commit
        # read the old values, found them written already, and dropped the lead.
        add_dirty(res, marks)
    return changes


def assign_groups(res: Resources, session: Any, changes: list[ScoreChange]) -> list[ScoreChange]:
    """Give the running pilot's group to each lead scored for the first time (one insert for the batch).

    Only new leads join a pilot: a lead whose score the CRM already showed cannot be held back any more. The
    group is a salted hash of the lead id, or of its CRM owner when the pilot assigns owners (a lead with no
    owner known is assigned on its own); it is stored once and never changes.
    """
    pilot = res.pilot()
    fresh = [c.lead_id for c in changes if c.previous is None and c.group is None]
    if pilot is None or not fresh:
        return changes
    owners = owners_of(session, fresh) if pilot.unit == "owner" else {}
    groups: dict[int, tuple[str, str | None]] = {}
    for lead_id in fresh:
        owner = owners.get(lead_id)
        group = (assign_cluster(owner, pilot.salt, pilot.control_share) if owner is not None
                 else assign_group(lead_id, pilot.salt, pilot.control_share))
        groups[lead_id] = (group, owner)
    stored = insert_groups(session, pilot.id, groups, utcnow())
    states = {lead_id: (group, group == CONTROL) for lead_id, (group, _) in groups.items() if lead_id in stored}
    if len(stored) < len(groups):  # another task gave some of them a group first: theirs stands
        states.update(group_states(session, set(groups) - stored))
    return [replace(c, group=states[c.lead_id][0], hidden=states[c.lead_id][1]) if c.lead_id in states else c
            for c in changes]


def mark_dirty(res: Resources, session: Any, lead_ids: Sequence[int]) -> dict[str, list[int]]:
    """Add leads to the writeback set of each CRM they have an id in; returns {crm: lead ids} marked."""
    if not lead_ids:
        return {}
    rows = session.execute(select(LeadCrmId.lead_id, LeadCrmId.crm).where(LeadCrmId.lead_id.in_(lead_ids))
                           .distinct()).all()
    marks: dict[str, list[int]] = {}
    for lead_id, crm in rows:
        if crm in PROVIDERS:
            marks.setdefault(crm, []).append(lead_id)
    add_dirty(res, marks)
    return marks


def add_dirty(res: Resources, marks: dict[str, list[int]]) -> None:
    """Add {crm: lead ids} to the writeback sets (again after a commit: see score_and_store)."""
    pipe = res.redis.pipeline(transaction=False)
    for crm, lead_ids in marks.items():
        pipe.sadd(DIRTY_KEY.format(crm=crm), *lead_ids)
    pipe.execute()


def queue_actions(res: Resources, changes: Sequence[ScoreChange], *, kick: bool = False) -> None:
    """Kick writeback for the leads score_and_store marked, and fire alert rules that were crossed."""
    if not changes and not kick:
        return
    from tasks.alerts import fire_alert_rules
    from tasks.writeback import flush

    if kick or any(_worth_writing(c, res.settings.write_min_change) for c in changes):
        for crm in PROVIDERS:
            if res.redis.scard(DIRTY_KEY.format(crm=crm)):
                flush.delay(crm)
    fire_alert_rules(res, changes)


def trend_rule(settings: Settings) -> TrendRule:
    """How score movement is worked out, from the settings (trend window and steady band)."""
    return TrendRule(timedelta(hours=settings.trend_window_hours), settings.trend_steady_points)


def _worth_writing(change: ScoreChange, min_change: int) -> bool:
    if change.previous is None or change.grade_changed or change.reasons_changed or change.trend_changed:
        return True
    return abs(change.current - change.previous) >= min_change
