"""The `run` supervisor restarts a child that asks for it (exit code 75) and stops everything on any other exit."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.supervisor import Child, Supervisor
from tasks.watchdog import WATCHDOG_EXIT_CODE


# The supervisor takes SIGINT/SIGTERM for itself: each test gives them back to pytest.
pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def script(body: str) -> list[str]:
    return [sys.executable, "-c", body]


def counting_child(tmp_path: Path, exit_code: int, times: int) -> Child:
    """A child that records each start in a file and exits with `exit_code` for its first `times` starts."""
    starts = tmp_path / "starts"
    body = (f"import pathlib, sys, time; p = pathlib.Path({str(starts)!r}); "
            f"n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
            f"sys.exit({exit_code}) if n < {times} else time.sleep(60)")
    return Child("worker", script(body), restart_codes=(WATCHDOG_EXIT_CODE,))


def starts(tmp_path: Path) -> int:
    path = tmp_path / "starts"
    return len(path.read_text()) if path.exists() else 0


def stop_after(supervisor: Supervisor, seconds: float) -> None:
    def later() -> None:
        time.sleep(seconds)
        supervisor._stopping = True  # what the SIGTERM handler sets

    threading.Thread(target=later, daemon=True).start()


def test_a_child_asking_for_a_restart_is_started_again_and_the_rest_keep_running(tmp_path: Path) -> None:
    web = Child("web", script("import time; time.sleep(60)"))
    worker = counting_child(tmp_path, WATCHDOG_EXIT_CODE, times=2)
    supervisor = Supervisor(children=[web, worker], env=dict(os.environ))
    supervisor.start()
    try:
        stop_after(supervisor, 4.0)
        assert supervisor.wait(poll=0.05) == 0  # ended by the stop signal, not by the worker's exits
        assert starts(tmp_path) == 3  # two restarts, then it kept running
        assert web.process is not None and web.process.poll() is None
        assert worker.process is not None and worker.process.poll() is None
    finally:
        supervisor.stop()
    assert web.process.poll() is not None and worker.process.poll() is not None


def test_any_other_exit_code_stops_everything(tmp_path: Path) -> None:
    web = Child("web", script("import time; time.sleep(60)"))
    worker = counting_child(tmp_path, 1, times=5)
    supervisor = Supervisor(children=[web, worker], env=dict(os.environ))
    supervisor.start()
    try:
        assert supervisor.wait(poll=0.05) == 1
        assert starts(tmp_path) == 1
    finally:
        supervisor.stop()
    assert web.process is not None and web.process.poll() is not None


def test_a_child_that_keeps_asking_is_given_up_on(tmp_path: Path) -> None:
    worker = counting_child(tmp_path, WATCHDOG_EXIT_CODE, times=100)
    supervisor = Supervisor(children=[worker], env=dict(os.environ), max_restarts=3)
    supervisor.start()
    try:
        assert supervisor.wait(poll=0.05) == 1
        assert starts(tmp_path) == 4  # the first start and three restarts
    finally:
        supervisor.stop()
