"""`leadbridge run`'s console: a line per part, a periodic summary, JSON logs with their extra fields, no per-task lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from tests.cli.output import Lines, per_task_lines
from tests.processes import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"^\[\d\d:\d\d:\d\d\] ([\d,.]+) events/s received, backlog [\d,]+, [\d,]+ leads written in \d+s, "
                     r"[\d,]+ dead letters$")


def events_slug(data_dir: Path) -> str:
    """The slug of the events source sandbox mode created in `run`'s own database."""
    from core.runtime import sqlite_url
    from storage.db import Database
    from storage.models import Source

    database = Database(sqlite_url(data_dir))
    try:
        with database.session() as session:
            return str(session.scalars(select(Source.slug).where(Source.name == "sandbox-web")).one())
    finally:
        database.dispose()


@pytest.mark.slow
def test_run_prints_parts_and_summaries_and_logs_json(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADBRIDGE_TEST_", "REDIS", "DATABASE"))}
    env.update({"LEADBRIDGE_PORT": str(port), "LEADBRIDGE_SANDBOX_PORT": str(sandbox_port),
                "LEADBRIDGE_DATA_DIR": str(tmp_path / "data"), "LEADBRIDGE_LOG_LEVEL": "INFO",
                "LEADBRIDGE_LOG_FORMAT": "json", "LEADBRIDGE_RUN_SUMMARY_SECONDS": "2",
                "LEADBRIDGE_WEB_WORKERS": "1", "PYTHONPATH": str(REPO)})
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    out.start()
    err.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: any("leadbridge is running at" in line for line in out.lines) or proc.poll() is not None,
                 120, "`run` saying it is running")
        assert proc.poll() is None, out.lines + err.lines
        # A rejected delivery: its log record must carry its reason and source.
        answer = requests.post(f"{base}/webhooks/events/{events_slug(tmp_path / 'data')}", data=b'{"batch": []}',
                               headers={"Content-Type": "application/json", "webhook-id": "msg_1",
                                        "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
                               timeout=10)
        assert answer.status_code == 401

        def busy_summaries() -> list[str]:
            return [line for line in list(out.lines) if (m := SUMMARY.match(line)) and float(m.group(1)) > 0]

        # The simulator's events keep the worker's tasks coming, so per-task lines would have shown by now.
        wait_for(lambda: len(busy_summaries()) >= 2, 90, "two summaries with events in them")
        wait_for(lambda: any("webhook.events.rejected" in line for line in list(err.lines)), 10, "the rejection log")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.join(timeout=10)
        err.join(timeout=10)
    assert proc.returncode == 0

    parts = out.lines[:out.lines.index(f"leadbridge is running at {base}  (Ctrl-C to stop)")]
    assert parts[0] == f"sandbox CRM: http://127.0.0.1:{sandbox_port}  (pid {parts[0].split('pid ')[1]}"
    assert any(line.startswith(f"web: {base}  (pid ") for line in parts)
    assert any(re.match(r"worker: pid \d+, concurrency \d+, queues ", line) for line in parts)
    assert any(re.match(r"beat: pid \d+$", line) for line in parts)
    assert any(line.startswith("simulator: pid ") for line in parts)
    assert len(parts) == 5, parts  # one line per part, nothing else before "running"

    records = err.records()  # every stderr line is one JSON object
    (rejected,) = [r for r in records if r["message"] == "webhook.events.rejected"]
    assert rejected["source"] == "sandbox-web" and rejected["reason"] and rejected["level"] == "INFO"
    assert per_task_lines(out.lines + err.lines) == []
    # The children's servers do not narrate their start at INFO under `run` (the part lines say it).
    assert not [r for r in records if r["logger"] in ("gunicorn.error", "celery.apps.worker") and r["level"] == "INFO"]
