"""The Fields page: the schema in force, mapping and unmapping through its forms (CSRF, admin only), HubSpot's
discovered properties from the sandbox CRM with a prefilled "Map" link, and the version history."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from services.fields import current_schema, history_entries
from storage.db import Database
from storage.models import User
from tests.admin.conftest import logged_in_client, page_csrf
from tests.admin.test_fields_api import add_properties


@pytest.fixture()
def hubspot_app(settings_overrides: dict[str, Any], broker: tuple[str, str], clean_db: Database,
                sandbox: SandboxCRM) -> Iterator[Any]:
    """The app with HubSpot configured against the sandbox CRM, which holds the custom properties."""
    from bridge import create_app

    add_properties(sandbox)
    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "http://localhost",
                      "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN, "hubspot_base_url": sandbox.base_url})
    app.testing = True
    yield app
    app.extensions["leadbridge"].db.dispose()


def version_of(db: Database) -> int:
    with db.session() as session:
        return current_schema(session).version


def section(page: str, element_id: str) -> str:
    """The text of the element with this id up to its closing tag of the same name (no nesting of that tag)."""
    match = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no #{element_id} on the page"
    return html.unescape(match.group(2))


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', page, re.S)]


def test_the_page_maps_and_unmaps_through_its_forms(hubspot_app: Any, make_user: Callable[..., User],
                                                    clean_db: Database) -> None:
    client = logged_in_client(hubspot_app, make_user("admin"))
    page = client.get("/admin/fields")
    assert page.status_code == 200
    assert 'href="/admin/fields"' in page.text  # in the navigation
    assert "Nothing mapped yet" in section(page.text, "fields-table")

    # HubSpot's properties from the sandbox CRM, with fill rate, suggested kind and a prefilled Map link.
    discovered = section(page.text, "discover-hubspot-table")
    row = re.search(r'<tr data-property="seats">(.*?)</tr>', discovered, re.S)
    assert row, "seats is not among the discovered HubSpot properties"
    assert "Seats" in row.group(1) and "100%" in row.group(1) and "<strong>numeric</strong>" in row.group(1)
    link = re.search(r'href="([^"]+)">Map</a>', row.group(1))
    assert link
    assert "hubspot_owner_id" not in discovered  # skipped properties are listed apart, with the reason
    assert "owner" in section(page.text, "discover-hubspot")
    assert "Salesforce is not configured" in section(page.text, "discover-salesforce")

    prefilled = client.get(html.unescape(link.group(1)))
    form = section(prefilled.text, "map-form")
    assert 'name="property" required maxlength="100" value="seats"' in form
    assert '<option value="numeric" selected>' in form and 'value="Seats"' in form

    csrf = page_csrf(client, "/admin/fields")
    mapped = client.post("/admin/fields/map", data={"csrf_token": csrf, "crm": "hubspot", "object_type": "contacts",
                                                    "property": "seats", "kind": "numeric", "label": "",
                                                    "feature": "", "top_n": "20", "fit": "on"})
    assert mapped.status_code == 302 and mapped.headers["Location"].endswith("/admin/fields")
    after = client.get("/admin/fields").text
    assert any("Mapped hubspot contacts.seats as numeric feature 'seats'" in f for f in flashes(after))
    table = section(after, "fields-table")
    assert "seats" in table and "Seats" in table and "numeric" in table and "yes" in table  # label from the CRM
    assert "mapped: numeric seats" in section(after, "discover-hubspot-table")
    assert version_of(clean_db) == 1
    edit = re.search(r'href="([^"]+)">Edit</a>', table)
    assert edit, "no Edit link on the mapped row"
    editing = section(client.get(html.unescape(edit.group(1))).text, "map-form")
    assert 'value="seats"' in editing and 'name="fit" checked' in editing and 'value="Seats"' in editing

    # A refusal comes back as a message on the page and changes nothing.
    refused = client.post("/admin/fields/map", data={"csrf_token": csrf, "crm": "hubspot", "object_type": "contacts",
                                                     "property": "plan_tier", "kind": "categorical",
                                                     "feature": "industry", "top_n": "5"},
                          headers={"Referer": "http://localhost/admin/fields"})
    assert refused.status_code == 302
    assert any("'industry'" in f and "built-in" in f for f in flashes(client.get("/admin/fields").text))
    bad_top = client.post("/admin/fields/map", data={"csrf_token": csrf, "crm": "hubspot", "object_type": "contacts",
                                                     "property": "plan_tier", "kind": "categorical", "top_n": "x"})
    assert bad_top.status_code == 302
    assert any("top N must be a whole number" in f for f in flashes(client.get("/admin/fields").text))
    unknown = client.post("/admin/fields/map", data={"csrf_token": csrf, "crm": "hubspot", "object_type": "contacts",
                                                     "property": "no_such_thing", "kind": "numeric"})
    assert unknown.status_code == 302
    assert any("has no property 'no_such_thing'" in f for f in flashes(client.get("/admin/fields").text))
    assert version_of(clean_db) == 1
    # Without the CSRF token nothing happens.
    assert client.post("/admin/fields/map", data={"crm": "hubspot", "object_type": "contacts",
                                                  "property": "plan_tier", "kind": "categorical"}).status_code == 400
    assert version_of(clean_db) == 1

    unmapped = client.post("/admin/fields/unmap", data={"csrf_token": csrf, "crm": "hubspot",
                                                        "object_type": "contacts", "property": "seats"})
    assert unmapped.status_code == 302
    final = client.get("/admin/fields").text
    assert "Nothing mapped yet" in section(final, "fields-table")
    history = section(final, "history-table")
    assert "unmapped hubspot contacts.seats (feature seats)" in history
    assert "mapped hubspot contacts.seats as numeric feature seats" in history
    assert client.user.email in history
    with clean_db.session() as session:
        entries = history_entries(session)
    assert [e.schema.version for e in entries] == [2, 1] and all(e.actor == client.user.email for e in entries)


def test_viewers_see_the_schema_without_forms_and_cannot_post(hubspot_app: Any, make_user: Callable[..., User],
                                                             clean_db: Database) -> None:
    admin = logged_in_client(hubspot_app, make_user("admin"))
    csrf = page_csrf(admin, "/admin/fields")
    assert admin.post("/admin/fields/map", data={"csrf_token": csrf, "crm": "hubspot", "object_type": "contacts",
                                                 "property": "seats", "kind": "numeric"}).status_code == 302
    viewer = logged_in_client(hubspot_app, make_user("viewer"))
    page = viewer.get("/admin/fields")
    assert page.status_code == 200 and "seats" in section(page.text, "fields-table")
    assert 'id="map-form"' not in page.text and "Unmap" not in page.text and ">Map</a>" not in page.text
    csrf = page_csrf(viewer, "/admin/fields")
    for path, data in (("/admin/fields/map", {"crm": "hubspot", "object_type": "contacts", "property": "plan_tier",
                                              "kind": "categorical"}),
                       ("/admin/fields/unmap", {"crm": "hubspot", "object_type": "contacts", "property": "seats"})):
        assert viewer.post(path, data={"csrf_token": csrf, **data}).status_code == 403
    assert version_of(clean_db) == 1


def test_a_crm_that_cannot_be_reached_is_said_on_the_page(settings_overrides: dict[str, Any],
                                                          broker: tuple[str, str], clean_db: Database,
                                                          make_user: Callable[..., User]) -> None:
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "http://localhost",
                      "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN, "hubspot_base_url": "http://127.0.0.1:9"})
    app.testing = True
    try:
        client = logged_in_client(app, make_user("admin"))
        page = client.get("/admin/fields")
        assert page.status_code == 200
        assert "HubSpot could not be reached" in section(page.text, "discover-hubspot")
        csrf = page_csrf(client, "/admin/fields")
        mapped = client.post("/admin/fields/map", data={"csrf_token": csrf, "crm": "hubspot",
                                                        "object_type": "contacts", "property": "budget",
                                                        "kind": "numeric"})
        assert mapped.status_code == 302
        messages = flashes(client.get("/admin/fields").text)
        assert any("not checked against the CRM" in m for m in messages), messages
        assert version_of(clean_db) == 1
    finally:
        app.extensions["leadbridge"].db.dispose()
