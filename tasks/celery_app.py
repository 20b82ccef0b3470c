"""The Celery application: built from Settings, shared by workers, beat and the web process (as producer)."""

from __future__ import annotations

from celery import Celery

from core.runtime import ServiceUrls, service_urls
from core.settings import Settings, load_settings
from tasks.config import CeleryConfig

# Modules whose tasks every worker registers.
TASK_MODULES = ["tasks.system", "tasks.ingest", "tasks.score", "tasks.writeback", "tasks.alerts", "tasks.maintenance",
                "tasks.learning", "tasks.online_learning"]


def create_celery(settings: Settings | None = None, urls: ServiceUrls | None = None) -> Celery:
    """Create and configure the Celery app (and make it the default for shared_task)."""
    settings = settings or load_settings()
    urls = urls or service_urls(settings)
    app = Celery("leadbridge", include=TASK_MODULES)
    app.config_from_object(CeleryConfig(settings, urls))
    app.conf.beat_schedule = beat_schedule()
    app.set_default()
    return app


# Periodic work run by `leadbridge beat`: (entry name, task, every N seconds).
PERIODIC: tuple[tuple[str, str, float], ...] = (
    ("heartbeat", "tasks.system.heartbeat", 30.0),
    ("sweep-inbox", "tasks.maintenance.sweep_inbox", 15.0),
    ("flush-writebacks", "tasks.maintenance.flush_writebacks", 30.0),
    ("rescore-decayed", "tasks.maintenance.rescore_decayed", 600.0),
    ("purge-old-events", "tasks.maintenance.purge_old_events", 3600.0),
    # The overview's charts: a row per 30 s, merged into hour rows (and expired) hourly.
    ("record-measurements", "tasks.maintenance.record_measurements", 30.0),
    ("downsample-measurements", "tasks.maintenance.downsample_measurements", 3600.0),
    # Learning loop: the retrain task decides itself whether it is due (LearningConfig.retrain_every_hours).
    ("collect-outcomes", "tasks.learning.collect_outcomes", 900.0),
    ("retrain-if-due", "tasks.learning.retrain", 3600.0),
    ("check-drift", "tasks.learning.check_drift", 3600.0),
    ("score-accounts", "tasks.learning.score_accounts", 1800.0),
    ("sync-champion", "tasks.learning.sync_champion", 60.0),
    # The online challenger learns each matured outcome (test first), the gate and ADWIN run on its records.
    ("learn-online", "tasks.online_learning.learn_online", 300.0),
)


def beat_schedule() -> dict[str, dict[str, object]]:
    """Periodic work run by `leadbridge beat` (Celery's beat_schedule shape)."""
    return {name: {"task": task, "schedule": every} for name, task, every in PERIODIC}
