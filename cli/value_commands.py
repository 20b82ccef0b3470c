"""`leadbridge value ...`: the pilot and its control group (issue 17).

`value pilot start|pause|resume|end|status`: the same operations as the API's /api/pilot (services.pilots),
each audited; running workers follow the change before their next batch. `value report [--json]` and
`value export`: the pilot's KPIs per group with 95% intervals (services.value), as the admin's Value page shows them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


@click.group("value")
def value() -> None:
    """Prove the value: a pilot with a control group."""


@value.group("pilot")
def pilot() -> None:
    """Start, pause, resume and end the pilot, and show its status."""


def _change(action: Callable[[Any, str], Any]) -> dict[str, Any]:
    """Run a lifecycle change in one transaction, then tell the workers; fails with the service's message."""
    from cli.context import fail
    from cli.model_commands import actor, services
    from services import OperationError
    from services.pilots import announce_pilot, pilot_view

    with services() as (_settings, database, redis):
        try:
            with database.session(write=True) as session:
                view = pilot_view(session, action(session, actor()))
        except OperationError as exc:
            fail(exc.message, code=1)
        told = announce_pilot(redis)
    if not told:
        click.echo("note: Redis could not be told; workers pick the change up within 30 seconds", err=True)
    return view


def _describe(view: dict[str, Any]) -> str:
    groups = view.get("groups") or {}
    return (f"pilot {view['name']!r} (id {view['id']}): {view['status']}; {100 * view['control_share']:g}% of "
            f"{'owners' if view['unit'] == 'owner' else 'new leads'} held back as control; threshold "
            f"{view['threshold']}, horizon {view['horizon']:,} closed leads, declared effect {view['effect']:+.1%}; "
            f"{groups.get('pilot', 0):,} pilot and {groups.get('control', 0):,} control leads")


@pilot.command("start")
@click.option("--name", required=True, help="What the pilot is called (e.g. 'EMEA pod, Q1').")
@click.option("--control-share", default=0.10, show_default=True, type=float,
              help="Share of new leads (or owners) held back as control, above 0 and at most 0.5.")
@click.option("--unit", type=click.Choice(["lead", "owner"]), default="lead", show_default=True,
              help="Assign each lead, or whole CRM owners (cluster randomisation).")
@click.option("--threshold", type=int, default=None,
              help="The score that counts as the MQL crossing [default: the alert rules' threshold, else 75].")
@click.option("--horizon", type=int, default=2000, show_default=True,
              help="Closed leads at which the result is called.")
@click.option("--effect", type=float, default=0.05, show_default=True,
              help="Pre-declared rise in the win rate (0.05 = 5 points).")
def start_command(name: str, control_share: float, unit: str, threshold: int | None, horizon: int,
                  effect: float) -> None:
    """Start a pilot: from now on each new lead is assigned to pilot or control."""
    from services.pilots import PilotInput, start_pilot

    data = PilotInput(name=name, control_share=control_share, unit=unit, threshold=threshold, horizon=horizon,
                      effect=effect)
    click.echo("started " + _describe(_change(lambda session, who: start_pilot(session, who, data))))


@pilot.command("pause")
def pause_command() -> None:
    """Pause the running pilot: no new assignments meanwhile; control leads stay held back."""
    from services.pilots import pause_pilot

    click.echo("paused " + _describe(_change(pause_pilot)))


@pilot.command("resume")
def resume_command() -> None:
    """Resume the paused pilot."""
    from services.pilots import resume_pilot

    click.echo("resumed " + _describe(_change(resume_pilot)))


@pilot.command("end")
def end_command() -> None:
    """End the pilot: no more assignments; control leads show their scores on their next write."""
    from services.pilots import end_pilot

    click.echo("ended " + _describe(_change(end_pilot)))


@pilot.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a sentence.")
def status_command(as_json: bool) -> None:
    """The open pilot (else the newest ended one) and the leads in each group."""
    from cli.model_commands import read_database
    from services.pilots import current_view

    view = read_database(current_view)
    if as_json:
        click.echo(json.dumps({"pilot": view}, indent=2, default=str))
    elif view is None:
        click.echo("no pilot yet: `leadbridge value pilot start --name NAME` starts one")
    else:
        click.echo(_describe(view))


@value.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (the API's /api/value shape).")
def report_command(as_json: bool) -> None:
    """The pilot against its control group: the sentence, every KPI per group and the difference's 95% interval."""
    from rich.console import Console
    from rich.table import Table

    from cli.model_commands import read_database
    from core.records import utcnow
    from services.value import current_value

    view = read_database(lambda session: current_value(session, utcnow()))
    if as_json:
        click.echo(json.dumps(view.to_json() if view else {"pilot": None}, indent=2, default=str))
        return
    if view is None:
        click.echo("no pilot yet: `leadbridge value pilot start --name NAME` starts one")
        return
    console = Console()
    console.print(_describe(view.pilot))
    console.print(view.report.sentence)
    if view.report.detectable is not None:
        console.print(f"detectable now (80% power): a win-rate rise of {100 * view.report.detectable:.1f} points; "
                      f"declared: {100 * view.pilot['effect']:.1f}")
    table = Table("KPI", "pilot", "control", "difference (pilot - control), 95% CI", "how")
    for row in view.rows:
        table.add_row(row.text.label, f"{row.text.pilot} (n={row.kpi.n_pilot:,})",
                      f"{row.text.control} (n={row.kpi.n_control:,})", row.text.difference, row.kpi.method)
    console.print(table)


@value.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
def export_command(fmt: str, out: str | None) -> None:
    """The KPIs for finance: one row per KPI with raw numbers (shares 0-1, minutes, days, currency)."""
    from cli.context import fail
    from cli.model_commands import read_database
    from core.records import utcnow
    from services import OperationError
    from services.value import export

    try:
        body, _mimetype, _name = read_database(lambda session: export(session, utcnow(), fmt))
    except OperationError as exc:
        fail(exc.message, code=1)
    if out is None:
        click.echo(body, nl=False)
    else:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(body)
        click.echo(f"wrote {out}", err=True)
