"""Failure drills: a real web + worker stack, the sandbox CRM sending and receiving over HTTP, real Redis and database.

Each drill breaks one part while traffic flows, repairs it, and then checks "exactly once in effect":
- every acknowledged event (every inbox row) was processed once: status done/ignored, attempts == 1;
- every lead was scored after its newest event (and enriched from the CRM), its CRM field shows its database score;
- no record received the same leadbridge values twice in a row;
- no dead letters, nothing left dirty.
Beat is stood in for by sending its sweeper and writeback kick every second (beat does it every 15/30 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import and_, func, or_, select

from connectors.hubspot.client import HubSpotConnector
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from sandbox.simulator import EventSender, FunnelSimulation, SandboxCrmFeed, SimulatorConfig, simulate
from storage.db import Database
from storage.models import AuditEntry, InboxEvent, Lead, LeadCrmId, OutboxItem, ScoreHistory
from storage.sources import SourceView, create_source
from tasks.watchdog import WATCHDOG_EXIT_CODE
from tests.crm_ids import has_id
from tests.processes import free_port, http_ok, start_cli, stop
from tests.services import broker_urls, wipe_pipeline

SCORE = "leadbridge_score"
TICK = 1.0  # seconds between stand-in beat ticks
QUIET_SECONDS = 4.0  # nothing lagging for this long (> LEADBRIDGE_INBOX_SWEEP_AFTER + TICK) counts as converged


@dataclass
class Stack:
    """web + workers on one Redis (app data) and a broker database, fed by the sandbox CRM and the simulator."""

    redis_url: str
    broker_number: int
    db: Database
    sandbox: SandboxCRM
    service_env: dict[str, str]
    settings_overrides: dict[str, Any]
    sim: FunnelSimulation = field(default_factory=lambda: simulate(SimulatorConfig(seed=11, accounts=10, days=21)))
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    sent: int = 0  # identified simulator events posted so far
    set_aside: set[int] = field(default_factory=set)  # leads a poison drill expects to be dead letters
    watchdog_restarts: int = 0  # workers that exited to be restarted (their watchdog saw them stop consuming)

    def __post_init__(self) -> None:
        self.broker_url, broker_redis = broker_urls(self.redis_url, self.broker_number)
        self.redis = make_redis_client(self.redis_url)
        self.broker = make_redis_client(broker_redis)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **self.service_env, "REDIS_URL": self.redis_url, "CELERY_BROKER_URL": self.broker_url,
            "HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN, "HUBSPOT_BASE_URL": self.sandbox.base_url,
            "LEADBRIDGE_PORT": str(self.port), "LEADBRIDGE_WEB_WORKERS": "1", "LEADBRIDGE_INBOX_SWEEP_AFTER": "2",
            "LEADBRIDGE_ALERT_CHANNEL_INTERVAL": "0",
            # A worker that stops consuming exits at once to be restarted (the default waits a minute).
            "LEADBRIDGE_WORKER_WATCHDOG_SECONDS": "5",
        }
        self.env.pop("SLACK_WEBHOOK_URL", None)
        from tasks.celery_app import create_celery

        self.celery = create_celery(load_settings({**self.settings_overrides, "redis_url": self.redis_url,
                                                   "broker_url": self.broker_url}, env_file=None))

    # ---- processes
    def start(self, workers: int = 1) -> None:
        """Wipe state, start web and workers, wire sources and the sandbox's webhooks back to us."""
        wipe_pipeline(self.db, self.redis, AuditEntry)
        self.broker.flushdb()
        HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=self.sandbox.base_url).provision_fields()
        with self.db.session() as session:
            self.events_source: SourceView = create_source(session, kind="events", name="drill-web")
            self.hubspot_source: SourceView = create_source(session, kind="hubspot", name="drill-hubspot",
                                                            org_id="62515")
        requests.post(self.sandbox.base_url + "/_sandbox/webhooks", timeout=5, json={
            "kind": "hubspot", "url": self.base + f"/webhooks/hubspot/{self.hubspot_source.slug}",
            "client_secret": self.hubspot_source.secret, "flush_seconds": 0.05,
            "object_types": ["contacts"]}).raise_for_status()
        self.web = start_cli(["web"], self.env)
        for _ in range(workers):
            self.start_worker()
        wait(lambda: http_ok(self.base + "/readyz"), 60, "web ready")
        wait(lambda: self.celery.control.ping(timeout=0.5), 60, "a worker answering")

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start one more `leadbridge worker` (2 processes) on every queue."""
        proc = start_cli(["worker", "--concurrency", "2"], self.env)
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """kill -9 the worker's whole process group (main process and its pool children) at once."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.workers.remove(proc)

    def stop(self) -> None:
        """Stop every process this stack started."""
        for proc in [*self.workers, *([self.web] if self.web else [])]:
            stop(proc, timeout=15)
        self.workers.clear()
        self.web = None

    def restart_stalled_workers(self) -> None:
        """What `leadbridge run` (or an orchestrator's restart policy) does for a worker its watchdog stopped."""
        for proc in list(self.workers):
            if proc.poll() == WATCHDOG_EXIT_CODE:
                self.workers.remove(proc)
                self.start_worker()
                self.watchdog_restarts += 1

    def tick(self) -> None:
        """What beat does: re-enqueue stale inbox rows and kick writeback for dirty leads."""
        for name in ("tasks.maintenance.sweep_inbox", "tasks.maintenance.flush_writebacks"):
            # The broker may be the thing that is down; beat would miss a tick then too.
            with contextlib.suppress(Exception):
                self.celery.send_task(name, retry=False)

    # ---- traffic
    def add_people(self, count: int | None = None) -> int:
        """Create simulated contacts in the sandbox CRM (its webhooks announce them to the bridge)."""
        feed = SandboxCrmFeed(self.sandbox.base_url, crms=("hubspot",))
        people = self.sim.contacts[:count] if count else self.sim.contacts
        for contact in people:
            feed.add_contact(self.sim, contact)
        self.sandbox.webhooks.flush(30)
        return len(people)

    def send_many(self, events: int, batch_size: int = 25, between: Callable[[int], None] | None = None) -> int:
        """Post `events` identified behavioural events, cycling through the simulation with fresh message ids."""
        sender = EventSender(self.base + self.events_source.webhook_path(), self.events_source.secret or "",
                             batch_size=batch_size, attempts=8)
        stream = [e for e in self.sim.events if e.identified]
        accepted = 0
        for i in range(0, events, batch_size):
            chunk = [stream[(i + k) % len(stream)] for k in range(min(batch_size, events - i))]
            body = [{**self.sim.segment_event(e, datetime.now(UTC)), "messageId": uuid.uuid4().hex} for e in chunk]
            accepted += len(chunk) if sender.send(body) < 300 else 0
            if between:
                between(i // batch_size)
        return accepted

    def send_events(self, batches: int, batch_size: int = 25, pause: float = 0.0,
                    between: Callable[[int], None] | None = None) -> int:
        """Post identified behavioural events (wall-clock time) in signed batches; returns how many were accepted."""
        sender = EventSender(self.base + self.events_source.webhook_path(), self.events_source.secret or "",
                             batch_size=batch_size, attempts=8)
        stream = [e for e in self.sim.events if e.identified]
        accepted = 0
        for i in range(batches):
            chunk = stream[self.sent: self.sent + batch_size]
            if not chunk:
                break
            self.sent += len(chunk)
            status = sender.send([self.sim.segment_event(e, datetime.now(UTC)) for e in chunk])
            accepted += len(chunk) if status < 300 else 0
            if between:
                between(i)
            if pause:
                time.sleep(pause)
        return accepted

    # ---- checks
    def crm_scores(self) -> dict[str, str | None]:
        """HubSpot contact id -> the leadbridge_score the sandbox CRM shows."""
        store = self.sandbox.store
        with store.lock:
            return {oid: obj["properties"].get(SCORE) for oid, obj in store.hs_objects["contacts"].items()}

    def lagging(self) -> dict[str, int]:
        """What still stands between now and "exactly once in effect" (empty when converged)."""
        out: dict[str, int] = {}
        # The sandbox echoes our writes back a moment later; until it has delivered them, more rows are coming.
        out["sandbox webhooks not yet delivered"] = int(self.sandbox.webhooks.pending())
        with self.db.session() as session:
            # A dead row is finished (set aside); assert_exactly_once still requires none.
            out["pending rows"] = int(session.scalar(select(func.count()).select_from(InboxEvent).where(
                InboxEvent.status.not_in(["done", "ignored", "dead"]))) or 0)
            out["leads scored before their newest event"] = len(set(unscored_leads(session)) - self.set_aside)
            leads = session.execute(select(LeadCrmId.object_id, Lead.score).join(Lead, Lead.id == LeadCrmId.lead_id)
                                    .where(LeadCrmId.crm == "hubspot", Lead.id.not_in(self.set_aside))).all()
        shown = self.crm_scores()
        out["CRM fields unlike the database"] = sum(
            1 for hubspot_id, score in leads if shown.get(hubspot_id) != (None if score is None else str(score)))
        out["dirty leads"] = len({int(i) for i in self.redis.smembers("lb:dirty:hubspot")} - self.set_aside)
        with self.db.session() as session:
            out["people never enriched from the CRM"] = int(session.scalar(select(func.count()).select_from(
                Lead).where(has_id("hubspot"), Lead.enriched_at.is_(None), Lead.id.not_in(self.set_aside)))
                or 0)
        return {k: v for k, v in out.items() if v}

    def converge(self, timeout: float, what: str) -> float:
        """Tick like beat until nothing lags; return the seconds it took."""
        started = time.monotonic()
        last_tick = 0.0
        lag: dict[str, int] = {}
        quiet_since: float | None = None
        while time.monotonic() - started < timeout:
            if time.monotonic() - last_tick >= TICK:
                self.tick()
                self.restart_stalled_workers()
                last_tick = time.monotonic()
            try:
                lag = self.lagging()
            except Exception as exc:  # noqa: BLE001 - the drill may still hold the database or Redis down
                lag = {type(exc).__name__: 1}
            if not lag:
                # Converged only once it stays so across a sweep: the sweeper may still repair (and re-write)
                # a lead whose writeback bookkeeping the drill's fault cut short.
                quiet_since = quiet_since if quiet_since is not None else time.monotonic()
                if time.monotonic() - quiet_since >= QUIET_SECONDS:
                    return quiet_since - started
            else:
                quiet_since = None
            time.sleep(0.25)
        raise AssertionError(f"{what}: not converged after {timeout}s: {lag}\n{self.explain()}")

    def explain(self) -> str:
        """What the leads that disagree with the CRM went through (for a failed drill's message)."""
        shown = self.crm_scores()
        lines = []
        with self.db.session() as session:
            for hubspot_id, lead in session.execute(select(LeadCrmId.object_id, Lead).join(
                    Lead, Lead.id == LeadCrmId.lead_id).where(LeadCrmId.crm == "hubspot")):
                crm_value = shown.get(hubspot_id)
                if crm_value == (None if lead.score is None else str(lead.score)) and lead.enriched_at is not None:
                    continue
                history = session.execute(select(ScoreHistory.score, ScoreHistory.trigger, ScoreHistory.created_at)
                                          .where(ScoreHistory.lead_id == lead.id).order_by(ScoreHistory.id)).all()
                written = [(w["value"], round(w["t"] - self.started, 2)) for w in writes(self.sandbox.base_url,
                                                                                         self.started)
                           if w["object_id"] == hubspot_id and w["property"] == SCORE]
                lines.append(f"lead {lead.id} hs={hubspot_id} db={lead.score} crm={crm_value} "
                             f"enriched={lead.enriched_at} dirty={self.redis.sismember('lb:dirty:hubspot', lead.id)} "
                             f"written_fp={self.redis.hget('lb:written:hubspot', lead.id)} "
                             f"history={[(h[0], h[1], round(h[2].timestamp() - self.started, 2)) for h in history]} "
                             f"crm_writes={written}")
        return "\n".join(lines[:10])

    def assert_exactly_once(self) -> dict[str, int]:
        """The invariants, after convergence; returns counts for the drill's report."""
        with self.db.session() as session:
            rows = session.execute(select(InboxEvent.status, InboxEvent.attempts)).all()
            dead = session.scalar(select(func.count()).select_from(OutboxItem).where(
                OutboxItem.status.in_(["dead", "failed", "partial"])))
            leads = session.execute(select(LeadCrmId.object_id, Lead.score).join(Lead, Lead.id == LeadCrmId.lead_id)
                                    .where(LeadCrmId.crm == "hubspot")).all()
        assert rows, "no events were acknowledged"
        assert all(status in ("done", "ignored") for status, _ in rows), "an event was not processed"
        repeated = [attempts for _, attempts in rows if attempts != 1]
        assert not repeated, f"{len(repeated)} events were processed more than once"
        assert dead == 0, f"{dead} dead letters or failed writes for transient errors"
        shown = self.crm_scores()
        wrong = {h: (s, shown.get(h)) for h, s in leads if shown.get(h) != (None if s is None else str(s))}
        assert not wrong, f"CRM fields differ from the database: {list(wrong.items())[:5]}"
        assert all(s is not None for _, s in leads), "a lead was never scored"
        duplicates = duplicate_writes(self.sandbox.base_url, self.started)
        assert not duplicates, f"the same values were written twice in a row: {duplicates[:3]}"
        return {"events": len(rows), "leads in CRM": len(leads), "writes": count_writes(self.sandbox.base_url,
                                                                                         self.started)}


def unscored_leads(session: Any) -> list[int]:
    """Leads whose newest processed event is newer than the instant their score was computed for."""
    newest = (select(InboxEvent.crm, InboxEvent.object_type, InboxEvent.object_id,
                     func.max(InboxEvent.processed_at).label("at"))
              .where(InboxEvent.status == "done")
              .group_by(InboxEvent.crm, InboxEvent.object_type, InboxEvent.object_id).subquery())
    person = or_(and_(newest.c.crm == "hubspot", newest.c.object_type == "contact",
                      LeadCrmId.crm == "hubspot", newest.c.object_id == LeadCrmId.object_id),
                 and_(newest.c.crm == "web", newest.c.object_id == Lead.external_id))
    query = select(Lead.id).outerjoin(LeadCrmId, LeadCrmId.lead_id == Lead.id).join(newest, person).where(
        or_(Lead.score_event_at.is_(None), Lead.score_event_at < newest.c.at))
    return list(session.scalars(query))


def writes(base_url: str, since: float) -> list[dict[str, Any]]:
    """Every leadbridge_* property write the sandbox accepted since `since`."""
    response = requests.get(base_url + "/_sandbox/writes", timeout=10, params={"prefix": "leadbridge_",
                                                                                "since": since})
    response.raise_for_status()
    return response.json()["writes"]


def count_writes(base_url: str, since: float) -> int:
    """How many record updates carried a leadbridge score."""
    return sum(1 for w in writes(base_url, since) if w["property"] == SCORE)


def duplicate_writes(base_url: str, since: float) -> list[tuple[str, dict[str, Any]]]:
    """(record, values) where a record got exactly the values it already showed (scored_at aside)."""
    snapshots: dict[tuple[str, int], dict[str, Any]] = {}
    for w in writes(base_url, since):
        if w["property"] != "leadbridge_scored_at":
            snapshots.setdefault((w["object_id"], w["t_ns"]), {})[w["property"]] = w["value"]
    last: dict[str, dict[str, Any]] = {}
    found = []
    for (record, _), values in sorted(snapshots.items(), key=lambda item: item[0][1]):
        if last.get(record) == values:
            found.append((record, values))
        last[record] = values
    return found


def wait(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until truthy; seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):  # not up yet
            if predicate():
                return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def report(name: str, **numbers: Any) -> None:
    """Print one drill's result line (pytest -s or the captured output of a failure shows it)."""
    shown = ", ".join(f"{k}={v:.1f}s" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items())
    line = f"DRILL {name}: {shown}"
    print(line)
    path = os.environ.get("LEADBRIDGE_DRILL_REPORT")
    if path:
        with Path(path).open("a") as fh:
            fh.write(line + "\n")


@pytest.fixture()
def make_stack(db: Database, sandbox: SandboxCRM, service_env: dict[str, str], settings_overrides: dict[str, Any],
               service_urls: ServiceUrls) -> Iterator[Callable[..., Stack]]:
    """Build stacks (on the suite's Redis by default, or on another one); all are stopped at the end."""
    built: list[Stack] = []

    def make(broker_number: int, redis_url: str | None = None) -> Stack:
        stack = Stack(redis_url or service_urls.redis_url, broker_number, db, sandbox, service_env,
                      settings_overrides)
        built.append(stack)
        return stack

    yield make
    for stack in built:
        stack.stop()
