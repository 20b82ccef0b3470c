"""Value benchmark: does the pilot/control estimator recover a known effect, and stay honest when there is none?

    python -m bench.value --json bench/out/value.json [--runs 200] [--accounts 700] [--control-share 0.10]

Each run is a whole simulated funnel (sandbox.simulator, its own seed: about 2,000 leads over 120 days) worked
by the simulator's sales reps (sandbox.reps): a hot pilot lead raises an alert and its owner calls within
minutes; a hot control lead waits in the queue for hours; an alerted lead wins `--uplift` more often. Leads are
assigned as the product assigns them (scoring.experiment.assign_group, a fresh salt per run) and the KPIs and
intervals are the product's own (scoring.value.value_report). Three checks:
- injected effect: the true difference (median response minutes, win rate) is measured on `--truth-funnels`
  funnels with every lead in one arm and then the other; each pilot's 95% interval should hold it (coverage);
- A/A: control leads are alerted exactly like pilot leads (no real difference); the 95% intervals should hold
  zero in about 95% of runs;
- weekly looks: each A/A pilot is looked at every 7 days of closed outcomes; a "conclusive" call
  (scoring.experiment.conclusive: anytime-valid, or the fixed interval at the pre-set horizon) is a false claim.
  The naive rule (the fixed 95% interval excludes 0 at any look) is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench._table import console, fmt, run_and_report
from sandbox.reps import PilotLead, RepConfig, pilot_leads, rep_facts
from sandbox.simulator import SimulatorConfig, simulate
from scoring.experiment import (
    CONTROL,
    PILOT,
    anytime_interval,
    assign_group,
    conclusive,
    excludes_zero,
    kaplan_meier,
    km_median,
    rate_difference,
)
from scoring.value import LeadFacts, Plan, closed_in_order, response_times, value_report

KPIS = ("response_time", "win_rate")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.value", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="pilots per check (A/A and injected; default 200)")
    p.add_argument("--accounts", type=int, default=700, help="accounts per funnel (700: about 2,000 leads)")
    p.add_argument("--days", type=int, default=120, help="simulated days per funnel")
    p.add_argument("--control-share", type=float, default=0.10, help="share of leads held out (default 0.10)")
    p.add_argument("--uplift", type=float, default=RepConfig.win_uplift, help="win-rate uplift of an alert")
    p.add_argument("--truth-funnels", type=int, default=20, help="funnels that measure the true difference")
    p.add_argument("--draws", type=int, default=500, help="bootstrap draws per interval")
    p.add_argument("--seed", type=int, default=1000, help="first funnel seed")
    p.add_argument("--json", dest="json_path", type=Path, default=None, help="write the report here")
    return p.parse_args(argv)


def _funnel(args: argparse.Namespace, seed: int) -> list[PilotLead]:
    return pilot_leads(simulate(SimulatorConfig(seed=seed, accounts=args.accounts, days=args.days)))


def _end(facts: Sequence[LeadFacts]) -> Any:
    return max(max(f.closed_at or f.created_at, f.first_touch_at or f.created_at) for f in facts)


def true_differences(args: argparse.Namespace, reps: RepConfig, progress: Progress) -> dict[str, float]:
    """Median response minutes and win rate with every lead alerted minus with none, over many funnels."""
    task = progress.add_task("truth: every lead in each arm", total=args.truth_funnels)
    arms: dict[str, list[LeadFacts]] = {PILOT: [], CONTROL: []}
    for i in range(args.truth_funnels):
        leads = _funnel(args, args.seed + 100_000 + i)
        for group, facts in arms.items():
            facts.extend(rep_facts(leads, lambda _lead, g=group: g, reps, seed=i))
        progress.advance(task)
    medians, wins = {}, {}
    for group, facts in arms.items():
        durations, touched = response_times(facts, _end(facts))
        medians[group] = km_median(kaplan_meier(durations, touched))
        closed = [f for f in facts if f.won is not None]
        wins[group] = sum(bool(f.won) for f in closed) / len(closed)
    return {"response_time": medians[PILOT] - medians[CONTROL], "win_rate": wins[PILOT] - wins[CONTROL]}


def one_pilot(args: argparse.Namespace, reps: RepConfig, run: int) -> tuple[list[LeadFacts], dict[str, Any]]:
    """A pilot on its own funnel and salt: the facts and the report's two headline KPIs."""
    leads = _funnel(args, args.seed + run)
    salt = f"bench-{run}"
    facts = rep_facts(leads, lambda lead: assign_group(lead.contact.key, salt, args.control_share), reps, seed=run)
    report = value_report(facts, _end(facts), args.control_share,
                          Plan(horizon=sum(f.won is not None for f in facts), draws=args.draws, seed=run),
                          only=KPIS)
    return facts, {k: report.kpis[k].difference for k in KPIS}


def weekly_looks(facts: Sequence[LeadFacts], control_share: float) -> tuple[bool, bool]:
    """(any conclusive call, any naive call) over looks every 7 days of closed outcomes; horizon: all of them."""
    closed = sorted((f for f in facts if f.won is not None and f.closed_at is not None), key=lambda f: f.closed_at)
    won, in_pilot = closed_in_order(closed)
    horizon = len(closed)
    start = closed[0].closed_at
    any_conclusive = any_naive = False
    look = start + timedelta(days=7)
    while True:
        n = sum(f.closed_at <= look for f in closed)
        if n:
            p = in_pilot[:n]
            w = won[:n]
            if p.any() and (~p).any():
                fixed = rate_difference(int(w[p].sum()), int(p.sum()), int(w[~p].sum()), int((~p).sum()))
                anytime = anytime_interval(w, p, 1 - control_share, horizon)
                any_conclusive |= conclusive(fixed, anytime, n, horizon)
                any_naive |= excludes_zero(fixed)
        if n >= horizon:
            return any_conclusive, any_naive
        look += timedelta(days=7)


def _covers(interval: Any, value: float) -> bool:
    return interval is not None and interval.low <= value <= interval.high


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three checks and return the report."""
    if not 0 < args.control_share < 1:
        raise ValueError(f"--control-share must be between 0 and 1, not {args.control_share}")
    if args.runs < 1 or args.truth_funnels < 1:
        raise ValueError("--runs and --truth-funnels must be at least 1")
    effect = RepConfig(win_uplift=args.uplift)
    null = replace(effect, alert_control=True)
    columns = (TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console()) as progress:
        truth = true_differences(args, effect, progress)
        injected: dict[str, list[Any]] = {k: [] for k in KPIS}
        task = progress.add_task("injected effect: pilots", total=args.runs)
        for i in range(args.runs):
            _, diffs = one_pilot(args, effect, i)
            for k in KPIS:
                injected[k].append(diffs[k])
            progress.advance(task)
        aa: dict[str, list[Any]] = {k: [] for k in KPIS}
        calls = {"conclusive": 0, "naive": 0}
        task = progress.add_task("A/A: pilots with weekly looks", total=args.runs)
        for i in range(args.runs):
            facts, diffs = one_pilot(args, null, args.runs + i)
            for k in KPIS:
                aa[k].append(diffs[k])
            conclusive_call, naive_call = weekly_looks(facts, args.control_share)
            calls["conclusive"] += conclusive_call
            calls["naive"] += naive_call
            progress.advance(task)
    report: dict[str, Any] = {
        "runs": args.runs, "leads_per_pilot": None, "control_share": args.control_share, "uplift": args.uplift,
        "aa_runs": args.runs,
        "aa_coverage": sum(_covers(d, 0.0) for d in aa["win_rate"]) / args.runs,
        "aa_coverage_by_kpi": {k: sum(_covers(d, 0.0) for d in aa[k]) / args.runs for k in KPIS},
        "aa_false_conclusive_rate": calls["conclusive"] / args.runs,
        "aa_naive_false_call_rate": calls["naive"] / args.runs,
        "stated_error_rate": 0.05,
    }
    for k in KPIS:
        first = injected[k][0]
        report[k] = {
            "injected": truth[k],
            # One pilot's answer, as a user would read it, and how the estimator did over every pilot.
            "estimate": first.estimate if first else None,
            "ci_low": first.low if first else None,
            "ci_high": first.high if first else None,
            "mean_estimate": statistics.fmean(d.estimate for d in injected[k] if d is not None),
            "coverage": sum(_covers(d, truth[k]) for d in injected[k]) / args.runs,
        }
    report["leads_per_pilot"] = len(_funnel(args, args.seed))
    return report


def show(report: dict[str, Any]) -> None:
    """Print the two tables."""
    out = console()
    table = Table(title=f"Injected effect: {report['runs']} pilots of about {report['leads_per_pilot']:,} leads, "
                        f"{report['control_share']:.0%} control")
    for col in ("KPI", "injected (true)", "one pilot: estimate", "its 95% CI", "mean estimate", "CI coverage"):
        table.add_column(col, justify="right" if col != "KPI" else "left")
    for k, label, scale in (("response_time", "median response, minutes", 1.0), ("win_rate", "win rate, points",
                                                                                   100.0)):
        r = report[k]
        table.add_row(label, fmt(r["injected"] * scale, 1), fmt(r["estimate"] * scale, 1),
                      f"{fmt(r['ci_low'] * scale, 1)} to {fmt(r['ci_high'] * scale, 1)}",
                      fmt(r["mean_estimate"] * scale, 1), f"{r['coverage']:.3f}")
    out.print(table)
    aa = Table(title=f"A/A: {report['aa_runs']} pilots, no real difference")
    for col in ("check", "measured", "target"):
        aa.add_column(col, justify="right" if col != "check" else "left")
    by_kpi = report["aa_coverage_by_kpi"]
    aa.add_row("95% CI holds 0: win rate", f"{by_kpi['win_rate']:.3f}", "0.92-0.98")
    aa.add_row("95% CI holds 0: median response", f"{by_kpi['response_time']:.3f}", "0.92-0.98")
    aa.add_row("false 'conclusive' calls, weekly looks", f"{report['aa_false_conclusive_rate']:.3f}",
               f"<= {report['stated_error_rate']:.2f} (stated)")
    aa.add_row("naive: fixed CI excludes 0 at any look", f"{report['aa_naive_false_call_rate']:.3f}", "(for contrast)")
    out.print(aa)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    return run_and_report(args, run, show, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
