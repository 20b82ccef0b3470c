"""`leadbridge crm setup hubspot|salesforce`: create or check the fields leadbridge writes."""

from __future__ import annotations

import click
from pydantic import SecretStr

from cli.context import sandbox_session
from connectors.base import ConnectorError, ProvisionReport
from connectors.registry import build_connector
from connectors.retry import SETUP_RETRY
from core.settings import Settings


def _print_report(report: ProvisionReport) -> None:
    for name in report.created:
        click.echo(f"  created  {name}")
    for name in report.existing:
        click.echo(f"  ok       {name}")
    for spec in report.missing:
        click.echo(f"  MISSING  {spec.full_name} ({spec.field_type}); create with: {dict(spec.metadata)}")
    for problem in report.problems:
        click.echo(f"  PROBLEM  {problem}")


@click.group(name="crm")
def crm() -> None:
    """CRM connections: field provisioning and checks."""


@crm.group()
def setup() -> None:
    """Create (or check) leadbridge's custom fields in a CRM."""


@setup.command("hubspot")
@click.option("--access-token", envvar="HUBSPOT_ACCESS_TOKEN", required=True,
              help="Private-app token [env HUBSPOT_ACCESS_TOKEN].")
@click.option("--base-url", envvar="HUBSPOT_BASE_URL", default=None,
              help="API host (the sandbox CRM's URL in sandbox mode) [env HUBSPOT_BASE_URL].")
@click.option("--check-only", is_flag=True, help="Report what is missing without creating anything.")
def setup_hubspot(access_token: str, base_url: str | None, check_only: bool) -> None:
    """Create the `leadbridge` property group and contact/company properties (idempotent)."""
    connector = build_connector("hubspot", Settings.model_construct(
        hubspot_access_token=SecretStr(access_token), hubspot_base_url=base_url), retry=SETUP_RETRY)
    assert connector is not None  # a token was given
    try:
        report = connector.provision_fields(create=not check_only)
    except ConnectorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("HubSpot properties:")
    _print_report(report)
    if not report.ok:
        raise SystemExit(1)


@setup.command("salesforce")
@click.option("--username", envvar="SALESFORCE_USERNAME", default=None, help="[env SALESFORCE_USERNAME]")
@click.option("--password", envvar="SALESFORCE_PASSWORD", default=None, help="[env SALESFORCE_PASSWORD]")
@click.option("--security-token", envvar="SALESFORCE_SECURITY_TOKEN", default=None,
              help="[env SALESFORCE_SECURITY_TOKEN]")
@click.option("--domain", envvar="SALESFORCE_DOMAIN", default="login", show_default=True,
              help="login, test or your My Domain [env SALESFORCE_DOMAIN].")
@click.option("--instance-url", envvar="SALESFORCE_INSTANCE_URL", default=None, help="[env SALESFORCE_INSTANCE_URL]")
@click.option("--session-id", envvar="SALESFORCE_SESSION_ID", default=None, help="[env SALESFORCE_SESSION_ID]")
@click.option("--sandbox-url", default=None, help="Talk to the sandbox CRM at this http:// URL instead.")
@click.option("--create", is_flag=True, help="Create missing fields through the Tooling API (needs Customize "
                                             "Application); without it, only report what is missing.")
def setup_salesforce(username: str | None, password: str | None, security_token: str | None, domain: str,
                     instance_url: str | None, session_id: str | None, sandbox_url: str | None, create: bool) -> None:
    """Check Leadbridge_*__c fields on Lead, Contact, Account and the Task action key; report what is missing."""
    session, sandbox_instance_url = sandbox_session(sandbox_url)
    if sandbox_url and session_id and not instance_url:
        instance_url = sandbox_instance_url
    secret = lambda value: SecretStr(value) if value else None
    settings = Settings.model_construct(
        salesforce_username=username, salesforce_password=secret(password),
        salesforce_security_token=secret(security_token), salesforce_domain=domain,
        salesforce_instance_url=instance_url, salesforce_session_id=secret(session_id))
    try:
        connector = build_connector("salesforce", settings, retry=SETUP_RETRY, session=session)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if connector is None:
        raise click.UsageError("Salesforce needs session_id + instance_url, or username + password "
                               "(+ security token)")
    try:
        report = connector.provision_fields(create=create)
        budget = connector.api_budget()
    except ConnectorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("Salesforce fields:")
    _print_report(report)
    click.echo(f"daily API budget: {budget['used']}/{budget['limit']} used, {budget['remaining']} left")
    if not report.ok:
        raise SystemExit(1)
