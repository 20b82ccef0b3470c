"""A real browser (Playwright driving Debian's Chromium) against the real web process (`leadbridge web`, gunicorn)
and a real worker: log in, create a HubSpot source, post a signed event to the URL the page shows, see it under
Deliveries and the lead with the score the pipeline gave it on the Leads page, change an alert threshold and
see the audit entry. Screenshots of each page go to test-output/admin/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select

from cli.users_commands import users
from core.signatures import hubspot_v3_signature
from storage.db import Database
from storage.models import Lead
from tests.admin.conftest import PASSWORD, shot

REPO = Path(__file__).resolve().parents[2]
EMAIL = "ops@example.com"




def signed_hubspot_post(url: str, secret: str, events: list[dict[str, Any]]) -> requests.Response:
    body = json.dumps(events).encode()
    ts = int(time.time() * 1000)
    headers = {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": str(ts),
               "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, "POST", url, body, ts)}
    return requests.post(url, data=body, headers=headers, timeout=10)


def reload_until(page: Any, predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout}s")
        time.sleep(0.5)
        page.reload()


@pytest.mark.slow
def test_admin_end_to_end_in_a_browser(service_env: dict[str, str], worker_process: Any, web: str,
                                       browser_page: Any, clean_db: Database) -> None:
    page = browser_page
    # The first admin comes from the CLI (there is no default account).
    created = CliRunner().invoke(users, ["add", "--email", EMAIL, "--role", "admin", "--password-stdin"],
                                 input=PASSWORD + "\n", env=service_env)
    assert created.exit_code == 0, created.output

    page.goto(web + "/admin/sources")
    assert "/admin/login" in page.url
    shot(page, "01-login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/admin/sources")

    # Create a HubSpot source; the URL and the secret are shown once.
    page.select_option("#create-source select[name=kind]", "hubspot")
    page.fill("#create-source input[name=name]", "hubspot-e2e")
    page.fill("#create-source input[name=org_id]", "62515")
    page.click("#create-source button[type=submit]")
    page.wait_for_selector("#secret-once")
    webhook_url = page.inner_text("#webhook-url").strip()
    secret = page.inner_text("#webhook-secret").strip()
    assert webhook_url.startswith(web + "/webhooks/hubspot/") and len(secret) >= 32
    assert page.is_visible("#setup-steps") and "Target URL" in page.inner_text("#setup-steps")
    shot(page, "02-source-created")

    # Post a signed event to exactly the URL the page showed.
    occurred = int(time.time() * 1000) - 5000
    answer = signed_hubspot_post(webhook_url, secret, [
        {"eventId": 1, "subscriptionId": 11, "portalId": 62515, "appId": 1, "occurredAt": occurred,
         "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 9001, "changeFlag": "CREATED"},
        {"eventId": 2, "subscriptionId": 12, "portalId": 62515, "appId": 1, "occurredAt": occurred + 1,
         "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 9001,
         "propertyName": "email", "propertyValue": "ana.lopez@acme.io"},
        {"eventId": 3, "subscriptionId": 12, "portalId": 62515, "appId": 1, "occurredAt": occurred + 2,
         "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 9001,
         "propertyName": "jobtitle", "propertyValue": "VP Sales"},
    ])
    assert answer.status_code == 202, answer.text
    page.goto(web + "/admin/sources")
    assert "•" in page.inner_text("#sources-table") and secret not in page.content()  # masked afterwards
    shot(page, "03-sources")

    # Deliveries: the events are in the inbox, and the worker processes them.
    page.goto(web + "/admin/deliveries?tab=inbox")
    reload_until(page, lambda: "done" in page.inner_text("#inbox-table") and "9001" in page.inner_text("#inbox-table"),
                 30, "the processed events under Deliveries")
    shot(page, "04-deliveries")

    # Leads: the lead the pipeline built from the event, with the score it stored.
    page.goto(web + "/admin/leads?q=ana.lopez@acme.io")
    reload_until(page, lambda: "ana.lopez@acme.io" in page.inner_text("#leads-table"), 30, "the lead")

    def scored() -> bool:
        with clean_db.session() as session:
            lead = session.scalars(select(Lead).where(Lead.email == "ana.lopez@acme.io")).one()
            return lead.score is not None

    deadline = time.monotonic() + 30
    while not scored() and time.monotonic() < deadline:
        time.sleep(0.5)
    with clean_db.session() as session:
        lead = session.scalars(select(Lead).where(Lead.email == "ana.lopez@acme.io")).one()
        stored_score, stored_grade, stored_reasons, lead_id = lead.score, lead.grade, lead.reasons, lead.id
    assert stored_score is not None, "the pipeline did not score the lead within 30 s"
    page.reload()
    assert page.inner_text("#leads-table td.score").strip() == str(stored_score)
    # Every scored lead has a grade, and the pages show it (issue 19 saw "–" for every lead).
    assert stored_grade in ("A", "B", "C", "D", "F")
    assert page.inner_text("#leads-table td.grade").strip() == stored_grade
    shot(page, "05-leads")
    page.click(f"#leads-table a[href='/admin/leads/{lead_id}']")
    page.wait_for_selector("#current-score")
    assert page.inner_text("#lead-score").strip() == str(stored_score)
    assert page.inner_text("#lead-grade").strip() == stored_grade
    # Each reason reads once with its sign: the stored "+ "/"- "/"= " becomes the list marker, not a second sign
    # before the text (issue 19 saw "+ + requested a demo").
    assert any(r.startswith("+ ") for r in stored_reasons), stored_reasons  # a VP: "+ senior decision maker"
    items = page.locator("#lead-reasons li")
    assert [items.nth(i).inner_text().strip() for i in range(items.count())] == [r[2:] for r in stored_reasons]
    markers = page.evaluate("""() => [...document.querySelectorAll('#lead-reasons li')]
        .map(li => getComputedStyle(li, '::before').content)""")
    assert markers == [{"+": '"+"', "-": '"–"', "=": '"="'}[r[0]] for r in stored_reasons]
    assert page.inner_text("#lead-email").strip() == "ana.lopez@acme.io"
    assert page.is_visible("#score-history svg.chart")
    shot(page, "06-lead")

    # Alert rules: create one, change its threshold, and find the change in the audit log.
    page.goto(web + "/admin/alerts")
    page.fill("#create-rule input[name=name]", "Hot leads")
    page.fill("#create-rule input[name=threshold]", "75")
    page.click("#create-rule button[type=submit]")
    page.wait_for_selector("#rules-table a:has-text('Hot leads')")
    page.click("#rules-table a:has-text('Hot leads')")
    page.fill("#edit-rule input[name=threshold]", "85")
    page.click("#edit-rule button[type=submit]")
    page.wait_for_selector("#rules-table td.threshold:has-text('85')")
    shot(page, "07-alert-rules")
    page.goto(web + "/admin/audit")
    row = page.locator("#audit-table tr", has_text="alert_rule.update")
    assert row.count() == 1
    text = row.inner_text()
    assert EMAIL in text and "threshold: 75 → 85" in text
    assert "source.create" in page.inner_text("#audit-table") and "user.add" in page.inner_text("#audit-table")
    shot(page, "08-audit")

    for name, path in (("09-overview", "/admin/"), ("10-field-mapping", "/admin/mappings"),
                       ("11-model", "/admin/models"), ("12-outbox", "/admin/deliveries?tab=outbox")):
        page.goto(web + path)
        assert page.locator("h1").count() == 1
        shot(page, name)
    overview = page.goto(web + "/admin/")
    assert overview is not None and overview.status == 200
    assert page.inner_text("#events").strip()  # events per minute is drawn
