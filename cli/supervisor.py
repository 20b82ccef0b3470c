"""`leadbridge run`: web, worker and beat as child processes of one supervisor that stops them all cleanly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process (each leads its own process group, so its descendants can be reached)."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    optional: bool = False  # an optional child may exit (code 0) without stopping the others
    restart_codes: tuple[int, ...] = ()  # exit codes that ask to be started again (the worker's watchdog)
    restarts: list[float] = field(default_factory=list)  # when it was restarted (monotonic)
    quiet: bool = False  # its stdout is dropped (a banner or progress bar that would cut into `run`'s console)

    def start(self, env: dict[str, str]) -> None:
        """Spawn the process in a new session, so a terminal's Ctrl-C reaches only the supervisor."""
        stdout = subprocess.DEVNULL if self.quiet else None  # its logs (stderr) always reach the console
        self.process = subprocess.Popen(self.argv, env=env, start_new_session=True, stdout=stdout)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the child's whole process group (ignoring a group that is already gone)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class Supervisor:
    """Starts children, watches them, and on a stop signal or a crash takes all of them down."""

    children: list[Child]
    env: dict[str, str]
    stop_timeout: float = 20.0
    max_restarts: int = 5  # per child within restart_window; more means something is wrong beyond a stall
    restart_window: float = 600.0
    _stopping: bool = field(default=False, init=False)

    def start(self) -> None:
        """Start every child and install the stop-signal handlers."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        for child in self.children:
            child.start(self.env)

    def add(self, child: Child, env: dict[str, str], *, optional: bool = True) -> None:
        """Start one more child later; an optional child (the simulator) may finish without stopping the rest."""
        child.optional = optional
        self.children.append(child)
        child.start(env)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def wait(self, poll: float = 0.2) -> int:
        """Block until a stop signal (exit 0) or until a child dies on its own (exit 1)."""
        while not self._stopping:
            for child in self.children:
                assert child.process is not None
                code = child.process.poll()
                if code == 0 and child.optional:
                    continue
                if code is not None and code in child.restart_codes and self._restart(child, code):
                    continue
                if code is not None:
                    log.error("run.part_exited", extra={"part": child.name, "code": code, "then": "stopping the rest"})
                    return 1
            time.sleep(poll)
        return 0

    def _restart(self, child: Child, code: int) -> bool:
        """Start `child` again unless it has asked too often lately; True when it was restarted."""
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < self.restart_window]
        if len(child.restarts) >= self.max_restarts:
            log.error("run.part_restarts_exhausted", extra={
                "part": child.name, "restarts": len(child.restarts) + 1, "window_s": round(self.restart_window),
                "then": "stopping the rest"})
            return False
        log.warning("run.part_restarted", extra={"part": child.name, "code": code, "reason": "it stopped consuming"})
        child.signal_group(signal.SIGKILL)  # what is left of its process group (pool children)
        child.restarts.append(now)
        child.start(self.env)
        return True

    def stop(self) -> None:
        """Ask every child to stop (SIGTERM), then kill whatever is left of their process groups."""
        # Ignore further Ctrl-C while shutting down, so an impatient second press cannot orphan children.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        tracked = self._descendants()
        for child in self.children:
            if child.process and child.process.poll() is None:
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("run.part_killed", extra={"part": child.name, "reason": "did not stop in time"})
            child.signal_group(signal.SIGKILL)
            child.process.wait()
        # Grandchildren that left their group (rare) are still tracked by pid.
        for proc in tracked:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def _descendants(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for child in self.children:
            if child.process is None:
                continue
            try:
                found.extend(psutil.Process(child.process.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return found


def cli_argv(*args: str) -> list[str]:
    """The argv that runs `leadbridge <args>` with this same interpreter."""
    return [sys.executable, "-m", "cli.main", *args]


def wait_until_ready(url: str, timeout: float, alive: Callable[[], bool]) -> bool:
    """Poll `url` until it answers 200, `timeout` passes, or `alive()` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False
