"""Serve the Flask app with gunicorn (a production WSGI server) from inside our own CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from core.settings import Settings


class WebServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with its configuration taken from Settings instead of argv or a config file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": self.settings.web_workers,
            "worker_class": "gthread",
            "threads": self.settings.web_threads,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            "loglevel": self.settings.log_level.lower(),
            "proc_name": "leadbridge-web",
            "child_exit": _child_exit,
            "post_worker_init": _post_worker_init,
        }
        from cli.context import gunicorn_log_options

        options.update(gunicorn_log_options(self.settings))  # its error log through our handler, no access log
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported here so each gunicorn worker builds its own app (own DB pool, own Redis connection).
        from bridge import create_app

        return create_app()


def prepare_multiprocess_metrics(data_dir: Path) -> None:
    """Give gunicorn's workers a fresh shared directory for Prometheus metrics (one per web process)."""
    path = Path(data_dir).resolve() / f"prometheus-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _post_worker_init(_worker: Any) -> None:
    from core.gc_tuning import settle_heap

    settle_heap()  # the app is loaded: keep full collections from stalling requests


def _child_exit(_server: Any, worker: Any) -> None:
    # A dead worker's live gauges must stop counting; its counters stay in the totals.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
