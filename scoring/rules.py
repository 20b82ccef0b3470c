"""Rule-based points scoring: the cold-start model and the scorecard baseline.

A points model is a list of rules "if FEATURE OP VALUE then +/-POINTS"; a lead's score is
`base + sum(points of the rules that fire)`, clamped to 0-100, and its reasons are the fired rules'
texts, biggest first. It is what Mautic or a marketing-ops spreadsheet does, and it is what serves
until a trained model exists: `use_trained_model` says when enough labelled outcomes have arrived
(by default 500 outcomes of which at least 50 conversions; both configurable).

The default cold-start rules (`COLD_START_RULES`) use the behavioural and fit features declared in
`scoring.features`; they encode the usual B2B playbook:

| rule                                        | points |
|---------------------------------------------|-------:|
| requested a demo in the last 30 days        |    +30 |
| viewed pricing in the last 7 days (1+)      |    +15 |
| viewed pricing 3+ times in the last 7 days  |    +10 |
| filled a form in the last 30 days           |    +10 |
| clicked an e-mail in the last 30 days       |     +8 |
| attended a webinar in the last 30 days      |     +8 |
| downloaded content in the last 30 days      |     +6 |
| viewed case studies in the last 30 days     |     +5 |
| viewed docs in the last 7 days              |     +5 |
| 3+ sessions in the last 7 days              |     +5 |
| 2+ colleagues engaged in the last 7 days    |     +8 |
| job title is c-level or vp                  |    +10 |
| job title is director                       |     +6 |
| company has 200+ employees                  |     +5 |
| viewed careers pages in the last 30 days    |    -10 |
| job title is student                        |    -15 |
| free e-mail domain                          |    -10 |
| no activity for 30+ days                    |    -15 |
Base: 20 points.

Grades: the rules marked `fit` (who the lead is: title, company size, e-mail domain) add up to the
lead's fit points, graded against `grade_cuts` (cold start: A >= 10, B >= 5, C >= 0, D >= -10, F
below; so a VP or a director at a 200+ company is A, a lead nothing is known about is C, a student
is F). A scorecard without fit rules has no fit signal: it grades the score itself in fixed bands
(A >= 80, B >= 60, C >= 40, D >= 20, F below). Every lead gets a grade and at least one reason:
when no rule fires, the reason says the score is the base score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Op = Literal["gte", "gt", "lte", "lt", "eq", "ne", "in", "missing"]
DEFAULT_MIN_OUTCOMES = 500
DEFAULT_MIN_POSITIVES = 50
GRADE_LETTERS = ("A", "B", "C", "D", "F")
DEFAULT_FIT_GRADE_CUTS = (10, 5, 0, -10)  # fit points for A, B, C, D; below the last is F
SCORE_GRADE_CUTS = (80, 60, 40, 20)  # no fit rules: the score itself, in fixed bands


@dataclass(frozen=True)
class Rule:
    """One scorecard line: when `feature op value` holds, add `points` and say `reason`."""

    feature: str
    op: Op
    value: Any
    points: int
    reason: str
    fit: bool = False  # describes who the lead is (title, company size), not what it did: counts for the grade

    def fires(self, value: Any) -> bool:
        """Does this rule fire for a feature value?"""
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        if self.op == "missing":
            return missing
        if missing:
            return False
        if self.op == "eq":
            return value == self.value
        if self.op == "ne":
            return value != self.value
        if self.op == "in":
            return value in set(self.value)
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return {
            "gte": v >= self.value,
            "gt": v > self.value,
            "lte": v <= self.value,
            "lt": v < self.value,
        }[self.op]

    def mask(self, column: pd.Series) -> np.ndarray:
        """Vectorised `fires` over a column."""
        if self.op == "missing":
            return column.isna().to_numpy()
        if self.op == "eq":
            return (column == self.value).fillna(False).to_numpy(dtype=bool)
        if self.op == "ne":
            return (column.notna() & (column != self.value)).fillna(False).to_numpy(dtype=bool)
        if self.op == "in":
            return column.isin(list(self.value)).to_numpy(dtype=bool)
        numbers = pd.to_numeric(column, errors="coerce")
        cmp = {"gte": numbers >= self.value, "gt": numbers > self.value, "lte": numbers <= self.value, "lt": numbers < self.value}
        return cmp[self.op].fillna(False).to_numpy(dtype=bool)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        value = list(self.value) if self.op == "in" else self.value
        out = {"feature": self.feature, "op": self.op, "value": value, "points": self.points, "reason": self.reason}
        if self.fit:
            out["fit"] = True
        return out


@dataclass(frozen=True)
class PointsModel:
    """A scorecard: base points plus rules, clamped to 0-100."""

    rules: tuple[Rule, ...]
    base: int = 20
    name: str = "rules"
    grade_cuts: tuple[int, ...] = DEFAULT_FIT_GRADE_CUTS  # fit points for A, B, C, D (descending)

    def score_row(self, features: Mapping[str, Any]) -> tuple[int, tuple[str, ...]]:
        """Score one lead's features; returns (score 0-100, reasons, biggest effect first).

        A rule worth 0 points is never a reason; with no rule moving the score, the one reason says
        the score is the base score.
        """
        fired = [r for r in self.rules if r.fires(features.get(r.feature))]
        total = self.base + sum(r.points for r in fired)
        fired.sort(key=lambda r: -abs(r.points))
        reasons = tuple(("+ " if r.points > 0 else "- ") + r.reason for r in fired if r.points != 0)
        return int(min(100, max(0, total))), reasons or (f"= no scoring rule applies: base score {self.base}",)

    @property
    def has_fit_rules(self) -> bool:
        """True when some rules describe fit (then grades come from fit points, not the score)."""
        return any(r.fit for r in self.rules)

    def fit_points(self, features: Mapping[str, Any]) -> int:
        """Sum of the points of the fit rules that fire for this lead."""
        return sum(r.points for r in self.rules if r.fit and r.fires(features.get(r.feature)))

    def grade_row(self, features: Mapping[str, Any], value: int | None = None) -> str:
        """Grade A-F: fit points against `grade_cuts`, or the score in fixed bands when no rule is a fit rule."""
        if self.has_fit_rules:
            points, cuts = self.fit_points(features), self.grade_cuts
        else:
            points = value if value is not None else self.score_row(features)[0]
            cuts = SCORE_GRADE_CUTS
        for letter, cut in zip(GRADE_LETTERS, cuts):
            if points >= cut:
                return letter
        return GRADE_LETTERS[-1]

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Vectorised scores (0-100) for a frame whose columns are the rules' features."""
        total = np.full(len(frame), float(self.base))
        for rule in self.rules:
            if rule.feature in frame.columns:
                total += rule.points * rule.mask(frame[rule.feature])
        return np.clip(total, 0, 100)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        out: dict[str, Any] = {"name": self.name, "base": self.base, "rules": [r.to_json() for r in self.rules]}
        if self.grade_cuts != DEFAULT_FIT_GRADE_CUTS:
            out["grade_cuts"] = list(self.grade_cuts)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PointsModel:
        """Build from the JSON form (as written by `to_json`)."""
        rules = tuple(
            Rule(r["feature"], r["op"], tuple(r["value"]) if r["op"] == "in" else r.get("value"), int(r["points"]),
                 r["reason"], bool(r.get("fit", False)))
            for r in data["rules"]
        )
        cuts = tuple(int(c) for c in data.get("grade_cuts") or DEFAULT_FIT_GRADE_CUTS)
        return cls(rules=rules, base=int(data.get("base", 20)), name=str(data.get("name", "rules")), grade_cuts=cuts)


COLD_START_RULES = PointsModel(
    name="cold-start rules v1",
    base=20,
    rules=(
        Rule("demo_requests_30d", "gte", 1, 30, "requested a demo"),
        Rule("pricing_views_7d", "gte", 1, 15, "viewed pricing in the last 7 days"),
        Rule("pricing_views_7d", "gte", 3, 10, "viewed pricing 3+ times in 7 days"),
        Rule("form_fills_30d", "gte", 1, 10, "filled in a form"),
        Rule("email_clicks_30d", "gte", 1, 8, "clicked an e-mail"),
        Rule("webinars_30d", "gte", 1, 8, "attended a webinar"),
        Rule("downloads_30d", "gte", 1, 6, "downloaded content"),
        Rule("case_study_views_30d", "gte", 1, 5, "read case studies"),
        Rule("docs_views_7d", "gte", 1, 5, "read the docs"),
        Rule("sessions_7d", "gte", 3, 5, "3+ visits in 7 days"),
        Rule("account_engaged_contacts_7d", "gte", 2, 8, "colleagues are engaged too"),
        Rule("seniority", "in", ("c-level", "vp"), 10, "senior decision maker", fit=True),
        Rule("seniority", "eq", "director", 6, "director-level title", fit=True),
        Rule("employees_bucket", "in", ("200-999", "1000-4999", "5000+"), 5, "company with 200+ employees", fit=True),
        Rule("careers_views_30d", "gte", 1, -10, "looking at careers pages"),
        Rule("seniority", "eq", "student", -15, "student", fit=True),
        Rule("email_domain_type", "eq", "free", -10, "free e-mail domain", fit=True),
        Rule("days_since_last_activity", "gte", 30, -15, "no activity for 30+ days"),
    ),
)


def use_trained_model(
    n_outcomes: int,
    n_positives: int,
    *,
    min_outcomes: int = DEFAULT_MIN_OUTCOMES,
    min_positives: int = DEFAULT_MIN_POSITIVES,
) -> bool:
    """True once there are enough labelled outcomes for a trained model to replace the rules."""
    return n_outcomes >= min_outcomes and n_positives >= min_positives


def derive_scorecard(
    frame: pd.DataFrame,
    y: np.ndarray,
    kinds: Mapping[str, str],
    *,
    min_rows: int = 30,
    base: int = 50,
    name: str = "derived scorecard",
) -> PointsModel:
    """Build a spreadsheet-style scorecard from training rows, for files without a hand-built one.

    It is what an admin does with a pivot table: for every categorical/boolean level with at least
    `min_rows` rows, points = round(10 * log2(level rate / overall rate)), kept when |points| >= 3;
    numeric columns are split at their median. Each column is judged on its own (no interactions).
    """
    y = np.asarray(y, dtype=float)
    overall = y.mean()
    rules: list[Rule] = []
    for col in frame.columns:
        kind = kinds.get(col)
        series = frame[col]
        if kind == "numeric":
            median = float(series.median()) if series.notna().any() else math.nan
            if math.isnan(median):
                continue
            groups: Iterable[tuple[Op, Any, np.ndarray, str]] = [
                ("gt", median, (series > median).to_numpy(), f"{col} above {median:g}"),
                ("lte", median, (series <= median).to_numpy(), f"{col} at most {median:g}"),
            ]
        elif kind in ("categorical", "boolean"):
            groups = [
                ("eq", level, (series == level).to_numpy(), f"{col} is {_show(level)}")
                for level in series.dropna().unique()
            ]
        else:
            continue
        for op, value, mask, text in groups:
            mask = np.asarray(mask, dtype=bool)
            if mask.sum() < min_rows or overall in (0, 1):
                continue
            rate = max(y[mask].mean(), 1e-3)
            points = round(10 * math.log2(rate / overall))
            points = max(-20, min(20, points))
            if abs(points) >= 3:
                rules.append(Rule(col, op, value, points, text))
    return PointsModel(rules=tuple(rules), base=base, name=name)


def _show(value: Any) -> str:
    if isinstance(value, float) and value in (0.0, 1.0):
        return "Yes" if value == 1.0 else "No"
    return str(value)


def rules_from_json_list(rules: Sequence[Mapping[str, Any]], base: int = 20, name: str = "rules") -> PointsModel:
    """Build a points model from a list of rule dicts (the JSON scorecard format)."""
    return PointsModel.from_json({"rules": list(rules), "base": base, "name": name})
