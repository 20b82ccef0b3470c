"""Per-process resources the views use: database, Redis and the Celery producer, kept on app.extensions."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import Flask, current_app

from bridge.handoff import Handoff
from core.runtime import ServiceUrls, redis_client
from core.settings import Settings
from storage.db import Database
from tasks.celery_app import create_celery
from tasks.names import INGEST_TASK


@dataclass
class Services:
    """What a request may touch besides its own input."""

    settings: Settings
    urls: ServiceUrls
    db: Database
    redis: redis.Redis
    celery: Celery
    handoff: Handoff


def init_app(app: Flask, settings: Settings, urls: ServiceUrls) -> None:
    """Create the process's database engine, Redis client and Celery producer and attach them to `app`."""
    celery = create_celery(settings, urls)
    app.extensions["leadbridge"] = Services(
        settings=settings,
        urls=urls,
        db=Database(urls.database_url),
        redis=redis_client(urls.redis_url),
        celery=celery,
        # ignore_result: no result-channel subscription per publish (two Redis round trips saved).
        handoff=Handoff(lambda ids: celery.send_task(INGEST_TASK, kwargs={"ids": ids}, ignore_result=True)),
    )


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["leadbridge"]
