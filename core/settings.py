"""One typed settings object, read from the environment and `.env`.

Every setting the code reads lives here (and in `.env.example`). A missing or invalid setting raises
`SettingsError` with one line per problem naming the environment variable, which the CLI prints
without a traceback.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LEADBRIDGE_"
# Where SALESFORCE_SANDBOX_URL may point: this machine only.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SettingsError(Exception):
    """Configuration is missing or invalid; the message names each offending variable."""


def _env(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    """Everything leadbridge can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Runtime and storage
    data_dir: Path = Field(Path(".leadbridge"), description="where embedded Redis, SQLite and models live")
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "LEADBRIDGE_DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "LEADBRIDGE_REDIS_URL"))
    broker_url: str | None = Field(None, validation_alias=AliasChoices("CELERY_BROKER_URL", "LEADBRIDGE_BROKER_URL"))
    secret_key: SecretStr | None = None
    encryption_key: SecretStr | None = None  # Fernet key(s), comma-separated: the first encrypts, all decrypt
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="log lines: auto = readable text on a terminal, one JSON object per line otherwise")

    # Web
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = None
    web_workers: int = Field(2, ge=1, le=64)
    web_threads: int = Field(
        4, ge=1, le=256, description="threads per web process that run requests (only once their whole body arrived)")
    web_read_timeout: float = Field(
        10.0, gt=0, le=3600,
        description="seconds a client has to send a whole request (headers and body); slower ones get 408 and are closed")

    # Webhook ingest
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="larger webhook bodies get 413")
    inbox_sweep_after: int = Field(60, ge=1, description="seconds before an unprocessed inbox row is re-enqueued")
    secret_rotation_overlap_hours: float = Field(24.0, ge=0, description="how long a rotated-out secret stays valid")

    # Workers
    worker_concurrency: int = Field(2, ge=1, le=64)
    task_soft_time_limit: int = Field(240, ge=1)
    task_time_limit: int = Field(300, ge=1)
    broker_visibility_timeout: int = Field(3600, ge=60)
    worker_watchdog_seconds: float = Field(
        60.0, ge=0, description="a worker whose queues wait this long with nothing taken exits to be restarted; 0 = off")

    # Scoring and the pipeline
    score_mode: Literal["probability", "percentile"] = "probability"
    min_outcomes: int = Field(500, ge=1, description="labelled outcomes a trained model needs before it replaces the rules")
    min_positives: int = Field(50, ge=1, description="conversions a trained model needs before it replaces the rules")
    write_min_change: int = Field(1, ge=0, le=100, description="score points a lead must move before it is written back")
    trend_window_hours: float = Field(
        24.0, gt=0, description="a lead's score trend compares its score with the one it held this many hours before")
    trend_steady_points: int = Field(
        5, ge=0, le=100, description="a move of at most this many points over the trend window reads as steady")
    enrich_ttl_hours: float = Field(24.0, ge=0, description="how long a lead's CRM enrichment is cached in Redis")
    decay_rescore_hours: float = Field(6.0, gt=0, description="leads not re-scored for this long are re-scored (decay)")
    retention_days: int = Field(120, ge=1, description="raw inbox events older than this are purged")
    measurements_minute_hours: float = Field(
        48.0, ge=1, description="hours the overview's 30-second measurements are kept before they become hour rows")
    measurements_hour_days: float = Field(400.0, ge=1, description="days the hourly measurements are kept")
    hubspot_rate_limit: int = Field(190, ge=1, description="HubSpot requests allowed per window, shared by all workers")
    hubspot_rate_window: float = Field(10.0, gt=0, description="HubSpot rate-limit window in seconds")
    alert_channel_interval: float = Field(1.0, ge=0, description="minimum seconds between Slack messages per channel")
    max_attempts: int = Field(
        5, ge=1, le=100, description="failures before an inbox row or a lead is set aside as a dead letter")
    stall_after_seconds: float = Field(
        120.0, gt=0, description="a pipeline stage with work this old and no progress is reported stalled")

    # Continuous learning
    learning_maturity_days: float = Field(90, gt=0, description="days without conversion before a lead counts as lost")
    learning_decision_gap_hours: float = Field(24, ge=0, description="features are taken this long before the outcome")
    learning_promotion_margin: float = Field(0.005, ge=0, description="how much a challenger must beat the champion by")
    learning_promotion_metric: Literal["roc_auc", "pr_auc", "lift_at_10"] = "roc_auc"
    learning_psi_threshold: float = Field(0.2, gt=0, description="PSI above this raises a drift alert")
    learning_drift_window_days: float = Field(7, gt=0, description="live window compared with the training data")
    learning_retrain_on_drift: bool = True
    learning_retrain_every_hours: float = Field(168, gt=0, description="scheduled retraining interval")
    learning_drift_retrain_cooldown_hours: float = Field(24, ge=0, description="minimum gap between drift retrains")
    learning_online: bool = Field(True, description="learn an online challenger (River) from each matured outcome")
    learning_online_model: Literal["linear", "arf", "hat"] = Field(
        "linear", description="the online challenger: linear (logistic regression by SGD), hat (Hoeffding Adaptive "
                              "Tree) or arf (Adaptive Random Forest, ~100x slower to score)")
    learning_online_blend_weight: float = Field(
        0.5, ge=0, le=1, description="weight of the online model's log-odds when the blend serves")
    learning_online_gate_labels: int = Field(
        500, ge=100, description="newest matured labels on which the gate compares champion and blend")
    learning_adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN's confidence on the live error stream")
    learning_adwin_retrain: bool = Field(True, description="retrain when ADWIN detects a change in the live error")
    learning_replay_weights: bool = Field(
        False, description="weigh batch retraining by Experience-Delayed Replay (short delay, high error weigh more)")

    # Sandbox mode (`leadbridge run` without CRM credentials)
    sandbox_port: int = Field(8765, ge=1, le=65535, description="port of the sandbox CRM started by `run`")
    simulator_rate: float = Field(5.0, ge=0, description="behavioural events per second the simulator sends; 0 = off")
    run_summary_seconds: float = Field(
        10.0, ge=0, description="`leadbridge run` prints a one-line summary this often; 0 = off")

    # CRMs and Slack (all optional: without them leadbridge runs against the sandbox CRM)
    hubspot_access_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HUBSPOT_ACCESS_TOKEN", "LEADBRIDGE_HUBSPOT_ACCESS_TOKEN")
    )
    hubspot_base_url: str = Field(
        "https://api.hubapi.com", validation_alias=AliasChoices("HUBSPOT_BASE_URL", "LEADBRIDGE_HUBSPOT_BASE_URL")
    )
    hubspot_integration_user_id: str | None = Field(
        None, validation_alias=AliasChoices("HUBSPOT_INTEGRATION_USER_ID"),
        description="the HubSpot user id the private app acts as: activity it creates never counts as a rep's touch")
    salesforce_username: str | None = Field(None, validation_alias=AliasChoices("SALESFORCE_USERNAME"))
    salesforce_password: SecretStr | None = Field(None, validation_alias=AliasChoices("SALESFORCE_PASSWORD"))
    salesforce_security_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SALESFORCE_SECURITY_TOKEN")
    )
    salesforce_domain: str = Field("login", validation_alias=AliasChoices("SALESFORCE_DOMAIN"))
    salesforce_instance_url: str | None = Field(None, validation_alias=AliasChoices("SALESFORCE_INSTANCE_URL"))
    salesforce_session_id: SecretStr | None = Field(None, validation_alias=AliasChoices("SALESFORCE_SESSION_ID"))
    salesforce_integration_user_id: str | None = Field(
        None, validation_alias=AliasChoices("SALESFORCE_INTEGRATION_USER_ID"),
        description="the API user's Id (default: read from /services/oauth2/userinfo): its activity is not a touch")
    salesforce_sandbox_url: str | None = Field(
        None, validation_alias=AliasChoices("SALESFORCE_SANDBOX_URL"),
        description="development only: route Salesforce calls to the sandbox CRM at this local http:// URL")
    slack_webhook_url: SecretStr | None = Field(None, validation_alias=AliasChoices("SLACK_WEBHOOK_URL"))
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"),
        description="a Slack app's bot token (xoxb-...) for owner DMs: users:read.email, chat:write (+ im:write, "
                    "im:history for retries)")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=AliasChoices("SLACK_API_URL"),
                               description="the Slack Web API's base URL (the sandbox's in sandbox mode)")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("postgres://") or value.startswith("postgresql://"):
            # SQLAlchemy needs the driver spelled out; psycopg 3 is the one we ship.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("postgresql+") or value.startswith("sqlite")):
            raise ValueError("must be a postgresql:// or sqlite:/// URL")
        return value

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        allowed = ("redis://", "rediss://", "unix://", "redis+socket://", "amqp://", "amqps://", "pyamqp://")
        if not value.startswith(allowed):
            raise ValueError("must start with redis://, rediss:// or unix:// (broker: also amqp://)")
        return value

    @field_validator("hubspot_base_url", "salesforce_instance_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("salesforce_sandbox_url")
    @classmethod
    def _sandbox_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        # Development only: the routing session sends an org's session id over plain http, so never off this machine.
        if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS or parts.path.strip("/"):
            raise ValueError("must be a local plain-http base URL like http://127.0.0.1:8025 (development only)")
        return value.rstrip("/")

    @property
    def sandbox_mode(self) -> bool:
        """True when no real CRM is configured, so the sandbox CRM and simulator feed leadbridge."""
        return self.hubspot_access_token is None and self.salesforce_username is None and (
            self.salesforce_session_id is None
        )

    def base_url(self) -> str:
        """The URL webhooks should be sent to (public URL, or the local listen address)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    def resolved_secret_key(self) -> str:
        """Return the configured secret key, or one generated once and kept in the data directory."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process (a second gunicorn worker) created it first: use theirs
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
        for _ in range(50):  # the creator may not have written it yet
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)
        raise SettingsError(f"{path} is empty: delete it, or set LEADBRIDGE_SECRET_KEY")


def env_name(field: str) -> str:
    """Return the environment variable that sets a settings field (its first alias, or the prefixed name)."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        return first if isinstance(first, str) else ENV_PREFIX + field.upper()
    return ENV_PREFIX + field.upper()


_DEFAULT_ENV_FILE = object()


def load_settings(overrides: Mapping[str, Any] | None = None, *, env_file: Any = _DEFAULT_ENV_FILE) -> Settings:
    """Load settings from the environment, `.env` and `overrides`; raise SettingsError naming bad variables."""
    if env_file is _DEFAULT_ENV_FILE:
        # LEADBRIDGE_ENV_FILE="" turns the .env file off (the test suite does, so a developer's .env never leaks in).
        env_file = os.environ.get("LEADBRIDGE_ENV_FILE", ".env") or None
    try:
        settings = Settings(_env_file=env_file, **dict(overrides or {}))
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            given = error.get("input")
            hidden = any(word in field for word in ("secret", "token", "password", "key", "url"))
            shown = "" if given is None or hidden else f" (got {given!r})"
            lines.append(f"{name}: {error['msg']}{shown}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    if settings.task_soft_time_limit >= settings.task_time_limit:
        raise SettingsError(
            "invalid configuration:\n  LEADBRIDGE_TASK_SOFT_TIME_LIMIT must be below LEADBRIDGE_TASK_TIME_LIMIT"
        )
    if settings.task_time_limit >= settings.broker_visibility_timeout:
        raise SettingsError(
            "invalid configuration:\n  LEADBRIDGE_TASK_TIME_LIMIT must be below LEADBRIDGE_BROKER_VISIBILITY_TIMEOUT"
        )
    if settings.salesforce_username and not settings.salesforce_password:
        raise SettingsError("invalid configuration:\n  SALESFORCE_PASSWORD: required when SALESFORCE_USERNAME is set")
    return settings
