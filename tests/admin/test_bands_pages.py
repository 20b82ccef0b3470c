"""The band editor (admin page), the API and the CLI: each band's cut-off in score points and share of the last 7
days' leads; changes validated with clear errors, audited, and the workers' cut-offs refreshed."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from cli.bands_commands import bands as bands_cli
from core.keys import BANDS_KEY
from core.records import utcnow
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from storage.db import Database
from storage.models import AuditEntry, BandSet, Lead
from tests.admin.conftest import page_csrf
from tests.admin.test_fields_api import caller


@pytest.fixture()
def scored(clean_db: Database, redis_url: str) -> Iterator[None]:
    """20 leads scored in the last 7 days (5, 10, ..., 100) and one scored 10 days ago (outside the window)."""
    now = utcnow()
    with clean_db.session() as session:
        session.execute(delete(BandSet))
        for i in range(1, 21):
            session.add(Lead(email=f"s{i}@bands.example", score=5 * i, scored_at=now - timedelta(hours=i)))
        session.add(Lead(email="old@bands.example", score=99, scored_at=now - timedelta(days=10)))
    make_redis_client(redis_url).delete(BANDS_KEY)
    yield
    with clean_db.session() as session:
        session.execute(delete(BandSet))
    make_redis_client(redis_url).delete(BANDS_KEY)


def rows_of(page: str) -> list[tuple[str, str, str]]:
    """(name, cut-off, share) of each row of the page's bands table."""
    import re

    table = page.split('id="bands-table"', 1)[1].split("</table>", 1)[0]
    names = re.findall(r'class="band-name">([^<]+)<', table)
    cutoffs = re.findall(r'class="band-cutoff">([^<]+)<', table)
    shares = re.findall(r'class="band-share">([^<]+)<', table)
    return [(html.unescape(n), c.strip(), s.strip()) for n, c, s in zip(names, cutoffs, shares)]


def test_the_editor_shows_cutoffs_and_shares_and_saves_bands(admin_client: Any, viewer_client: Any,
                                                             scored: None, clean_db: Database,
                                                             redis_url: str) -> None:
    page = admin_client.get("/admin/bands")
    assert page.status_code == 200
    # Default quantile bands over the 20 leads in the window: top 10% = 2 leads (95+), next 30% = 6 (65-90).
    assert rows_of(page.text) == [("hot", "95 and above", "10.0%"), ("warm", "65 and above", "30.0%"),
                                  ("cold", "0", "60.0%")]
    assert "20 leads scored in the last 7 days" in page.text
    token = page_csrf(admin_client, "/admin/bands")
    bad = admin_client.post("/admin/bands", data={"csrf_token": token, "mode": "fixed", "name": ["hot", "warm", "cold"],
                                                  "value": ["50", "95", "0"]}, follow_redirects=True)
    assert "must fall from the top band down" in html.unescape(bad.text)
    saved = admin_client.post("/admin/bands", data={
        "csrf_token": token, "mode": "fixed", "name": ["A list", "nurture", "rest", ""], "value": ["80", "30", "0", ""],
    }, follow_redirects=True)
    assert "Bands v1 saved" in saved.text
    # 80-100: 5 leads; 30-75: 10; 5-25: 5.
    assert rows_of(saved.text) == [("A list", "80 and above", "25.0%"), ("nurture", "30 and above", "50.0%"),
                                   ("rest", "0", "25.0%")]
    cached = json.loads(make_redis_client(redis_url).get(BANDS_KEY))
    assert cached["cutoffs"] == [["A list", 80], ["nurture", 30], ["rest", 0]] and cached["version"] == 1
    preset = admin_client.post("/admin/bands", data={"csrf_token": token, "preset": "fixed-95-50"},
                               follow_redirects=True)
    # 95-100: 2 leads; 50-90: 9; 5-45: 9.
    assert rows_of(preset.text) == [("hot", "95 and above", "10.0%"), ("warm", "50 and above", "45.0%"),
                                    ("cold", "0", "45.0%")]
    # Viewers see the bands but cannot change them.
    assert viewer_client.get("/admin/bands").status_code == 200 and 'id="bands-form"' not in \
        viewer_client.get("/admin/bands").text
    refused = viewer_client.post("/admin/bands", data={"csrf_token": page_csrf(viewer_client, "/admin/bands"),
                                                       "preset": "quantile"})
    assert refused.status_code == 403
    with clean_db.session() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "bands.update")
                                       .order_by(AuditEntry.id)))
    assert [e.target for e in entries] == ["bands v1", "bands v2"]
    assert entries[0].before["mode"] == "quantile" and entries[0].after["bands"][0] == {"name": "A list", "value": 80.0}


def test_the_api_shows_and_changes_bands(admin_app: Any, make_token: Any, scored: None) -> None:
    viewer = caller(admin_app, make_token("viewer"))
    got = viewer("GET", "/bands").get_json()
    assert got["version"] == 0 and got["mode"] == "quantile" and got["leads"] == 20 and got["window_days"] == 7
    assert [(b["name"], b["value"], b["lowest"], b["share"]) for b in got["bands"]] == [
        ("hot", 10, 95, 0.1), ("warm", 30, 65, 0.3), ("cold", 60, 0, 0.6)]
    assert set(got["presets"]) == {"quantile", "fixed-95-50"}
    assert viewer("PUT", "/bands", json={"preset": "fixed-95-50"}).status_code == 403
    admin = caller(admin_app, make_token("admin"))
    for body, words in [
        ({"mode": "quantile", "bands": [{"name": "hot", "value": 10}, {"name": "cold", "value": 80}]},
         "add up to 100%"),
        ({"mode": "fixed", "bands": [{"name": "hot", "value": 90}, {"name": "hot", "value": 0}]}, "unique"),
        ({"mode": "fixed", "bands": [{"name": "hot", "value": 120}, {"name": "cold", "value": 0}]}, "100"),
        ({"preset": "fixed-95-50", "mode": "fixed"}, "either a preset or a mode with bands"),
        ({"mode": "fixed"}, "give a preset, or a mode and its bands"),
        ({"preset": "gold"}, "preset"),
    ]:
        refused = admin("PUT", "/bands", json=body)
        assert refused.status_code == 400 and words in json.dumps(refused.get_json()), refused.get_json()
    done = admin("PUT", "/bands", json={"mode": "quantile", "bands": [
        {"name": "top", "value": 25}, {"name": "middle", "value": 25}, {"name": "bottom", "value": 50}]})
    assert done.status_code == 200
    # Top 25% of 20 = 5 leads (80+), top 50% = 10 (55+).
    assert [(b["name"], b["lowest"], b["share"]) for b in done.get_json()["bands"]] == [
        ("top", 80, 0.25), ("middle", 55, 0.25), ("bottom", 0, 0.5)]
    assert done.get_json()["version"] == 1


def test_the_cli_shows_and_sets_bands(scored: None, service_urls: ServiceUrls, tmp_path: Path) -> None:
    env = {**service_urls.as_env(), "LEADBRIDGE_ENV_FILE": "", "LEADBRIDGE_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    shown = runner.invoke(bands_cli, ["show", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert [(b["name"], b["lowest"], b["share"]) for b in json.loads(shown.output)["bands"]] == [
        ("hot", 95, 0.1), ("warm", 65, 0.3), ("cold", 0, 0.6)]
    bad = runner.invoke(bands_cli, ["set", "--mode", "fixed", "--band", "hot=95", "--band", "cold=5"], env=env)
    assert bad.exit_code == 1 and "its cut-off must be 0" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(bands_cli, ["set", "--mode", "fixed", "--band", "hot"], env=env).exit_code == 2
    done = runner.invoke(bands_cli, ["set", "--mode", "fixed", "--band", "hot=95", "--band", "warm=50",
                                     "--band", "cold=0"], env=env)
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == "saved bands v1"
    assert any(line.split() == ["hot", "95", "and", "above", "cut-off", "95", "share", "10.0%"] for line in lines)
    assert any(line.split() == ["warm", "50", "and", "above", "cut-off", "50", "share", "45.0%"] for line in lines)
