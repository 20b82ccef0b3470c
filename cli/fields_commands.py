"""`leadbridge fields ...`: the company's own CRM fields as features."""

from __future__ import annotations

import json
from typing import Any

import click


@click.group()
def fields() -> None:
    """The company's own CRM fields as features."""


# ---------------------------------------------------------------------------------------------- discovery
@fields.command("discover")
@click.argument("crm", type=click.Choice(["hubspot", "salesforce"]))
@click.option("--object", "objects", multiple=True, metavar="NAME",
              help="Object to describe, repeatable or comma-separated (default: contacts for HubSpot, Lead and "
                   "Contact for Salesforce).")
@click.option("--sample", default=200, show_default=True, type=click.IntRange(0, 1000),
              help="Newest records read to measure fill rates and values (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--sandbox-url", default=None,
              help="Salesforce only: route the SDK's https calls to the sandbox CRM at this http:// URL.")
def discover_command(crm: str, objects: tuple[str, ...], sample: int, as_json: bool, sandbox_url: str | None) -> None:
    """List the CRM's properties with type, fill rate on a sample and a suggested feature kind (or why to skip)."""
    from cli.context import fail, sandbox_session, settings_or_exit
    from services import OperationError
    from services.field_discovery import discover

    settings = settings_or_exit()
    session = None
    if crm == "salesforce" and sandbox_url:
        session, instance_url = sandbox_session(sandbox_url)
        settings = settings.model_copy(update={"salesforce_instance_url": settings.salesforce_instance_url
                                               or instance_url})
    names = [name for value in objects for name in value.split(",")]
    try:
        report = discover(settings, crm, names, sample, session=session)
    except OperationError as exc:
        fail(exc.message, 1)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_discovery(report.as_dict())


def _print_discovery(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for object_type in report["objects"]:
        rows = [f for f in report["fields"] if f["object_type"] == object_type]
        table = Table(title=f"{report['crm']} {object_type}: {len(rows)} fields, newest {report['sample']} records "
                            "sampled", title_justify="left")
        for column in ("name", "label", "type", "custom", "fill rate", "suggested kind", "why"):
            table.add_column(column, overflow="fold", no_wrap=column in ("name", "type"))
        for f in sorted(rows, key=lambda r: (r["suggested_kind"] == "skip", not r["custom"], r["name"].lower())):
            rate = "-" if f["fill_rate"] is None else f"{f['fill_rate']:.0%}"
            kind = f["suggested_kind"] if f["suggested_kind"] != "skip" else "[dim]skip[/dim]"
            table.add_row(f["name"], f["label"], f["type"], "yes" if f["custom"] else "", rate, kind, f["reason"])
        console.print(table)


# ---------------------------------------------------------------------------------------------- webhook subscriptions
@fields.command("subscriptions")
@click.argument("properties", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print only the webhooks.json `subscriptions` part.")
@click.option("--sandbox-url", default=None,
              help="Also give these subscriptions to the HubSpot webhook targets of the sandbox CRM at this URL.")
def subscriptions_command(properties: tuple[str, ...], as_json: bool, sandbox_url: str | None) -> None:
    """The HubSpot `contact.propertyChange` subscriptions the app needs: one per mapped property (or PROPERTIES).

    HubSpot does not let an API change a private app's webhook subscriptions: enable these in the app's
    settings (Webhooks > Create subscription), or put the JSON in a project app's webhooks.json.
    """
    from cli.context import fail
    from services import OperationError
    from services.field_discovery import webhook_subscriptions, webhooks_config

    names = list(properties) or _mapped_properties()
    try:
        subscriptions = webhook_subscriptions(names)
    except OperationError as exc:
        fail(exc.message, 1)
    config = webhooks_config(subscriptions)
    if sandbox_url:
        _apply_to_sandbox(sandbox_url, config)
    if as_json:
        click.echo(json.dumps(config, indent=2))
        return
    click.echo(f"HubSpot sends a property's changes only to an app subscribed to it. Enable these "
               f"{len(subscriptions)} subscriptions in your app's settings (Webhooks > Create subscription: "
               f"object Contact, event \"Property changed\", the property):")
    for sub in subscriptions:
        click.echo(f"  {sub['subscriptionType']}  {sub['propertyName']}")
    click.echo("\nFor an app built with projects, the same in webhooks.json:")
    click.echo(json.dumps(config, indent=2))


def _mapped_properties() -> list[str]:
    """The HubSpot contact properties the active feature schema maps."""
    from cli.context import fail, settings_or_exit
    from core.runtime import service_urls
    from services.field_discovery import mapped_hubspot_properties
    from storage.db import Database

    settings = settings_or_exit()
    database = Database(service_urls(settings).database_url)
    try:
        with database.session() as session:
            return mapped_hubspot_properties(session)
    except Exception as exc:  # a database that cannot be read: say which, not a traceback
        fail(f"could not read the mapped fields from the database ({type(exc).__name__}: {exc}); name the "
             "properties instead", 1)
    finally:
        database.dispose()


def _apply_to_sandbox(sandbox_url: str, config: dict[str, Any]) -> None:
    """Give every HubSpot webhook target of the sandbox CRM these subscriptions, as an admin enabling them would."""
    import requests

    from cli.context import fail

    base = sandbox_url.rstrip("/") + "/_sandbox/webhooks"
    try:
        targets = requests.get(base, timeout=10).json().get("targets", [])
        hubspot = [t for t in targets if t.get("kind") == "hubspot"]
        for target in hubspot:
            answer = requests.put(f"{base}/{target['id']}/subscriptions", json=config, timeout=10)
            if answer.status_code != 200:
                fail(f"the sandbox refused the subscriptions: HTTP {answer.status_code}: {answer.text[:200]}", 1)
    except (requests.RequestException, ValueError) as exc:
        fail(f"could not reach the sandbox CRM at {sandbox_url}: {type(exc).__name__}", 1)
    click.echo(f"sandbox CRM: {len(hubspot)} HubSpot webhook target(s) now subscribe to exactly these properties",
               err=True)
