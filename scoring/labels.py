"""Outcomes -> labels, with a maturity window: when a lead counts as won or lost, and as of when we judge it.

Rules (the same for training, prequential evaluation and the drift benchmark):
- **Positive**: the lead has a won outcome (closed-won deal, lifecycle stage customer, converted
  Salesforce Lead, won Opportunity) at or before `now`. One win is enough: a later closed-lost deal
  does not undo it. Its label is known from the first win on.
- **Negative**: the lead has no win and `maturity` (default 90 days) has passed since it was first
  seen. Never earlier: a closed-lost deal or a quiet lead inside the window is *unlabelled*, because
  leads do convert late. Its label is known from `first_seen + maturity`.
- Everything else is unlabelled and stays out of training.

Decision time is the instant a lead's features are built for training and the instant whose live
model is asked for the prequential "test" score. It must come before the label, so nothing that
happened because of the outcome leaks into the row:
- positive: the first win minus `gap` (default 1 day keeps the closing call out of its own row);
- negative with a recorded closed-lost outcome inside the window: that outcome minus `gap`;
- negative without one: its last activity inside the window (the last moment anyone would have
  acted on its score), or when it was first seen if it never did anything.
Decision times are clamped to [first_seen, label time].
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.records import Outcome

DEFAULT_MATURITY = timedelta(days=90)
DEFAULT_GAP = timedelta(days=1)


@dataclass(frozen=True)
class LabelPolicy:
    """How outcomes become labels."""

    maturity: timedelta = DEFAULT_MATURITY
    gap: timedelta = DEFAULT_GAP

    def __post_init__(self) -> None:
        if self.maturity <= timedelta(0):
            raise ValueError("the maturity window must be positive")
        if self.gap < timedelta(0):
            raise ValueError("the decision gap cannot be negative")


@dataclass(frozen=True)
class LeadHistory:
    """What labelling needs to know about one lead: when it was first seen and when it was active."""

    first_seen: datetime
    activity: Sequence[datetime] = ()  # activity times, sorted ascending


@dataclass(frozen=True)
class LabelledLead:
    """One lead's label, the instant its features are built as of, and the instant the label became known."""

    lead_id: str
    won: bool
    decision_time: datetime
    labelled_at: datetime
    source: str


def label_leads(
    histories: Mapping[str, LeadHistory],
    outcomes: Iterable[Outcome],
    now: datetime,
    policy: LabelPolicy = LabelPolicy(),
) -> list[LabelledLead]:
    """Labels for every lead that has one as of `now`, ordered by when the label became known."""
    wins: dict[str, Outcome] = {}
    losses: dict[str, Outcome] = {}
    for outcome in outcomes:
        if outcome.occurred_at > now:
            continue  # not known yet at `now`
        table = wins if outcome.won else losses
        known = table.get(outcome.lead_id)
        if known is None or outcome.occurred_at < known.occurred_at:
            table[outcome.lead_id] = outcome
    out: list[LabelledLead] = []
    for lead_id, history in histories.items():
        label = label_one(lead_id, history, wins.get(lead_id), losses.get(lead_id), now, policy)
        if label is not None:
            out.append(label)
    out.sort(key=lambda x: (x.labelled_at, x.lead_id))
    return out


def label_one(
    lead_id: str,
    history: LeadHistory,
    first_win: Outcome | None,
    first_loss: Outcome | None,
    now: datetime,
    policy: LabelPolicy = LabelPolicy(),
) -> LabelledLead | None:
    """One lead's label as of `now` (None while it is not labelled yet); see the module rules."""
    first_seen = history.first_seen
    if first_win is not None and first_win.occurred_at <= now:
        labelled_at = first_win.occurred_at
        decision = _clamp(labelled_at - policy.gap, first_seen, labelled_at)
        return LabelledLead(lead_id, True, decision, labelled_at, first_win.source or "won")
    matured_at = first_seen + policy.maturity
    if now < matured_at:
        return None  # maybe it still converts: not a negative yet
    if first_loss is not None and first_loss.occurred_at <= matured_at:
        decision = first_loss.occurred_at - policy.gap
        source = first_loss.source or "lost"
    else:
        decision = last_activity_before(history.activity, matured_at) or first_seen
        source = "maturity"
    return LabelledLead(lead_id, False, _clamp(decision, first_seen, matured_at), matured_at, source)


def last_activity_before(activity: Sequence[datetime], cutoff: datetime) -> datetime | None:
    """The latest activity time at or before `cutoff` (activity sorted ascending), or None."""
    i = bisect.bisect_right(activity, cutoff)
    return activity[i - 1] if i else None


def _clamp(value: datetime, low: datetime, high: datetime) -> datetime:
    return max(low, min(value, high))
