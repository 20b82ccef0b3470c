"""Beat's measurement tasks, sent through the broker to a real worker: the 30-second rows are recorded from the
tables and Redis, and old rows are merged into hour rows and expired with the configured retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select

from core.keys import DIRTY_KEY
from core.records import utcnow
from core.settings import load_settings
from storage import measurements as m
from storage.db import Database
from storage.models import InboxEvent, Measurement
from tasks.celery_app import beat_schedule, create_celery
from tests.processes import wait_for


def test_beat_schedules_the_measurements() -> None:
    schedule = beat_schedule()
    assert schedule["record-measurements"] == {"task": "tasks.maintenance.record_measurements", "schedule": 30.0}
    assert schedule["downsample-measurements"]["task"] == "tasks.maintenance.downsample_measurements"
    # Each @periodic entry names a task the workers register, and none of the periodic work is lost.
    registered = set(create_celery(load_settings()).tasks.keys())
    assert {entry["task"] for entry in schedule.values()} <= registered
    assert {"heartbeat", "sweep-inbox", "flush-writebacks", "rescore-decayed", "purge-old-events", "collect-outcomes",
            "retrain", "check-drift", "score-accounts", "sync-champion", "learn-online", "collect-facts",
            "weekly-summary"} <= set(schedule)


def test_a_worker_records_downsamples_and_expires_measurements(worker_process: Any, db: Database, redis_client: Any,
                                                               settings_overrides: dict[str, Any]) -> None:
    now = utcnow()
    hour = m.slot_start(now - timedelta(hours=50), 3600)  # past the 48 hours of 30-second rows
    with db.session() as session:
        for model in (Measurement, InboxEvent):
            session.execute(delete(model))
        session.add_all(Measurement(seconds=30, started_at=hour + timedelta(seconds=30 * i), received=2, processed=2,
                                    written=1, backlog=i, write_backlog=0, ingest_latency=m.histogram_of([0.1, 0.2]),
                                    write_latency=m.histogram_of([0.5])) for i in range(120))
        session.add(Measurement(seconds=3600, started_at=m.slot_start(now - timedelta(days=401), 3600), received=9,
                                processed=9, written=0, ingest_latency=m.empty_histogram(),
                                write_latency=m.empty_histogram()))
        session.add(InboxEvent(dedupe_key="measured", crm="web", object_type="person", object_id="u1",
                               event_type="page", properties={}, occurred_at=now - timedelta(minutes=2),
                               received_at=now - timedelta(minutes=2), status="pending", attempts=0))
    redis_client.delete(DIRTY_KEY.format(crm="hubspot"))
    redis_client.sadd(DIRTY_KEY.format(crm="hubspot"), 11, 12, 13)
    celery = create_celery(load_settings(settings_overrides, env_file=None))
    try:
        celery.send_task("tasks.maintenance.downsample_measurements")
        celery.send_task("tasks.maintenance.record_measurements")

        def rows() -> tuple[list[Measurement], list[Measurement]]:
            with db.session() as session:
                found = list(session.scalars(select(Measurement).order_by(Measurement.started_at)))
            return [r for r in found if r.seconds == 3600], [r for r in found if r.seconds == 30]

        def done() -> bool:
            hours, slots = rows()
            recent = [r for r in slots if r.started_at > now - timedelta(minutes=31)]
            return [r.started_at for r in hours] == [hour] and len(recent) == len(slots) >= m.CATCH_UP_SLOTS

        wait_for(done, 60, "the hour row alone, and the recent periods recorded")
        hours, slots = rows()
        assert hours[0].started_at == hour and hours[0].received == 240 and hours[0].backlog == 119
        assert hours[0].ingest_latency == m.histogram_of([0.1, 0.2] * 120)
        # The recent half hour was measured from the tables: the pending row counted once, the samples taken now.
        assert all(r.started_at > now - timedelta(minutes=31) for r in slots)
        assert sum(r.received for r in slots) == 1 and sum(r.processed for r in slots) == 0
        assert (slots[-1].backlog, slots[-1].write_backlog) == (1, 3)
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Measurement)
                                  .where(Measurement.started_at < now - timedelta(days=400))) == 0
    finally:
        redis_client.delete(DIRTY_KEY.format(crm="hubspot"))
        with db.session() as session:
            for model in (Measurement, InboxEvent):
                session.execute(delete(model))
