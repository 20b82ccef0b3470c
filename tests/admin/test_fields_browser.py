"""A real browser (Playwright driving Debian's Chromium) against `leadbridge web` with HubSpot configured against
the sandbox CRM: the Fields page lists a discovered custom property, its Map button prefills the form, mapping it
saves a schema version, and the page fits a 390 px wide phone screen. Screenshots go to test-output/admin/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from services.fields import current_schema
from storage.db import Database
from storage.models import User
from tests.admin.conftest import browser_log_in, serve_web, shot
from tests.admin.test_fields_api import add_properties


@pytest.fixture()
def hubspot_web(service_env: dict[str, str], clean_db: Database, sandbox: SandboxCRM) -> Iterator[str]:
    """`leadbridge web` (gunicorn) on a free port, with HubSpot configured against the sandbox CRM."""
    add_properties(sandbox)
    yield from serve_web({**service_env, "HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN,
                          "HUBSPOT_BASE_URL": sandbox.base_url})


def overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scrolling)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


@pytest.mark.slow
def test_map_a_discovered_property_from_the_fields_page(hubspot_web: str, browser_page: Any,
                                                        clean_db: Database, make_user: Callable[..., User]) -> None:
    page = browser_page
    browser_log_in(page, hubspot_web, "/admin/fields", make_user("admin"))
    assert page.locator("header nav a:has-text('Fields')").count() == 1

    # The custom property the sandbox CRM holds is listed with its fill rate and suggested kind.
    row = page.locator("#discover-hubspot-table tr[data-property=seats]")
    assert "100%" in row.inner_text() and "numeric" in row.inner_text()
    shot(page, "20-fields-discovered")
    row.locator("a:has-text('Map')").click()
    page.wait_for_url("**/admin/fields?*")
    assert page.input_value("#map-form input[name=property]") == "seats"
    assert page.input_value("#map-form select[name=kind]") == "numeric"
    assert page.input_value("#map-form input[name=label]") == "Seats"
    page.check("#map-form input[name=fit]")
    page.click("#map-form button[type=submit]")
    page.wait_for_selector("#fields-table tr#field-hubspot-contacts-seats")
    assert "Mapped hubspot contacts.seats as numeric feature 'seats'" in page.inner_text("main")
    cells = page.inner_text("#fields-table tr#field-hubspot-contacts-seats")
    assert "Seats" in cells and "numeric" in cells and "yes" in cells
    assert "mapped: numeric seats" in row.inner_text()
    assert "mapped hubspot contacts.seats as numeric feature seats" in page.inner_text("#history-table")
    with clean_db.session() as session:
        schema = current_schema(session)
    assert schema.version == 1
    assert [(f.property, f.kind, f.feature, f.label, f.fit) for f in schema.fields] == [
        ("seats", "numeric", "seats", "Seats", True)]
    shot(page, "21-fields-mapped")

    # A phone: every table stacks, nothing scrolls sideways, the forms still work.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert overflow(page) <= 0, f"the page is {overflow(page)} px wider than a 390 px screen"
    shot(page, "22-fields-phone")
    page.click("#fields-table tr#field-hubspot-contacts-seats button:has-text('Unmap')")
    page.wait_for_selector("#fields-table td:has-text('Nothing mapped yet')")
    assert overflow(page) <= 0
    with clean_db.session() as session:
        assert current_schema(session).fields == ()
