"""`leadbridge doctor`: check every part leadbridge depends on and print what works and what does not."""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
import requests
from rich.console import Console
from rich.table import Table

from cli.context import embedded_services, settings_or_exit
from connectors.registry import PROVIDERS, client_module
from core.keys import HEARTBEAT_KEY
from core.runtime import ServiceUrls, redis_client
from core.settings import Settings

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "not configured"


@dataclass(frozen=True)
class Check:
    """The outcome of checking one part."""

    part: str
    state: str
    detail: str


def check_redis(urls: ServiceUrls, settings: Settings) -> Check:
    """Redis answers PING; report its version and whether it is embedded."""
    try:
        info = redis_client(urls.redis_url).info("server")
        where = "external" if settings.redis_url else "embedded"
        return Check("redis", OK, f"{where}, Redis {info.get('redis_version')}")
    except Exception as exc:
        return Check("redis", FAIL, f"{type(exc).__name__}: {exc}")


def check_database(urls: ServiceUrls) -> Check:
    """The database answers and its schema is at the newest migration."""
    from storage.db import Database
    from storage.migrate import current_revision, head_revision

    database = Database(urls.database_url)
    try:
        database.ping()
        current, head = current_revision(database.engine), head_revision()
        kind = database.engine.dialect.name
        if current != head:
            return Check("database", FAIL, f"{kind}: schema at {current}, needs {head}; run `leadbridge db upgrade`")
        return Check("database", OK, f"{kind}, schema {current}")
    except Exception as exc:
        return Check("database", FAIL, f"{type(exc).__name__}: {exc}")
    finally:
        database.dispose()


def check_workers(settings: Settings, urls: ServiceUrls) -> Check:
    """Celery workers answer a ping over the broker (a warning, not a failure, when none run)."""
    from tasks.celery_app import create_celery

    try:
        replies = create_celery(settings, urls).control.ping(timeout=2.0) or []
    except Exception as exc:
        return Check("workers", FAIL, f"broker unreachable: {type(exc).__name__}: {exc}")
    if not replies:
        return Check("workers", WARN, "no worker answered (start one with `leadbridge worker` or `leadbridge run`)")
    return Check("workers", OK, f"{len(replies)} worker(s) answered")


def check_beat(urls: ServiceUrls) -> Check:
    """Beat's heartbeat task ran recently."""
    try:
        raw = redis_client(urls.redis_url).get(HEARTBEAT_KEY)
    except Exception as exc:
        return Check("beat", FAIL, f"{type(exc).__name__}")
    if raw is None:
        return Check("beat", WARN, "no heartbeat in the last 5 minutes (start `leadbridge beat` or `leadbridge run`)")
    return Check("beat", OK, f"last heartbeat {time.time() - float(raw):.0f}s ago")


def check_pipeline(settings: Settings, urls: ServiceUrls) -> list[Check]:
    """Is every stage moving? Stalls and new dead letters (services.pipeline), a row per part."""
    from bridge.metrics import configured_crms
    from services import pipeline
    from storage.db import Database

    database = Database(urls.database_url)
    try:
        with database.session() as session:
            health = pipeline.pipeline_health(session, redis_client(urls.redis_url),
                                              stall_after=settings.stall_after_seconds, crms=configured_crms(settings))
    except Exception as exc:  # noqa: BLE001 - the database and Redis rows already name the cause
        return [Check("pipeline", FAIL, f"could not be read: {type(exc).__name__}")]
    finally:
        database.dispose()
    states = {pipeline.STALLED: FAIL, pipeline.BEHIND: WARN, pipeline.WARN: WARN}
    return [Check(name, states.get(part.state, OK), part.line() if part.state != "ok" else part.detail)
            for name, part in health.parts.items()]


def check_crm(crm: str, settings: Settings) -> Check:
    """The CRM accepts the configured credentials (its client's check_credentials)."""
    accepted, detail = client_module(crm).check_credentials(settings)
    return Check(crm, SKIP if accepted is None else OK if accepted else FAIL, detail)


def check_slack(settings: Settings) -> Check:
    """The Slack incoming-webhook URL exists (an empty post is refused with `no_text`, posting nothing)."""
    if settings.slack_webhook_url is None:
        return Check("slack", SKIP, "SLACK_WEBHOOK_URL not set")
    url = settings.slack_webhook_url.get_secret_value()
    try:
        response = requests.post(url, json={}, timeout=10)
    except requests.RequestException as exc:
        return Check("slack", FAIL, f"{type(exc).__name__}")
    if response.status_code == 400 and "no_text" in response.text:
        return Check("slack", OK, "webhook URL accepted")
    return Check("slack", FAIL, f"HTTP {response.status_code}: {response.text[:100]}")


def check_slack_bot(settings: Settings) -> Check:
    """The Slack bot token (owner DMs) works and has the scopes they need (auth.test's x-oauth-scopes)."""
    from connectors.base import ConnectorError
    from connectors.slack import DM_RETRY_SCOPES, DM_SCOPES, SlackBot

    if settings.slack_bot_token is None:
        return Check("slack bot", SKIP, "SLACK_BOT_TOKEN not set: owner DMs post to the rule's channel instead")
    try:
        granted = SlackBot(settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url).scopes()
    except ConnectorError as exc:
        return Check("slack bot", FAIL, f"the token was refused: {exc.vendor_message}")
    missing = [scope for scope in DM_SCOPES if scope not in granted]
    if missing:
        effect = ("a DM retried after a lost answer posts to the channel instead (its history cannot be checked)"
                  if set(missing) <= set(DM_RETRY_SCOPES) else "owner DMs post to the channel instead")
        return Check("slack bot", WARN, f"missing scope(s) {', '.join(missing)}: add them to the Slack app and "
                                        f"reinstall it; until then {effect}")
    return Check("slack bot", OK, f"scopes {', '.join(DM_SCOPES)} granted")


def run_checks(settings: Settings, urls: ServiceUrls) -> list[Check]:
    """Run every check in order."""
    return [
        Check("configuration", OK, f"data dir {settings.data_dir.resolve()}"),
        check_redis(urls, settings),
        check_database(urls),
        check_workers(settings, urls),
        check_beat(urls),
        *check_pipeline(settings, urls),
        *(check_crm(crm, settings) for crm in PROVIDERS),
        check_slack(settings),
        check_slack_bot(settings),
    ]


@click.command()
def doctor() -> None:
    """Check Redis, the database, workers, beat and (when configured) each CRM and Slack."""
    settings = settings_or_exit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded_services(settings) as urls:
        checks = run_checks(settings, urls)
    table = Table(title="leadbridge doctor")
    for column in ("part", "state", "detail"):
        table.add_column(column)
    colours = {OK: "green", WARN: "yellow", FAIL: "red", SKIP: "dim"}
    for check in checks:
        table.add_row(check.part, f"[{colours[check.state]}]{check.state}[/]", check.detail)
    Console().print(table)
    if any(check.state == FAIL for check in checks):
        raise SystemExit(1)
