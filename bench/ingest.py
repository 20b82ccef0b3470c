"""Ingest benchmark: signed 100-event HubSpot batches from concurrent senders against `leadbridge web`.

Measures acknowledged events/s and ack latency (p50/p95/p99) on the embedded defaults (SQLite +
embedded Redis) and on PostgreSQL, checks that every acknowledged event is in the inbox, and in the
same run measures a baseline: the same events delivered one per request.

    python -m bench.ingest --seconds 20 --json bench/out/ingest.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.signatures import hubspot_v3_signature
from sandbox.ids import DEFAULT_HUBSPOT_PORTAL_ID
from storage.db import Database
from storage.migrate import upgrade
from storage.sources import create_source

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
OCCURRED_BASE_MS = 1_700_000_000_000
console = Console(width=150)


@dataclass
class RunResult:
    """What one timed run measured."""

    backend: str
    mode: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: int = 0
    errors: int = 0
    stored: int = 0

    def percentile(self, q: float) -> float:
        """The q-th percentile of request latency, in ms."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    def summary(self) -> dict[str, Any]:
        """The JSON shape the issue asks for."""
        return {
            "backend": self.backend, "mode": self.mode,
            "events_per_s": round(self.acknowledged / self.seconds, 1),
            "p50_ms": round(self.percentile(50), 2), "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2), "acknowledged": self.acknowledged, "stored": self.stored,
            "requests": len(self.latencies_ms), "errors": self.errors,
        }


def free_port() -> int:
    """An unused local TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_postgres(admin_url: str) -> str | None:
    """Create an empty database on the PostgreSQL server at `admin_url`; None when it is unreachable."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"leadbridge_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        console.print(f"[yellow]PostgreSQL at {plain} unavailable ({type(exc).__name__}); skipping it[/]")
        return None
    return "postgresql+psycopg://" + plain.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"


def drop_postgres(admin_url: str, url: str) -> None:
    """Drop a database made by fresh_postgres."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


class WebProcess:
    """`leadbridge web` in a subprocess with its own data dir and (optionally) PostgreSQL."""

    def __init__(self, data_dir: Path, database_url: str | None, workers: int) -> None:
        self.port = free_port()
        self.env = {**os.environ, "LEADBRIDGE_DATA_DIR": str(data_dir), "LEADBRIDGE_PORT": str(self.port),
                    "LEADBRIDGE_LOG_LEVEL": "WARNING", "LEADBRIDGE_WEB_WORKERS": str(workers),
                    "LEADBRIDGE_ENV_FILE": "", "PYTHONPATH": str(REPO)}
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL"):
            self.env.pop(name, None)
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until /readyz answers."""
        self.process = subprocess.Popen([sys.executable, "-m", "cli.main", "web"], env=self.env,
                                        stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("leadbridge web did not become ready")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def hubspot_body(counter: itertools.count, size: int) -> bytes:  # type: ignore[type-arg]
    """A batch of `size` distinct contact.propertyChange events (each a new inbox row)."""
    events = []
    for _ in range(size):
        n = next(counter)
        events.append({"eventId": n, "subscriptionId": 7, "portalId": DEFAULT_HUBSPOT_PORTAL_ID, "appId": 1,
                       "occurredAt": OCCURRED_BASE_MS + n, "subscriptionType": "contact.propertyChange",
                       "attemptNumber": 0, "objectId": 100000 + n % 50000, "propertyName": "hs_analytics_num_page_views",
                       "propertyValue": str(n), "changeSource": "ANALYTICS"})
    return json.dumps(events).encode()


# occurredAt = base + n: unique per event across all runs (so every event is new), never in the future.
COUNTER = itertools.count(int(time.time() * 1000) - OCCURRED_BASE_MS - 3_600_000 * 6)


def send_for(url: str, secret: str, seconds: float, senders: int, batch: int, result: RunResult,
             progress: Progress | None = None) -> None:
    """Post signed batches from `senders` threads for `seconds`, recording each request."""
    counter = COUNTER
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    task = progress.add_task(f"{result.backend} / {result.mode}", total=seconds) if progress else None

    def sender() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            with lock:
                body = hubspot_body(counter, batch)
            ts = str(int(time.time() * 1000))
            headers = {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": ts,
                       "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, "POST", url, body, ts)}
            started = time.perf_counter()
            try:
                response = session.post(url, data=body, headers=headers, timeout=10)
                elapsed = (time.perf_counter() - started) * 1000
                ok = response.status_code == 202
                accepted = response.json().get("accepted", 0) if ok else 0
            except requests.RequestException:
                elapsed, ok, accepted = (time.perf_counter() - started) * 1000, False, 0
            with lock:
                result.latencies_ms.append(elapsed)
                result.acknowledged += accepted
                result.errors += 0 if ok else 1

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.25)
        if progress is not None and task is not None:
            progress.update(task, completed=min(seconds, time.monotonic() - began))
    result.seconds = time.monotonic() - began


def count_inbox(database_url: str) -> int:
    """Rows in the inbox."""
    from sqlalchemy import func, select

    from storage.models import InboxEvent

    database = Database(database_url)
    try:
        with database.session() as session:
            return int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)
    finally:
        database.dispose()


def run_backend(backend: str, database_url: str | None, args: argparse.Namespace, progress: Progress) -> list[RunResult]:
    """Measure one backend: the batched load, then the one-event-per-request baseline."""
    with tempfile.TemporaryDirectory(prefix="leadbridge-bench-") as tmp:
        data_dir = Path(tmp)
        url = database_url or f"sqlite:///{data_dir / 'leadbridge.db'}"
        upgrade(url)
        database = Database(url)
        with database.session() as session:
            source = create_source(session, kind="hubspot", name="bench")
        database.dispose()
        web = WebProcess(data_dir, database_url, args.web_workers)
        web.start()
        results = []
        try:
            endpoint = web.base + source.webhook_path()
            for mode, batch, seconds in (("batches of %d" % args.batch, args.batch, args.seconds),
                                         ("baseline: 1 event/request", 1, max(5.0, args.seconds / 3))):
                before = count_inbox(url)
                result = RunResult(backend, mode, seconds)
                send_for(endpoint, source.secret or "", seconds, args.senders, batch, result, progress)
                result.stored = count_inbox(url) - before
                results.append(result)
        finally:
            web.stop()
        return results


def service_parser(doc: str | None) -> argparse.ArgumentParser:
    """Options every benchmark against the services takes: the PostgreSQL server ('' skips it), the JSON report."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL server URL for the external run "
                                                                    "('' skips it)")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write JSON."""
    parser = service_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the batched run per backend")
    parser.add_argument("--senders", type=int, default=4, help="concurrent sending threads")
    parser.add_argument("--batch", type=int, default=100, help="events per request (HubSpot sends up to 100)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    args = parser.parse_args(argv)
    # Secrets are encrypted at rest: this process (creating the source) and the server must share the key.
    from storage.crypto import generate_key

    os.environ.setdefault("LEADBRIDGE_ENCRYPTION_KEY", generate_key())

    backends: list[tuple[str, str | None]] = [("sqlite + embedded redis", None)]
    pg_url = fresh_postgres(args.postgres) if args.postgres else None
    if pg_url:
        backends.append(("postgresql + embedded redis", pg_url))
    results: list[RunResult] = []
    try:
        with Progress(console=console, transient=True) as progress:
            for name, url in backends:
                results.extend(run_backend(name, url, args, progress))
    finally:
        if pg_url:
            drop_postgres(args.postgres, pg_url)

    table = Table(title=f"ingest: {args.senders} senders, {os.cpu_count()} cores (client and server share them)")
    for column in ("backend", "mode", "events/s", "p50 ms", "p95 ms", "p99 ms", "acknowledged", "stored", "errors"):
        table.add_column(column, justify="right" if column not in ("backend", "mode") else "left")
    for r in results:
        s = r.summary()
        table.add_row(r.backend, r.mode, f"{s['events_per_s']:,.0f}", f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}",
                      f"{s['p99_ms']:.1f}", f"{s['acknowledged']:,}", f"{s['stored']:,}", str(s["errors"]))
    console.print(table)
    primary = results[0].summary()
    report = {**{k: primary[k] for k in ("events_per_s", "p50_ms", "p95_ms", "p99_ms", "acknowledged", "stored")},
              "runs": [r.summary() for r in results]}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    lost = [r for r in results if r.stored != r.acknowledged]
    if lost:
        console.print("[red]acknowledged events missing from the inbox![/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
