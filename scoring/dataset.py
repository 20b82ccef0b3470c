"""Labels, training frames and prequential evaluation from stored events and outcomes (given as values).

- `lead_histories`, `labelled_leads`: first-seen and activity times per lead, and labels with the
  maturity window (scoring.labels).
- `training_frame`: one row per labelled lead with its features as of its decision time
  (scoring.training_set, the same feature code as the live pipeline).
- `prequential_records` / `prequential_report`: each label tested against the score the lead had at
  its decision time (from score history), and the rolling AUC and calibration over time.
The caller loads the values (storage.outcomes: load_events, stored_outcomes, score_history ...).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.records import Outcome, StoredEvents, utcnow
from scoring.drift import prequential_adwin
from scoring.features import HORIZON_MS
from scoring.labels import LabelledLead, LabelPolicy, LeadHistory, label_leads
from scoring.prequential import (
    Prediction,
    PrequentialEvaluator,
    PrequentialRecord,
    rolling_metrics,
    window_metrics,
)
from scoring.schema import FeatureSchema
from scoring.training_set import EventIndex, build_decision_frame, population_rows

if TYPE_CHECKING:
    import pandas as pd

PREQUENTIAL_SLACK = timedelta(minutes=5)  # a score computed just after the decision instant still counts
DRIFT_REFERENCE_DAYS = 30  # a new model's drift reference: leads active in the 30 days before training

# lead id (as text) -> its score times and (probability, model version) values, in time order
ScoreHistory = Mapping[str, tuple[list[datetime], list[tuple[float, str]]]]


def lead_histories(stored: StoredEvents) -> dict[str, LeadHistory]:
    """First-seen and activity times per lead, for labelling."""
    return {lead: LeadHistory(first, tuple(stored.activity.get(lead, ()))) for lead, first in stored.first_seen.items()}


def labelled_leads(stored: StoredEvents, outcomes: Sequence[Outcome], now: datetime,
                   policy: LabelPolicy) -> list[LabelledLead]:
    """Labels as of `now` (outcomes recorded up to then) under the maturity window, ordered by when each became known."""
    return label_leads(lead_histories(stored), list(outcomes), now, policy)


@dataclass
class TrainingData:
    """The decision frame and what went into it."""

    frame: pd.DataFrame
    labels: list[LabelledLead]
    events: int
    leads_seen: int
    outcomes: int
    window_start: datetime | None
    window_end: datetime | None
    reference_rows: list[dict[str, Any]] = field(default_factory=list)  # the population scored before `now`
    dropped_for_retention: int = 0  # labels left out: their history was purged (see history_cutoff)


def training_frame(stored: StoredEvents, outcomes: Sequence[Outcome], now: datetime, policy: LabelPolicy, *,
                   outcomes_total: int, oldest_lead: datetime | None,
                   progress: Callable[[str, int, int | None], None] | None = None,
                   schema: FeatureSchema | None = None) -> TrainingData:
    """Labelled leads with their features (the built-ins and `schema`'s mapped ones) as of their decision times.

    `outcomes` are those recorded up to `now`; `outcomes_total` counts every recorded one; `oldest_lead`
    is when the oldest lead was created (see history_cutoff).
    """

    def step(what: str, advance: int, total: int | None = None) -> None:
        if progress is not None:
            progress(what, advance, total)

    labels = labelled_leads(stored, outcomes, now, policy)
    cutoff = history_cutoff(stored, oldest_lead)
    kept = [label for label in labels if cutoff is None or label.decision_time >= cutoff]
    dropped = len(labels) - len(kept)
    labels = kept
    step("labelling", 0, len(labels))
    index = EventIndex(stored.events, stored.lead_of, schema=schema)
    frame = build_decision_frame(index, labels, progress=lambda n: step("building features", n, len(labels)))
    times = [label.decision_time for label in labels]
    reference = population_rows(index, now, days=DRIFT_REFERENCE_DAYS)
    return TrainingData(frame, labels, len(stored.events), len(stored.first_seen), outcomes_total,
                        min(times) if times else None, max(times) if times else None, reference, dropped)


def history_cutoff(stored: StoredEvents, oldest_lead: datetime | None) -> datetime | None:
    """The earliest decision time whose 30 days of history are still stored, once retention purged some.

    Retention deletes old raw events; a lead decided less than 30 days (the longest feature window)
    after the oldest event left would get a vector with holes, so such labels stay out of training.
    None while nothing was purged (the oldest event is about as old as the oldest lead).
    """
    if not stored.events:
        return None
    oldest_event = min(e.occurred_at for e in stored.events if e.source != "enrichment") \
        if any(e.source != "enrichment" for e in stored.events) else None
    if oldest_event is None or oldest_lead is None or oldest_event <= oldest_lead + timedelta(days=1):
        return None
    return oldest_event + timedelta(milliseconds=HORIZON_MS)


def live_score_at(history: ScoreHistory, lead_id: str | int, at: datetime) -> Prediction | None:
    """The score a lead had at `at` (within PREQUENTIAL_SLACK after it) in its score history, or None."""
    times, values = history.get(str(lead_id), ([], []))
    i = bisect.bisect_right(times, at + PREQUENTIAL_SLACK)
    if i == 0:
        return None
    p, version = values[i - 1]
    return Prediction(p, version)


def prequential_records(labels: Sequence[LabelledLead], history: ScoreHistory) -> tuple[list[PrequentialRecord], int]:
    """Test-then-train over labels: each scored by the lead's live score at its decision time.

    `history` holds the labelled leads' score history. Returns the records (in label order) and how many
    labels had no score at their decision time.
    """

    evaluator = PrequentialEvaluator(lambda label: live_score_at(history, label.lead_id, label.decision_time))
    records = evaluator.observe_all(labels)
    return records, evaluator.untested


def scored_lead_ids(labels: Sequence[LabelledLead]) -> list[int]:
    """The lead ids (numeric) whose score history prequential evaluation needs."""
    return sorted({int(label.lead_id) for label in labels if str(label.lead_id).isdigit()})


def prequential_report(stored: StoredEvents, outcomes: Sequence[Outcome],
                       load_scores: Callable[[Sequence[int]], ScoreHistory], *, now: datetime | None = None,
                       policy: LabelPolicy | None = None, window_days: int = 28, step_days: int = 7) -> dict[str, Any]:
    """Rolling ROC AUC and calibration of the live scores, per window of decision time (for the admin)."""
    now = now or utcnow()
    policy = policy or LabelPolicy()
    labels = labelled_leads(stored, outcomes, now, policy)
    records, untested = prequential_records(labels, load_scores(scored_lead_ids(labels)))
    windows = rolling_metrics(records, window=timedelta(days=window_days), step=timedelta(days=step_days))
    overall = window_metrics(records, records[0].decision_time, now) if records else None
    by_model: dict[str, int] = {}
    for record in records:
        by_model[record.model_version] = by_model.get(record.model_version, 0) + 1
    return {"generated_at": now.isoformat(), "labels": len(labels), "tested": len(records), "untested": untested,
            "maturity_days": policy.maturity.total_seconds() / 86400, "window_days": window_days,
            "overall": overall.to_json() if overall else None, "windows": [w.to_json() for w in windows],
            "models": by_model, "adwin": prequential_adwin(records)}


def label_counts(labels: Sequence[LabelledLead]) -> Mapping[str, int]:
    """How many labels are positive and negative."""
    positives = sum(1 for label in labels if label.won)
    return {"labelled": len(labels), "positives": positives, "negatives": len(labels) - positives}
