"""`leadbridge sources ...`: manage webhook sources until (and beside) the admin UI."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cli.context import fail, settings_or_exit
from core.runtime import service_urls
from core.settings import Settings
from storage.db import Database
from storage.sources import (
    KINDS,
    SIGNATURE_VERSIONS,
    SourceError,
    SourceView,
    create_source,
    get_source,
    list_sources,
    rotate_secret,
    set_enabled,
)


def _database(settings: Settings) -> Database:
    return Database(service_urls(settings).database_url)


def _describe(settings: Settings, view: SourceView) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": view.id,
        "name": view.name,
        "kind": view.kind,
        "enabled": view.enabled,
        "org_id": view.org_id,
        "webhook_url": settings.base_url() + view.webhook_path(),
    }
    if view.kind == "hubspot":
        data["signature_version"] = view.signature_version
    if view.secret is not None:
        data["secret"] = view.secret
    return data


def _audit_state(session: Any, name_or_id: str) -> dict[str, Any] | None:
    """What the audit log records of a source (None when there is none); no secrets."""
    try:
        source = get_source(session, name_or_id)
    except SourceError:
        return None
    until = source.previous_secret_expires_at
    return {"name": source.name, "kind": source.kind, "enabled": source.enabled, "org_id": source.org_id,
            "old_key_accepted_until": until.isoformat() if until else None}


def _run(action: Any, audit: str | None = None, name: str | None = None) -> Any:
    settings = settings_or_exit()
    database = _database(settings)
    try:
        with database.session(write=True) as session:
            before = _audit_state(session, name) if audit is not None and name is not None else None
            result = action(session)
            if audit is not None:
                # The same audit trail as the admin UI: who (this shell's user), what, which source, what it was
                # before; no secrets.
                from cli.users_commands import cli_actor
                from storage.audit import record

                session.flush()
                views = result if isinstance(result, list) else [result]
                for view in views:
                    record(session, actor=cli_actor(), action=audit, target=f"source:{view.id}", before=before,
                           after=_audit_state(session, str(view.id)))
            return settings, result
    except SourceError as exc:
        fail(str(exc))
    except Exception as exc:  # e.g. the database is unreachable or not migrated
        fail(f"{type(exc).__name__}: {exc}. Is the database migrated (`leadbridge db upgrade`)?")
    finally:
        database.dispose()


@click.group()
def sources() -> None:
    """Webhook sources: each has its own URL and secret."""


@sources.command("add")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="What sends to this source.")
@click.option("--name", required=True, help="A unique name, e.g. 'hubspot-prod'.")
@click.option("--secret", default=None, help="Use this secret instead of a generated one (HubSpot: the app's client secret).")
@click.option("--org-id", default=None, help="HubSpot portal id or Salesforce organization id to check deliveries against.")
@click.option("--signature-version", type=click.Choice(SIGNATURE_VERSIONS), default="v3", show_default=True,
              help="HubSpot signature version (v1/v2 for older apps).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add(kind: str, name: str, secret: str | None, org_id: str | None, signature_version: str, as_json: bool) -> None:
    """Create a source and print its webhook URL and secret (shown only now)."""
    settings, view = _run(lambda s: create_source(s, kind=kind, name=name, secret=secret, org_id=org_id,
                                                  signature_version=signature_version), audit="source.create")
    data = _describe(settings, view)
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"source {view.name!r} created\n  webhook URL: {data['webhook_url']}\n  secret:      {data['secret']}")
    click.echo("  (the secret is shown only now; rotate it with `leadbridge sources rotate-secret` if lost)")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List sources (secrets are never shown here)."""
    settings, views = _run(list_sources)
    rows = [_describe(settings, v) for v in views]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="webhook sources")
    for column in ("id", "name", "kind", "enabled", "org id", "webhook URL"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["kind"], "yes" if row["enabled"] else "no",
                      row["org_id"] or "", row["webhook_url"])
    Console().print(table)


@sources.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Refuse deliveries to source NAME (403) until it is enabled again."""
    _run(lambda s: set_enabled(s, name, False), audit="source.disable", name=name)
    click.echo(f"source {name!r} disabled")


@sources.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Accept deliveries to source NAME again."""
    _run(lambda s: set_enabled(s, name, True), audit="source.enable", name=name)
    click.echo(f"source {name!r} enabled")


@sources.command("rotate-secret")
@click.argument("name")
@click.option("--secret", default=None, help="Use this new secret instead of a generated one.")
@click.option("--overlap-hours", type=float, default=None,
              help="How long the old secret stays valid (default LEADBRIDGE_SECRET_ROTATION_OVERLAP_HOURS).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rotate(name: str, secret: str | None, overlap_hours: float | None, as_json: bool) -> None:
    """Give source NAME a new secret; the old one keeps working during the overlap."""
    hours = overlap_hours if overlap_hours is not None else settings_or_exit().secret_rotation_overlap_hours
    if hours < 0:
        fail("--overlap-hours must be >= 0")
    settings, view = _run(lambda s: rotate_secret(s, name, overlap=timedelta(hours=hours), secret=secret),
                          audit="source.rotate_secret", name=name)
    data = _describe(settings, view)
    data["previous_secret_valid_hours"] = hours
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"new secret for {view.name!r}: {data['secret']}\n  the old secret stays valid for {hours:g} h")
