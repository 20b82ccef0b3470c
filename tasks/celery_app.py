"""The Celery application: built from Settings, shared by workers, beat and the web process (as producer)."""

from __future__ import annotations

from celery import Celery

from core.runtime import ServiceUrls, service_urls
from core.settings import Settings, load_settings
from tasks.config import CeleryConfig

# Modules whose tasks every worker registers.
TASK_MODULES = ["tasks.system", "tasks.ingest", "tasks.score", "tasks.writeback", "tasks.alerts", "tasks.maintenance",
                "tasks.learning"]


def create_celery(settings: Settings | None = None, urls: ServiceUrls | None = None) -> Celery:
    """Create and configure the Celery app (and make it the default for shared_task)."""
    settings = settings or load_settings()
    urls = urls or service_urls(settings)
    app = Celery("leadbridge", include=TASK_MODULES)
    app.config_from_object(CeleryConfig(settings, urls))
    app.conf.beat_schedule = beat_schedule()
    app.set_default()
    return app


def beat_schedule() -> dict[str, dict[str, object]]:
    """Periodic work run by `leadbridge beat`."""
    return {
        "heartbeat": {"task": "tasks.system.heartbeat", "schedule": 30.0},
        "sweep-inbox": {"task": "tasks.maintenance.sweep_inbox", "schedule": 15.0},
        "flush-writebacks": {"task": "tasks.maintenance.flush_writebacks", "schedule": 30.0},
        "rescore-decayed": {"task": "tasks.maintenance.rescore_decayed", "schedule": 600.0},
        "purge-old-events": {"task": "tasks.maintenance.purge_old_events", "schedule": 3600.0},
        # The overview's charts: a row per 30 s, merged into hour rows (and expired) hourly.
        "record-measurements": {"task": "tasks.maintenance.record_measurements", "schedule": 30.0},
        "downsample-measurements": {"task": "tasks.maintenance.downsample_measurements", "schedule": 3600.0},
        # Learning loop: the retrain task decides itself whether it is due (LearningConfig.retrain_every_hours).
        "collect-outcomes": {"task": "tasks.learning.collect_outcomes", "schedule": 900.0},
        "retrain-if-due": {"task": "tasks.learning.retrain", "schedule": 3600.0},
        "check-drift": {"task": "tasks.learning.check_drift", "schedule": 3600.0},
        "score-accounts": {"task": "tasks.learning.score_accounts", "schedule": 1800.0},
        "sync-champion": {"task": "tasks.learning.sync_champion", "schedule": 60.0},
    }
