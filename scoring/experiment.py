"""Pilot vs control statistics (issue 17): assignment, intervals, censored response times, power, anytime validity.

Framework-free and light: numpy and the standard library only, so the web process (the admin's Value page) can
import it without pulling in pandas or statsmodels. The tests check each function against statsmodels or scipy.
Differences are always pilot minus control.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

CONTROL = "control"
PILOT = "pilot"
Statistic = Literal["mean", "median"]

_STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval; bounds may be infinite (e.g. a median the data has not reached yet)."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95


def excludes_zero(interval: Interval) -> bool:
    """True when the interval lies entirely above or entirely below zero."""
    return interval.low > 0 or interval.high < 0


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


# --- assignment ---------------------------------------------------------------------------------------------------

def _unit_hash(namespace: str, key: str, salt: str) -> float:
    """A uniform number in [0, 1) from SHA-256; the same on every process, unlike hash()."""
    if not salt:
        raise ValueError("an empty salt would make every pilot share one assignment")
    digest = hashlib.sha256(f"{namespace}\x1f{salt}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _group(u: float, control_share: float) -> str:
    if not 0 <= control_share <= 1:
        raise ValueError(f"control_share must be in [0, 1], got {control_share}")
    return CONTROL if u < control_share else PILOT


def assign_group(lead_id: int | str, salt: str, control_share: float = 0.10) -> str:
    """"control" or "pilot" for a leadbridge lead id, by a salted SHA-256 hash (stable across processes)."""
    if isinstance(lead_id, bool):
        raise TypeError("lead_id must be an int or a str")
    # 42 and "42" are the same lead: ids reach us as ints from the database and as strings from the CLI.
    return _group(_unit_hash("lead", str(lead_id), salt), control_share)


def assign_cluster(cluster_key: str, salt: str, control_share: float = 0.10) -> str:
    """"control" or "pilot" for a whole owner, pod or region (cluster randomisation)."""
    # A separate namespace: otherwise owner "42" and lead 42 would always share a group.
    return _group(_unit_hash("cluster", cluster_key, salt), control_share)


# --- differences of rates -----------------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion (no continuity correction)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), confidence)


def rate_difference(successes_pilot: int, n_pilot: int, successes_control: int, n_control: int,
                    confidence: float = 0.95) -> Interval:
    """Pilot rate minus control rate with Newcombe's hybrid score interval (his method 10, from Wilson intervals)."""
    pilot = wilson_interval(successes_pilot, n_pilot, confidence)
    control = wilson_interval(successes_control, n_control, confidence)
    d = pilot.estimate - control.estimate
    low = d - math.hypot(pilot.estimate - pilot.low, control.high - control.estimate)
    high = d + math.hypot(pilot.high - pilot.estimate, control.estimate - control.low)
    return Interval(d, low, high, confidence)


# --- bootstrap ----------------------------------------------------------------------------------------------------

def _percentile(draws: np.ndarray, estimate: float, confidence: float) -> Interval:
    # Draws where the statistic is undefined (nan) are put at both extremes: they widen the interval, never narrow it.
    tail = (1 - confidence) / 2
    low = float(np.quantile(np.where(np.isnan(draws), -np.inf, draws), tail, method="lower"))
    high = float(np.quantile(np.where(np.isnan(draws), np.inf, draws), 1 - tail, method="higher"))
    return Interval(estimate, low, high, confidence)


def _values(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence")
    return array


def bootstrap_difference(pilot: Sequence[float] | np.ndarray, control: Sequence[float] | np.ndarray,
                         statistic: Statistic = "median", draws: int = 2000, seed: int = 0,
                         confidence: float = 0.95) -> Interval:
    """statistic(pilot) - statistic(control) with a percentile bootstrap interval (leads resampled within each arm)."""
    x, y = _values(pilot, "pilot"), _values(control, "control")
    stat = _STATISTICS[statistic]
    rng = np.random.default_rng(seed)
    # One (draws, n) index matrix per arm: fast, and memory stays small at pilot size (~2,000 leads).
    diffs = (stat(x[rng.integers(0, x.size, (draws, x.size))], axis=1)
             - stat(y[rng.integers(0, y.size, (draws, y.size))], axis=1))
    return _percentile(diffs, float(stat(x) - stat(y)), confidence)


def _by_cluster(values: np.ndarray, clusters: np.ndarray) -> list[np.ndarray]:
    """The values split into one array per cluster."""
    _, inverse = np.unique(clusters, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(values[order], np.cumsum(np.bincount(inverse))[:-1])


def _cluster_draw(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The leads of k clusters drawn with replacement from the arm's k clusters."""
    return np.concatenate([groups[c] for c in rng.integers(0, len(groups), len(groups))])


def cluster_bootstrap_difference(pilot: Sequence[float] | np.ndarray, pilot_clusters: Sequence[str] | np.ndarray,
                                 control: Sequence[float] | np.ndarray,
                                 control_clusters: Sequence[str] | np.ndarray, statistic: Statistic = "median",
                                 draws: int = 2000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """Like bootstrap_difference, but whole clusters (owners, pods, regions) are resampled, as they were assigned."""
    x, y = _values(pilot, "pilot"), _values(control, "control")
    cx, cy = np.asarray(pilot_clusters), np.asarray(control_clusters)
    if cx.shape != x.shape or cy.shape != y.shape:
        raise ValueError("every value needs its cluster key")
    stat = _STATISTICS[statistic]
    rng = np.random.default_rng(seed)
    # Leads of one owner are correlated; resampling leads would pretend there are more independent units than
    # there are, and the interval would be too narrow.
    gx, gy = _by_cluster(x, cx), _by_cluster(y, cy)
    diffs = np.array([stat(_cluster_draw(gx, rng)) - stat(_cluster_draw(gy, rng)) for _ in range(draws)])
    return _percentile(diffs, float(stat(x) - stat(y)), confidence)


# --- censored response times (Kaplan-Meier) -----------------------------------------------------------------------

@dataclass(frozen=True)
class SurvivalCurve:
    """Kaplan-Meier estimate at each distinct event time: S(t), leads at risk, events, Greenwood's sum."""

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    greenwood: np.ndarray  # sum of d / (n (n - d)) up to t; var(S(t)) = S(t)^2 * greenwood


def kaplan_meier(durations: Sequence[float] | np.ndarray, touched: Sequence[bool] | np.ndarray) -> SurvivalCurve:
    """Kaplan-Meier curve of time to first touch; untouched leads are censored at their time so far."""
    t = _values(durations, "durations")
    e = np.asarray(touched, dtype=bool)
    if e.shape != t.shape:
        raise ValueError("durations and touched must have the same length")
    times, inverse = np.unique(t, return_inverse=True)
    events = np.bincount(inverse, weights=e, minlength=times.size)
    leaving = np.bincount(inverse, minlength=times.size)
    # At risk just before each time: everyone whose time is that time or later (censored at t still count at t).
    at_risk = t.size - np.r_[0, np.cumsum(leaving)[:-1]]
    keep = events > 0
    times, events, at_risk = times[keep], events[keep], at_risk[keep]
    survival = np.cumprod(1 - events / at_risk)
    with np.errstate(divide="ignore"):
        greenwood = np.cumsum(np.where(at_risk > events, events / (at_risk * (at_risk - events)), np.inf))
    return SurvivalCurve(times, survival, at_risk.astype(int), events.astype(int), greenwood)


def survival_at(curve: SurvivalCurve, t: float) -> float:
    """S(t): the share of leads still untouched after t (a step function, right-continuous)."""
    i = int(np.searchsorted(curve.times, t, side="right"))
    return 1.0 if i == 0 else float(curve.survival[i - 1])


def share_touched_within(curve: SurvivalCurve, t: float, confidence: float = 0.95) -> Interval:
    """1 - S(t), e.g. the share touched within 5 minutes, with the log-log (Kalbfleisch-Prentice) interval."""
    i = int(np.searchsorted(curve.times, t, side="right"))
    if i == 0:
        return Interval(0.0, 0.0, 0.0, confidence)
    s, v = float(curve.survival[i - 1]), float(curve.greenwood[i - 1])
    if s == 0:  # every lead still at risk was touched: no variance left to estimate
        return Interval(1.0, 1.0, 1.0, confidence)
    # On log(-log S) the interval stays inside (0, 1) and is closer to nominal in small samples than S ± z se.
    w = _z(confidence) * math.sqrt(v) / abs(math.log(s))
    return Interval(1 - s, 1 - s ** math.exp(-w), 1 - s ** math.exp(w), confidence)


def km_median(curve: SurvivalCurve) -> float:
    """Median time to first touch: the first time S(t) <= 0.5; inf while more than half are untouched."""
    hit = np.flatnonzero(curve.survival <= 0.5)
    return float(curve.times[hit[0]]) if hit.size else math.inf


def km_median_interval(curve: SurvivalCurve, confidence: float = 0.95) -> Interval:
    """Median with the Brookmeyer-Crowley interval on the log-log scale (Greenwood variance).

    The interval holds the event times whose S(t) is not significantly different from 0.5; its upper end is the
    next event time after the last such one, or inf when there is none.
    """
    s = curve.survival
    with np.errstate(divide="ignore", invalid="ignore"):
        se_g = np.sqrt(curve.greenwood) / np.abs(np.log(s))
        r = (np.log(-np.log(s)) - math.log(math.log(2))) / se_g
    inside = np.flatnonzero(np.abs(r) <= _z(confidence))
    median = km_median(curve)
    if inside.size == 0:
        return Interval(median, math.nan, math.nan, confidence)
    high = math.inf if inside[-1] == s.size - 1 else float(curve.times[inside[-1] + 1])
    return Interval(median, float(curve.times[inside[0]]), high, confidence)


def km_median_difference(pilot_durations: Sequence[float] | np.ndarray, pilot_touched: Sequence[bool] | np.ndarray,
                         control_durations: Sequence[float] | np.ndarray,
                         control_touched: Sequence[bool] | np.ndarray, draws: int = 1000, seed: int = 0,
                         confidence: float = 0.95) -> Interval:
    """Pilot KM median minus control KM median, with a percentile bootstrap over leads (censoring kept)."""
    arms = [(_values(d, "durations"), np.asarray(e, dtype=bool))
            for d, e in ((pilot_durations, pilot_touched), (control_durations, control_touched))]
    rng = np.random.default_rng(seed)

    def median_of(t: np.ndarray, e: np.ndarray) -> float:
        return km_median(kaplan_meier(t, e))

    estimate = median_of(*arms[0]) - median_of(*arms[1])
    diffs = np.empty(draws)
    with np.errstate(invalid="ignore"):  # inf - inf: both medians unreached in a draw; counted as unknown below
        for b in range(draws):
            medians = []
            for t, e in arms:
                pick = rng.integers(0, t.size, t.size)
                medians.append(median_of(t[pick], e[pick]))
            diffs[b] = medians[0] - medians[1]
    return _percentile(diffs, float(estimate), confidence)


# --- power: what the pilot can see --------------------------------------------------------------------------------

def _rate_effect_size(baseline_rate: float, effect: float) -> float:
    """Cohen's h for baseline_rate + effect vs baseline_rate (arcsine scale: variance 1/n whatever the rate)."""
    target = baseline_rate + effect
    if not (0 < baseline_rate < 1 and 0 < target <= 1):
        raise ValueError(f"rates must lie in (0, 1]: baseline {baseline_rate}, with effect {target}")
    return 2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(baseline_rate))


def minimum_detectable_effect(n_pilot: int, n_control: int, baseline_rate: float, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest rise in a rate (pilot minus control, as a proportion) that these arm sizes detect with `power`.

    A two-sided z-test on the arcsine scale (statsmodels' NormalIndPower with Cohen's h), for a baseline rate
    declared before the pilot; not post-hoc power from the observed effect.
    """
    z = _z(1 - alpha) + NormalDist().inv_cdf(power)
    h = z * math.sqrt(1 / n_pilot + 1 / n_control)
    angle = min(math.asin(math.sqrt(baseline_rate)) + h / 2, math.pi / 2)
    return math.sin(angle) ** 2 - baseline_rate


def minimum_detectable_difference(n_pilot: int, n_control: int, sd: float, alpha: float = 0.05,
                                  power: float = 0.8) -> float:
    """Smallest difference of means (e.g. minutes to first touch) detectable with `power`, given an expected sd."""
    return (_z(1 - alpha) + NormalDist().inv_cdf(power)) * sd * math.sqrt(1 / n_pilot + 1 / n_control)


def leads_needed(baseline_rate: float, effect: float, control_share: float, alpha: float = 0.05,
                 power: float = 0.8) -> int:
    """Leads with an outcome, both arms together, needed to detect a pre-declared rise of `effect` in a rate."""
    if not 0 < control_share < 1:
        raise ValueError(f"control_share must be in (0, 1), got {control_share}")
    z = _z(1 - alpha) + NormalDist().inv_cdf(power)
    h = _rate_effect_size(baseline_rate, effect)
    return math.ceil((z / h) ** 2 * (1 / control_share + 1 / (1 - control_share)))


def more_leads_needed(n_pilot: int, n_control: int, baseline_rate: float, effect: float, alpha: float = 0.05,
                      power: float = 0.8) -> int:
    """How many more closed leads (at the current split) the pre-declared effect needs; 0 when there are enough."""
    total = n_pilot + n_control
    needed = leads_needed(baseline_rate, effect, n_control / total, alpha, power)
    return max(0, needed - total)


# --- anytime-valid inference --------------------------------------------------------------------------------------

def mixing_parameter(horizon: int, alpha: float = 0.05) -> float:
    """rho of the normal mixture that makes the confidence sequence narrowest after `horizon` observations."""
    # Waudby-Smith et al., "Time-uniform central limit theory and asymptotic confidence sequences" (2024): any
    # rho > 0 is valid; this one minimises the width at t = horizon, so size it to the pilot's planned leads.
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / horizon)


def confidence_sequence(values: Sequence[float] | np.ndarray, in_pilot: Sequence[bool] | np.ndarray,
                        pilot_share: float, horizon: int, alpha: float = 0.05,
                        burn_in: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pilot-minus-control mean after each lead (in the order outcomes arrived), with an asymptotic confidence
    sequence: with probability about 1 - alpha it covers the true difference at every t at once, so it can be
    looked at every week.

    Each lead contributes an augmented inverse-probability-weighted term (the randomisation probability
    `pilot_share` is known by design), centred on the arm means of the leads before it; the Gaussian-mixture
    boundary with `mixing_parameter(horizon, alpha)` is put around their running mean. Until each arm has
    `burn_in` leads the interval is (-inf, inf): the boundary is asymptotic, and with 20 a 10% control arm of 20%
    win rates was called in 3.2% of A/A pilots at ten weekly looks (1.7% with 100), mostly at the first looks.
    Leads are assumed independent: with owners or pods assigned, use the fixed-horizon cluster bootstrap.
    """
    y = _values(values, "values")
    a = np.asarray(in_pilot, dtype=bool)
    if a.shape != y.shape:
        raise ValueError("values and in_pilot must have the same length")
    if not 0 < pilot_share < 1:
        raise ValueError(f"pilot_share must be in (0, 1), got {pilot_share}")
    # Arm means from earlier leads only (predictable), so each term still has the true difference as its mean.
    n1 = np.r_[0, np.cumsum(a)[:-1]]
    n0 = np.r_[0, np.cumsum(~a)[:-1]]
    m1 = np.divide(np.r_[0.0, np.cumsum(y * a)[:-1]], n1, out=np.zeros(y.size), where=n1 > 0)
    m0 = np.divide(np.r_[0.0, np.cumsum(y * ~a)[:-1]], n0, out=np.zeros(y.size), where=n0 > 0)
    phi = m1 - m0 + a * (y - m1) / pilot_share - ~a * (y - m0) / (1 - pilot_share)
    t = np.arange(1, y.size + 1)
    estimate = np.cumsum(phi) / t
    variance = np.maximum(np.cumsum(phi**2) / t - estimate**2, 0.0)
    rho2 = mixing_parameter(horizon, alpha) ** 2
    half = np.sqrt(variance) * np.sqrt(2 * (t * rho2 + 1) / (t * t * rho2) * np.log(np.sqrt(t * rho2 + 1) / alpha))
    warm = (np.cumsum(a) >= burn_in) & (np.cumsum(~a) >= burn_in)
    return estimate, np.where(warm, estimate - half, -np.inf), np.where(warm, estimate + half, np.inf)


def anytime_interval(values: Sequence[float] | np.ndarray, in_pilot: Sequence[bool] | np.ndarray,
                     pilot_share: float, horizon: int, alpha: float = 0.05, burn_in: int = 100) -> Interval:
    """The confidence sequence at the latest lead, as an Interval (valid however often it has been looked at)."""
    estimate, low, high = confidence_sequence(values, in_pilot, pilot_share, horizon, alpha, burn_in)
    return Interval(float(estimate[-1]), float(low[-1]), float(high[-1]), 1 - alpha)


def conclusive(fixed: Interval, anytime: Interval, n: int, horizon: int) -> bool:
    """Conclusive only when the pilot reached its pre-set horizon and the fixed-horizon CI excludes 0, or when the
    anytime-valid interval excludes 0; a fixed-horizon CI read early at a weekly look is never enough."""
    return (n >= horizon and excludes_zero(fixed)) or excludes_zero(anytime)


# --- the sentence -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValueSummary:
    """What the sentence says: differences are pilot minus control."""

    response_minutes: Interval | None  # median minutes to first touch; negative means scored leads were sooner
    win_rate: Interval | None  # as proportions (0.021 is 2.1 points)
    conclusive: bool
    more_needed: int = 0  # closed leads still needed for the pre-declared effect


def _about(n: int) -> str:
    """Two significant figures: "about 870" reads as the estimate it is."""
    if n < 100:
        return str(n)
    digits = 10 ** (len(str(n)) - 2)
    return f"{round(n / digits) * digits:,}"



def _response_phrase(d: Interval) -> str:
    level = f"{d.confidence:.0%}"
    word = "sooner" if d.estimate < 0 else "later"
    head = f"Scored leads were contacted {abs(d.estimate):.0f} min {word}"
    if d.high < 0 and not math.isinf(d.low):  # both ends sooner: "18-63 min", as sooner amounts
        return f"{head} ({level} CI {-d.high:.0f}-{-d.low:.0f} min)"
    if d.low > 0 and not math.isinf(d.high):
        return f"{head} ({level} CI {d.low:.0f}-{d.high:.0f} min)"
    if math.isinf(d.low) and math.isinf(d.high):  # too few touched leads yet for the bootstrap to bound it
        return f"{head} (too few touched leads yet for an interval)"
    low = "no bound" if math.isinf(d.low) else f"{abs(d.low):.0f} min {'sooner' if d.low < 0 else 'later'}"
    high = "no bound" if math.isinf(d.high) else f"{abs(d.high):.0f} min {'sooner' if d.high < 0 else 'later'}"
    return f"{head} ({level} CI {low} to {high})"


def value_sentence(summary: ValueSummary) -> str:
    """The plain-language verdict, e.g. "Scored leads were contacted 41 min sooner (95% CI 18-63 min); win rate
    +2.1 points (CI -0.8 to +5.0), not yet conclusive: about 900 more closed leads needed"."""
    parts = []
    if summary.response_minutes is not None:
        parts.append(_response_phrase(summary.response_minutes))
    if summary.win_rate is not None:
        w = summary.win_rate
        label = "win rate" if parts else "Win rate"
        ci = "CI" if parts else f"{w.confidence:.0%} CI"
        parts.append(f"{label} {100 * w.estimate:+.1f} points ({ci} {100 * w.low:+.1f} to {100 * w.high:+.1f})")
    if not parts:
        return "No results yet"
    if summary.conclusive:
        verdict = "conclusive"
    elif summary.more_needed > 0:
        verdict = f"not yet conclusive: about {_about(summary.more_needed)} more closed leads needed"
    else:
        verdict = "not yet conclusive"
    return "; ".join(parts) + ", " + verdict
