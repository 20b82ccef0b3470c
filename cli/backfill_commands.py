"""`leadbridge backfill hubspot|salesforce`: import a CRM's history and outcomes, build features, score every lead."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.context import configure_logging, embedded_services, fail, sandbox_session, settings_or_exit
from connectors.base import CrmConnector
from connectors.registry import build_connector
from connectors.retry import BACKFILL_RETRY
from core.settings import Settings
from tasks.names import WRITEBACK_TASK

STAGES = {
    "companies": "fetch companies", "contacts": "fetch contacts", "deals": "fetch deals",
    "accounts": "fetch Accounts", "leads": "fetch Leads", "opportunitys": "fetch Opportunities",
    "import": "import events (features in time order)", "score": "score leads",
}


class RichStages:
    """Backfill progress drawn as one rich progress bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def stage(self, name: str, total: int | None = None) -> None:
        """Add a bar for a stage (a count without a total while the size is unknown)."""
        label = STAGES.get(name, f"fetch {name}" if name.endswith("s") else name)
        self.tasks[name] = self.progress.add_task(label, total=total)

    def advance(self, name: str, units: int = 1) -> None:
        """Move a stage's bar on."""
        if name not in self.tasks:
            self.stage(name)
        self.progress.advance(self.tasks[name], units)

    def finish(self) -> None:
        """Mark open-ended fetch bars complete at whatever they counted."""
        for task_id in self.tasks.values():
            task = self.progress.tasks[task_id]
            if task.total is None:
                self.progress.update(task_id, total=task.completed)


def hubspot_connector(settings: Settings, redis: Any) -> CrmConnector:
    """The HubSpot connector from settings, sharing the workers' rate-limit bucket."""
    # More patience than a worker's single attempt: a backfill can wait out a 429 or a brief outage.
    connector = build_connector("hubspot", settings, redis_client=redis, retry=BACKFILL_RETRY)
    if connector is None:
        fail("HubSpot is not configured: set HUBSPOT_ACCESS_TOKEN (and HUBSPOT_BASE_URL for the sandbox CRM)")
    return connector


def salesforce_connector(settings: Settings, sandbox_url: str | None) -> CrmConnector:
    """The Salesforce connector from settings (routed to the sandbox CRM when `sandbox_url` is given)."""
    session, sandbox_instance_url = sandbox_session(sandbox_url)
    if sandbox_url:
        instance_url = settings.salesforce_instance_url or sandbox_instance_url
        settings = settings.model_copy(update={"salesforce_instance_url": instance_url})
    connector = None
    if settings.salesforce_username or (settings.salesforce_session_id and settings.salesforce_instance_url):
        connector = build_connector("salesforce", settings, retry=BACKFILL_RETRY, session=session)
    if connector is None:
        fail("Salesforce is not configured: set SALESFORCE_USERNAME + SALESFORCE_PASSWORD (+ SALESFORCE_SECURITY_TOKEN), "
             "or SALESFORCE_SESSION_ID + SALESFORCE_INSTANCE_URL")
    return connector


@click.command(name="backfill")
@click.argument("crm", type=click.Choice(["hubspot", "salesforce"]))
@click.option("--no-writeback", is_flag=True, help="Score, but do not queue the new scores for writing to the CRM.")
@click.option("--sandbox-url", default=None,
              help="Salesforce only: route the SDK's https calls to the sandbox CRM at this http:// URL.")
def backfill(crm: str, no_writeback: bool, sandbox_url: str | None) -> None:
    """Import CRM's history: records and won/lost outcomes, features as of each point in time, every lead scored.

    Safe to run again: records already imported are skipped, records changed since are imported once more
    as a change. Changed scores are queued for the writeback stage (a running worker writes them).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from connectors.base import ConnectorError
    from core.runtime import redis_client
    from storage.db import Database
    from tasks.backfill import backfill as run_backfill
    from tasks.resources import Resources

    settings = settings_or_exit()
    configure_logging(settings)
    console = Console(stderr=True)
    with embedded_services(settings) as urls:
        database = Database(urls.database_url)
        res = Resources(settings, urls, database, redis_client(urls.redis_url))
        connector = hubspot_connector(settings, res.redis) if crm == "hubspot" else salesforce_connector(
            settings, sandbox_url)
        columns = (TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        try:
            with Progress(*columns, console=console) as bars:
                stages = RichStages(bars)
                report = run_backfill(res, crm, connector, writeback=not no_writeback, progress=stages)
                stages.finish()
        except ConnectorError as exc:
            fail(f"{crm} refused or failed: {exc}; what was imported so far is kept, run the command again", code=1)
        except SQLAlchemyError as exc:
            fail(f"database error ({type(exc).__name__}): {str(exc).splitlines()[0]}; "
                 "has `leadbridge db upgrade` been run?", code=1)
        finally:
            database.dispose()
        kicked = _kick_writeback(settings, urls, crm) if report.queued_writes else False
    _print_report(report, kicked)


def _kick_writeback(settings: Settings, urls: Any, crm: str) -> bool:
    """Ask a worker to start writing now (beat would within 30 s anyway); False when no broker answers."""
    from tasks.celery_app import create_celery

    try:
        create_celery(settings, urls).send_task(WRITEBACK_TASK, args=[crm], retry=False, ignore_result=True)
        return True
    except Exception:  # noqa: BLE001 - no broker is not an error here: beat kicks writeback when it runs
        return False


def _print_report(report: Any, kicked: bool) -> None:
    table = Table(title=f"backfill {report.crm}", show_header=False)
    for object_type, count in sorted(report.fetched.items()):
        table.add_row(f"{object_type} records read", str(count))
    table.add_row("outcomes read", str(report.outcomes_read))
    table.add_row("events built / new", f"{report.events} / {report.events_new}")
    table.add_row("outcome rows new", str(report.outcomes_new))
    table.add_row("leads scored / changed", f"{report.leads_scored} / {report.scores_changed}")
    table.add_row("queued CRM writes", str(report.queued_writes))
    if report.mapped_values:
        table.add_row("mapped values with their own time", str(report.mapped_values))
    if report.values_at_last_modified:
        table.add_row("mapped values known only at last change", str(report.values_at_last_modified))
        table.add_row("labels decided before those values", str(report.labels_before_values))
    table.add_row("API calls", str(report.api_calls))
    table.add_row("seconds", f"{report.seconds:.1f}")
    Console().print(table)
    if report.values_at_last_modified:
        click.echo(f"note: {report.values_at_last_modified} mapped field value(s) carry no history, so they count "
                   "from their record's last modification; training rows decided before that time do not see them "
                   f"({report.labels_before_values} outcome(s) precede it)"
                   + ("; tracking those fields (Setup > Field History Tracking) gives each value its own time"
                      if report.crm == "salesforce" else ""))
    if report.queued_writes and not kicked:
        click.echo("note: no broker answered; the writes start when a worker and beat run")
