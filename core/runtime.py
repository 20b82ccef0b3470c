"""Where the shared services live: resolve Redis and database URLs, start embedded ones when needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from core.redis_server import EmbeddedRedis
from core.settings import Settings


@dataclass(frozen=True)
class ServiceUrls:
    """The concrete URLs every process of one deployment uses."""

    redis_url: str
    broker_url: str
    database_url: str

    def as_env(self) -> dict[str, str]:
        """Environment variables that make a child process use exactly these services."""
        return {"REDIS_URL": self.redis_url, "CELERY_BROKER_URL": self.broker_url, "DATABASE_URL": self.database_url}


def sqlite_url(data_dir: Path) -> str:
    """The default SQLite database inside the data directory."""
    return f"sqlite:///{(Path(data_dir).resolve() / 'leadbridge.db')}"


def embedded_redis(settings: Settings) -> EmbeddedRedis | None:
    """The embedded Redis for these settings, or None when an external REDIS_URL is configured."""
    return None if settings.redis_url else EmbeddedRedis(settings.data_dir)


def service_urls(settings: Settings) -> ServiceUrls:
    """Resolve the Redis, broker and database URLs (embedded defaults where nothing is configured)."""
    embedded = embedded_redis(settings)
    redis_url = settings.redis_url or embedded.url  # type: ignore[union-attr]
    if settings.broker_url:
        broker_url = settings.broker_url
    elif embedded is not None:
        broker_url = embedded.broker_url
    else:
        broker_url = redis_url
    return ServiceUrls(redis_url, broker_url, settings.database_url or sqlite_url(settings.data_dir))


def redis_client(url: str, **kwargs: object) -> redis.Redis:
    """A redis-py client for `url` with short timeouts, so a dead server fails fast instead of hanging."""
    kwargs.setdefault("socket_timeout", 5)
    kwargs.setdefault("socket_connect_timeout", 2)
    kwargs.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]
