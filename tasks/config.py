"""Celery configuration: queues, routes, limits, serialisation. One class, built from Settings."""

from __future__ import annotations

from kombu import Exchange, Queue

from core.runtime import ServiceUrls
from core.settings import Settings

QUEUES = ("ingest", "score", "writeback", "alerts", "learning")

# Tasks are routed here by name, never at call sites, so each stage scales on its own queue.
TASK_ROUTES = {
    "tasks.ingest.*": {"queue": "ingest"},
    "tasks.score.*": {"queue": "score"},
    "tasks.writeback.*": {"queue": "writeback"},
    "tasks.alerts.*": {"queue": "alerts"},
    "tasks.actions.*": {"queue": "alerts"},
    "tasks.learning.*": {"queue": "learning"},
    "tasks.online_learning.*": {"queue": "learning"},
    "tasks.value.*": {"queue": "learning"},
    "tasks.maintenance.*": {"queue": "learning"},
    "tasks.system.*": {"queue": "learning"},
}


class CeleryConfig:
    """Celery settings derived from leadbridge Settings."""

    def __init__(self, settings: Settings, urls: ServiceUrls) -> None:
        self.broker_url = urls.broker_url
        self.result_backend = _result_backend(urls)
        # One direct exchange per queue: a message routed to `score` reaches only `score`.
        self.task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES)
        self.task_default_exchange = "learning"
        self.task_default_routing_key = "learning"
        self.task_default_queue = "learning"
        self.task_routes = TASK_ROUTES
        self.task_serializer = "json"
        self.result_serializer = "json"
        self.accept_content = ["json"]
        self.result_expires = 3600
        # Pipeline tasks hand work on through queues and Redis, never through results: storing and publishing
        # each result (and subscribing to it on every send) was pure overhead. Tasks whose result is read
        # (tasks.system.ping, the learning tasks an admin waits on) say ignore_result=False.
        self.task_ignore_result = True
        self.task_acks_late = True
        self.task_reject_on_worker_lost = True  # a task killed mid-run goes back to the queue
        # One reserved task per process: a long task never holds short ones hostage (latency over throughput).
        self.worker_prefetch_multiplier = 1
        self.task_soft_time_limit = settings.task_soft_time_limit
        self.task_time_limit = settings.task_time_limit
        # Limits stay below the visibility timeout, or Redis would redeliver tasks that are still running.
        self.broker_transport_options = {"visibility_timeout": settings.broker_visibility_timeout}
        self.result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
        self.broker_connection_retry_on_startup = True
        self.worker_hijack_root_logger = False
        self.worker_send_task_events = False
        self.beat_schedule_filename = str(settings.data_dir.resolve() / "celerybeat-schedule")
        self.timezone = "UTC"
        self.enable_utc = True


def _result_backend(urls: ServiceUrls) -> str:
    # Results live in Redis even when the broker is RabbitMQ.
    if urls.redis_url.startswith("unix://"):
        return "redis+socket://" + urls.redis_url[len("unix://"):]
    return urls.redis_url
