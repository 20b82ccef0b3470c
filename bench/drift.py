"""Concept-drift benchmark: three drifts and a no-drift control, five serving strategies, five seeds each.

    python -m bench.drift --json bench/out/drift.json [--quick] [--workers 2]

The traffic simulator (sandbox.simulator) generates each funnel in simulated time (no waiting); its
Segment-style events go through the webhook parser (connectors.events) and the same feature code as the
live pipeline (scoring.features.build_offline via scoring.training_set); the simulator's CRM records
stand in for the enrichment the pipeline reads on first sight. Scenarios (SimulatorConfig.drift_kind):
- sudden: from the drift day, pricing views stop meaning intent and webinar attendance starts to;
- gradual: a new segment, for whom docs views (not pricing) carry intent, grows from 0 to 70% of new
  contacts over the 28 days after the drift day;
- seasonal: a campaign's low-intent audience (35% of new contacts) stays after the campaign ends on the
  drift day and is retargeted to the pricing page (intent-free pricing views from the least likely buyers);
- none: no drift (the control); "after the drift" means after the same nominal day.

Day by day, as in production: labels arrive with the maturity window (scoring.labels: won at once, lost
only after 30 days without a win); each newly labelled lead is first scored by what was live at its
decision time (prequential test), then released for training. Strategies:
- static: weekly's models, frozen on the drift day;
- weekly: today's loop (retrain every 7 days, and when the daily PSI check crosses 0.2; a challenger
  replaces the champion only when it beats it by the margin on the newest labels, scoring.champion);
- adwin: weekly, plus ADWIN over the champion's prequential error (scoring.drift.ErrorDriftDetector):
  when it detects a *rise* in the error it retrains at once, and every training reads only ADWIN's window
  (labels decided since the oldest one ADWIN still holds, at least MIN_WINDOW_LABELS of the newest);
- online: the online challenger as the product serves it: static's frozen champion blended on log-odds
  (scoring.online.blend) with the online model (scoring.online.OnlineModel, the product's default kind,
  linear), at the weight the product's gate sets each day (tasks.online_learning.gate_decision with
  tasks.learning.LearningConfig's defaults: the configured weight while the blend's AUC beats the
  champion's by the promotion margin on the newest gate labels both predicted, else 0). The online model
  is warm-started on the champion's first training window (the labels known on first_train_day, replayed
  in decision-time order), then learns each day's matured labels as the product's pass does (label
  order, unweighted), before scoring that day's decisions;
- shipped: what the product ships by default (key `shipped`, also written as `hybrid` for older readers):
  adwin's loop (ADWIN trigger, ADWIN's window, no EDR weights: LEADBRIDGE_LEARNING_REPLAY_WEIGHTS=false)
  with the online challenger served under the product's gate as in `online`, but blended with adwin's current
  champion (the one live at each decision). ADWIN watches the champion's own error and promotion compares
  challenger with champion, as in the product, so the blend never changes the retraining loop;
- edr (only with --edr): shipped with Experience-Delayed Replay weights in every XGBoost training
  (scoring.replay.edr_weights, the gentle tilt tasks.learning uses when replay weights are switched on).
A measurement, not a strategy: online_alone, the online model's own probabilities (nothing serves them:
grades and reasons always come from the champion); reported beside the strategies, not in the targets.
Measures, per strategy (and for online_alone): rolling ROC AUC over 21-day windows of decision time, every 3 days, up to 45
days before the end (later leads' outcomes are still open when the simulation stops). Pre-drift level:
mean of the windows between the first model and the drift. lowest_auc: the lowest window ending after
the drift. recovery_days: after the first post-drift window below (pre - 0.02), days from the first
matured label of a post-drift decision to the end of the first window back within 0.02 (0 when none fell
below; null when none came back). final_auc: the last window. retrainings: training runs after the first
model (triggered ones, by PSI or ADWIN, counted apart: in the control they are false retrainings).
JSON: scenarios.<name>.<strategy or online_alone>.{lowest_auc, recovery_days, final_auc, retrainings, ...}
(means over seeds, recovery over the seeds that recovered) with per-seed lists under `per_seed`; the blend
weights over time per seed of the gated strategies (online, shipped, edr) under `blend_weights`, the share of days
the blend served under `serving_share`, and the gate's AUC(blend) - AUC(champion) under `gate_auc_gap`.

Sizes are fixed here (800 accounts, 170 days, drift on day 75) to keep the default run under ~25 minutes
on a 2-core machine; --quick is a smoke test (small funnels, one seed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench._table import console, fmt, write_json
from connectors.events import parse_events
from core.records import Event, Outcome
from sandbox.simulator import FunnelSimulation, SimulatorConfig, simulate
from scoring.champion import train_challenger
from scoring.drift import DEFAULT_THRESHOLD, ErrorDriftDetector, Profile, adwin_window_start, drift_report
from scoring.features import ACTIVITY_TYPES, FEATURE_NAMES
from scoring.labels import LabelledLead, LabelPolicy, LeadHistory, label_leads, last_activity_before
from scoring.model import ModelBundle
from scoring.online import OnlineModel, blend
from scoring.prequential import PrequentialRecord, rolling_metrics
from scoring.replay import edr_weights
from scoring.training import TrainingError
from scoring.training_set import LABELLED_COLUMN, META_COLUMNS, EventIndex, train_options
from tasks.learning import LearningConfig
from tasks.online_learning import gate_decision

DAY = timedelta(days=1)
RECOVERY_TOLERANCE = 0.02
# The simulator closes a contact's outcome 12-45 days after it appears and stops at the horizon, so leads
# decided in the last 45 days have unfinished stories (would-be converters look lost): windows stop there.
OUTCOME_LAG_DAYS = 45
MIN_DRIFT_ROWS = 100
SCENARIOS = ("sudden", "gradual", "seasonal", "none")
STRATEGIES = ("static", "weekly", "adwin", "online", "shipped")
SHIPPED = "shipped"  # the product's default: adwin's loop with the gated online challenger
ALIASES = {"hybrid": SHIPPED}  # JSON keys kept for older readers: alias -> the strategy it repeats
OPTIONAL = ("edr",)  # run only when asked (--edr): shipped with EDR-weighted XGBoost training
MEASUREMENTS = ("online_alone",)  # measured and reported like a strategy, but nothing serves it
ROWS = STRATEGIES + OPTIONAL + MEASUREMENTS
GATED = ("online", "shipped", "edr")  # served as the product serves the online challenger (its gate)
ONLINE_KIND = "linear"  # the product's default learner (scoring.online.OnlineModel)


@dataclass(frozen=True)
class Plan:
    """The benchmark's fixed parameters (one set for the default run, one for --quick)."""

    accounts: int = 800
    days: int = 170
    drift_day: int = 75
    first_train_day: int = 30
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    maturity_days: float = 30.0
    retrain_every: int = 7
    window: int = 21  # rolling AUC window, days of decision time
    step: int = 3
    margin: float = 0.005
    psi_threshold: float = DEFAULT_THRESHOLD
    adwin_delta: float = 0.002
    min_window_labels: int = 300
    min_retrain_gap: int = 2  # days between two ADWIN-triggered retrainings
    # EDR for the edr strategy's XGBoost: a gentle tilt. Funnel labels are noisy (a keen lead may still not buy), so a
    # steep error term would mostly up-weight noise; a high floor keeps old and well-predicted labels in play.
    edr_half_life_days: float = 14.0
    edr_error_power: float = 0.5
    edr_floor: float = 0.5


FULL = Plan()
QUICK = Plan(accounts=120, days=115, drift_day=50, first_train_day=22, seeds=(1,), min_window_labels=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=str, default=None, help="write the results here")
    p.add_argument("--quick", action="store_true", help="small funnels and one seed (a smoke test)")
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    p.add_argument("--workers", type=int, default=2, help="processes (one funnel each at a time)")
    p.add_argument("--edr", action="store_true",
                   help="also run the edr strategy (shipped with EDR-weighted training; ~1/3 longer)")
    return p.parse_args(argv)


# ---- the simulated world as the pipeline sees it -------------------------------------------------


@dataclass
class World:
    """Canonical events, lead mapping, histories and outcomes of one simulation."""

    sim: FunnelSimulation
    index: EventIndex
    histories: dict[str, LeadHistory]
    outcomes: list[Outcome]
    activity: dict[str, list[datetime]]


def build_world(sim: FunnelSimulation) -> World:
    """Parse the simulator's Segment events like the webhook does, add CRM enrichment, map to contacts."""
    owner: dict[str, str] = {}
    for contact in sim.contacts:
        owner[contact.key] = contact.key
        owner[contact.anonymous_id] = contact.key
    events: list[Event] = []
    batch: list[dict[str, Any]] = []
    for i, ev in enumerate(sim.events):
        batch.append(sim.segment_event(ev))
        if len(batch) == 500 or i == len(sim.events) - 1:
            result = parse_events(json.dumps({"batch": batch}).encode(), source="simulator",
                                  received_at=sim.config.start + timedelta(days=sim.config.days + 1))
            events.extend(result.events)
            batch = []
    for contact in sim.contacts:
        # What ingest's enrichment hands the online store on first sight: the CRM's person and company fields.
        account = sim.account_by_key[contact.account_key]
        at = contact.created_at + timedelta(minutes=1)
        events.append(Event(
            source="enrichment", crm="web", object_type="person", object_id=contact.key, event_type="identify",
            occurred_at=at, received_at=at, dedupe_key=f"enrich:{contact.key}", email=contact.email,
            properties={"traits": {"jobtitle": contact.title, "country": account.country, "domain": account.domain,
                                   "industry": account.industry, "numberofemployees": account.employees}}))
    index = EventIndex(events, lambda e: owner.get(e.object_id, e.object_id))
    activity: dict[str, list[datetime]] = {}
    for lead, evs in index.by_lead.items():
        activity[lead] = sorted(e.occurred_at for e in evs if e.event_type in ACTIVITY_TYPES)
    histories = {c.key: LeadHistory(c.created_at, tuple(activity.get(c.key, ()))) for c in sim.contacts}
    outcomes = [Outcome(o.contact_key, o.won, o.at, "simulator") for o in sim.outcomes]
    return World(sim, index, histories, outcomes, activity)


class FeatureCache:
    """Feature vectors by (lead, instant): a label's row never changes, so each is built once."""

    def __init__(self, index: EventIndex) -> None:
        self.index = index
        self.rows: dict[tuple[str, datetime], dict[str, Any]] = {}

    def vector(self, lead: str, at: datetime) -> dict[str, Any]:
        """The lead's feature vector as of `at`."""
        key = (lead, at)
        if key not in self.rows:
            self.rows[key] = self.index.features_at(lead, at)
        return self.rows[key]

    def frame(self, labels: Sequence[LabelledLead]) -> pd.DataFrame:
        """A decision frame (scoring.training_set's columns) for labels."""
        rows = [{"lead_id": x.lead_id, "as_of": x.decision_time.isoformat(), LABELLED_COLUMN: x.labelled_at.isoformat(),
                 "won": int(x.won), **self.vector(x.lead_id, x.decision_time)} for x in labels]
        return pd.DataFrame(rows, columns=[*META_COLUMNS, *FEATURE_NAMES])


# ---- what the product sees, day by day ---------------------------------------------------------


@dataclass
class Arm:
    """One serving strategy's champion history: which XGBoost model was live from when."""

    name: str
    history: list[tuple[datetime, ModelBundle]] = field(default_factory=list)
    blend_weights: list[tuple[datetime, float]] = field(default_factory=list)  # the gated strategies
    retrainings: list[dict[str, Any]] = field(default_factory=list)

    def live_at(self, at: datetime) -> ModelBundle | None:
        """The champion serving at `at` (None before the first model)."""
        live = None
        for since, bundle in self.history:
            if since <= at:
                live = bundle
        return live

    def weight_at(self, at: datetime) -> float:
        """The online model's blend weight in force at `at` (the gated strategies; 0 for the others)."""
        weight = 0.0
        for since, w in self.blend_weights:
            if since <= at:
                weight = w
        return weight


@dataclass
class Stream:
    """The labels of one funnel as they become known: all of them each day, the new ones, the final ones."""

    start: datetime
    known: dict[int, list[LabelledLead]]
    arrivals: dict[int, list[LabelledLead]]
    tested: list[LabelledLead]
    last_day: int


def label_stream(world: World, plan: Plan) -> Stream:
    """Labels known at each day's start (a lead lost at maturity can still win later: it arrives again)."""
    policy = LabelPolicy(maturity=timedelta(days=plan.maturity_days), gap=DAY)
    start = world.sim.config.start
    last_day = plan.days - OUTCOME_LAG_DAYS
    known: dict[int, list[LabelledLead]] = {}
    arrivals: dict[int, list[LabelledLead]] = {}
    seen: dict[str, tuple[bool, datetime]] = {}
    for day in range(1, last_day + 1):
        labels = label_leads(world.histories, world.outcomes, start + day * DAY, policy)
        known[day] = labels
        arrivals[day] = [x for x in labels if seen.get(x.lead_id) != (x.won, x.decision_time)]
        seen = {x.lead_id: (x.won, x.decision_time) for x in labels}
    final = label_leads(world.histories, world.outcomes, start + (plan.days + plan.maturity_days + 1) * DAY, policy)
    first, end = start + plan.first_train_day * DAY, start + last_day * DAY
    tested = [x for x in final if first <= x.decision_time < end]
    return Stream(start, known, arrivals, tested, last_day)


def key_of(label: LabelledLead) -> tuple[str, datetime]:
    """A label's (lead, decision time): where its prediction was made."""
    return label.lead_id, label.decision_time


def run_online(stream: Stream, cache: FeatureCache, seed: int, kind: str = ONLINE_KIND,
               warm_day: int | None = None) -> dict[tuple[str, datetime], float]:
    """The online challenger's probability at every decision time from `warm_day` on (from day 0 when None).
    On `warm_day` it is warm-started on the labels known then, replayed in decision-time order (the champion's
    first training window); every later day it learns that day's matured labels as the product's pass does
    (in label order, unweighted) before scoring that day's decisions."""
    decisions: dict[int, set[tuple[str, datetime]]] = {}
    for labels in (*stream.known.values(), stream.tested):
        for x in labels:
            decisions.setdefault(int((x.decision_time - stream.start) / DAY), set()).add(key_of(x))
    model = OnlineModel(kind, seed=seed, columns=FEATURE_NAMES)
    preds: dict[tuple[str, datetime], float] = {}
    for day in range(warm_day or 0, stream.last_day + 1):
        if day == warm_day:
            window = stream.known.get(day, [])
            model.warm_start([(cache.vector(x.lead_id, x.decision_time), x.won) for x in window],
                             [(x.decision_time, x.lead_id) for x in window])
        else:
            for x in stream.arrivals.get(day, []):
                model.learn(cache.vector(x.lead_id, x.decision_time), x.won)
        for lead, at in sorted(decisions.get(day, ())):
            preds[(lead, at)] = model.predict_proba(cache.vector(lead, at))
    return preds


def gated_weights(arm: Arm, stream: Stream, cache: FeatureCache, online: dict[tuple[str, datetime], float],
                  config: LearningConfig) -> tuple[list[tuple[datetime, float]], list[float]]:
    """The online model's blend weight over time as the product's gate sets it for `arm`'s champion
    (tasks.online_learning.gate_decision): each day, after the day's matured labels are scored by the champion
    and by the blend at the configured weight, the blend serves (that weight) while its AUC beats the champion's
    by the promotion margin on the newest gate labels both predicted, else the weight is 0. Like the product's
    pass, a lead is scored once, at its first label; the online probability is the one it had at the decision.
    Returns the weights (from when) and the gate's AUC(blend) - AUC(champion) on each day it could compare."""
    weight = config.online_blend_weight
    champion: list[SimpleNamespace] = []
    blended: list[SimpleNamespace] = []
    seen: set[str] = set()
    out: list[tuple[datetime, float]] = []
    gaps: list[float] = []
    for day in range(1, stream.last_day + 1):
        arrivals = [x for x in stream.arrivals[day] if x.lead_id not in seen and key_of(x) in online]
        for x, p in zip(arrivals, champion_probabilities(arm, arrivals, cache)):
            seen.add(x.lead_id)
            if p is None:
                continue
            champion.append(SimpleNamespace(lead_id=x.lead_id, won=x.won, probability=p))
            blended.append(SimpleNamespace(lead_id=x.lead_id, won=x.won,
                                           probability=blend(p, online[key_of(x)], weight)))
        newest = 2 * config.online_gate_labels  # what the product's pass reads before the gate
        decision = gate_decision(champion[-newest:], blended[-newest:], config.promotion_margin,
                                 config.online_gate_labels)
        if decision["auc_champion"] is not None and decision["auc_blend"] is not None:
            gaps.append(decision["auc_blend"] - decision["auc_champion"])
        w = weight if decision["serve"] else 0.0
        if not out or out[-1][1] != w:
            out.append((stream.start + day * DAY, w))
    return out, gaps


def gated_arm(name: str, champions: Arm, stream: Stream, cache: FeatureCache,
              online: dict[tuple[str, datetime], float]) -> tuple[Arm, list[float]]:
    """`champions`' models served as the product serves the online challenger beside them: blended with the online
    model while the product's gate lets it (gated_weights, LearningConfig's defaults); its retrainings are theirs.
    Returns the arm and the gate's AUC(blend) - AUC(champion) on each day it could compare."""
    arm = Arm(name, list(champions.history), retrainings=list(champions.retrainings))
    arm.blend_weights, gaps = gated_weights(champions, stream, cache, online, LearningConfig())
    return arm, gaps


def champion_probabilities(arm: Arm, labels: Sequence[LabelledLead], cache: FeatureCache) -> list[float | None]:
    """Each label's probability from the arm's champion live at its decision time (None before any model)."""
    out: list[float | None] = [None] * len(labels)
    groups: dict[int, list[int]] = {}
    models: dict[int, ModelBundle] = {}
    for i, x in enumerate(labels):
        bundle = arm.live_at(x.decision_time)
        if bundle is not None:
            groups.setdefault(id(bundle), []).append(i)
            models[id(bundle)] = bundle
    for key, idx in groups.items():
        p = models[key].predict_proba(cache.frame([labels[i] for i in idx]))
        for i, pi in zip(idx, p):
            out[i] = float(pi)
    return out


def run_batch(kind: str, world: World, cache: FeatureCache, stream: Stream, plan: Plan) -> Arm:
    """One batch retraining loop (weekly, adwin, or adwin with EDR weights: edr) through the simulated days."""
    arm = Arm(kind)
    uses_adwin = kind in ("adwin", "edr")
    detector = ErrorDriftDetector(plan.adwin_delta) if uses_adwin else None
    fed: list[datetime] = []  # decision times of the labels ADWIN was fed, in label order
    served: dict[tuple[str, datetime], float] = {}  # champion probability at each label's decision
    profile: Profile | None = None
    last_train: datetime | None = None
    last_trigger: datetime | None = None
    options = train_options()
    for day in range(1, stream.last_day + 1):
        now = stream.start + day * DAY
        arrivals = stream.arrivals[day]
        rose = False
        for x, p in zip(arrivals, champion_probabilities(arm, arrivals, cache)):
            if p is None:
                continue
            served[key_of(x)] = p
            if detector is not None:
                before = detector.error_rate
                # Only a rise in the error calls for retraining (a fall is a new champion doing better).
                rose |= detector.update(int(x.won), p) and detector.error_rate > before
                fed.append(x.decision_time)
        if day < plan.first_train_day:
            continue
        reason = None
        if last_train is None or now - last_train >= plan.retrain_every * DAY:
            reason = "schedule"
        elif rose and (last_trigger is None or now - last_trigger >= plan.min_retrain_gap * DAY):
            reason = "adwin"
        elif profile is not None and drift_check(world, cache, profile, now, plan.psi_threshold):
            cooling = last_trigger is not None and now - last_trigger < plan.retrain_every * DAY
            reason = None if cooling else "psi"
        if reason is not None:
            labels = stream.known[day]
            if detector is not None:
                since = adwin_window_start(fed, detector.width)
                window = [x for x in labels if since is None or x.decision_time >= since]
                if len(window) < plan.min_window_labels:
                    window = sorted(labels, key=lambda x: x.decision_time)[-plan.min_window_labels:]
                labels = sorted(window, key=lambda x: (x.labelled_at, x.lead_id))
            positives = sum(x.won for x in labels)
            if len(labels) >= 50 and 2 <= positives <= len(labels) - 2:
                weights = None
                if kind == "edr":
                    prior = positives / len(labels)
                    weights = edr_weights([max(0.0, (x.labelled_at - x.decision_time) / DAY) for x in labels],
                                          [abs(int(x.won) - served.get(key_of(x), prior)) for x in labels],
                                          [x.won for x in labels], half_life_days=plan.edr_half_life_days,
                                          error_power=plan.edr_error_power, floor=plan.edr_floor)
                champion = arm.live_at(now)
                reference = [cache.vector(lead, last) for lead, last in active_leads(world, now, 30)]
                try:
                    result = train_challenger(cache.frame(labels), options, champion=champion, margin=plan.margin,
                                              now=now, reference_rows=reference, sample_weight=weights)
                except TrainingError as exc:  # e.g. too few usable rows: the product skips the run too
                    arm.retrainings.append({"day": day, "reason": reason, "labels": len(labels), "error": str(exc)})
                    result = None
                if result is not None:
                    promoted = champion is None or result.decision.promote
                    if champion is not None:
                        arm.retrainings.append({"day": day, "reason": reason, "labels": len(labels),
                                                "promoted": promoted})
                    if promoted:
                        arm.history.append((now, result.experiment.bundle))
                        profile = Profile.from_json(result.experiment.bundle.metadata["drift_reference"])
                last_train = now
                if reason != "schedule":
                    last_trigger = now
    return arm


def drift_check(world: World, cache: FeatureCache, profile: Profile, now: datetime, threshold: float) -> list[str]:
    """PSI of the leads active in the last 7 days (as of their last activity) against the champion's profile."""
    live = [cache.vector(lead, last) for lead, last in active_leads(world, now, 7)]
    if len(live) < MIN_DRIFT_ROWS:
        return []
    report = drift_report(profile, live, None, checked_at=now, threshold=threshold, min_rows=MIN_DRIFT_ROWS)
    return report.drifted


def active_leads(world: World, now: datetime, days: float) -> list[tuple[str, datetime]]:
    """(lead, last activity) for leads active in the `days` before `now`: how the live window is sampled
    (and a model's drift reference, over the 30 days before it was trained; see population_rows)."""
    out = []
    for lead, times in world.activity.items():
        last = last_activity_before(times, now)
        if last is not None and last > now - days * DAY:
            out.append((lead, last))
    return out


# ---- measuring -----------------------------------------------------------------------------------


def batch_records(arm: Arm, labels: Sequence[LabelledLead], cache: FeatureCache,
                  online: dict[tuple[str, datetime], float] | None = None) -> list[PrequentialRecord]:
    """Each tested label scored by the arm's champion live at its decision time (`online` unused: blended_records'
    signature)."""
    return [PrequentialRecord(x.lead_id, x.decision_time, x.labelled_at, p, x.won, "champion")
            for x, p in zip(labels, champion_probabilities(arm, labels, cache)) if p is not None]


def blended_records(arm: Arm, labels: Sequence[LabelledLead], cache: FeatureCache,
                    online: dict[tuple[str, datetime], float]) -> list[PrequentialRecord]:
    """Each tested label scored by the arm's champion blended on log-odds with the online model, at the weight in
    force at its decision time; at weight 0 the champion's probability as it is (as the product serves it: the
    blend's clipping would tie an overconfident champion's extreme probabilities)."""
    out = []
    for r in batch_records(arm, labels, cache):
        weight = arm.weight_at(r.decision_time)
        at = (r.lead_id, r.decision_time)
        p = blend(r.probability, online[at], weight) if weight > 0 and at in online else r.probability
        out.append(PrequentialRecord(r.lead_id, r.decision_time, r.labelled_at, p, r.won, arm.name))
    return out


def strategy_records(stream: Stream, cache: FeatureCache, arms: dict[str, Arm],
                     online: dict[tuple[str, datetime], float]) -> dict[str, list[PrequentialRecord]]:
    """Prequential records of every strategy in `arms` (and of the online model alone) on the same tested labels."""
    out = {name: (blended_records if name in GATED else batch_records)(arm, stream.tested, cache, online)
           for name, arm in arms.items()}
    out["online_alone"] = [PrequentialRecord(x.lead_id, x.decision_time, x.labelled_at, online[key_of(x)], x.won,
                                             "online_alone") for x in stream.tested if key_of(x) in online]
    return out


def measure(records: list[PrequentialRecord], stream: Stream, plan: Plan, retrainings: list[dict[str, Any]]
            ) -> dict[str, Any]:
    """Pre-drift level, lowest window after the drift, recovery, final window, retrainings."""
    start = stream.start
    drift_at = start + plan.drift_day * DAY
    windows = rolling_metrics(records, window=plan.window * DAY, step=plan.step * DAY, by="decision",
                              start=start + plan.first_train_day * DAY, end=start + stream.last_day * DAY)
    pre = [w.roc_auc for w in windows if w.end <= drift_at and math.isfinite(w.roc_auc)]
    level = float(np.mean(pre)) if pre else float("nan")
    post = [w for w in windows if w.end > drift_at and math.isfinite(w.roc_auc)]
    # The first day a label of a post-drift decision could be learned from.
    first_label = min((x.labelled_at for x in stream.tested if x.decision_time >= drift_at), default=drift_at)
    first_low = next((i for i, w in enumerate(post) if w.roc_auc < level - RECOVERY_TOLERANCE), None)
    recovery: float | None = 0.0
    if first_low is not None:
        back = next((w for w in post[first_low:] if w.roc_auc >= level - RECOVERY_TOLERANCE), None)
        recovery = round(max(0.0, (back.end - first_label) / DAY), 1) if back is not None else None
    return {
        "pre_drift_auc": level,
        "lowest_auc": min((w.roc_auc for w in post), default=float("nan")),
        "recovery_days": recovery,
        "final_auc": windows[-1].roc_auc if windows else float("nan"),
        "retrainings": len(retrainings),
        "triggered_retrainings": sum(1 for r in retrainings if r["reason"] != "schedule"),
        "first_post_drift_label_day": round((first_label - start) / DAY, 1),
        "windows": [{"end_day": round((w.end - start) / DAY, 1), "rows": w.rows, "roc_auc": w.roc_auc}
                    for w in windows],
    }


def run_world(scenario: str, seed: int, plan: Plan, edr: bool = False) -> dict[str, Any]:
    """Simulate one funnel, run every strategy on it (edr too when asked), measure each."""
    started = time.monotonic()
    drift = {} if scenario == "none" else {"drift_day": plan.drift_day, "drift_kind": scenario}
    sim = simulate(SimulatorConfig(seed=seed, accounts=plan.accounts, days=plan.days, **drift))
    world = build_world(sim)
    cache = FeatureCache(world.index)
    stream = label_stream(world, plan)
    online = run_online(stream, cache, seed, warm_day=plan.first_train_day)
    loops = {kind: run_batch(kind, world, cache, stream, plan) for kind in ("weekly", "adwin", *(("edr",) if edr else ()))}
    drift_at = stream.start + plan.drift_day * DAY
    static = Arm("static", [(since, b) for since, b in loops["weekly"].history if since <= drift_at])
    arms = {"static": static, "weekly": loops["weekly"], "adwin": loops["adwin"]}
    # The product's serving of the online challenger beside a champion: blended while the gate lets it.
    gaps: dict[str, list[float]] = {}
    arms["online"], gaps["online"] = gated_arm("online", static, stream, cache, online)
    arms[SHIPPED], gaps[SHIPPED] = gated_arm(SHIPPED, loops["adwin"], stream, cache, online)
    if edr:
        arms["edr"], gaps["edr"] = gated_arm("edr", loops["edr"], stream, cache, online)
    records = strategy_records(stream, cache, arms, online)
    result = {name: measure(records[name], stream, plan, arms[name].retrainings if name in arms else [])
              for name in ROWS if name in records}
    days = range(plan.first_train_day, stream.last_day + 1)
    for name, gap in gaps.items():
        result[name]["blend_weights"] = [[round((t - stream.start) / DAY, 1), w] for t, w in arms[name].blend_weights]
        result[name]["serving_share"] = sum(arms[name].weight_at(stream.start + d * DAY) > 0 for d in days) / len(days)
        result[name]["gate_auc_gap"] = {"mean": float(np.mean(gap)) if gap else None,
                                        "max": float(np.max(gap)) if gap else None, "days": len(gap)}
    return {"scenario": scenario, "seed": seed, "strategies": result, "contacts": len(sim.contacts),
            "tested": len(stream.tested), "seconds": round(time.monotonic() - started, 1)}


# ---- the report ----------------------------------------------------------------------------------

KEYS = ("pre_drift_auc", "lowest_auc", "recovery_days", "final_auc", "retrainings", "triggered_retrainings")


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(np.mean(present)), 4) if present else None


def aggregate(worlds: Sequence[dict[str, Any]], scenarios: Sequence[str]) -> dict[str, Any]:
    """Means over seeds per scenario and strategy (recovery over the seeds that recovered), per-seed lists; each
    alias (ALIASES) repeats its strategy's entry."""
    out: dict[str, Any] = {}
    for scenario in scenarios:
        runs = sorted((w for w in worlds if w["scenario"] == scenario), key=lambda w: w["seed"])
        out[scenario] = {}
        for name in ROWS:
            if not all(name in r["strategies"] for r in runs):
                continue  # an optional strategy that was not run
            per_seed = {k: [r["strategies"][name][k] for r in runs] for k in KEYS}
            entry: dict[str, Any] = {k: _mean(v) for k, v in per_seed.items()}
            entry["recovered"] = sum(v is not None for v in per_seed["recovery_days"])
            entry["seeds"] = [r["seed"] for r in runs]
            entry["per_seed"] = per_seed
            if all("serving_share" in r["strategies"][name] for r in runs):
                entry["serving_share"] = _mean([r["strategies"][name]["serving_share"] for r in runs])
            if all("gate_auc_gap" in r["strategies"][name] for r in runs):
                entry["gate_auc_gap"] = {k: _mean([r["strategies"][name]["gate_auc_gap"][k] for r in runs])
                                         for k in ("mean", "max")}
            out[scenario][name] = entry
        out[scenario].update({alias: out[scenario][name] for alias, name in ALIASES.items()})
    return out


def _gap(a: float | None, b: float | None) -> float | None:
    return round(a - b, 4) if a is not None and b is not None else None


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked on the means: the shipped strategy recovers (every seed) within 7 days of the
    first matured post-drift labels and its lowest AUC beats weekly's by >= 0.01; no strategy ends below static
    (the online model alone is no strategy: its gap to static is reported beside)."""
    out: dict[str, Any] = {}
    for scenario, by in summary.items():
        if scenario == "none":
            continue
        h, w = by[SHIPPED], by["weekly"]
        recovers = h["recovered"] == len(h["seeds"]) and (h["recovery_days"] or 0.0) <= 7.0
        lowest_gain = (h["lowest_auc"] or 0.0) - (w["lowest_auc"] or 0.0)
        worse = [name for name in STRATEGIES + OPTIONAL if name != "static" and name in by
                 and by[name]["final_auc"] is not None and by["static"]["final_auc"] is not None
                 and by[name]["final_auc"] < by["static"]["final_auc"]]
        out[scenario] = {"shipped_recovers_within_7_days": recovers, "shipped_recovery_days": h["recovery_days"],
                         "shipped_lowest_minus_weekly": round(lowest_gain, 4),
                         "shipped_lowest_beats_weekly_by_0.01": lowest_gain >= 0.01,
                         "worse_than_static_at_the_end": worse,
                         "online_alone_final_minus_static": _gap(by["online_alone"]["final_auc"], by["static"]["final_auc"])}
    return out


def print_tables(summary: dict[str, Any], plan: Plan) -> None:
    """One rich table per scenario."""
    out = console()
    for scenario, by in summary.items():
        what = "no drift (control): 'after the drift' is after day" if scenario == "none" else f"{scenario} drift on day"
        table = Table(title=f"{scenario}: {what} {plan.drift_day}; means over {len(by['static']['seeds'])} seed(s)")
        table.caption = ("shipped: the product's default, adwin + the gated online challenger (JSON alias: hybrid); "
                         "online: static + the gated online challenger; edr: shipped + EDR weights; online_alone: "
                         "the online model's own probabilities, a measurement (nothing serves them)")
        for column in ("strategy", "pre-drift AUC", "lowest AUC after", "recovery days", "recovered", "final AUC",
                       "retrainings", "triggered", "blend served"):
            table.add_column(column, justify="right", no_wrap=column == "strategy")
        for name in ROWS:
            if name not in by:
                continue
            e = by[name]
            served = f"{e['serving_share']:.0%}" if e.get("serving_share") is not None else ""
            table.add_row(name, fmt(e["pre_drift_auc"], 3), fmt(e["lowest_auc"], 3),
                          fmt(e["recovery_days"], 1), f"{e['recovered']}/{len(e['seeds'])}", fmt(e["final_auc"], 3),
                          fmt(e["retrainings"], 1), fmt(e["triggered_retrainings"], 1), served)
        out.print(table)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every (scenario, seed) funnel, in `--workers` processes, then the summary."""
    plan = QUICK if args.quick else FULL
    jobs = [(scenario, seed) for scenario in args.scenarios for seed in plan.seeds]
    started = time.monotonic()
    worlds: list[dict[str, Any]] = []
    out = console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out) as bar:
        strategies = len(STRATEGIES) + (1 if args.edr else 0)
        task = bar.add_task(f"funnels ({strategies} strategies and the online model alone each)", total=len(jobs))
        if args.workers <= 1:
            for scenario, seed in jobs:
                bar.update(task, description=f"{scenario}, seed {seed}")
                worlds.append(run_world(scenario, seed, plan, args.edr))
                bar.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                futures = {pool.submit(run_world, scenario, seed, plan, args.edr): (scenario, seed) for scenario, seed in jobs}
                for future in as_completed(futures):
                    worlds.append(future.result())
                    scenario, seed = futures[future]
                    bar.update(task, advance=1, description=f"done: {scenario}, seed {seed}")
    summary = aggregate(worlds, args.scenarios)
    print_tables(summary, plan)
    checked = targets(summary)
    for scenario, t in checked.items():
        out.print(f"{scenario}: shipped recovers within 7 days: {t['shipped_recovers_within_7_days']} "
                  f"({fmt(t['shipped_recovery_days'], 1)} days); shipped lowest - "
                  f"weekly lowest = {t['shipped_lowest_minus_weekly']:+.3f}; ending below static: "
                  f"{', '.join(t['worse_than_static_at_the_end']) or 'none'}; online model alone - static (final AUC, "
                  f"a measurement) = {t['online_alone_final_minus_static']}")
    seconds = time.monotonic() - started
    out.print(f"{len(jobs)} funnels in {seconds:.0f} s")
    return {"scenarios": summary, "targets": checked, "plan": {k: v for k, v in plan.__dict__.items()},
            "quick": bool(args.quick), "edr": bool(args.edr), "seconds": round(seconds, 1),
            "funnels": [{k: w[k] for k in ("scenario", "seed", "contacts", "tested", "seconds")} for w in worlds],
            "windows": {f"{w['scenario']}/{w['seed']}": {n: s["windows"] for n, s in w["strategies"].items()}
                        for w in worlds}}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the JSON."""
    args = parse_args(argv)
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    result = run(args)
    if args.json:
        path = write_json(args.json, result)
        console().print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
