"""`leadbridge run`: starts web + worker + beat on the embedded defaults and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from sandbox import DEFAULT_HUBSPOT_TOKEN
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]


def read_line_containing(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not printed within {timeout}s (exit code {proc.poll()})")


@pytest.mark.slow
def test_run_serves_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADBRIDGE_TEST_", "REDIS", "DATABASE"))}
    env.update({"LEADBRIDGE_PORT": str(port), "LEADBRIDGE_DATA_DIR": str(tmp_path / "data"),
                "LEADBRIDGE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), "LEADBRIDGE_WEB_WORKERS": "1",
                "LEADBRIDGE_SANDBOX_PORT": str(free_port())})
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)
    family: list[psutil.Process] = []
    try:
        line = read_line_containing(proc, "leadbridge is running at", timeout=90)
        assert f"http://127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert response.status == 200
            assert json.load(response)["status"] == "ok"
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "cli.main web" in names and "cli.main worker" in names and "cli.main beat" in names
        redis_pid = int((tmp_path / "data" / "redis.pid").read_text())
        family.append(psutil.Process(redis_pid))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    survivors = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], f"processes left behind: {[p.cmdline() for p in survivors]}"
    assert len(family) >= 4  # at least web, worker, beat and the embedded redis were watched


@pytest.mark.slow
def test_sandbox_mode_scores_and_acts_in_both_crms_within_two_minutes(tmp_path: Path) -> None:
    """`run` on the embedded defaults wires both CRMs: within two minutes the simulator's Salesforce Leads and HubSpot
    contacts carry scores and moving trends, and the default rules have given hot ones an owner and a task in each
    (and, in HubSpot, the follow-up sequence)."""
    sandbox_port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEADBRIDGE_TEST_", "REDIS", "DATABASE", "HUBSPOT_", "SALESFORCE_", "SLACK_"))}
    env.update({"LEADBRIDGE_PORT": str(free_port()), "LEADBRIDGE_DATA_DIR": str(tmp_path / "data"),
                "LEADBRIDGE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), "LEADBRIDGE_WEB_WORKERS": "1",
                "LEADBRIDGE_SANDBOX_PORT": str(sandbox_port)})
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{sandbox_port}"

    def get(path: str, token: str | None = None) -> Any:
        req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=5) as response:
            return json.load(response)

    def written(crm: str, prefix: str) -> dict[str, set[str]]:
        """Contact or Lead id -> the values our workers (source API) wrote to properties starting with `prefix`."""
        out: dict[str, set[str]] = {}
        for w in get(f"/_sandbox/writes?crm={crm}&prefix={prefix}")["writes"]:
            if w["source"] == "API" and w["object_type"] in ("contacts", "Lead"):  # not the tasks' own owner
                out.setdefault(w["object_id"], set()).add(str(w["value"]))
        return out

    def enrolled(contacts: set[str], demo: dict[str, Any]) -> set[str]:
        """The contacts among `contacts` enrolled in the demo sequence (HubSpot answers 404 for one in none)."""
        out = set()
        for contact in contacts:
            try:
                found = get(f"/automation/v4/sequences/enrollments/contact/{contact}?userId={demo['sequence_user']}",
                            DEFAULT_HUBSPOT_TOKEN)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404, exc
                continue
            if found["sequenceId"] == demo["sequence"]:
                out.add(contact)
        return out

    def state() -> dict[str, Any]:
        info = get("/_sandbox/info")
        demo, sid = info["actions"], info["salesforce_session_id"]
        soql = urllib.parse.quote("SELECT Id, WhoId, OwnerId FROM Task")
        hs_owned = {c for c, v in written("hubspot", "hubspot_owner_id").items()
                    if v & set(demo["hubspot"]["owners"])}
        return {
            "sf_scored": set(written("salesforce", "Leadbridge_Score__c")),
            "sf_tiers": set(written("salesforce", "Leadbridge_Tier__c")),
            "hs_scored": set(written("hubspot", "leadbridge_score")),
            "hs_owned": hs_owned,
            "hs_enrolled": enrolled(hs_owned, demo["hubspot"]),
            "sf_owned": {c for c, v in written("salesforce", "OwnerId").items()
                         if v & set(demo["salesforce"]["users"])},
            "hs_tasks": get("/crm/v3/objects/tasks?limit=100", DEFAULT_HUBSPOT_TOKEN)["results"],
            "sf_tasks": get(f"/services/data/v59.0/query?q={soql}", sid)["records"],
            "hs_trends": set().union(*written("hubspot", "leadbridge_score_trend").values()),
            "sf_trends": set().union(*written("salesforce", "Leadbridge_Score_Trend__c").values()),
        }

    def done(s: dict[str, Any]) -> bool:
        return (len(s["sf_scored"]) >= 5 and bool(s["hs_scored"]) and bool(s["hs_owned"]) and bool(s["sf_owned"])
                and bool(s["hs_tasks"]) and bool(s["sf_tasks"]) and bool(s["hs_enrolled"])
                and {"improving", "steady"} <= s["hs_trends"] and {"improving", "steady"} <= s["sf_trends"])

    try:
        read_line_containing(proc, "leadbridge is running at", timeout=90)
        deadline = time.monotonic() + 120
        s = state()
        while time.monotonic() < deadline and not done(s):
            time.sleep(2)
            s = state()
        leads = s["sf_scored"]
        assert len(leads) >= 5, f"{len(leads)} Salesforce Leads scored within two minutes"
        assert all(lead.startswith("00Q") for lead in leads)  # Lead ids: the simulator's Leads, not Contacts
        assert s["sf_tiers"] & leads
        assert s["hs_scored"]
        # The default hot rule's owner and task actions, in each CRM: owners from the sandbox's demo owners/users,
        # tasks on scored records (HubSpot's associated to a contact, Salesforce's WhoId a Lead).
        assert s["hs_owned"] and s["hs_owned"] <= s["hs_scored"], "no hot HubSpot contact got an owner"
        assert s["sf_owned"] and s["sf_owned"] <= leads, "no hot Salesforce Lead got an owner"
        assert s["hs_tasks"], "no HubSpot task within two minutes"
        assert s["hs_enrolled"], "no hot HubSpot contact enrolled in the follow-up sequence"
        assert s["sf_tasks"] and {t["WhoId"] for t in s["sf_tasks"]} <= leads, "no Salesforce Task on a scored Lead"
        # Trends move: leads re-scored within the window show improving (and, when unchanged, steady).
        assert {"improving", "steady"} <= s["hs_trends"], s["hs_trends"]
        assert {"improving", "steady"} <= s["sf_trends"], s["sf_trends"]
        kinds = sorted(t["kind"] for t in get("/_sandbox/webhooks")["targets"])
        assert kinds == ["hubspot", "salesforce", "salesforce"]  # Lead and Contact Outbound Messages
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:  # a failed assertion: let run stop its children before giving up on it
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
