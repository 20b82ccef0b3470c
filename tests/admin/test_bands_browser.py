"""Bands & outcomes in a real browser (Playwright driving Debian's Chromium against `leadbridge web`): the editor
shows each band's cut-off and share of the last 7 days' leads, saves custom bands, and the HubSpot outcome form
changes the definition. Screenshot in test-output/admin/."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.records import utcnow
from storage.db import Database
from storage.models import Lead, OutcomeDefinition, User
from tests.admin.conftest import browser_log_in, shot


def table(page: Any) -> list[list[str]]:
    """The bands table's rows as cell texts."""
    return [[c.strip() for c in row.split("\t")] for row in page.inner_text("#bands-table tbody").splitlines()]


@pytest.mark.slow
def test_the_band_editor_in_a_browser(web: str, browser_page: Any, clean_db: Database,
                                      make_user: Callable[..., User]) -> None:
    now = utcnow()
    with clean_db.session() as session:
        for i in range(1, 21):  # scores 5, 10, ..., 100 in the window
            session.add(Lead(email=f"w{i}@bands.example", score=5 * i, scored_at=now - timedelta(hours=i)))
    page = browser_page
    browser_log_in(page, web, "/admin/bands", make_user("admin"))
    page.wait_for_selector("#bands-table")
    assert table(page) == [["hot", "10%", "95 and above", "10.0%"], ["warm", "30%", "65 and above", "30.0%"],
                           ["cold", "60%", "0", "60.0%"]]
    assert "20 leads scored in the last 7 days" in page.inner_text("#bands-leads")

    form = page.locator("#bands-form")
    form.locator("select[name=mode]").select_option("fixed")
    names, values = form.locator("input[name=name]"), form.locator("input[name=value]")
    for i, (name, value) in enumerate((("A list", "80"), ("nurture", "30"), ("rest", "0"))):
        names.nth(i).fill(name)
        values.nth(i).fill(value)
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-info")
    assert "Bands v1 saved" in page.inner_text(".flash-info")
    assert table(page) == [["A list", "80", "80 and above", "25.0%"], ["nurture", "30", "30 and above", "50.0%"],
                           ["rest", "0", "0", "25.0%"]]
    shot(page, "bands-1360")

    hubspot = page.locator("#outcome-form-hubspot")
    hubspot.locator("select[name=lifecycle_stage]").select_option("salesqualifiedlead")
    hubspot.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-info")
    assert "Outcome definition v1: hubspot converted = lifecycle stage salesqualifiedlead or later or a closed-won " \
           "deal" in page.inner_text(".flash-info")
    assert "lifecycle stage salesqualifiedlead or later" in page.inner_text("#outcome-hubspot")
    with clean_db.session() as session:
        saved = session.scalars(select(OutcomeDefinition)).one()
    assert saved.rule == {"lifecycle_stage": "salesqualifiedlead", "lead_status": [], "deal_won": True}
