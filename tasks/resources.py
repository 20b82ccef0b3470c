"""Per-worker-process resources: database, Redis, feature store, the scorer and the CRM connectors.

Created lazily after fork and reused by every task. The scorer follows the champion model: a task
checks one Redis key (cheap) and swaps the model in when a new champion was promoted, without a
restart and without dropping work. The feature schema (the CRM properties mapped to features) is
followed the same way: one Redis key per batch, the database only when its version moved; a
champion the schema in force cannot feed is refused and the rules serve instead.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from hashlib import sha256
from typing import Any

import redis
from celery.signals import worker_process_init
from sqlalchemy import select

from connectors.base import CrmConnector
from connectors.registry import build_connector
from core.feature_schema import FeatureSchema, serving_problems
from core.gc_tuning import settle_heap
from core.keys import CHAMPION_KEY, FEATURE_SCHEMA_KEY, ONLINE_SERVING_KEY
from core.runtime import ServiceUrls, redis_client, service_urls
from core.settings import Settings, load_settings
from storage.db import Database

log = logging.getLogger(__name__)

MAPPINGS_TTL = 60.0  # seconds between re-reads of the admin's field mappings
SCHEMA_TTL = 60.0  # with no schema version published in Redis (lost data), re-read the schema this often
PILOT_TTL = 30.0  # re-read the running pilot at least this often, even when its Redis version did not move


@dataclass
class Resources:
    """What a task may use besides its arguments."""

    settings: Settings
    urls: ServiceUrls
    db: Database
    redis: redis.Redis
    _scorer: Any = None
    _scorer_version: tuple[str | None, int, str | None] | None = None
    _bundle: Any = None  # the champion's ModelBundle (None: the rules serve)
    _online: tuple[str, Any] | None = None  # (snapshot version, OnlineModel) last loaded
    _schema: FeatureSchema | None = None
    _schema_published: int | None = None  # the published version when `_schema` was read
    _schema_read: float = -1e9
    _store: Any = None
    _pilot: Any = None  # storage.pilots.PilotConfig of the running pilot, None while none runs
    _pilot_version: int | None = None
    _pilot_read: float = -1e9
    _connectors: dict[str, Any] = field(default_factory=dict)
    _mappings_read: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def schema(self) -> FeatureSchema:
        """The feature schema in force: one Redis read; the database only when the published version moved."""
        from storage.feature_schema import active_schema, published_schema_version

        published = published_schema_version(self.redis)
        with self._lock:
            stale = (self._schema is None or published != self._schema_published
                     or (published is None and time.monotonic() - self._schema_read > SCHEMA_TTL))
            if stale:
                with self.db.session() as session:
                    schema = active_schema(session)
                if published is None:
                    # Redis lost the key (or nothing was ever saved): publish what the table says, unless
                    # a save publishes first.
                    self.redis.set(FEATURE_SCHEMA_KEY, schema.version, nx=True)
                if self._schema is None or schema.version != self._schema.version:
                    log.info("schema.loaded", extra={"version": schema.version, "mapped": len(schema.fields)})
                self._schema, self._schema_published, self._schema_read = schema, published, time.monotonic()
            return self._schema  # type: ignore[return-value]

    def pilot(self) -> Any:
        """The running pilot's PilotConfig (None while no pilot runs): one Redis read per batch; the database only
        when its published version moved, or every PILOT_TTL seconds (a lost or unpublished version)."""
        from storage.pilots import published_pilot_version, running_config

        published = published_pilot_version(self.redis)
        with self._lock:
            if published != self._pilot_version or time.monotonic() - self._pilot_read > PILOT_TTL:
                with self.db.session() as session:
                    self._pilot = running_config(session)
                self._pilot_version, self._pilot_read = published, time.monotonic()
            return self._pilot

    @property
    def features(self) -> Any:
        """The online feature store (Redis), reading and writing the mapped features of the schema in force."""
        from scoring.features import RedisFeatureStore

        schema = self.schema()
        with self._lock:
            if self._store is None or self._store.schema is not schema:
                self._store = RedisFeatureStore(self.redis, schema=schema)
            return self._store

    def scorer(self) -> Any:
        """The scorer for the current champion (or the cold-start rules when there is none)."""
        from scoring.scorer import Scorer

        raw, online_raw = self.redis.mget(CHAMPION_KEY, ONLINE_SERVING_KEY)  # one round trip per batch
        wanted = raw.decode() if raw else None
        online = online_raw.decode() if online_raw else None
        schema = self.schema()
        with self._lock:
            if self._scorer is None or (wanted, schema.version, online) != self._scorer_version:
                # The champion is loaded again only when it or the schema moved: the learner publishes a new
                # online snapshot every pass while the blend serves, and that must not reload XGBoost each time.
                if self._scorer is None or self._scorer_version[:2] != (wanted, schema.version):
                    self._bundle = self._load_champion(wanted, schema)
                bundle = self._bundle
                model, weight, snapshot = self._load_online(online, schema) if bundle is not None else (None, 0.0, "")
                self._scorer = Scorer(bundle, min_outcomes=self.settings.min_outcomes,
                                      min_positives=self.settings.min_positives, mode=self.settings.score_mode,
                                      online=model, online_weight=weight, online_version=snapshot)
                self._scorer_version = (wanted, schema.version, online)
                log.info("model.loaded", extra={"version": bundle.version if bundle is not None else "rules",
                                                "schema": schema.version, "online": snapshot or None})
            return self._scorer

    def online_key(self) -> bytes:
        """The HMAC key of online-learner snapshots, derived from the installation's secret key (never stored)."""
        return hmac.new(self.settings.resolved_secret_key().encode(), b"leadbridge online model snapshot v1",
                        sha256).digest()

    def _load_online(self, published: str | None, schema: FeatureSchema) -> tuple[Any, float, str]:
        """The online snapshot the learner published for blending, its weight and version; (None, 0, "") when none
        serves or it cannot be used (unreadable, or learned on another feature schema)."""
        if not published:
            return None, 0.0, ""
        from scoring.online import OnlineModel, OnlineModelError
        from storage.prequential import snapshot_named

        try:
            spec = json.loads(published)
            version, weight = str(spec["version"]), float(spec["weight"])
        except (ValueError, KeyError, TypeError):
            log.error("model.online_key_unreadable")
            return None, 0.0, ""
        if self._online is None or self._online[0] != version:
            with self.db.session() as session:
                row = snapshot_named(session, version)
                state = row.state if row is not None else None
            if state is None:
                return None, 0.0, ""
            try:
                self._online = (version, OnlineModel.from_bytes(state, self.online_key()))
            except OnlineModelError as exc:
                log.error("model.online_unreadable", extra={"version": version, "error": str(exc)[:200]})
                return None, 0.0, ""
        model = self._online[1]
        if model.schema_version != str(schema.version):
            return None, 0.0, ""  # learned on other features: the learner rebuilds it on its next pass
        return model, weight, version

    def _load_champion(self, version: str | None, schema: FeatureSchema) -> Any:
        from scoring.model import ModelBundle
        from storage.models import ModelVersion

        with self.db.session() as session:
            query = select(ModelVersion).where(ModelVersion.status == "champion", ModelVersion.kind == "lead")
            if version:
                query = select(ModelVersion).where(ModelVersion.version == version)
            row = session.scalars(query.order_by(ModelVersion.id.desc())).first()
            path = row.path if row is not None else None
        if path is None:
            return None
        try:
            bundle = ModelBundle.load(path)
        except Exception:  # a broken model file must not stop scoring: the rules serve meanwhile
            log.exception("model.load_failed")
            return None
        problems = serving_problems(schema, bundle.metadata)
        if problems:
            # Promotion refuses such a model; this one lost a field it reads after it was promoted (a forced
            # unmap). Its scores would rest on a feature the store no longer holds: the rules serve instead.
            log.error("model.schema_mismatch", extra={"version": bundle.version, "schema": schema.version,
                                                       "problems": "; ".join(problems)[:500]})
            return None
        return bundle

    def connector(self, crm: str) -> CrmConnector | None:
        """The connector for `crm` ("hubspot" or "salesforce"), or None when that CRM is not configured.

        Its field mappings are re-read from the database at most once a minute, so an admin's change
        reaches every worker without a restart.
        """
        with self._lock:
            if crm not in self._connectors:
                self._connectors[crm] = build_connector(crm, self.settings, redis_client=self.redis)
            connector: CrmConnector | None = self._connectors[crm]
            if connector is not None and time.monotonic() - self._mappings_read.get(crm, -1e9) > MAPPINGS_TTL:
                from storage.field_mappings import mapping_overrides

                with self.db.session() as session:
                    connector.field_names = mapping_overrides(session, crm)
                self._mappings_read[crm] = time.monotonic()
            return connector

    def slack(self) -> Any:
        """The Slack notifier, or None when no webhook URL is configured."""
        if self.settings.slack_webhook_url is None:
            return None
        with self._lock:
            if "slack" not in self._connectors:
                from connectors.slack import SlackNotifier

                self._connectors["slack"] = SlackNotifier(self.settings.slack_webhook_url.get_secret_value(),
                                                          retry_attempts=1)
            return self._connectors["slack"]


def claim_repairs(client: redis.Redis, keys: Sequence[str], wait: timedelta) -> list[bool]:
    """For each key, whether this call claimed it: the sweeper repairs a thing once per while, not every tick.

    The while is five sweep waits (at least a minute), so a repair has time to take effect before it is tried
    again, and a lead the vendor keeps refusing does not cost a CRM call on every sweep.
    """
    ttl = max(60, 5 * int(wait.total_seconds()))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, 1, nx=True, ex=ttl)
    return [bool(fresh) for fresh in pipe.execute()]


_resources: Resources | None = None


def resources() -> Resources:
    """This process's resources, created on first use."""
    global _resources
    if _resources is None:
        settings = load_settings()
        urls = service_urls(settings)
        _resources = Resources(settings, urls, Database(urls.database_url), redis_client(urls.redis_url))
    return _resources


@worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    # Connections inherited from the parent must not be shared with it; start fresh in each child,
    # and load the model now rather than on the first task (that first task would wait seconds).
    global _resources
    _resources = None
    try:
        resources().scorer()
    except Exception:  # a worker must start even when Redis or the database is briefly away
        log.warning("worker.warmup_failed", exc_info=True)
    settle_heap()
