"""Concept-drift benchmark: rolling prequential AUC of a static model vs leadbridge's retraining loop.

    python -m bench.drift --json bench/out/drift.json [--accounts 1500] [--days 180] [--drift-day 60]

The traffic simulator (sandbox.simulator) generates a funnel in simulated time (no waiting) in
which, from `--drift-day` on, pricing-page views stop predicting conversion and webinar attendance
starts to. Its Segment-style events go through the webhook parser (connectors.events) and the
same feature code as the live pipeline (scoring.features.build_offline via scoring.training_set);
the simulator's CRM records stand in for the enrichment the pipeline reads on first sight.

Day by day, as in production:
- labels arrive with the maturity window (scoring.labels: won at once, lost only after
  `--maturity-days` without a win);
- each newly labelled lead is first scored by the model that was live at its decision time
  (prequential test), then released for training;
- leadbridge retrains every `--retrain-every` days and when the daily PSI check (live week vs the
  champion's training data) crosses 0.2; a challenger replaces the champion only when it beats it by
  the margin on the newest labels (scoring.champion, as `leadbridge train` evaluates);
- the static model is leadbridge frozen at the drift: the champion live on the drift day, never
  retrained afterwards (before the drift both arms are identical).
Rolling AUC is computed per window of decision time, up to 45 days before the end (later leads'
outcomes are still open when the simulation stops). Recovery: the first window ending after the
drift in which leadbridge's AUC is back within 0.02 of its pre-drift level (mean over the windows
between its first model and the drift), counted in days after the drift.
JSON: {"recovery_days", "pre_drift_auc", "final_auc", "static_final_auc", ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench._table import console, fmt, write_json
from connectors.events import parse_events
from sandbox.simulator import FunnelSimulation, SimulatorConfig, simulate
from core.records import Event, Outcome
from scoring.champion import train_challenger
from scoring.drift import DEFAULT_THRESHOLD, Profile, drift_report, prequential_adwin
from scoring.features import ACTIVITY_TYPES, FEATURE_NAMES
from scoring.labels import LabelledLead, LabelPolicy, LeadHistory, label_leads, last_activity_before
from scoring.model import ModelBundle
from scoring.prequential import PrequentialRecord, auc, rolling_metrics
from scoring.training_set import LABELLED_COLUMN, META_COLUMNS, EventIndex, train_options

DAY = timedelta(days=1)
RECOVERY_TOLERANCE = 0.02
# The simulator closes a contact's outcome 12-45 days after it appears and stops at the horizon, so leads
# decided in the last 45 days have unfinished stories (would-be converters look lost): windows stop there.
OUTCOME_LAG_DAYS = 45
MIN_DRIFT_ROWS = 100


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=str, default=None, help="write the results here")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--accounts", type=int, default=1000, help="simulated companies (1-5 contacts each)")
    p.add_argument("--days", type=int, default=180, help="simulated days")
    p.add_argument("--drift-day", type=int, default=60, help="day the concept drift starts")
    p.add_argument("--maturity-days", type=float, default=30.0, help="days without a win before a lead is lost")
    p.add_argument("--first-train-day", type=int, default=35, help="day the first model is trained")
    p.add_argument("--retrain-every", type=int, default=7, help="scheduled retraining interval in days")
    p.add_argument("--window", type=int, default=14, help="rolling AUC window (days of decision time)")
    p.add_argument("--step", type=int, default=7, help="rolling AUC step in days")
    p.add_argument("--margin", type=float, default=0.005, help="promotion margin (ROC AUC)")
    p.add_argument("--psi-threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--training-window-days", type=int, default=None,
                   help="train only on labels decided in the last N days (default: all)")
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
        key = (lead, at)
        if key not in self.rows:
            self.rows[key] = self.index.features_at(lead, at)
        return self.rows[key]

    def frame(self, labels: Sequence[LabelledLead]) -> pd.DataFrame:
        rows = [{"lead_id": x.lead_id, "as_of": x.decision_time.isoformat(), LABELLED_COLUMN: x.labelled_at.isoformat(),
                 "won": int(x.won), **self.vector(x.lead_id, x.decision_time)} for x in labels]
        return pd.DataFrame(rows, columns=[*META_COLUMNS, *FEATURE_NAMES])


# ---- the loop ------------------------------------------------------------------------------------


@dataclass
class Arm:
    """One serving strategy: which model was live from when."""

    name: str
    history: list[tuple[datetime, ModelBundle]]

    def live_at(self, at: datetime) -> ModelBundle | None:
        live = None
        for since, bundle in self.history:
            if since <= at:
                live = bundle
        return live


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate, replay day by day with retraining, and measure."""
    out = console()
    started = time.monotonic()
    with out.status("simulating the funnel"):
        sim = simulate(SimulatorConfig(seed=args.seed, accounts=args.accounts, days=args.days,
                                       drift_day=args.drift_day))
        world = build_world(sim)
    out.print(f"simulated {len(sim.contacts):,} contacts, {len(world.index.by_lead):,} leads with events, "
              f"{sum(len(v) for v in world.index.by_lead.values()):,} events, {len(sim.outcomes):,} outcomes "
              f"({sum(o.won for o in sim.outcomes):,} won) over {args.days} days; drift on day {args.drift_day}")
    policy = LabelPolicy(maturity=timedelta(days=args.maturity_days), gap=DAY)
    cache = FeatureCache(world.index)
    start = sim.config.start
    end = start + args.days * DAY
    leadbridge = Arm("leadbridge (retraining)", [])
    static = Arm("static model (frozen at the drift)", [])
    events_log: list[dict[str, Any]] = []
    last_train: datetime | None = None
    last_drift_retrain: datetime | None = None
    profile: Profile | None = None
    # Retraining past the last evaluated day would change nothing that is measured.
    days = range(args.first_train_day, args.days - OUTCOME_LAG_DAYS + 1)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out) as bar:
        task = bar.add_task("simulated days", total=len(days))
        for day in days:
            now = start + day * DAY
            due = last_train is None or now - last_train >= args.retrain_every * DAY
            drifted: list[str] = []
            if not due and profile is not None:
                drifted = drift_check(world, cache, profile, now, args.psi_threshold)
                cooling = last_drift_retrain is not None and now - last_drift_retrain < args.retrain_every * DAY
                if drifted and not cooling:
                    due = True
            if due:
                reason = "drift" if drifted else "schedule"
                bar.update(task, description=f"day {day}: retraining ({reason})")
                labels = label_leads(world.histories, world.outcomes, now, policy)
                if args.training_window_days:
                    labels = [x for x in labels if x.decision_time >= now - args.training_window_days * DAY]
                positives = sum(x.won for x in labels)
                if len(labels) >= 50 and 0 < positives < len(labels):
                    champion = leadbridge.live_at(now)
                    frame = cache.frame(labels)
                    reference = [cache.vector(lead, last) for lead, last in active_leads(world, now, 30)]
                    result = train_challenger(frame, train_options(), champion=champion, margin=args.margin, now=now,
                                              reference_rows=reference)
                    promoted = champion is None or result.decision.promote
                    events_log.append({"day": day, "reason": reason, "labels": len(labels), "positives": positives,
                                       "challenger_auc": result.challenger_metrics["roc_auc"],
                                       "champion_auc": (result.champion_metrics or {}).get("roc_auc"),
                                       "promoted": promoted, "drifted": drifted[:5]})
                    if promoted:
                        bundle = result.experiment.bundle
                        leadbridge.history.append((now, bundle))
                        profile = Profile.from_json(bundle.metadata["drift_reference"])
                    last_train = now
                    if reason == "drift":
                        last_drift_retrain = now
            bar.update(task, advance=1, description=f"day {day}")
    # The static arm is leadbridge frozen at the drift: the same models before it, never retrained after.
    drift_at = start + args.drift_day * DAY
    static.history = [(since, bundle) for since, bundle in leadbridge.history if since <= drift_at]
    # Every label that will ever exist, each tested against what was live at its decision time.
    final = label_leads(world.histories, world.outcomes, end + args.maturity_days * DAY + DAY, policy)
    first_model = leadbridge.history[0][0] if leadbridge.history else end
    eval_end = end - OUTCOME_LAG_DAYS * DAY
    tested = [x for x in final if first_model <= x.decision_time < eval_end]
    records = {arm.name: prequential(arm, tested, cache) for arm in (leadbridge, static)}
    windows = {name: rolling_metrics(recs, window=args.window * DAY, step=args.step * DAY, by="decision",
                                     start=first_model, end=eval_end) for name, recs in records.items()}
    return summarise(args, windows, records, events_log, start, time.monotonic() - started)


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


def prequential(arm: Arm, labels: Sequence[LabelledLead], cache: FeatureCache) -> list[PrequentialRecord]:
    """Score each label with the arm's model live at its decision time (models never saw these labels then)."""
    by_model: dict[int, list[LabelledLead]] = {}
    models: dict[int, ModelBundle] = {}
    for label in labels:
        bundle = arm.live_at(label.decision_time)
        if bundle is None:
            continue
        by_model.setdefault(id(bundle), []).append(label)
        models[id(bundle)] = bundle
    out = []
    for key, group in by_model.items():
        frame = cache.frame(group)
        p = models[key].predict_proba(frame)
        out.extend(PrequentialRecord(x.lead_id, x.decision_time, x.labelled_at, float(pi), x.won, models[key].version)
                   for x, pi in zip(group, p))
    return sorted(out, key=lambda r: (r.labelled_at, r.lead_id))


def summarise(args: argparse.Namespace, windows: dict[str, list[Any]], records: dict[str, list[PrequentialRecord]],
              events_log: list[dict[str, Any]], start: datetime, seconds: float) -> dict[str, Any]:
    """Print the tables and compute the headline numbers."""
    out = console()
    names = list(windows)
    lb, st = windows[names[0]], windows[names[1]]
    drift_at = start + args.drift_day * DAY

    def day_of(t: datetime) -> float:
        return (t - start) / DAY

    def recovery_of(ws: list[Any]) -> tuple[float, float | None, float]:
        """(pre-drift level, days until back within tolerance, lowest post-drift window AUC).

        Recovery: after the first post-drift window below (pre - tolerance), the first one back within
        it, in days from the drift to that window's end; 0 when no window after the drift fell below,
        None when none came back before the end.
        """
        pre = [w.roc_auc for w in ws if w.end <= drift_at and math.isfinite(w.roc_auc)]
        level = float(np.mean(pre)) if pre else float("nan")
        post = [w for w in ws if w.end > drift_at and math.isfinite(w.roc_auc)]
        first_low = next((i for i, w in enumerate(post) if w.roc_auc < level - RECOVERY_TOLERANCE), None)
        days: float | None = 0.0
        if first_low is not None:
            back = next((w for w in post[first_low:] if w.roc_auc >= level - RECOVERY_TOLERANCE), None)
            days = round(day_of(back.end) - args.drift_day, 1) if back is not None else None
        return level, days, min((w.roc_auc for w in post), default=float("nan"))

    pre_auc, recovery, lowest = recovery_of(lb)
    static_pre, static_recovery, static_lowest = recovery_of(st)
    table = Table(title=f"rolling prequential ROC AUC ({args.window}-day windows of decision time; drift on day "
                        f"{args.drift_day})")
    for column in ("window (days)", "leads", "won", "static model", "leadbridge", "leadbridge model"):
        table.add_column(column, justify="right")
    for a, b in zip(st, lb):
        versions = {r.model_version for r in records[names[0]] if a.start <= r.decision_time < a.end}
        marker = " ← drift" if a.start < drift_at <= a.end else ""
        table.add_row(f"{day_of(a.start):.0f}-{day_of(a.end):.0f}{marker}", fmt(b.rows), fmt(b.positives),
                      fmt(a.roc_auc, 3), fmt(b.roc_auc, 3), str(len(versions)) + " model(s)")
    out.print(table)
    log = Table(title="retraining runs")
    for column in ("day", "reason", "labels", "won", "challenger AUC", "champion AUC", "promoted", "drifted"):
        log.add_column(column)
    for e in events_log:
        log.add_row(str(e["day"]), e["reason"], fmt(e["labels"]), fmt(e["positives"]), fmt(e["challenger_auc"], 3),
                    fmt(e["champion_auc"], 3), str(e["promoted"]), ", ".join(e["drifted"][:3]))
    out.print(log)
    final_auc = lb[-1].roc_auc if lb else float("nan")
    static_final = st[-1].roc_auc if st else float("nan")
    post = [r for r in records[names[0]] if r.decision_time >= drift_at]
    post_static = [r for r in records[names[1]] if r.decision_time >= drift_at]
    result = {
        "recovery_days": recovery,
        "pre_drift_auc": round(pre_auc, 4),
        "final_auc": round(final_auc, 4),
        "static_final_auc": round(static_final, 4),
        "post_drift_auc": round(auc([int(r.won) for r in post], [r.probability for r in post]), 4),
        "static_post_drift_auc": round(auc([int(r.won) for r in post_static], [r.probability for r in post_static]), 4),
        "drift_day": args.drift_day, "days": args.days, "accounts": args.accounts, "seed": args.seed,
        "maturity_days": args.maturity_days, "retrain_every_days": args.retrain_every, "window_days": args.window,
        "tolerance": RECOVERY_TOLERANCE, "lowest_post_drift_auc": round(lowest, 4),
        "static_pre_drift_auc": round(static_pre, 4), "static_recovery_days": static_recovery,
        "static_lowest_post_drift_auc": round(static_lowest, 4), "evaluated_until_day": args.days - OUTCOME_LAG_DAYS,
        "adwin": {name: prequential_adwin(recs) for name, recs in records.items()},
        "retrainings": events_log,
        "windows": {name: [w.to_json() for w in ws] for name, ws in windows.items()},
        "seconds": round(seconds, 1),
    }
    if recovery == 0.0:
        recovered = "never fell below it after the drift"
    elif recovery is not None:
        recovered = f"back within it {recovery} days after the drift"
    else:
        recovered = "not back within it by the end of the run"
    out.print(f"pre-drift AUC (leadbridge) {fmt(pre_auc, 3)} (tolerance {RECOVERY_TOLERANCE}): {recovered}; "
              f"lowest post-drift window {fmt(lowest, 3)}; static model: pre-drift {fmt(static_pre, 3)}, lowest "
              f"{fmt(static_lowest, 3)}, {'back within 0.02 after ' + str(static_recovery) + ' days' if static_recovery else 'never back within 0.02' if static_recovery is None else 'never below'}; "
              f"final window AUC: leadbridge {fmt(final_auc, 3)}, static {fmt(static_final, 3)}; "
              f"{seconds:.0f} s")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the JSON."""
    args = parse_args(argv)
    if not args.first_train_day < args.drift_day < args.days - OUTCOME_LAG_DAYS:
        print(f"error: need first-train-day < drift-day < days - {OUTCOME_LAG_DAYS}", file=sys.stderr)
        return 2
    result = run(args)
    if args.json:
        path = write_json(args.json, result)
        console().print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
