"""Pilot vs control KPIs (issue 17) from per-lead CRM facts: response time, conversion, win rate, cycle, pipeline.

The facts come from the CRM (first owner touch, stage changes, opportunities, outcomes; see the connectors'
activity readers) and from leadbridge (group, threshold crossing); this module only counts and compares them,
with the intervals of scoring/experiment.py. Framework-free: numpy and the standard library. Differences are
pilot minus control. With `clustered` (owners, pods or regions were assigned, not leads), every interval
resamples whole clusters, since leads of one owner are not independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from scoring.experiment import (
    CONTROL,
    PILOT,
    Interval,
    ValueSummary,
    anytime_interval,
    conclusive,
    kaplan_meier,
    km_median,
    km_median_interval,
    minimum_detectable_effect,
    more_leads_needed,
    rate_difference,
    share_touched_within,
    value_sentence,
    wilson_interval,
)

FAST_TOUCH_MINUTES = 5.0  # the seed's target: first contact within five minutes of the alert
DAY = 86400.0


@dataclass(frozen=True)
class LeadFacts:
    """What the CRM and leadbridge know about one lead in a pilot; None: it has not happened (yet)."""

    lead_id: str
    group: str  # "pilot" or "control", as assigned when the lead was first scored
    created_at: datetime
    cluster: str | None = None  # the owner, pod or region, when whole clusters were assigned
    crossed_at: datetime | None = None  # the score first crossed the alert threshold: the lead became an MQL
    first_touch_at: datetime | None = None  # the owner's first call, e-mail, meeting or status change (not ours)
    sql_at: datetime | None = None  # sales accepted it (lead status or lifecycle stage)
    opportunity_at: datetime | None = None
    amount: float = 0.0  # pipeline the lead's opportunities created
    closed_at: datetime | None = None
    won: bool | None = None  # None while the lead is open


@dataclass(frozen=True)
class Kpi:
    """One KPI for both groups, and the difference with its 95% interval (None: not enough data yet)."""

    name: str
    label: str
    unit: str
    pilot: float | None
    control: float | None
    n_pilot: int
    n_control: int
    difference: Interval | None
    method: str  # how the interval was computed, as the page and the export say it


@dataclass(frozen=True)
class ValueReport:
    """Every KPI of a pilot at `now`, the verdict and its sentence."""

    now: datetime
    kpis: dict[str, Kpi]
    conclusive: bool
    more_needed: int
    sentence: str
    leads: dict[str, int] = field(default_factory=dict)  # leads per group
    # The smallest win-rate rise the closed leads so far detect with 80% power (two-sided, 5%), at the control's
    # win rate: what the pilot can see now, next to the effect it declared (not post-hoc power).
    detectable: float | None = None


@dataclass(frozen=True)
class Plan:
    """What the pilot declared before it started: its horizon (closed leads) and the win-rate effect it looks for."""

    horizon: int = 2000
    effect: float = 0.05  # absolute win-rate difference the pilot is sized to see
    clustered: bool = False
    draws: int = 1000
    seed: int = 0


def _minutes(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 60.0


def response_times(facts: Sequence[LeadFacts], now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """Minutes from the threshold crossing to the first touch for leads that crossed; untouched ones are censored
    at `now` (touched False). A touch before the crossing counts as 0: the owner was already working the lead."""
    durations, touched = [], []
    for f in facts:
        if f.crossed_at is None or f.crossed_at > now:
            continue
        if f.first_touch_at is not None and f.first_touch_at <= now:
            durations.append(max(0.0, _minutes(f.crossed_at, f.first_touch_at)))
            touched.append(True)
        else:
            durations.append(max(0.0, _minutes(f.crossed_at, now)))
            touched.append(False)
    return np.asarray(durations, dtype=float), np.asarray(touched, dtype=bool)


def as_of(f: LeadFacts, now: datetime) -> LeadFacts:
    """The facts as they stood at `now`: what happened later has not happened yet."""
    def seen(at: datetime | None) -> datetime | None:
        return at if at is not None and at <= now else None

    closed = seen(f.closed_at)
    opportunity = seen(f.opportunity_at)
    return replace(f, crossed_at=seen(f.crossed_at), first_touch_at=seen(f.first_touch_at), sql_at=seen(f.sql_at),
                   opportunity_at=opportunity, amount=f.amount if opportunity else 0.0, closed_at=closed,
                   won=f.won if closed else None)


def _arms(facts: Sequence[LeadFacts]) -> dict[str, list[LeadFacts]]:
    arms: dict[str, list[LeadFacts]] = {PILOT: [], CONTROL: []}
    for f in facts:
        if f.group in arms:
            arms[f.group].append(f)
    return arms


def _resample(rows: list[LeadFacts], clustered: bool, rng: np.random.Generator) -> list[LeadFacts]:
    """One bootstrap draw of an arm: leads with replacement, or whole clusters when clusters were assigned."""
    if not clustered:
        return [rows[i] for i in rng.integers(0, len(rows), len(rows))]
    by_cluster: dict[str | None, list[LeadFacts]] = {}
    for r in rows:
        by_cluster.setdefault(r.cluster, []).append(r)
    groups = list(by_cluster.values())
    return [r for c in rng.integers(0, len(groups), len(groups)) for r in groups[c]]


def bootstrap_kpi(pilot: list[LeadFacts], control: list[LeadFacts], statistic: Callable[[list[LeadFacts]], float],
                  plan: Plan) -> Interval:
    """statistic(pilot) - statistic(control) with a percentile bootstrap over leads (or clusters)."""
    rng = np.random.default_rng(plan.seed)
    estimate = statistic(pilot) - statistic(control)
    diffs = np.empty(plan.draws)
    with np.errstate(invalid="ignore"):
        for b in range(plan.draws):
            diffs[b] = statistic(_resample(pilot, plan.clustered, rng)) - statistic(_resample(control, plan.clustered,
                                                                                              rng))
    # An undefined draw (an arm without any event) sits at both extremes: it widens the interval, never narrows it.
    diffs[np.isinf(diffs)] = np.nan
    low = float(np.quantile(np.where(np.isnan(diffs), -np.inf, diffs), 0.025, method="lower"))
    high = float(np.quantile(np.where(np.isnan(diffs), np.inf, diffs), 0.975, method="higher"))
    return Interval(float(estimate), low, high)


def _median_response(now: datetime) -> Callable[[list[LeadFacts]], float]:
    def statistic(rows: list[LeadFacts]) -> float:
        durations, touched = response_times(rows, now)
        return km_median(kaplan_meier(durations, touched)) if touched.any() else math.nan

    return statistic


def _rate(numerator: Callable[[LeadFacts], bool], denominator: Callable[[LeadFacts], bool]
          ) -> Callable[[list[LeadFacts]], float]:
    def statistic(rows: list[LeadFacts]) -> float:
        base = [r for r in rows if denominator(r)]
        return sum(numerator(r) for r in base) / len(base) if base else math.nan

    return statistic


def _cycle_days(rows: list[LeadFacts]) -> float:
    days = [(r.closed_at - r.created_at).total_seconds() / DAY for r in rows if r.won and r.closed_at]
    return float(np.median(days)) if days else math.nan


def _pipeline_per_lead(rows: list[LeadFacts]) -> float:
    return float(np.mean([r.amount for r in rows])) if rows else math.nan


def _velocity(rows: list[LeadFacts]) -> float:
    """Sales velocity per 100 leads a day: opportunities x win rate x average deal / cycle length (days)."""
    opportunities = [r for r in rows if r.opportunity_at is not None]
    closed = [r for r in opportunities if r.won is not None]
    cycle = _cycle_days(rows)
    if not rows or not closed or not cycle or math.isnan(cycle):
        return math.nan
    win = sum(bool(r.won) for r in closed) / len(closed)
    deal = float(np.mean([r.amount for r in opportunities]))
    return 100 * len(opportunities) / len(rows) * win * deal / cycle


_RATES: dict[str, tuple[str, Callable[[LeadFacts], bool], Callable[[LeadFacts], bool]]] = {
    "mql_to_sql": ("MQL -> SQL conversion", lambda f: f.sql_at is not None, lambda f: f.crossed_at is not None),
    "lead_to_opportunity": ("Lead -> opportunity", lambda f: f.opportunity_at is not None, lambda f: True),
    "win_rate": ("Win rate", lambda f: bool(f.won), lambda f: f.won is not None),
}
_BOOTSTRAPPED: dict[str, tuple[str, str, Callable[[list[LeadFacts]], float]]] = {
    "cycle_days": ("Sales cycle (median, won leads)", "days", _cycle_days),
    "pipeline_per_lead": ("Pipeline created per lead", "currency", _pipeline_per_lead),
    "velocity": ("Pipeline velocity per 100 leads", "currency/day", _velocity),
}
KPI_NAMES = ("response_time", "touched_within_5_min", *_RATES, *_BOOTSTRAPPED)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _rate_kpi(name: str, arms: dict[str, list[LeadFacts]], plan: Plan) -> Kpi:
    label, hit, base = _RATES[name]
    counts = {g: (sum(hit(f) for f in rows if base(f)), sum(base(f) for f in rows)) for g, rows in arms.items()}
    (sp, np_), (sc, nc) = counts[PILOT], counts[CONTROL]
    value = {g: (s / n if n else None) for g, (s, n) in counts.items()}
    difference, method = None, "Newcombe (Wilson) interval"
    if np_ and nc:
        if plan.clustered:
            difference, method = bootstrap_kpi(arms[PILOT], arms[CONTROL], _rate(hit, base), plan), "cluster bootstrap"
        else:
            difference = rate_difference(sp, np_, sc, nc)
    return Kpi(name, label, "share", value[PILOT], value[CONTROL], np_, nc, difference, method)


def _response_kpi(arms: dict[str, list[LeadFacts]], now: datetime, plan: Plan) -> tuple[Kpi, Kpi]:
    curves, n = {}, {}
    for g, rows in arms.items():
        durations, touched = response_times(rows, now)
        n[g] = int(durations.size)
        curves[g] = kaplan_meier(durations, touched) if touched.any() else None
    median = {g: (km_median(c) if c is not None else None) for g, c in curves.items()}
    fast = {g: (share_touched_within(c, FAST_TOUCH_MINUTES) if c is not None else None) for g, c in curves.items()}
    difference = fast_difference = None
    if curves[PILOT] is not None and curves[CONTROL] is not None:
        difference = bootstrap_kpi(arms[PILOT], arms[CONTROL], _median_response(now), plan)
        fp, fc = fast[PILOT], fast[CONTROL]
        assert fp is not None and fc is not None
        # Two independent Kaplan-Meier estimates: the half-widths of their log-log intervals combine like Newcombe's.
        d = fp.estimate - fc.estimate
        fast_difference = Interval(d, d - math.hypot(fp.estimate - fp.low, fc.high - fc.estimate),
                                   d + math.hypot(fp.high - fp.estimate, fc.estimate - fc.low))
    method = "Kaplan-Meier median; " + ("cluster bootstrap" if plan.clustered else "bootstrap over leads")
    pm, cm = median[PILOT], median[CONTROL]
    response = Kpi("response_time", "Response time (median, minutes)", "minutes",
                   None if pm is None else _finite(pm), None if cm is None else _finite(cm), n[PILOT], n[CONTROL],
                   difference, method)
    touched = Kpi("touched_within_5_min", "Touched within 5 minutes", "share",
                  fast[PILOT].estimate if fast[PILOT] else None, fast[CONTROL].estimate if fast[CONTROL] else None,
                  n[PILOT], n[CONTROL], fast_difference, "Kaplan-Meier, log-log intervals combined")
    return response, touched


def _bootstrapped_kpi(name: str, arms: dict[str, list[LeadFacts]], plan: Plan) -> Kpi:
    label, unit, statistic = _BOOTSTRAPPED[name]
    values = {g: _finite(statistic(rows)) if rows else None for g, rows in arms.items()}
    difference = None
    if values[PILOT] is not None and values[CONTROL] is not None:
        difference = bootstrap_kpi(arms[PILOT], arms[CONTROL], statistic, plan)
    method = "cluster bootstrap" if plan.clustered else "bootstrap over leads"
    return Kpi(name, label, unit, values[PILOT], values[CONTROL], len(arms[PILOT]), len(arms[CONTROL]), difference,
               method)


def closed_in_order(facts: Sequence[LeadFacts]) -> tuple[np.ndarray, np.ndarray]:
    """Won (1/0) and in-pilot flags of the closed leads, in the order their outcomes arrived (for anytime validity)."""
    closed = sorted((f for f in facts if f.won is not None and f.closed_at is not None and f.group in (PILOT, CONTROL)),
                    key=lambda f: (f.closed_at, f.lead_id))
    return (np.array([float(bool(f.won)) for f in closed]), np.array([f.group == PILOT for f in closed], dtype=bool))


def value_report(facts: Sequence[LeadFacts], now: datetime, control_share: float, plan: Plan | None = None,
                 only: Collection[str] | None = None) -> ValueReport:
    """Every KPI (or those in `only`; win rate always) per group with its difference, the verdict on win rate
    (anytime-valid, or at the horizon), and the plain sentence."""
    plan = plan or Plan()
    facts = [as_of(f, now) for f in facts if f.created_at <= now]
    arms = _arms(facts)
    wanted = set(KPI_NAMES if only is None else only) | {"win_rate"}
    kpis: dict[str, Kpi] = {}
    if wanted & {"response_time", "touched_within_5_min"}:
        response, touched = _response_kpi(arms, now, plan)
        kpis.update(response_time=response, touched_within_5_min=touched)
    for name in _RATES:
        if name in wanted:
            kpis[name] = _rate_kpi(name, arms, plan)
    for name in _BOOTSTRAPPED:
        if name in wanted:
            kpis[name] = _bootstrapped_kpi(name, arms, plan)
    response = kpis.get("response_time")
    win = kpis["win_rate"]
    is_conclusive, more, detectable = False, 0, None
    if win.difference is not None:
        won, in_pilot = closed_in_order(facts)
        # The anytime interval assumes independent leads; with clusters assigned only the horizon can conclude.
        anytime = (Interval(win.difference.estimate, -math.inf, math.inf) if plan.clustered
                   else anytime_interval(won, in_pilot, 1 - control_share, plan.horizon))
        is_conclusive = conclusive(win.difference, anytime, win.n_pilot + win.n_control, plan.horizon)
        baseline = win.control if win.control is not None else 0.2
        baseline = min(max(baseline, 0.01), 0.99)
        more = more_leads_needed(win.n_pilot, win.n_control, baseline, plan.effect)
        detectable = minimum_detectable_effect(win.n_pilot, win.n_control, baseline)
    summary = ValueSummary(
        response_minutes=response.difference if response else None, win_rate=win.difference, conclusive=is_conclusive,
        more_needed=0 if is_conclusive else more,
    )
    return ValueReport(now, kpis, is_conclusive, summary.more_needed, value_sentence(summary),
                       {g: len(rows) for g, rows in arms.items()}, detectable)


@dataclass(frozen=True)
class WeeklyPoint:
    """A KPI of one group over the leads of one week: its estimate and 95% interval (None: no data that week)."""

    week: datetime
    group: str
    n: int
    interval: Interval | None = None


def weekly(facts: Sequence[LeadFacts], kpi: str, start: datetime, now: datetime) -> list[WeeklyPoint]:
    """Win rate (by week of close) or median response minutes (by week of the crossing) per group and week."""
    points: list[WeeklyPoint] = []
    week = start
    while week <= now:
        end = min(week + timedelta(days=7), now)
        for group in (PILOT, CONTROL):
            rows = [f for f in facts if f.group == group]
            if kpi == "win_rate":
                closed = [f for f in rows if f.won is not None and f.closed_at and week <= f.closed_at < end]
                if closed:
                    w = wilson_interval(sum(bool(f.won) for f in closed), len(closed))
                    points.append(WeeklyPoint(week, group, len(closed), w))
                else:
                    points.append(WeeklyPoint(week, group, 0))
            elif kpi == "response_time":
                crossed = [f for f in rows if f.crossed_at and week <= f.crossed_at < end]
                durations, touched = response_times(crossed, now)
                if touched.any():
                    m = km_median_interval(kaplan_meier(durations, touched))
                    points.append(WeeklyPoint(week, group, int(durations.size), m))
                else:
                    points.append(WeeklyPoint(week, group, int(durations.size)))
            else:
                raise ValueError(f"no weekly series for {kpi!r}; use win_rate or response_time")
        week += timedelta(days=7)
    return points


# ---- for people: the page, the CLI and the weekly Slack summary ----------------------------------------------

_SCALES = {"share": (100.0, " pts", "%"), "minutes": (1.0, " min", " min"), "days": (1.0, " days", " days"),
           "currency": (1.0, "", ""), "currency/day": (1.0, "/day", "/day")}


def format_number(value: float | None, unit: str, difference: bool = False) -> str:
    """A KPI value (or, signed, a difference) for people: shares as %, or points when a difference."""
    if value is None or not math.isfinite(value):
        return "no bound" if value is not None else "-"
    scale, diff_suffix, suffix = _SCALES.get(unit, (1.0, "", ""))
    scaled = value * scale
    digits = 1 if unit in ("share", "days") else 0
    text = f"{scaled:+,.{digits}f}" if difference else f"{scaled:,.{digits}f}"
    return text + (diff_suffix if difference else suffix)


def interval_text(d: Interval | None, unit: str) -> str:
    """A difference and its 95% interval in the KPI's unit ("-12 min, 95% CI -20 min to -4 min")."""
    if d is None:
        return "not enough data yet"
    low, high = format_number(d.low, unit, True), format_number(d.high, unit, True)
    return f"{format_number(d.estimate, unit, True)}, 95% CI {low} to {high}"


@dataclass(frozen=True)
class KpiText:
    """One KPI as people read it: formatted pilot and control values, and the difference with its interval."""

    label: str
    pilot: str
    control: str
    difference: str


def kpi_text(kpi: Kpi) -> KpiText:
    """A KPI formatted in its unit."""
    return KpiText(kpi.label, format_number(kpi.pilot, kpi.unit), format_number(kpi.control, kpi.unit),
                   interval_text(kpi.difference, kpi.unit))
