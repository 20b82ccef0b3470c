"""`leadbridge run`: starts web + worker + beat on the embedded defaults and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

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
def test_sandbox_mode_scores_salesforce_leads_as_well_as_hubspot_contacts(tmp_path: Path) -> None:
    """`run` on the embedded defaults wires both CRMs: Salesforce Leads in the sandbox get scores from the workers."""
    sandbox_port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEADBRIDGE_TEST_", "REDIS", "DATABASE", "HUBSPOT_", "SALESFORCE_"))}
    env.update({"LEADBRIDGE_PORT": str(free_port()), "LEADBRIDGE_DATA_DIR": str(tmp_path / "data"),
                "LEADBRIDGE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), "LEADBRIDGE_WEB_WORKERS": "1",
                "LEADBRIDGE_SANDBOX_PORT": str(sandbox_port)})
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)
    sandbox = f"http://127.0.0.1:{sandbox_port}/_sandbox"

    def scored(crm: str, prefix: str) -> set[str]:
        with urllib.request.urlopen(f"{sandbox}/writes?crm={crm}&prefix={prefix}", timeout=5) as response:
            return {w["object_id"] for w in json.load(response)["writes"] if w["source"] == "API"}

    try:
        read_line_containing(proc, "leadbridge is running at", timeout=90)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (len(scored("salesforce", "Leadbridge_Score__c")) < 5
                                               or not scored("hubspot", "leadbridge_score")):
            time.sleep(2)
        leads = scored("salesforce", "Leadbridge_Score__c")
        assert len(leads) >= 5, f"{len(leads)} Salesforce Leads scored within two minutes"
        assert all(lead.startswith("00Q") for lead in leads)  # Lead ids: the simulator's Leads, not Contacts
        assert scored("salesforce", "Leadbridge_Tier__c") & leads
        assert scored("hubspot", "leadbridge_score")
        with urllib.request.urlopen(f"{sandbox}/webhooks", timeout=5) as response:
            kinds = sorted(t["kind"] for t in json.load(response)["targets"])
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
