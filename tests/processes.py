"""Start and stop real leadbridge processes from tests (web, worker) and wait for them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """An unused local TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Run `leadbridge <args>` in its own process group."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, start_new_session=True,
                            **kwargs)  # type: ignore[call-overload]


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, wait, and SIGKILL the whole group if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll until `predicate()` is truthy; return the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def http_ok(url: str) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
