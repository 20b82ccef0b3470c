"""Pages say things the way a person reads them (issue 19): times in UTC instead of epoch milliseconds, field names
read whole. Formatting lives in bridge/admin/display.py."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.admin.display import epoch_ms, plain, timestamp
from connectors.base import shown_values
from sandbox import SandboxCRM
from storage.db import Database
from storage.models import Lead, User
from tests.admin.conftest import PASSWORD, csrf_of, log_in
from tests.admin.test_browser import browser_page, serve_web, shot  # noqa: F401  (browser_page: a fixture)
from tests.admin.test_trial_write import hubspot_app  # noqa: F401  (a fixture)
from tests.crm_ids import with_ids

EPOCH_MS = re.compile(r"\b1\d{12}\b")  # epoch milliseconds from 2001 to 2286


def visible(page_html: str) -> str:
    """The text a browser shows of a page's <main> (tags dropped, entities decoded, spaces collapsed)."""
    main = page_html.split("<main", 1)[-1]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", main, flags=re.DOTALL)
    text = re.sub(r"</?(?:code|span|a|strong|em|time|b)\b[^>]*>", "", text)  # inline: no break in the text
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


# --- the filters -----------------------------------------------------------------------------------


def test_times_and_values_read_as_text() -> None:
    moment = datetime(2026, 12, 3, 17, 22, 29, tzinfo=UTC)
    assert epoch_ms(str(int(moment.timestamp() * 1000))) == "2026-12-03 17:22:29 UTC"  # HubSpot's datetime form
    assert epoch_ms(int(moment.timestamp() * 1000)) == "2026-12-03 17:22:29 UTC"
    assert epoch_ms("2026-12-03T17:22:29.000Z") == "2026-12-03 17:22:29 UTC"  # Salesforce's form
    assert epoch_ms("2026-12-03T18:22:29+01:00") == "2026-12-03 17:22:29 UTC"
    assert epoch_ms("42") == "42" and epoch_ms("") == "–"  # not a time the product wrote
    assert timestamp(moment) == "2026-12-03 17:22:29 UTC" and timestamp(None) == "–"
    assert plain({"grades": ["A", "B"], "min_employees": 50}) == "grades: A, B; min_employees: 50"
    assert plain([{"source": "seats", "fit": True}, {"source": "rating", "fit": False}]) == (
        "source: seats; fit: yes | source: rating; fit: no")
    assert plain("<script>") == "<script>" and plain(None) == "–"  # escaping is the template's job
    assert plain("x" * 500).endswith("…") and len(plain("x" * 500)) == 300


# --- the field mapping page ------------------------------------------------------------------------


def test_the_test_write_result_shows_scored_at_as_a_time(hubspot_app: Any, sandbox: SandboxCRM,  # noqa: F811
                                                         clean_db: Database, make_user: Callable[..., Any]) -> None:
    contact = sandbox.store.hs_create("contacts", {"email": "ana@acme.io"})["id"]
    scored_at = datetime(2026, 12, 3, 9, 30, 5, tzinfo=UTC)
    with clean_db.session() as session:
        session.add_all(with_ids(Lead(email="ana@acme.io", properties={}, score=91, grade="A",
                                      reasons=["+ requested a demo"], model_version="m7", scored_at=scored_at),
                                 hubspot=contact))
    client = hubspot_app.test_client()
    assert log_in(client, make_user("admin").email).status_code == 302
    page = client.get("/admin/mappings")
    answer = client.post("/admin/mappings/test-write", data={"crm": "hubspot", "record_id": contact,
                                                             "object_type": "contacts",
                                                             "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 200
    result = visible(answer.text.split('id="test-write-result"', 1)[1].split("</section>", 1)[0])
    assert "written" in result and "leadbridge_scored_at 2026-12-03 09:30:05 UTC" in result
    assert not EPOCH_MS.search(result), result
    # What reached the CRM is still HubSpot's own form (epoch milliseconds): only the page reads it out.
    shown = sandbox.store.hs_get("contacts", contact)["properties"]["leadbridge_scored_at"]
    assert shown == str(int(scored_at.timestamp() * 1000))
    assert shown_values(91, "A", ["+ requested a demo"], "m7", scored_at)["scored_at"] == scored_at


@pytest.fixture()
def admin_web(service_env: dict[str, str], clean_db: Database) -> Iterator[str]:
    """`leadbridge web` on the test database."""
    yield from serve_web(service_env)


@pytest.mark.slow
def test_mapping_inputs_show_whole_field_names(admin_web: str, browser_page: Any,  # noqa: F811
                                               make_user: Callable[..., User]) -> None:
    page = browser_page
    user = make_user("admin")
    page.goto(admin_web + "/admin/mappings")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/admin/mappings")
    shot(page, "30-field-mapping")
    inputs = page.locator("input.field-name, form[id^=mapping-] input[name^=field_]")
    assert inputs.count() >= 12  # HubSpot contacts and companies, Salesforce Lead, Contact, Account...
    cut = page.evaluate("""() => [...document.querySelectorAll("form[id^=mapping-] input[name^=field_]")]
        .filter(i => i.scrollWidth > i.clientWidth).map(i => i.form.id + ' ' + i.value)""")
    assert cut == [], f"field names cut off in their inputs: {cut}"
    assert "Leadbridge_Model_Version__c" in [inputs.nth(i).input_value() for i in range(inputs.count())]
