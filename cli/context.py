"""Shared CLI plumbing: load settings once, print errors without tracebacks, own embedded services."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import NoReturn

import click

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


def configure_logging(settings: Settings) -> None:
    """Plain, single-line log records on stderr at the configured level."""
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    # Alembic narrates every plugin it loads at INFO; only its warnings matter to an operator.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


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
