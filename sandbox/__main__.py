"""`python -m sandbox`: run the sandbox CRM in the foreground."""

from __future__ import annotations

import json
import sys

import click

from sandbox.server import SLACK_WEBHOOK_PATH, SandboxCRM


@click.command(name="sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep it local).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Load records from and save them to <dir>/sandbox-crm.json.")
@click.option("--hubspot-token", "hubspot_tokens", multiple=True, help="Accepted HubSpot private-app token(s).")
@click.option("--hubspot-rate", type=click.IntRange(1), default=190, show_default=True,
              help="HubSpot requests per 10 s per token.")
@click.option("--salesforce-daily-max", type=click.IntRange(1), default=15000, show_default=True,
              help="Salesforce daily API request budget.")
@click.option("--webhook", "webhooks", multiple=True,
              help='Outbound webhook target as JSON, e.g. \'{"kind":"hubspot","url":"http://127.0.0.1:5000/webhooks/'
                   'hubspot","client_secret":"..."}\'.')
def sandbox_command(host: str, port: int, data_dir: str | None, hubspot_tokens: tuple[str, ...], hubspot_rate: int,
                    salesforce_daily_max: int, webhooks: tuple[str, ...]) -> None:
    """Run the sandbox CRM (HubSpot + Salesforce + Slack webhook emulator) until Ctrl-C."""
    overrides: dict[str, object] = {"data_dir": data_dir, "hubspot_rate_max": hubspot_rate,
                                    "salesforce_daily_api_max": salesforce_daily_max}
    if hubspot_tokens:
        overrides["hubspot_tokens"] = set(hubspot_tokens)
    sandbox = SandboxCRM(**overrides)
    for spec in webhooks:
        try:
            sandbox.webhooks.add_target(json.loads(spec))
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(f"{exc}", param_hint="--webhook") from None
    try:
        url = sandbox.start(port=port, host=host)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    cfg = sandbox.config
    click.echo(f"sandbox CRM listening on {url}")
    click.echo(f"  HubSpot:    HubSpot(access_token={sorted(cfg.hubspot_tokens)[0]!r}, host={url!r})")
    click.echo(f"  Salesforce: session_id={cfg.salesforce_session_id!r} (or username {next(iter(cfg.salesforce_users))!r})")
    click.echo(f"  Slack:      {url}{SLACK_WEBHOOK_PATH}")
    click.echo(f"  Admin:      {url}/_sandbox/info")
    try:
        sandbox.serve_forever(port=port, host=host)
    except KeyboardInterrupt:
        click.echo("stopping sandbox CRM")
    finally:
        sandbox.stop()
    sys.exit(0)


if __name__ == "__main__":
    sandbox_command()
