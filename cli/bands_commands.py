"""`leadbridge bands ...` and `leadbridge outcomes ...`: the score bands and what counts as converted (issue 16).

The same operations as the API's /api/bands and /api/outcome-definition (services.bands), each audited:
`bands show|set` (cut-offs in score points and each band's share of the last 7 days' leads), `outcomes show|set`
(a change re-labels the CRM's history at once and queues a retraining).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from cli.context import fail


def _show(view_of: Callable[[Any], Any], as_json: bool, print_view: Callable[[Any], None]) -> None:
    """Read a view in one session and print it as JSON or as text."""
    from dataclasses import asdict

    from cli.model_commands import services

    with services(need_redis=False) as (_settings, database, _redis):
        with database.session() as session:
            view = view_of(session)
    if as_json:
        click.echo(json.dumps(asdict(view), indent=2, default=str))
    else:
        print_view(view)


def _print_bands(view: Any) -> None:
    unit = "% of leads" if view.mode == "quantile" else " and above"
    click.echo(f"bands v{view.version} ({view.mode}), over {view.leads:,} leads scored in the last "
               f"{view.window_days} days:")
    for band in view.bands:
        click.echo(f"  {band.name:<16} {band.value:g}{unit:<12} cut-off {band.lowest:>3}   share {band.share:6.1%}")


@click.group("bands")
def bands() -> None:
    """Score bands: the names the CRM's tier field shows and their cut-offs."""


@bands.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_bands(as_json: bool) -> None:
    """The bands in force: cut-offs in score points and each band's share of the last 7 days' leads."""
    from services.bands import bands_view

    _show(bands_view, as_json, _print_bands)


@bands.command("set")
@click.option("--preset", type=click.Choice(["quantile", "fixed-95-50"]), default=None,
              help="quantile: hot = top 10%, warm = next 30%, cold = the rest; fixed-95-50: the seed's cut-offs.")
@click.option("--mode", type=click.Choice(["quantile", "fixed"]), default=None,
              help="With --band: quantile (values are shares of leads, %) or fixed (values are lowest scores).")
@click.option("--band", "band_specs", multiple=True, metavar="NAME=VALUE",
              help="A band, top first (repeat), e.g. --band hot=95 --band warm=50 --band cold=0.")
def set_bands(preset: str | None, mode: str | None, band_specs: tuple[str, ...]) -> None:
    """Store a new band set (audited); the tier field follows at the next write."""
    from cli.model_commands import actor, services
    from services import OperationError
    from services.bands import bands_view, publish_bands, save_bands

    if preset and (mode or band_specs):
        fail("give either --preset or --mode with --band, not both")
    if not preset and not (mode and band_specs):
        fail("give --preset, or --mode and at least two --band NAME=VALUE")
    data: Any = preset
    if not preset:
        bands_in = []
        for spec in band_specs:
            name, sep, value = spec.rpartition("=")
            if not sep or not name.strip():
                fail(f"--band takes NAME=VALUE (got {spec!r})")
            bands_in.append({"name": name.strip(), "value": value.strip()})
        data = {"mode": mode, "bands": bands_in}
    with services() as (_settings, database, redis):
        try:
            with database.session(write=True) as session:
                version = save_bands(session, actor(), data)
        except OperationError as exc:
            fail(exc.message, code=1)
        published = publish_bands(database, redis)
        with database.session() as session:
            view = bands_view(session)
    click.echo(f"saved bands v{version}")
    if not published:
        click.echo("note: the workers' cut-offs could not be refreshed; the beat does it within 5 minutes", err=True)
    _print_bands(view)


@click.group("outcomes")
def outcomes() -> None:
    """What counts as converted in each CRM (the training labels)."""


@outcomes.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_outcomes(as_json: bool) -> None:
    """The outcome definition in force per CRM, and its saved versions."""
    from services.bands import outcomes_view

    def print_outcomes(view: Any) -> None:
        click.echo(f"outcome definition v{view.version}:")
        for crm, text in view.descriptions.items():
            click.echo(f"  {crm:<11} converted = {text}")

    _show(outcomes_view, as_json, print_outcomes)


@outcomes.command("set")
@click.argument("crm", type=click.Choice(["hubspot", "salesforce"]))
@click.option("--lifecycle-stage", default=None, help="HubSpot: the lifecycle stage (or a later one) that counts.")
@click.option("--lead-status", "lead_status", multiple=True, help="A lead status value that counts (repeat).")
@click.option("--deal-won/--no-deal-won", default=None, help="HubSpot: a closed-won deal counts.")
@click.option("--lead-converted/--no-lead-converted", default=None, help="Salesforce: a converted Lead counts.")
@click.option("--opportunity-won/--no-opportunity-won", default=None, help="Salesforce: a won Opportunity counts.")
def set_outcomes(crm: str, lifecycle_stage: str | None, lead_status: tuple[str, ...], deal_won: bool | None,
                 lead_converted: bool | None, opportunity_won: bool | None) -> None:
    """Store what counts as converted in CRM (audited); re-labels its history now and queues a retraining."""
    from cli.model_commands import actor, services
    from services import OperationError
    from services.bands import save_outcome_definition

    given = {"lifecycle_stage": lifecycle_stage, "lead_status": list(lead_status) or None, "deal_won": deal_won,
             "lead_converted": lead_converted, "opportunity_won": opportunity_won}
    data = {k: v for k, v in given.items() if v is not None}
    with services() as (settings, database, redis):
        try:
            with database.session(write=True) as session:
                version, counts = save_outcome_definition(session, actor(), crm, data, redis)
        except OperationError as exc:
            fail(exc.message, code=1)
        queued = _queue_retrain(settings, crm, version)
    click.echo(f"saved outcome definition v{version} for {crm}; re-labelled: {counts['before']} outcomes before, "
               f"{counts['dropped']} dropped, {counts['added']} added, {counts['after']} now")
    if not queued:
        click.echo("note: no worker took the retraining; run `leadbridge model retrain` to learn the new labels",
                   err=True)


def _queue_retrain(settings: Any, crm: str, version: int) -> bool:
    """Queue the retraining a new definition needs; False when no broker answers."""
    from services.bands import retrain_after
    from tasks.celery_app import create_celery

    try:
        celery = create_celery(settings)
    except Exception:  # noqa: BLE001 - no broker: the note tells the admin what to run
        return False
    return retrain_after(celery, crm, version)
