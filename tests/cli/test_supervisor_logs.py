"""What the `run` supervisor says about its parts is a log record with the part and the exit code as fields."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from cli.supervisor import Child, Supervisor
from tasks.watchdog import WATCHDOG_EXIT_CODE


# The supervisor takes SIGINT/SIGTERM for itself: each test gives them back to pytest.
pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def test_restarts_and_exits_are_records_with_their_fields(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "started"
    body = (f"import pathlib, sys; p = pathlib.Path({str(marker)!r}); first = not p.exists(); p.touch(); "
            f"sys.exit({WATCHDOG_EXIT_CODE} if first else 3)")
    worker = Child("worker", [sys.executable, "-c", body], restart_codes=(WATCHDOG_EXIT_CODE,))
    supervisor = Supervisor(children=[worker], env=dict(os.environ))
    caplog.set_level(logging.INFO, logger="cli.supervisor")
    supervisor.start()
    try:
        assert supervisor.wait(poll=0.05) == 1
    finally:
        supervisor.stop()
    by_event = {r.getMessage(): r for r in caplog.records if r.name == "cli.supervisor"}
    restarted, exited = by_event["run.part_restarted"], by_event["run.part_exited"]
    assert (restarted.part, restarted.code, restarted.levelname) == ("worker", WATCHDOG_EXIT_CODE, "WARNING")  # type: ignore[attr-defined]
    assert (exited.part, exited.code, exited.levelname) == ("worker", 3, "ERROR")  # type: ignore[attr-defined]
