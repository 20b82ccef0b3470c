"""Shared CLI plumbing: load settings once, print errors without tracebacks, own embedded services."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from core.logging_setup import configure_logging as setup_logging
from core.redis_server import EmbeddedRedis
from core.runtime import ServiceUrls, embedded_redis, service_urls
from core.settings import Settings, SettingsError, load_settings


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` to stderr and exit with `code` (no traceback)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    """Load settings, or print which settings are wrong and exit 2."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


# Set by `leadbridge run` for its children: their servers' startup narration (gunicorn's "Booting worker",
# Celery's "Connected to", "ready.") is left out at INFO, since `run` prints one line per part itself.
RUN_CHILD_ENV = "LEADBRIDGE_RUN_CHILD"


def configure_logging(settings: Settings) -> str:
    """Every process's logging: one masked stderr handler, JSON off a terminal (core.logging_setup); the format."""
    return setup_logging(settings.log_level, settings.log_format, quiet_servers=os.environ.get(RUN_CHILD_ENV) == "1")


def keep_celery_off_logging() -> None:
    """Stop Celery (worker and beat) from configuring logging itself: ours is already in place.

    Celery leaves logging alone when anything listens to its `setup_logging` signal.
    """
    from celery.signals import setup_logging as celery_setup_logging

    celery_setup_logging.connect(_logging_configured, weak=False)


def _logging_configured(**_: Any) -> None:
    return None


def gunicorn_log_options(settings: Settings) -> dict[str, Any]:
    """gunicorn options that send its error log through our handler (and leave its access log off)."""
    from gunicorn import glogging

    class PropagatingLogger(glogging.Logger):  # type: ignore[misc]
        """gunicorn's logger without its own handlers: records propagate to the root handler."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                    log.removeHandler(handler)
                log.propagate = True

    level = settings.log_level.lower()
    if level == "info" and os.environ.get(RUN_CHILD_ENV) == "1":
        level = "warning"  # gunicorn sets its logger's level itself: the same quiet as configure_logging's
    return {"logger_class": PropagatingLogger, "loglevel": level, "accesslog": None}


@contextlib.contextmanager
def embedded_services(settings: Settings) -> Iterator[ServiceUrls]:
    """Start the embedded Redis when no REDIS_URL is set (stopping it on exit if we started it)."""
    redis_server: EmbeddedRedis | None = embedded_redis(settings)
    started = False
    if redis_server is not None:
        try:
            started = redis_server.start()
        except (OSError, RuntimeError) as exc:
            fail(f"could not start the embedded Redis in {settings.data_dir}: {exc}")
    try:
        yield service_urls(settings)
    finally:
        if started and redis_server is not None:
            redis_server.stop()


def sandbox_session(sandbox_url: str | None) -> tuple[Any, str | None]:
    """(a requests session routed to the sandbox CRM, its https instance URL), or (None, None) without a URL."""
    if not sandbox_url:
        return None, None
    from sandbox import sandbox_instance, sandbox_requests_session

    try:
        session = sandbox_requests_session(sandbox_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--sandbox-url") from None
    return session, "https://" + sandbox_instance(sandbox_url)


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats as None, so a JSON report is valid JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
