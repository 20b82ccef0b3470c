"""Account (ABM) scoring: one score, grade and reasons per company, from its contacts.

- Probability that the account buys: the chance that at least one of its `TOP_K` best contacts
  converts, 1 - prod(1 - p_i), with each contact's calibrated probability (contacts are treated as
  independent, which overstates a little for big buying groups and is why only the top 5 count).
- Engagement: buying is a group decision, so an account where nobody was active in the last 7 days
  keeps 60% of that, one engaged contact 80%, two or more the full value.
- Score: that probability x 100. Grade: the median fit grade of its graded contacts (the company
  fits the ideal customer profile or it does not; one student signing up does not change that).
- Reasons: engaged-contact count, the best contact's score and its top reasons, how many contacts
  are hot, and the fit grade, as short signed sentences like a lead's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GRADE_ORDER = ("A", "B", "C", "D", "F")
TOP_K = 5
HOT_SCORE = 60
ENGAGEMENT_FACTOR = {0: 0.6, 1: 0.8}  # two or more engaged contacts: 1.0


@dataclass(frozen=True)
class ContactScore:
    """What account scoring needs from one contact."""

    lead_id: int | str
    probability: float
    score: int
    grade: str | None
    engaged: bool  # active in the last 7 days
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountScore:
    """An account's score 0-100, fit grade, reasons and the numbers behind them."""

    value: int
    probability: float
    grade: str | None
    reasons: tuple[str, ...]
    contacts: int
    engaged_contacts: int
    hot_contacts: int


def engagement_factor(engaged: int) -> float:
    """Share of the buying probability an account keeps given how many contacts were active in 7 days."""
    return ENGAGEMENT_FACTOR.get(engaged, 1.0) if engaged >= 0 else ENGAGEMENT_FACTOR[0]


def median_grade(grades: Sequence[str | None]) -> str | None:
    """The median of A-F grades (the better one of the two middle grades when the count is even)."""
    ranks = sorted(GRADE_ORDER.index(g) for g in grades if g in GRADE_ORDER)
    if not ranks:
        return None
    return GRADE_ORDER[ranks[(len(ranks) - 1) // 2]]


def score_account(contacts: Sequence[ContactScore], *, top_k: int = TOP_K) -> AccountScore:
    """Score one account from its contacts' scores (an account without contacts scores 0)."""
    if not contacts:
        return AccountScore(0, 0.0, None, ("- no known contacts",), 0, 0, 0)
    ranked = sorted(contacts, key=lambda c: (-c.probability, str(c.lead_id)))
    none_convert = 1.0
    for contact in ranked[:top_k]:
        none_convert *= 1.0 - min(1.0, max(0.0, float(contact.probability)))
    engaged = sum(1 for c in contacts if c.engaged)
    probability = (1.0 - none_convert) * engagement_factor(engaged)
    value = int(min(100, max(0, round(probability * 100))))
    hot = sum(1 for c in contacts if c.score >= HOT_SCORE)
    grade = median_grade([c.grade for c in contacts])
    reasons: list[str] = []
    if engaged >= 2:
        reasons.append(f"+ {engaged} contacts active in the last 7 days")
    elif engaged == 1:
        reasons.append("+ 1 contact active in the last 7 days")
    else:
        reasons.append("- nobody active in the last 7 days")
    best = ranked[0]
    reasons.append(f"{'+' if best.score >= HOT_SCORE else '-'} best contact scores {best.score}")
    reasons.extend(f"+ top contact: {r.strip()[1:].strip()}" for r in best.reasons[:2] if r.strip().startswith("+"))
    if len(contacts) > 1 and hot:
        reasons.append(f"+ {hot} of {len(contacts)} contacts score {HOT_SCORE}+")
    if grade is not None:
        sign = "+" if grade in ("A", "B") else "-" if grade in ("D", "F") else " "
        reasons.append(f"{sign} fit grade {grade} (median of {sum(1 for c in contacts if c.grade)} contacts)".strip())
    return AccountScore(value, probability, grade, tuple(reasons), len(contacts), engaged, hot)
