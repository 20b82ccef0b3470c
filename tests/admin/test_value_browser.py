"""The Value page in a real browser (Playwright driving Debian's Chromium against `leadbridge web`): the verdict
sentence, every KPI per group with its interval, the weekly charts with a line and a 95% band per group, the
export links, and the page fitting a phone's width. Screenshots go to test-output/admin/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.records import utcnow
from storage.db import Database
from storage.models import User
from tests.admin.conftest import OUTPUT, browser_log_in, shot
from tests.admin.test_learning_browser import drawn
from tests.admin.value_data import WEEKS, seed_pilot


@pytest.mark.slow
def test_value_page_shows_the_verdict_kpis_and_charts(web: str, browser_page: Any, clean_db: Database,
                                                      make_user: Callable[..., User]) -> None:
    page = browser_page
    user = make_user("viewer")
    browser_log_in(page, web, "/admin/value", user)
    page.wait_for_selector("#value-empty")
    assert "No pilot has run yet" in page.inner_text("#value-empty")

    groups = seed_pilot(clean_db, utcnow())
    page.reload()
    page.wait_for_selector("#verdict")
    verdict = page.inner_text("#verdict")
    assert "Pod A, Q1" in verdict and "running" in verdict
    assert page.inner_text("#value-sentence").startswith("Scored leads were contacted")
    assert f"{groups['pilot']:,} pilot and {groups['control']:,} control leads" in verdict
    kpis = page.inner_text("#kpis")
    for label in ("Response time (median, minutes)", "Touched within 5 minutes", "MQL -> SQL conversion",
                  "Lead -> opportunity", "Win rate", "Sales cycle (median, won leads)", "Pipeline created per lead",
                  "Pipeline velocity per 100 leads"):
        assert label in kpis, label
    # The response-time difference excludes zero (pilot minutes, control hours): its row is marked.
    assert "good" in (page.get_attribute("#kpi-response_time", "class") or "")
    assert "95% CI" in page.inner_text("#kpi-response_time")
    assert "closed leads the pilot can detect a win-rate rise of" in page.inner_text("#detectable")

    for card in ("chart-win_rate", "chart-response_time"):
        chart = drawn(page, card)
        # One line per group; a band (or, for a lone week, a whisker) behind each.
        assert set(chart["series"]) == {"s1", "s4"} and set(chart["bands"]) == {"s1", "s4"}, card
        assert chart["key"] == ["pilot (scores shown)", "control (scores hidden)"] and not chart["marks"]
        assert len(chart["hover"]) == WEEKS + 1 and any("95% CI" in t for t in chart["hover"])
    shot(page, "value-1360")

    with page.expect_download() as download:
        page.click("#export-csv")
    path = download.value.path()
    assert open(path, encoding="utf-8").readline().startswith("kpi,label,unit,pilot,control")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#verdict")
    assert 300 <= drawn(page, "chart-win_rate")["width"] <= 390
    # The KPI table stacks: no sideways scrolling, each value labelled.
    assert page.evaluate("document.querySelector('#kpis').scrollWidth - document.querySelector('#kpis').clientWidth") <= 0
    page.screenshot(path=str(OUTPUT / "value-390.png"), full_page=True)
