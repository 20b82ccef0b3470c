"""SQLAlchemy 2 models: every table leadbridge keeps. Migrations in storage/migrations mirror this file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.records import utcnow
from storage.types import UtcDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere keeps room for billions of events.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base for all leadbridge tables."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Source(Base):
    """A configured webhook sender (a HubSpot app, a Salesforce org, a behavioural-events pipe)."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # hubspot | salesforce | events
    slug: Mapped[str] = mapped_column(String(40), unique=True)  # unguessable part of the webhook URL
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    signature_version: Mapped[str] = mapped_column(String(4), default="v3")
    org_id: Mapped[str | None] = mapped_column(String(64))  # HubSpot portal id / Salesforce organization id
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class InboxEvent(Base):
    """A raw accepted event, committed before the webhook is acknowledged (the durable copy)."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_status_received", "status", "received_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    crm: Mapped[str] = mapped_column(String(20))
    object_type: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|done|ignored|failed|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Indexed for the measurements (events processed per 30 s): the update that sets it changes the indexed
    # status anyway, so the row is rewritten with its index entries either way (0007).
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)


class DeadLetter(Base):
    """Work a pipeline stage set aside after it failed too often: an inbox row (ingest) or a lead (score, writeback).

    Open dead letters block nothing: the stage moves on without them. An admin retries or discards each one
    (audited); `payload` holds what the stage was given (feature values, CRM field values), and goes with the
    lead or the inbox row when a person is forgotten.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_status_stage", "status", "stage"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(String(20))  # ingest | score | writeback
    crm: Mapped[str | None] = mapped_column(String(20))  # writeback: the CRM that refused
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | retried | discarded
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    resolved_by: Mapped[str | None] = mapped_column(String(320))


class Account(Base):
    """A company: firmographics and its account-level score (its CRM ids are AccountCrmId rows)."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    industry: Mapped[str | None] = mapped_column(String(100))
    employees: Mapped[int | None] = mapped_column(Integer)
    country: Mapped[str | None] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    score: Mapped[int | None] = mapped_column(Integer)
    grade: Mapped[str | None] = mapped_column(String(2))
    reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    scored_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Lead(Base):
    """A person we score, with the current score, grade and reasons (its CRM ids are LeadCrmId rows)."""

    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)  # behavioural userId
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    score: Mapped[int | None] = mapped_column(Integer)
    probability: Mapped[float | None] = mapped_column(Float)
    grade: Mapped[str | None] = mapped_column(String(2))
    reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(64))
    scored_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    score_event_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # newest event scored
    # How the score last moved (core.records.Movement, worked out by scoring.movement; migration 0011).
    previous_score: Mapped[int | None] = mapped_column(Integer)
    score_trend: Mapped[str | None] = mapped_column(String(10))  # improving | steady | declining
    score_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    score_change_reason: Mapped[str | None] = mapped_column(String(255))
    enriched_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class CrmRecordColumns:
    """The columns of a CRM id row: which CRM, which kind of record there, its id, since when."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # ascending: the newest row of a kind wins
    crm: Mapped[str] = mapped_column(String(20))  # hubspot | salesforce
    object_type: Mapped[str] = mapped_column(String(20))  # contact | lead (people), company | account
    object_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LeadCrmId(CrmRecordColumns, Base):
    """One CRM record a lead stands for; a lead may have several (a converted Salesforce Lead and Contact)."""

    __tablename__ = "lead_crm_ids"
    # object_id leads the key: batch lookups (`object_id IN (...)`) then search the index on any planner
    # statistics, where (crm, object_type, ...) made a young PostgreSQL table filter every row of a CRM (0006).
    __table_args__ = (UniqueConstraint("object_id", "object_type", "crm", name="uq_lead_crm_ids_record"),)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    # One-way: adding a row for a lead never loads the lead's other rows.
    lead: Mapped[Lead] = relationship()


class AccountCrmId(CrmRecordColumns, Base):
    """One CRM record an account stands for (a HubSpot company, a Salesforce Account)."""

    __tablename__ = "account_crm_ids"
    __table_args__ = (UniqueConstraint("object_id", "object_type", "crm", name="uq_account_crm_ids_record"),)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    account: Mapped[Account] = relationship()


class ScoreHistory(Base):
    """Every score a lead has had, with the model that produced it."""

    __tablename__ = "score_history"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)
    grade: Mapped[str | None] = mapped_column(String(2))
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model_version: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(20), default="event")  # event|decay|backfill|retrain
    previous_score: Mapped[int | None] = mapped_column(Integer)  # the lead's score before this row (0011)
    feature_time: Mapped[datetime] = mapped_column(UtcDateTime())
    # Indexed for the overview (the grade mix of a day a week ago, latencies of the last hour) (0007).
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class OutboxItem(Base):
    """A write to a CRM or Slack, tracked until it is sent (or dead-lettered with the vendor's message)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_created", "status", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(20))  # hubspot | salesforce | slack
    kind: Mapped[str] = mapped_column(String(20))  # fields | alert | action
    object_type: Mapped[str | None] = mapped_column(String(20))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|sent|skipped|failed|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # kind "action": core.actions.action_key of one action of one crossing, so it is queued once (0010)
    action_key: Mapped[str | None] = mapped_column(String(40), unique=True, index=True)


class Outcome(Base):
    """A label for a lead: won/converted or lost, when it happened and where we learned it."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("lead_id", "source", "occurred_at", name="uq_outcome"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    won: Mapped[bool] = mapped_column(Boolean)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    source: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ModelVersion(Base):
    """The model registry: one row per trained model, its files, features, metrics and status."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="lead")  # lead | fit | account | rules
    status: Mapped[str] = mapped_column(String(12), default="candidate")  # candidate|champion|challenger|retired
    path: Mapped[str] = mapped_column(Text)
    feature_hash: Mapped[str] = mapped_column(String(64))
    features: Mapped[list[Any]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    labelled_outcomes: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime())
    trained_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AlertRule(Base):
    """When to post a Slack alert: threshold crossing, cooldown and routing."""

    __tablename__ = "alert_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    threshold: Mapped[int] = mapped_column(Integer, default=75)
    channel: Mapped[str] = mapped_column(String(100))
    cooldown_minutes: Mapped[int] = mapped_column(Integer, default=1440)
    routing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {"owner": {...}, "segment": {...}}
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # core.actions.Action.to_json() of each thing the rule does on a crossing (migration 0010)
    actions: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON, default=lambda: [{"kind": "slack_channel", "params": {}}])
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class FieldMapping(Base):
    """Which CRM field receives which leadbridge output."""

    __tablename__ = "field_mappings"
    __table_args__ = (UniqueConstraint("crm", "object_type", "output", name="uq_field_mapping"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    crm: Mapped[str] = mapped_column(String(20))
    object_type: Mapped[str] = mapped_column(String(20))
    output: Mapped[str] = mapped_column(String(20))  # score|grade|reasons|tier|model_version|scored_at
    field_name: Mapped[str] = mapped_column(String(100))


class FeatureSchemaVersion(Base):
    """One saved version of the feature schema: the CRM properties mapped to model features."""

    __tablename__ = "feature_schemas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    fields: Mapped[list[Any]] = mapped_column(JSON, default=list)  # core.feature_schema.MappedField.to_json()
    fingerprint: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class User(Base):
    """An admin UI user; passwords are stored hashed."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(10), default="viewer")  # admin | viewer
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ApiToken(Base):
    """An API token for the JSON API, stored hashed and shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuditEntry(Base):
    """Who changed what and when (before/after without secrets or personal data)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class Measurement(Base):
    """The pipeline's figures over one period (30 s, or an hour once downsampled): what the overview charts draw.

    Counts are of what happened in [started_at, started_at + seconds); the backlogs are sampled (an hour row
    keeps the largest of its samples); latencies are counts per bucket of storage.measurements.LATENCY_BOUNDS,
    so periods merge by adding them and percentiles are estimated from the sum.
    """

    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("seconds", "started_at", name="uq_measurements_period"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seconds: Mapped[int] = mapped_column(Integer)  # 30 | 3600
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received: Mapped[int] = mapped_column(Integer, default=0)  # inbox rows received
    processed: Mapped[int] = mapped_column(Integer, default=0)  # inbox rows processed
    written: Mapped[int] = mapped_column(Integer, default=0)  # CRM records whose write the CRM accepted
    backlog: Mapped[int | None] = mapped_column(Integer)  # inbox rows waiting when sampled
    write_backlog: Mapped[int | None] = mapped_column(Integer)  # leads waiting for a CRM write when sampled
    ingest_latency: Mapped[list[Any]] = mapped_column(JSON, default=list)  # webhook received -> processed
    write_latency: Mapped[list[Any]] = mapped_column(JSON, default=list)  # score created -> CRM acknowledged


class PrequentialScore(Base):
    """One matured outcome as a model predicted it before learning from it (live test-then-train).

    `model` is champion (the XGBoost score the lead had at its decision time), online (the River learner
    just before it learned the label) or blend (the two on log-odds). The online learner's cursor: a label
    with an `online` row has been learned.
    """

    __tablename__ = "prequential_scores"
    __table_args__ = (UniqueConstraint("lead_id", "model", name="uq_prequential_scores_lead_model"),
                      Index("ix_prequential_scores_model_labelled", "model", "labelled_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(20))  # champion | online | blend
    model_version: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    won: Mapped[bool] = mapped_column(Boolean)
    decision_time: Mapped[datetime] = mapped_column(UtcDateTime())
    labelled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OnlineSnapshot(Base):
    """A saved state of the online learner (an HMAC-authenticated pickle); scorers load the serving one."""

    __tablename__ = "online_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # arf | hat
    schema_version: Mapped[str | None] = mapped_column(String(64))
    # What a label means when it was learned (the label policy); another one makes the learner start over.
    definition: Mapped[str | None] = mapped_column(String(100))
    learned: Mapped[int] = mapped_column(Integer, default=0)
    positives: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class ModelEvent(Base):
    """What happened to the models, in time: drift checks (PSI per feature), ADWIN changes, retrainings,
    the online model's promotions and rebuilds. The admin's drift chart marks them."""

    __tablename__ = "model_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(30))  # drift_check | adwin_change | retrain | online_serving | online_rebuilt
    model_version: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Pilot(Base):
    """A pilot (issue 17): a share of new leads, or of owners, is held back as the control group.

    At most one pilot is open (running or paused) at a time; an ended pilot stays for its results.
    """

    __tablename__ = "pilots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), index=True)  # running | paused | ended
    unit: Mapped[str] = mapped_column(String(10), default="lead")  # lead | owner (cluster randomisation)
    control_share: Mapped[float] = mapped_column(Float, default=0.10)
    salt: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[int] = mapped_column(Integer, default=75)  # the score that counts as the MQL crossing
    horizon: Mapped[int] = mapped_column(Integer, default=2000)  # closed leads at which the result is called
    effect: Mapped[float] = mapped_column(Float, default=0.05)  # pre-declared effect on the win rate
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(320))
    summary_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # the last weekly Slack summary (0009)


class LeadGroup(Base):
    """A lead's pilot group, stored once when the lead is first scored during a running pilot; never changed.

    Keyed by the leadbridge lead id, so a Salesforce conversion or a HubSpot merge (new CRM ids, same lead)
    keeps it.
    """

    __tablename__ = "lead_groups"
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id"), index=True)
    group: Mapped[str] = mapped_column(String(10))  # pilot | control
    cluster: Mapped[str | None] = mapped_column(String(64))  # the owner, when owners were assigned
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class PilotFacts(Base):
    """What the CRM says happened to a lead in a pilot: its owner's first touch, sales acceptance, opportunity and
    outcome (None: not yet), as tasks/value.py last read them; the pilot's KPIs are computed from these rows."""

    __tablename__ = "pilot_facts"
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    first_touch_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    sql_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    opportunity_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    amount: Mapped[float] = mapped_column(Float, default=0.0)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    won: Mapped[bool | None] = mapped_column(Boolean)
    read_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class BandSet(Base):
    """A version of the score bands (core/bands.py): mode and named bands, top first; the newest is in force (0012)."""

    __tablename__ = "band_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    mode: Mapped[str] = mapped_column(String(10))  # quantile | fixed
    bands: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{"name", "value"}], top band first
    actor: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OutcomeDefinition(Base):
    """A version of what counts as converted in one CRM (core/outcome_rules.py); the newest per CRM is in force.

    Versions count across CRMs, so the highest version names the whole definition a model was trained under (0012).
    """

    __tablename__ = "outcome_definitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    crm: Mapped[str] = mapped_column(String(20), index=True)
    rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
