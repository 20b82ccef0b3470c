"""`leadbridge fields ...`: the company's own CRM fields as features.

discover / subscriptions: what the CRM has, and the HubSpot webhook subscriptions mapped properties need.
list / map / unmap / history: the feature schema. Each change saves a new schema version (audited) and tells
the running workers, which switch on their next batch. A model records the schema it was trained under and
serves only while its fields stay mapped alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


@click.group()
def fields() -> None:
    """The company's own CRM fields as features: discover, subscriptions, list, map, unmap, history."""


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


# ---------------------------------------------------------------------------------------------- the feature schema
def _change(action: Callable[[Any, str], Any]) -> Any:
    """Run a schema change in one transaction, then tell the workers; fails with the service's message."""
    from cli.context import fail
    from cli.model_commands import actor, services
    from services import OperationError
    from services.fields import announce_schema

    with services() as (_settings, database, redis):
        try:
            with database.session(write=True) as session:
                schema = action(session, actor())
        except OperationError as exc:
            fail(exc.message, code=1)
        told = announce_schema(redis, schema)
    if not told:
        click.echo("note: Redis could not be told; workers pick the change up within a minute", err=True)
    return schema


@fields.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(as_json: bool) -> None:
    """The mapped properties in force, with their kind and feature name."""
    from rich.console import Console
    from rich.table import Table

    from cli.model_commands import read_database
    from services.fields import current_schema

    schema = read_database(current_schema)
    if as_json:
        click.echo(json.dumps(schema.to_json(), indent=2))
        return
    table = Table(title=f"feature schema version {schema.version} ({schema.fingerprint})")
    for column in ("crm", "object", "property", "label", "kind", "feature", "fit", "top_n"):
        table.add_column(column)
    for f in schema.fields:
        table.add_row(f.crm, f.object_type, f.property, f.label, f.kind, f.feature, "yes" if f.fit else "",
                      str(f.top_n) if f.kind == "categorical" else "")
    Console().print(table)
    if not schema.fields:
        click.echo("nothing mapped yet: `leadbridge fields map hubspot contacts budget --kind numeric`")


@fields.command("map")
@click.argument("crm")
@click.argument("object_type", metavar="OBJECT")
@click.argument("prop", metavar="PROPERTY")
@click.option("--kind", type=click.Choice(["numeric", "categorical", "boolean", "date", "text"]), required=True,
              help="numeric; categorical (top-N levels + other); boolean; date (age in days); text (length).")
@click.option("--feature", default=None, help="The feature name the model sees (default: the property, lower-cased).")
@click.option("--label", default="", help="The property's label (CSV exports use it as the column header).")
@click.option("--fit", is_flag=True, help="It describes who the lead is: it also trains the grade model.")
@click.option("--top-n", type=int, default=20, show_default=True, help="categorical: the most frequent levels kept.")
@click.option("--force", is_flag=True, help="Change it even if the serving model needs it as it was.")
def map_command(crm: str, object_type: str, prop: str, kind: str, feature: str | None, label: str, fit: bool,
                top_n: int, force: bool) -> None:
    """Use CRM's OBJECT PROPERTY (e.g. hubspot contacts budget) as a model feature."""
    from services.fields import make_field, map_field

    made: list[Any] = []

    def action(session: Any, who: str) -> Any:
        field = make_field(crm, object_type, prop, kind, feature=feature, label=label, fit=fit, top_n=top_n)
        made.append(field)
        return map_field(session, who, field, force=force)

    schema = _change(action)
    f = made[0]
    click.echo(f"mapped {f.crm} {f.object_type}.{f.property} as {f.kind} feature {f.feature!r}; "
               f"feature schema version {schema.version}. Models trained from now on can use it "
               "(`leadbridge train --from-events`, or `train --csv` with a column of that name or label).")


@fields.command("unmap")
@click.argument("crm")
@click.argument("object_type", metavar="OBJECT")
@click.argument("prop", metavar="PROPERTY")
@click.option("--force", is_flag=True, help="Unmap it even if the serving model reads it (the rules then serve).")
def unmap_command(crm: str, object_type: str, prop: str, force: bool) -> None:
    """Stop using CRM's OBJECT PROPERTY as a feature."""
    from services.fields import unmap_field

    schema = _change(lambda session, who: unmap_field(session, who, crm, object_type, prop, force=force))
    click.echo(f"unmapped {crm} {object_type}.{prop}; feature schema version {schema.version}")


@fields.command("history")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def history_command(limit: int, as_json: bool) -> None:
    """Saved schema versions, newest first: who saved each and which features it holds."""
    from rich.console import Console
    from rich.table import Table

    from cli.model_commands import services
    from services.fields import history

    with services(need_redis=False) as (_settings, database, _redis), database.session() as session:
        versions = history(session, limit)
    if as_json:
        click.echo(json.dumps([{**v.schema.to_json(), "actor": v.actor, "created_at": v.created_at.isoformat()}
                               for v in versions], indent=2))
        return
    table = Table(title="feature schema versions (newest first)")
    for column in ("version", "saved_at", "by", "fingerprint", "features"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.schema.version), v.created_at.isoformat()[:19], v.actor, v.schema.fingerprint,
                      ", ".join(f"{f.feature} ({f.kind})" for f in v.schema.fields) or "(none)")
    Console().print(table)
    if not versions:
        click.echo("no schema saved yet: only the built-in features are used")
