"""The models page's drift and live-quality charts in a real browser (Playwright driving Debian's Chromium against
`leadbridge web`): for a seeded history, a line per model and per shown feature, the events marked on both charts,
their keys, and the page fitting a phone's width. Screenshots go to test-output/admin/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.records import utcnow
from storage.db import Database
from storage.models import Lead, User
from tests.admin.conftest import OUTPUT, browser_log_in, shot
from tests.admin.learning_data import seed_learning


def drawn(page: Any, card: str) -> dict[str, Any]:
    """What the chart in `card` draws: lines (polylines and lone dots) and interval bands per series class, marks per
    class, key items, the hover columns' texts."""
    return page.evaluate("""card => {
        const svg = document.querySelector('#' + card + ' svg.chart.time');
        const series = {};
        for (const el of svg.querySelectorAll('polyline.line, circle.dot')) {
            const name = [...el.classList].filter(c => /^s[0-9]$/.test(c)).join(' ');
            series[name] = (series[name] || 0) + 1;
        }
        const bands = {};
        for (const el of svg.querySelectorAll('polygon.band, line.whisker')) {
            const name = [...el.classList].filter(c => /^s[0-9]$/.test(c)).join(' ');
            bands[name] = (bands[name] || 0) + 1;
        }
        const marks = {};
        for (const el of svg.querySelectorAll('g.mark')) {
            const name = [...el.classList].filter(c => /^m[0-9]$/.test(c)).join(' ');
            marks[name] = (marks[name] || 0) + 1;
        }
        const box = svg.getBoundingClientRect();
        return {series, bands, marks, width: box.width,
                hover: [...svg.querySelectorAll('rect.hover title')].map(t => t.textContent),
                key: [...document.querySelectorAll('#' + card + ' ul.chart-key li')].map(li => li.innerText.trim()),
                titles: [...svg.querySelectorAll('g.mark title')].map(t => t.textContent)};
    }""", card)


@pytest.mark.slow
def test_models_page_charts_the_seeded_history(web: str, browser_page: Any, clean_db: Database,
                                               make_user: Callable[..., User]) -> None:
    now = utcnow()
    with clean_db.session() as session:
        leads = [Lead(email=f"b{i}@example.com", properties={}) for i in range(90)]
        session.add_all(leads)
        session.flush()
        seeded = seed_learning(session, [lead.id for lead in leads], now)
    page = browser_page
    browser_log_in(page, web, "/admin/models", make_user("viewer"))
    page.wait_for_selector("#learning")
    assert "Drift and live quality" in page.inner_text("#learning")

    quality = drawn(page, "live-quality")
    # Three weekly points per model, every one measured (30 labels a week): one unbroken line each.
    assert quality["series"] == {"s1": 1, "s3": 1, "s2": 1}
    assert quality["marks"] == {"m1": 1, "m2": 1, "m3": 1, "m5": 1}  # drift alert, ADWIN, promoted, blend on
    assert quality["key"] == ["champion (XGBoost)", "online learner", "blend", "drift alert", "ADWIN change",
                              "retrained: promoted", "blend on"]
    assert any(t.endswith("Retrained (adwin): m-2024.06 was promoted") for t in quality["titles"])

    drift = drawn(page, "drift-history")
    # The score, the four features with the highest latest PSI, and the threshold.
    assert drift["series"] == {"s1": 1, "s2": 1, "s3": 1, "s5": 1, "s6": 1, "s4": 1}
    assert drift["marks"] == quality["marks"] and len(drift["titles"]) == seeded["marks"]
    assert drift["key"][1:5] == seeded["features"] and drift["key"][5] == "alert threshold 0.25"
    latest = page.inner_text("#live-quality-latest")
    assert "champion" in latest and "online" in latest and "blend" in latest
    shot(page, "models-learning-1360")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#learning")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert 300 <= drawn(page, "live-quality")["width"] <= 390
    page.locator("#learning").screenshot(path=str(OUTPUT / "models-learning-390.png"))
