"""The Celery application: built from Settings, shared by workers, beat and the web process (as producer)."""

from __future__ import annotations

import importlib

from celery import Celery

from core.runtime import ServiceUrls, service_urls
from core.settings import Settings, load_settings
from tasks.config import CeleryConfig
from tasks.schedule import intervals

# Modules whose tasks every worker registers.
TASK_MODULES = ["tasks.system", "tasks.ingest", "tasks.score", "tasks.writeback", "tasks.alerts", "tasks.actions",
                "tasks.maintenance", "tasks.learning", "tasks.online_learning", "tasks.value", "tasks.bands"]


def create_celery(settings: Settings | None = None, urls: ServiceUrls | None = None) -> Celery:
    """Create and configure the Celery app (and make it the default for shared_task)."""
    settings = settings or load_settings()
    urls = urls or service_urls(settings)
    app = Celery("leadbridge", include=TASK_MODULES)
    app.config_from_object(CeleryConfig(settings, urls))
    app.set_default()
    return app


def beat_schedule() -> dict[str, dict[str, object]]:
    """Periodic work run by `leadbridge beat` (Celery's beat_schedule shape), from each @periodic task's interval.

    Imports the task modules (beat imports them anyway); so only beat calls it, never the web process.
    """
    for module in TASK_MODULES:
        importlib.import_module(module)
    return {task.rsplit(".", 1)[1].replace("_", "-"): {"task": task, "schedule": seconds}
            for task, seconds in sorted(intervals().items())}
