"""The embedded Redis keeps its data through a crash of the server and through the switch to an append-only file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from core.redis_server import AOF_FILE, SNAPSHOT_FILE, EmbeddedRedis, redis_server_binary


def kill_hard(server: EmbeddedRedis) -> None:
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.is_running()


def client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis(unix_socket_path=server.socket_path, socket_timeout=5)


def test_writes_survive_a_crash_of_the_server(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        client(server).sadd("lb:dirty:hubspot", 1, 2, 3)
        time.sleep(1.5)  # appendfsync everysec: what is a second old is on disk
        kill_hard(server)  # no shutdown, no snapshot: snapshots alone lost everything since the last one
        server.start()
        assert client(server).smembers("lb:dirty:hubspot") == {b"1", b"2", b"3"}
        assert (tmp_path / AOF_FILE).exists()
    finally:
        server.stop()


def test_a_data_dir_with_only_a_snapshot_keeps_its_data(tmp_path: Path) -> None:
    """A data dir from before the append-only file: Redis started with appendonly on would come up empty."""
    sock = str(tmp_path / "old.sock")
    subprocess.run([redis_server_binary(), "--port", "0", "--unixsocket", sock, "--daemonize", "yes",
                    "--dir", str(tmp_path), "--dbfilename", SNAPSHOT_FILE, "--pidfile", str(tmp_path / "old.pid")],
                   check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            old = redis.Redis(unix_socket_path=sock, socket_timeout=5)
            old.set("lb:fs:kept", "yes")
            break
        except (redis.ConnectionError, OSError):
            time.sleep(0.05)
    with contextlib.suppress(redis.ConnectionError):
        old.shutdown(save=True)  # the server closes the connection as it exits
    assert (tmp_path / SNAPSHOT_FILE).exists() and not (tmp_path / AOF_FILE).exists()

    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        assert client(server).get("lb:fs:kept") == b"yes"
        client(server).set("lb:fs:new", "1")
        time.sleep(1.5)
        kill_hard(server)
        server.start()  # now from the append-only file, which holds the old data and the new
        assert client(server).get("lb:fs:kept") == b"yes" and client(server).get("lb:fs:new") == b"1"
    finally:
        server.stop()
