"""Score movement: the previous score, the change, the trend over a window and a "what changed" sentence.

A lead's movement is worked out each time its score is stored, from what the lead held before and one
reference score: the score it held `window` before now (the trend compares the new score with it; a move
of at most `steady` points either way is steady). Between scores only time passes, and time can change
a trend in one way only that matters: one window after the last change the reference is the current
score, so the trend is steady (`settle`). Nothing else moves without a new score, so the CRM is written
when a score is, plus once per change when its trend settles: never a write per lead per tick.

The sentence says which reasons came or went in the direction of the move: "+12: requested a demo",
"-20: no visit in 30 days; no longer requested a demo" (reasons as scoring.reasons renders them, "+ ..."
and "- ...").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core.records import Movement

IMPROVING, STEADY, DECLINING = "improving", "steady", "declining"
TRENDS = (IMPROVING, STEADY, DECLINING)
REASON_MAX = 255  # the sentence fits a Salesforce Text(255) field and a list-view column


def trend_of(current: int, reference: int | None, steady: int) -> str | None:
    """improving / steady / declining: `current` against `reference`; a move of at most `steady` points is steady."""
    if reference is None:
        return None
    delta = current - reference
    if delta > steady:
        return IMPROVING
    if delta < -steady:
        return DECLINING
    return STEADY


def _phrase(reason: str) -> str:
    """A reason without its sign: '+ requested a demo' -> 'requested a demo'."""
    return reason[1:].strip() if reason[:1] in "+-=" else reason.strip()


def change_sentence(change: int, before: Sequence[str], after: Sequence[str], limit: int = REASON_MAX) -> str:
    """What changed, from the reasons before and after a move of `change` points: "+12: requested a demo".

    Named are the new reasons pushing the way the score moved, then the reasons that pushed against it and
    went away ("no longer ..."); reasons pushing the other way that came or went are left out (they held the
    move back). With none of those, the same reasons weigh more (or less). Cut to `limit` on a reason.
    """
    head = f"{change:+d}: "
    toward = "+" if change > 0 else "-"
    against = "-" if change > 0 else "+"
    old, new = set(before), set(after)
    gained = [_phrase(r) for r in after if r not in old and r[:1] == toward]
    lost = [f"no longer {_phrase(r)}" for r in before if r not in new and r[:1] == against]
    parts = gained + lost
    if not parts:
        return f"{head}the same reasons weigh {'more' if change > 0 else 'less'}"[:limit]
    text = head + parts[0]
    for part in parts[1:]:
        if len(text) + 2 + len(part) > limit:
            break
        text += "; " + part
    return text[:limit]


def reference_of(earliest_in_window: tuple[int, int | None] | None, held: int | None) -> int | None:
    """The score a lead held at the start of the trend window.

    `earliest_in_window` is (score, score before it) of the lead's first history row inside the window, if any:
    the score before it is what the lead held at the window's start (the row's own score when it was the
    lead's first). With no row inside the window the lead held `held` (its current score) all along.
    """
    if earliest_in_window is None:
        return held
    score, before = earliest_in_window
    return before if before is not None else score


def score_held_at(history: Sequence[tuple[datetime, int]], when: datetime) -> int | None:
    """The score a lead held at `when`, from its history of (time, score), oldest first; None before the first."""
    held: int | None = None
    for at, score in history:
        if at > when:
            break
        held = score
    return held


@dataclass(frozen=True, slots=True)
class TrendRule:
    """How movement is worked out: the trend window and the steady band (settings trend_window_hours, _points)."""

    window: timedelta
    steady: int

    def advance(self, before: Movement, old_score: int | None, old_reasons: Sequence[str] | None, new_score: int,
                new_reasons: Sequence[str], window_start: tuple[int, int | None] | None, now: datetime) -> Movement:
        """The movement once `new_score` is stored over `old_score` at `now`.

        `window_start` is (score, score before it) of the lead's first history row inside the window, if any
        (see reference_of): the trend compares `new_score` with the score held at the window's start.

        A first score has nothing to compare with. A new value records the old one as previous, the time and
        the sentence; the same value again (new reasons or model only) keeps them and re-reads the trend.
        """
        if old_score is None:
            return Movement()
        trend = trend_of(new_score, reference_of(window_start, old_score), self.steady)
        if new_score == old_score:
            return replace(before, trend=trend)
        return Movement(previous=old_score, trend=trend, changed_at=now,
                        reason=change_sentence(new_score - old_score, list(old_reasons or []), list(new_reasons)))

    def settle(self, movement: Movement, now: datetime) -> Movement:
        """The movement once time has passed: steady one window after the last change, as it is otherwise."""
        if (movement.trend in (IMPROVING, DECLINING) and movement.changed_at is not None
                and movement.changed_at <= now - self.window):
            return replace(movement, trend=STEADY)
        return movement

    def settled_before(self, now: datetime) -> datetime:
        """Changes at or before this instant have left the window: their leads' trends read steady now."""
        return now - self.window
