"""Sandbox mode for `leadbridge run`: with no CRM credentials, the sandbox CRM and the simulator feed leadbridge.

The sandbox CRM runs as a child process; leadbridge's workers talk to it with the real HubSpot SDK
(HUBSPOT_BASE_URL points at it) and the real simple-salesforce (SALESFORCE_SANDBOX_URL routes it; wire_salesforce),
and posts Slack alerts to its webhook sink and owner DMs to its Slack Web API (default_rules: owners, tasks, a
sequence, DMs and a nurture list or campaign on the simulated funnel, in both CRMs); it sends signed webhooks
back for every change; the simulator creates a B2B funnel in it and streams web behaviour to us, and its reps
call the contacts (sandbox.live_reps) for the demo pilot that sandbox mode starts (see the Value page).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import select

from cli.supervisor import Child, cli_argv
from core.settings import Settings
from sandbox.crm_actions import demo_rule_actions
from sandbox.server import DEFAULT_HUBSPOT_TOKEN, DEFAULT_SF_ORG_ID, DEFAULT_SF_SESSION, SLACK_WEBHOOK_PATH
from sandbox.slack_api import SANDBOX_BOT_TOKEN
from services.pilots import PilotInput, start_pilot
from storage.db import Database
from storage.models import AlertRule, Source
from storage.pilots import latest_pilot
from storage.sources import create_source, get_source, rotate_secret

HUBSPOT_SOURCE = "sandbox-hubspot"
SALESFORCE_SOURCE = "sandbox-salesforce"
SANDBOX_PILOT = "Sandbox demo pilot"
EVENTS_SOURCE = "sandbox-web"


@dataclass
class SandboxPlan:
    """What sandbox mode adds to a `run`: children, environment and what to tell the user."""

    url: str
    env: dict[str, str]
    sandbox_child: Child

    def simulator_child(self, events_url: str, events_secret: str, rate: float) -> Child:
        """The traffic simulator streaming a funnel into the sandbox and behaviour to leadbridge, in real time."""
        return Child("simulator", cli_argv(
            "simulate", "--sandbox-url", self.url, "--events-url", events_url, "--events-secret", events_secret,
            "--rate", str(rate), "--accounts", "60", "--days", "30", "--reps", "--crm", "hubspot", "--crm", "salesforce"))


def plan_sandbox(settings: Settings) -> SandboxPlan:
    """Choose the sandbox's address and the settings workers need to use it."""
    url = f"http://127.0.0.1:{settings.sandbox_port}"
    env = {"HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN, "HUBSPOT_BASE_URL": url,
           "SLACK_WEBHOOK_URL": url + SLACK_WEBHOOK_PATH, "SLACK_BOT_TOKEN": SANDBOX_BOT_TOKEN,
           "SLACK_API_URL": url + "/api/", **salesforce_env(url)}
    data = str((settings.data_dir / "sandbox").resolve())
    child = Child("sandbox", cli_argv("sandbox", "--port", str(settings.sandbox_port), "--data-dir", data,
                                      "--hubspot-token", DEFAULT_HUBSPOT_TOKEN))
    return SandboxPlan(url=url, env=env, sandbox_child=child)


def wait_for_sandbox(url: str, timeout: float = 30.0) -> None:
    """Block until the sandbox answers its health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_sandbox/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the sandbox CRM did not start at {url}")


def wire_sandbox(settings: Settings, database_url: str, plan: SandboxPlan) -> tuple[str, str]:
    """Provision fields, create sources and a hot-lead rule, point the sandbox's webhooks at us.

    Returns (events webhook URL, events secret) for the simulator.
    """
    from pydantic import SecretStr

    from connectors.registry import build_connector
    from connectors.retry import DEFAULT_RETRY

    sandbox = settings.model_copy(update={"hubspot_access_token": SecretStr(DEFAULT_HUBSPOT_TOKEN),
                                          "hubspot_base_url": plan.url})
    connector = build_connector("hubspot", sandbox, retry=DEFAULT_RETRY)
    assert connector is not None  # the sandbox token is set
    connector.provision_fields()
    # The owners, users, list and campaign the sandbox CRM holds for the default rules' actions.
    demo_ids = requests.get(plan.url + "/_sandbox/info", timeout=5).json()["actions"]
    database = Database(database_url)
    try:
        with database.session(write=True) as session:
            hubspot = _ensure_source(session, HUBSPOT_SOURCE, "hubspot")
            events = _ensure_source(session, EVENTS_SOURCE, "events")
            if session.scalars(select(AlertRule)).first() is None:
                session.add_all(default_rules(demo_ids))
            if settings.simulator_rate > 0 and latest_pilot(session) is None:
                # The demo pilot: 30% of new contacts are the control group (hidden scores, no alerts), so the
                # simulator's reps show on the Value page what an alert is worth within minutes. Only with the
                # simulator (its reps are the demo): benchmarks that drive the sandbox themselves need every
                # contact's score written.
                start_pilot(session, "sandbox", PilotInput(name=SANDBOX_PILOT, control_share=0.3, threshold=75))
    finally:
        database.dispose()
    base = settings.base_url()
    targets = requests.get(plan.url + "/_sandbox/webhooks", timeout=5).json().get("targets", [])
    hubspot_url = base + f"/webhooks/hubspot/{hubspot[0]}"
    for target in targets:
        requests.delete(plan.url + f"/_sandbox/webhooks/{target['id']}", timeout=5)
    requests.post(plan.url + "/_sandbox/webhooks", timeout=5, json={
        "kind": "hubspot", "url": hubspot_url, "client_secret": hubspot[1], "flush_seconds": 0.05,
    }).raise_for_status()
    wire_salesforce(settings, database_url, plan)
    return base + f"/webhooks/events/{events[0]}", events[1]


def default_rules(demo_ids: Mapping[str, Any]) -> list[AlertRule]:
    """The rules sandbox mode starts with, showing each kind of action on the simulated funnel in both CRMs: hot A/B
    leads get an owner (round robin over the sandbox's HubSpot owners / Salesforce users), a task for that owner, the
    HubSpot follow-up sequence and a Slack DM; warm ones join the nurture list (HubSpot) and campaign (Salesforce);
    `demo_ids` is the sandbox's /_sandbox/info `actions` (sandbox.crm_actions.demo_ids)."""
    demo = demo_rule_actions(demo_ids)
    hot = [*demo["hot"], {"kind": "slack_channel", "params": {}}]
    return [AlertRule(name="Hot A/B leads", threshold=75, channel="#sales", cooldown_minutes=1440,
                      routing={"segment": {"grades": ["A", "B"]}}, enabled=True, actions=hot),
            AlertRule(name="Warm leads: nurture", threshold=50, channel="#marketing", cooldown_minutes=7 * 1440,
                      routing={}, enabled=True, actions=demo["warm"])]


def _ensure_source(session: object, name: str, kind: str, org_id: str | None = None) -> tuple[str, str]:
    """(slug, secret) of a sandbox source, created on first run; its secret is re-issued each run."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    existing = session.scalars(select(Source).where(Source.name == name)).first()
    if existing is None:
        view = create_source(session, kind=kind, name=name, org_id=org_id)
    else:
        # Secrets are shown only once; the sandbox and simulator get a fresh one at every start.
        view = rotate_secret(session, get_source(session, name).name, overlap=timedelta(0))
    assert view.secret is not None
    return view.slug, view.secret


# The sandbox Lead and Contact fields its Outbound Messages carry (what the ingest reads, conversion included).
SALESFORCE_OUTBOUND_FIELDS = {
    "Lead": ["FirstName", "LastName", "Email", "Title", "Company", "Industry", "NumberOfEmployees", "Country",
             "Website", "LeadSource", "Status", "OwnerId", "IsConverted", "ConvertedDate", "ConvertedContactId",
             "ConvertedAccountId"],
    "Contact": ["FirstName", "LastName", "Email", "Title", "MailingCountry", "AccountId"],
}


def salesforce_env(url: str) -> dict[str, str]:
    """Settings that point every process's Salesforce connector at the sandbox CRM's org (a session id login)."""
    return {"SALESFORCE_SESSION_ID": DEFAULT_SF_SESSION, "SALESFORCE_SANDBOX_URL": url}


def wire_salesforce(settings: Settings, database_url: str, plan: SandboxPlan) -> str:
    """Provision the sandbox org's fields, create the Salesforce source, send its Outbound Messages to us.

    Returns the source's webhook URL. Called after wire_sandbox cleared the sandbox's webhook targets.
    """
    from pydantic import SecretStr

    from connectors.registry import build_connector
    from connectors.retry import DEFAULT_RETRY

    sandbox = settings.model_copy(update={"salesforce_session_id": SecretStr(DEFAULT_SF_SESSION),
                                          "salesforce_sandbox_url": plan.url})
    connector = build_connector("salesforce", sandbox, retry=DEFAULT_RETRY)
    assert connector is not None  # the sandbox session id is set
    connector.provision_fields(create=True)
    database = Database(database_url)
    try:
        with database.session(write=True) as session:
            slug, _ = _ensure_source(session, SALESFORCE_SOURCE, "salesforce", org_id=DEFAULT_SF_ORG_ID)
    finally:
        database.dispose()
    # Outbound Messages carry no signature: the unguessable URL and the org id authenticate them (as in Salesforce).
    url = settings.base_url() + f"/webhooks/salesforce/{slug}"
    for sobject, fields in SALESFORCE_OUTBOUND_FIELDS.items():
        requests.post(plan.url + "/_sandbox/webhooks", timeout=5, json={
            "kind": "salesforce", "url": url, "organization_id": DEFAULT_SF_ORG_ID, "flush_seconds": 0.05,
            "objects": {sobject: fields}}).raise_for_status()
    return url
