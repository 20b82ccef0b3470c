"""`leadbridge simulate` (traffic simulator) and `leadbridge sandbox` (the sandbox CRM in the foreground)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from standardwebhooks import Webhook

from sandbox import simulator as funnel
from sandbox.__main__ import sandbox_command
from sandbox.live_reps import LiveReps
from sandbox.simulator import EventSender, SandboxCrmFeed, SimulatorConfig, run

sandbox = sandbox_command


@click.command(name="simulate")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same funnel.")
@click.option("--accounts", type=click.IntRange(1, 100_000), default=150, show_default=True)
@click.option("--days", type=click.IntRange(14, 3650), default=120, show_default=True, help="Simulated time span.")
@click.option("--drift-day", type=click.IntRange(1), default=None,
              help="From this day on pricing views stop predicting conversion and webinars start to.")
@click.option("--events-url", default=None, help="Bridge URL for behavioural events (Standard-Webhooks signed).")
@click.option("--events-secret", envvar="LEADBRIDGE_EVENTS_SECRET", default=None,
              help="Standard Webhooks secret (whsec_...) [env LEADBRIDGE_EVENTS_SECRET].")
@click.option("--sandbox-url", default=None, help="Sandbox CRM base URL: create the contacts and outcomes there.")
@click.option("--crm", "crms", type=click.Choice(["hubspot", "salesforce"]), multiple=True,
              help="CRM(s) in the sandbox to fill (default hubspot).")
@click.option("--rate", type=click.FloatRange(0.1, 100_000), default=None,
              help="Real-time mode: events per second with wall-clock timestamps (default: fast, simulated time).")
@click.option("--max-events", type=click.IntRange(1), default=None, help="Stop after this many events.")
@click.option("--batch-size", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the Segment events as JSON lines (with simulated timestamps) and outcomes.")
@click.option("--reps/--no-reps", default=False, show_default=True,
              help="With --sandbox-url: sales reps call hot-scored contacts within a minute and the rest from "
                   "the queue after minutes, logged in the CRM (the demo pilot's touches); keeps running after "
                   "the funnel is delivered, until stopped.")
def simulate_command(seed: int, accounts: int, days: int, drift_day: int | None, events_url: str | None,
                     events_secret: str | None, sandbox_url: str | None, crms: tuple[str, ...], rate: float | None,
                     max_events: int | None, batch_size: int, output: Path | None, reps: bool) -> None:
    """Generate a B2B funnel (hidden intent drives behaviour and outcomes) and deliver it."""
    if drift_day is not None and drift_day >= days:
        raise click.BadParameter(f"must be below --days ({days})", param_hint="--drift-day")
    if events_url and not events_secret:
        raise click.UsageError("--events-url needs --events-secret (or LEADBRIDGE_EVENTS_SECRET)")
    if not (events_url or sandbox_url or output):
        raise click.UsageError("nothing to do: give --events-url, --sandbox-url and/or --output")
    if events_secret:
        try:
            Webhook(events_secret)
        except Exception as exc:  # a malformed secret is the user's input error
            raise click.BadParameter(f"not a Standard Webhooks secret: {exc}", param_hint="--events-secret") from None
    sim = funnel.simulate(SimulatorConfig(seed=seed, accounts=accounts, days=days, drift_day=drift_day))
    click.echo(f"simulated {len(sim.accounts)} accounts, {len(sim.contacts)} contacts, {len(sim.events)} events, "
               f"{len(sim.outcomes)} outcomes ({sum(o.won for o in sim.outcomes)} won)")
    if output:
        with output.open("w") as fh:
            for ev in sim.events:
                fh.write(json.dumps(sim.segment_event(ev)) + "\n")
        outcomes = output.with_suffix(".outcomes.jsonl")
        with outcomes.open("w") as fh:
            for o in sim.outcomes:
                c = sim.contact_by_key[o.contact_key]
                fh.write(json.dumps({"userId": o.contact_key, "email": c.email, "won": o.won,
                                     "at": o.at.isoformat()}) + "\n")
        click.echo(f"wrote {output} and {outcomes}")
    if not (events_url or sandbox_url):
        return
    if reps and not sandbox_url:
        raise click.UsageError("--reps needs --sandbox-url (the reps work the sandbox CRM)")
    sender = EventSender(events_url, events_secret or "", batch_size=batch_size) if events_url else None
    feed = SandboxCrmFeed(sandbox_url, crms or ("hubspot",)) if sandbox_url else None
    total = min(len(sim.events), max_events) if max_events else len(sim.events)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        events_task = progress.add_task("events", total=total)
        crm_task = progress.add_task("CRM changes", total=len(sim.contacts) + len(sim.outcomes))

        def tick(kind: str, n: int) -> None:
            progress.advance(events_task if kind == "event" else crm_task, n)

        stop = threading.Event()
        desk = threading.Thread(target=LiveReps(str(sandbox_url), seed=seed).run, args=(stop,), daemon=True,
                                name="reps") if reps else None
        if desk is not None:
            desk.start()
        try:
            stats = run(sim, sender=sender, crm=feed, realtime_rate=rate, max_events=max_events, progress=tick)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"delivered {stats.events} events in {stats.batches} batches ({stats.failed_batches} failed), "
               f"{stats.contacts} contacts, {stats.outcomes} outcomes in {stats.seconds:.1f}s")
    if stats.failed_batches:
        raise SystemExit(1)
    if desk is not None:
        click.echo("reps keep working the sandbox CRM until stopped (Ctrl-C)")
        try:
            while desk.is_alive():
                desk.join(1.0)
        except KeyboardInterrupt:
            stop.set()


simulate = simulate_command
