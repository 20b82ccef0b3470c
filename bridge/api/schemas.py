"""Request and response bodies of the JSON API (pydantic): they validate input and generate the OpenAPI schemas."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
)

from core.feature_schema import FieldKind
from services.inbox import HistoryEntry, InboxEventView
from services.leads import ScoreMove
from services.learning import (
    DriftHistory,
    DriftPoint,
    FeaturePsi,
    LiveQuality,
    ModelEventMark,
    ModelQuality,
    QualityPoint,
)
from services.overview import Percentiles, Series, SeriesBin
from services.sources import SourceInfo

# Single-line text: no control characters (PostgreSQL refuses NUL, and none belong in a name).
LINE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=LINE)]
ShortText = Annotated[str, StringConstraints(max_length=100, pattern=LINE)]
SecretText = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=LINE)]
Kind = Literal["hubspot", "salesforce", "events"]
Crm = Literal["hubspot", "salesforce"]
Grade = Literal["A", "B", "C", "D", "E", "F"]
Role = Literal["admin", "viewer"]
ModelKind = Literal["lead", "csv"]
Output = Literal["score", "grade", "reasons", "tier", "model_version", "scored_at"]
ChartRange = Literal["hour", "day", "week"]  # services.overview.RANGES


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


def _out_of(name: str, record: type, doc: str, *, drop: tuple[str, ...] = (),
            describe: Mapping[str, str] | None = None, **extra: Any) -> Any:
    """A response model with the fields of a service dataclass (kept in step), less `drop`, plus `extra`.

    A name in `extra` that the dataclass has keeps its place and takes the new type (e.g. the response model of a
    nested dataclass); `describe` gives fields their OpenAPI descriptions. Every field is required in the response.
    """
    hints = get_type_hints(record)
    kinds: dict[str, Any] = {f.name: hints[f.name] for f in dataclasses.fields(record) if f.name not in drop}
    kinds.update(extra)
    notes = describe or {}
    fields = {key: (kind, Field(..., description=notes.get(key))) for key, kind in kinds.items()}
    return create_model(name, __base__=Out, __doc__=doc, **fields)


class Error(Out):
    """Every error: a machine-readable code and a sentence naming the problem."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None


# --- sources -----------------------------------------------------------------------------------------


class SourceCreate(Body):
    """A new webhook source."""

    kind: Kind
    name: Name
    secret: SecretText | None = Field(None, description="HubSpot: the app's client secret. Omit to generate one.")
    org_id: Annotated[str, StringConstraints(max_length=64, pattern=LINE)] | None = Field(
        None, description="HubSpot portal id or Salesforce organization id (required for Salesforce)")
    signature_version: Literal["v1", "v2", "v3"] = "v3"


class SourceUpdate(Body):
    """Enable or disable a source."""

    enabled: bool


class SecretRotation(Body):
    """Rotate a source's secret."""

    overlap_hours: float | None = Field(None, ge=0, le=720, description="default LEADBRIDGE_SECRET_ROTATION_OVERLAP_HOURS")
    secret: SecretText | None = None


SourceOut = _out_of("SourceOut", SourceInfo, "A source (its secret masked).")


class SourceWithSecret(SourceOut):
    """A source just created or rotated: the only response that carries the secret."""

    secret: str
    setup_steps: list[str]


class SourceDetail(SourceOut):
    """A source with its setup steps and inbox status counts."""

    setup_steps: list[str]
    status_counts: dict[str, int]


class SourceList(Out):
    """All sources."""

    items: list[SourceOut]


# --- deliveries -------------------------------------------------------------------------------------


class InboxEventOut(Out):
    """One received event."""

    id: int
    source_id: int | None
    crm: str
    object_type: str
    object_id: str
    event_type: str
    email: str | None
    properties: dict[str, Any] | None
    status: str
    attempts: int
    error: str | None
    occurred_at: datetime
    received_at: datetime
    processed_at: datetime | None


class InboxPage(Out):
    """A page of inbox rows."""

    items: list[InboxEventOut]
    total: int
    limit: int
    offset: int


InboxHistoryOut = _out_of("InboxHistoryOut", HistoryEntry, "One step in an inbox row's life.",
                          describe={"by": "who did it; null: the pipeline"})
InboxEventDetail = _out_of(
    "InboxEventDetail", InboxEventView,
    "One received event opened: payload (secrets scrubbed; e-mails, names, phones and addresses masked for "
    "viewers), error, attempts and processing history.",
    describe={"lead_id": "the lead the event's record or e-mail belongs to now, if any",
              "can_discard": "only pending, failed and dead rows can be discarded"},
    history=list[InboxHistoryOut])


class InboxRetryResult(Out):
    """An inbox row set back to pending."""

    id: int
    status: Literal["pending"]
    queued: bool = Field(description="false when the broker was unreachable (the sweeper will re-send)")


class InboxDiscardResult(Out):
    """An inbox row set aside for good."""

    id: int
    status: Literal["discarded"]


class OutboxItemOut(Out):
    """One CRM or Slack write (status "dead": the dead letter; `error` holds the vendor's message)."""

    id: int
    target: str
    kind: str
    object_type: str | None
    object_id: str | None
    lead_id: int | None
    status: str
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    action_key: str | None = Field(None, description="a rule action's idempotency key (kind \"action\")")
    action: dict[str, Any] | None = Field(None, validation_alias="payload",
                                          description="a rule action's kind, rule, result and last replay")

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, payload: Any, info: ValidationInfo) -> dict[str, Any] | None:
        # Only a rule action's row says what it did; a field write's payload stays internal.
        if info.data.get("kind") != "action" or not isinstance(payload, dict):
            return None
        return {"kind": (payload.get("action") or {}).get("kind"), "params": (payload.get("action") or {}).get("params"),
                "rule": payload.get("rule"), "rule_id": payload.get("rule_id"), "result": payload.get("result"),
                "waits": payload.get("waits") or 0, "last_wait": payload.get("last_wait"),
                "replayed_at": payload.get("replayed_at")}


class ActionReplayResult(Out):
    """Rule-action rows set back to pending, to run again with their own idempotency keys."""

    replayed: list[int]
    queued: bool


class OutboxPage(Out):
    """A page of outbox rows."""

    items: list[OutboxItemOut]
    total: int
    limit: int
    offset: int


class InboxQuery(Body):
    """Inbox filters."""

    status: Literal["pending", "done", "ignored", "failed", "dead", "discarded"] | None = None
    source_id: int | None = Field(None, ge=1, le=2_147_483_647)
    q: Annotated[str, StringConstraints(max_length=320, pattern=LINE)] | None = Field(
        None, description="CRM object id, or the start of an e-mail")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class OutboxQuery(Body):
    """Outbox filters."""

    status: Literal["pending", "sent", "partial", "skipped", "failed", "dead"] | None = None
    target: Literal["hubspot", "salesforce", "slack"] | None = None
    q: Annotated[str, StringConstraints(max_length=64, pattern=LINE)] | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class Replay(Body):
    """Inbox rows to replay."""

    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=1000)


class ReplayResult(Out):
    """What was replayed."""

    replayed: list[int]
    queued: bool = Field(description="false when the broker was unreachable (the sweeper will re-send)")


class OutboxReplayResult(Out):
    """Which leads were queued for writing again, per CRM."""

    leads: dict[str, list[int]]
    queued: bool = Field(description="false when the broker was unreachable (beat's periodic flush writes them)")


# --- dead letters -----------------------------------------------------------------------------------


class DeadLetterQuery(Body):
    """Dead-letter filters (default: the open ones)."""

    stage: Literal["ingest", "score", "writeback"] | None = None
    status: Literal["retrying", "open", "retried", "discarded"] | None = "open"
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class DeadLetterOut(Out):
    """Work a stage set aside: an inbox row (ingest) or a lead (score, writeback), with its error."""

    id: int
    stage: str
    status: str = Field(description="retrying (still being tried), open (set aside), retried, discarded")
    crm: str | None
    inbox_id: int | None
    lead_id: int | None
    error: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    resolved_by: str | None


class DeadLetterDetail(DeadLetterOut):
    """A dead letter with its payload (the inbox event, or what the stage was given; e-mails masked for viewers)."""

    payload: dict[str, Any]


class DeadLetterPage(Out):
    """A page of dead letters and the counts per status and stage."""

    items: list[DeadLetterOut]
    total: int
    limit: int
    offset: int
    counts: dict[str, dict[str, int]]


class DeadLetterIds(Body):
    """Dead letters to retry or discard."""

    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=1000)


class DeadLetterRetryResult(Out):
    """What went back to the stages."""

    retried: list[int]
    inbox_rows: list[int]
    leads_scored: list[int]
    crms_written: list[str]
    queued: bool = Field(description="false when the broker was unreachable (the sweepers re-send)")


class DeadLetterDiscardResult(Out):
    """What was closed."""

    discarded: list[int]


# --- field mappings ---------------------------------------------------------------------------------


class MappingField(Out):
    """One output and the CRM field it goes to ("" = not written)."""

    output: str
    field_name: str
    default: str


class MappingGroup(Out):
    """One CRM object's mapping."""

    crm: str
    object_type: str
    fields: list[MappingField]


class MappingList(Out):
    """Every CRM object's mapping."""

    items: list[MappingGroup]


class MappingUpdate(Body):
    """New field names for some outputs (null or "" = do not write that output)."""

    fields: dict[Output, Annotated[str, StringConstraints(max_length=100, pattern=LINE)] | None]


class TrialWrite(Body):
    """Write leadbridge's fields to one CRM record."""

    crm: Crm
    record_id: Annotated[str, StringConstraints(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9]+$")]
    object_type: Literal["contacts", "companies"] | None = Field(None, description="HubSpot only")


class TrialWriteOut(Out):
    """What was sent and what the CRM answered."""

    crm: str
    object_type: str
    record_id: str
    fields: dict[str, Any]
    written: bool
    error: str | None
    source: str


# --- alert rules ------------------------------------------------------------------------------------


class RuleActionSpec(Body):
    """One thing a rule does on a crossing: a kind (slack_channel, slack_owner_dm, crm_task, crm_owner, crm_list,
    crm_sequence) and its parameters (see README "Rules and actions")."""

    kind: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    params: dict[str, Any] = Field(default_factory=dict, description="the kind's parameters, e.g. {\"due_days\": 1}")


class AlertRuleCreate(Body):
    """A new alert rule."""

    name: Name
    threshold: int = Field(75, ge=0, le=100)
    channel: Name
    cooldown_minutes: int = Field(1440, ge=0, le=43200)
    enabled: bool = True
    grades: list[Grade] = Field(default_factory=list, max_length=6, description="only leads with these fit grades")
    countries: list[Name] = Field(default_factory=list, max_length=100, description="only leads in these countries")
    industries: list[Name] = Field(default_factory=list, max_length=100, description="only accounts in these industries")
    min_employees: int | None = Field(None, ge=0, le=10_000_000, description="only accounts at least this large")
    webhook_url: Annotated[str, StringConstraints(max_length=500, pattern=LINE)] | None = Field(
        None, description="the rule's own Slack incoming-webhook URL (write-only; stored encrypted)")
    actions: list[RuleActionSpec] | None = Field(
        None, max_length=10, description="what the rule does on a crossing (default: post to its channel)")


class AlertRuleUpdate(Body):
    """Changes to an alert rule (omitted fields stay as they are; webhook_url "" removes the rule's own)."""

    name: Name | None = None
    threshold: int | None = Field(None, ge=0, le=100)
    channel: Name | None = None
    cooldown_minutes: int | None = Field(None, ge=0, le=43200)
    enabled: bool | None = None
    grades: list[Grade] | None = Field(None, max_length=6)
    countries: list[Name] | None = Field(None, max_length=100)
    industries: list[Name] | None = Field(None, max_length=100)
    min_employees: int | None = Field(None, ge=0, le=10_000_000, description="0 removes the filter")
    webhook_url: Annotated[str, StringConstraints(max_length=500, pattern=LINE)] | None = None
    actions: list[RuleActionSpec] | None = Field(None, max_length=10, description="replaces the rule's actions")


class AlertRuleDryRun(Body):
    """A rule's settings as the editor holds them (unsaved); unset ones come from `rule_id` or a new rule's."""

    rule_id: int | None = Field(None, ge=1, le=2**31, description="the saved rule being edited, if any")
    threshold: int | None = Field(None, ge=0, le=100)
    cooldown_minutes: int | None = Field(None, ge=0, le=43200)
    grades: list[Grade] | None = Field(None, max_length=6)
    countries: list[Name] | None = Field(None, max_length=100)
    industries: list[Name] | None = Field(None, max_length=100)
    min_employees: int | None = Field(None, ge=0, le=10_000_000)
    days: int = Field(7, ge=1, le=90, description="how far back to look")


class DryRunOut(Out):
    """How many leads would have fired the rule over the last `days` of score history."""

    leads: int
    crossings: int
    days: int
    since: datetime
    examples: list[int]


class AlertRuleOut(Out):
    """An alert rule (its webhook URL masked)."""

    id: int
    name: str
    threshold: int
    channel: str
    cooldown_minutes: int
    enabled: bool
    grades: list[str]
    countries: list[str]
    industries: list[str]
    min_employees: int | None
    webhook_url_hint: str | None
    actions: list[dict[str, Any]]
    created_at: datetime


class AlertRuleList(Out):
    """All alert rules."""

    items: list[AlertRuleOut]


class TestAlertOut(Out):
    """Whether Slack accepted the test alert, and its message if not."""

    __test__ = False  # not a pytest class
    rule_id: int
    sent: bool
    error: str | None


# --- field discovery --------------------------------------------------------------------------------


class FieldDiscoveryQuery(Body):
    """Which objects to describe and how many of their newest records to sample."""

    object: list[Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]] = Field(
        default_factory=list, max_length=5,
        description="object types (default contacts for HubSpot, Lead and Contact for Salesforce)")
    sample: int = Field(200, ge=0, le=1000, description="newest records read to measure fill rates")


class DiscoveredFieldOut(Out):
    """One CRM property, how often the sample fills it, and the feature kind it could become."""

    crm: str
    object_type: str
    name: str
    label: str
    type: str = Field(description="the CRM's own type (HubSpot type, Salesforce describe type)")
    field_type: str
    custom: bool
    read_only: bool
    calculated: bool
    options: int
    sampled: int
    filled: int
    distinct: int
    fill_rate: float | None
    suggested_kind: Literal["numeric", "categorical", "boolean", "date", "text", "skip"]
    reason: str


class FieldDiscovery(Out):
    """Every property of the objects described."""

    crm: str
    objects: list[str]
    sample: int
    fields: list[DiscoveredFieldOut]


# --- feature schema (mapped fields) -----------------------------------------------------------------

class MappedFieldOut(Out):
    """One CRM property used as a model feature."""

    crm: str
    object_type: str = Field(description='"contacts" (HubSpot); "Lead" or "Contact" (Salesforce)')
    property: str = Field(description="the property's internal (API) name")
    kind: FieldKind
    feature: str = Field(description="the column name the model sees")
    label: str = Field(description="the property's label (CSV exports use it as the column header)")
    fit: bool = Field(description="describes who the lead is: also trains the fit (grade) model")
    top_n: int = Field(description="categorical: the most frequent levels kept, the rest become other")


class FeatureSchemaOut(Out):
    """The feature schema in force: its version and the mapped fields (version 0: nothing mapped)."""

    version: int
    fingerprint: str = Field(description="hash of what a model depends on (sources, kinds, feature names)")
    fields: list[MappedFieldOut]


class FieldChangeOut(FeatureSchemaOut):
    """The schema in force after a change, and what could not be checked or looks doubtful."""

    warnings: list[str]


class FieldMap(Body):
    """How to use a CRM property as a feature."""

    kind: FieldKind = Field(description="numeric; categorical (top-N levels + other); boolean; date (age in days); "
                                        "text (length)")
    feature: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] | None = (
        Field(None, description="the feature name the model sees (default: the property, lower-cased)"))
    label: Annotated[str, StringConstraints(max_length=200, pattern=LINE)] = Field(
        "", description="the property's label (default: the CRM's, when it can be read)")
    fit: bool = False
    top_n: int = Field(20, ge=1, le=500, description="categorical: the most frequent levels kept")
    force: bool = Field(False, description="change it even if the serving lead model needs it as it was (the "
                                           "cold-start rules then serve until a model trained under it is promoted)")


class FieldUnmapQuery(Body):
    """Unmap options."""

    force: bool = Field(False, description="unmap it even if the serving lead model reads it")


class FieldHistoryQuery(Body):
    """How many versions to list."""

    limit: int = Field(100, ge=1, le=1000)


class SchemaVersionOut(FeatureSchemaOut):
    """One saved version: who saved it, when, and what it changed against the version before."""

    actor: str
    created_at: datetime
    changes: list[str]


class FieldHistory(Out):
    """Saved versions, newest first."""

    items: list[SchemaVersionOut]


# --- leads ------------------------------------------------------------------------------------------


class LeadQuery(Body):
    """Lead search."""

    q: Annotated[str, StringConstraints(max_length=320, pattern=LINE)] | None = Field(
        None, description="e-mail (prefix) or HubSpot/Salesforce/web id")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class LeadOut(Out):
    """A lead with its current score."""

    id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    country: str | None
    hubspot_id: str | None
    salesforce_id: str | None
    external_id: str | None
    account_id: int | None
    score: int | None
    probability: float | None
    grade: str | None
    reasons: list[Any] | None
    model_version: str | None
    scored_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # How the score last moved (empty before a second score): see README "What the CRM shows".
    previous_score: int | None = None
    score_trend: str | None = None  # improving | steady | declining
    score_changed_at: datetime | None = None
    score_change_reason: str | None = None


RecordOut = TypeVar("RecordOut", "LeadOut", "AccountOut")


def with_crm_ids(model: type[RecordOut], row: Any, crm_ids: Mapping[str, str]) -> RecordOut:
    """A lead or account row as `model`, its hubspot_id / salesforce_id from {crm: record id}."""
    values = {name: getattr(row, name) for name in model.model_fields if hasattr(row, name)}
    return model.model_validate({**values, "hubspot_id": crm_ids.get("hubspot"),
                                 "salesforce_id": crm_ids.get("salesforce")})


class LeadPage(Out):
    """A page of leads."""

    items: list[LeadOut]
    total: int
    limit: int
    offset: int


class AccountOut(Out):
    """A company."""

    id: int
    name: str | None
    domain: str | None
    industry: str | None
    employees: int | None
    country: str | None
    hubspot_id: str | None
    salesforce_id: str | None
    score: int | None
    grade: str | None


class ScorePointOut(Out):
    """One entry of the score history."""

    score: int
    probability: float
    grade: str | None
    reasons: list[Any]
    model_version: str
    trigger: str
    feature_time: datetime
    created_at: datetime


ScoreMoveOut = _out_of("ScoreMoveOut", ScoreMove,
                      "A score change and the events received since the previous score.",
                      drop=("events",), event_ids=list[int])


class LeadDetailOut(Out):
    """A lead, its account, score history (oldest first), events and the moves between scores (newest first)."""

    lead: LeadOut
    account: AccountOut | None
    history: list[ScorePointOut]
    events: list[InboxEventOut]
    moves: list[ScoreMoveOut]


# --- models -----------------------------------------------------------------------------------------


class Ranked(Out):
    """A feature and a number (importance, or PSI)."""

    feature: str
    value: float


class DriftCheck(Out):
    """The latest drift check of a model."""

    checked_at: str
    alert: bool
    threshold: float | None
    drifted: list[str]
    live_rows: int | None
    note: str | None


class ModelOut(Out):
    """A registered model version."""

    version: str
    kind: str
    status: str
    feature_hash: str
    features: int
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    feature_importance: list[Ranked]
    drift: list[Ranked]
    drift_check: DriftCheck | None
    labelled_outcomes: int
    trained_at: datetime
    promoted_at: datetime | None
    metadata_error: str | None


class ModelList(Out):
    """All registered versions, newest first."""

    items: list[ModelOut]


class Rollback(Body):
    """Which kind of model to roll back."""

    kind: ModelKind = "lead"


class LiveQualityQuery(Body):
    """How many weeks of live quality to return, and how long each point's window is."""

    weeks: int = Field(26, ge=1, le=104, description="weekly points, ending now (fewer when the history is shorter)")
    window_days: int = Field(28, ge=7, le=364, description="each point measures the labels of this many days up to it")


class DriftQuery(Body):
    """How many weeks of drift checks to return, and how many features."""

    weeks: int = Field(26, ge=1, le=104, description="weeks back from now (fewer when the history is shorter)")
    top: int = Field(4, ge=1, le=20, description="the features with the highest latest PSI")


ModelEventMarkOut = _out_of(
    "ModelEventMarkOut", ModelEventMark, "An event the charts mark: a drift alert, an ADWIN change, a retraining "
    "(its challenger promoted or the champion kept), the blend switched on or off.",
    describe={"text": "what happened, as a sentence", "model_version": "the model or online snapshot it concerns"},
    mark=Literal["drift_alert", "adwin_change", "retrain_promoted", "retrain_kept", "blend_on", "blend_off"])
QualityPointOut = _out_of(
    "QualityPointOut", QualityPoint, "One model's quality on the labels that arrived in [start, end).",
    describe={"labels": "labels in the window (the same for every model)", "positives": "of them won",
              "roc_auc": "null with fewer than min_labels labels or a single class",
              "log_loss": "mean negative log-likelihood (lower is better); null as roc_auc",
              "ece": "expected calibration error, 10 bins (lower is better); null as roc_auc"})
ModelQualityOut = _out_of("ModelQualityOut", ModelQuality, "One model's rolling quality, a point per week.",
                          model=Literal["champion", "online", "blend"], points=list[QualityPointOut])
LiveQualityOut = _out_of(
    "LiveQualityOut", LiveQuality,
    "The live prequential comparison: each matured label as the champion, the online learner and their blend "
    "predicted it before learning it, every model on the same labels, in trailing windows a week apart.",
    describe={"week_ends": "the end of each point's window, oldest first (the last is now)",
              "labels": "labels every model scored, in any window returned",
              "unmatched": "labels in the same time that not every model scored (left out)",
              "events": "the events to mark in the weeks returned"},
    models=list[ModelQualityOut], events=list[ModelEventMarkOut])
FeaturePsiOut = _out_of("FeaturePsiOut", FeaturePsi, "A feature's PSI in one check (null: not measurable).")
DriftPointOut = _out_of(
    "DriftPointOut", DriftPoint, "One drift check of the live window against the training data.",
    describe={"score_psi": "PSI of the live score", "features": "PSI of the top features, in the order of `features`",
              "live_rows": "live leads in the check's window"},
    features=list[FeaturePsiOut])
DriftHistoryOut = _out_of(
    "DriftHistoryOut", DriftHistory, "PSI over time from the drift checks, with the alert threshold.",
    describe={"week_ends": "the weekly axis the admin draws, oldest first (the last is now)",
              "threshold": "the newest check's alert threshold",
              "features": "the features with the highest latest PSI, highest first",
              "events": "the events to mark in the weeks returned"},
    checks=list[DriftPointOut], events=list[ModelEventMarkOut])


# --- overview ---------------------------------------------------------------------------------------


class MinuteCount(Out):
    """Events received in one minute (HH:MM, UTC)."""

    minute: str
    count: int


PercentilesOut = _out_of("PercentilesOut", Percentiles, "Latency percentiles in seconds.")


class OverviewOut(Out):
    """The overview page's numbers."""

    generated_at: datetime
    events_per_minute: list[MinuteCount]
    events_last_minute: int
    latency: dict[str, PercentilesOut]
    backlog: dict[str, int]
    queues: dict[str, int | None]
    crm_budget: list[dict[str, Any]]
    checks: dict[str, str]
    failing: list[str]


class SeriesQuery(Body):
    """Which range of the stored measurements to return."""

    range: ChartRange = Field(
        "hour", description="the last hour (30-second bars), day (10-minute bars) or week (hour bars)")


SeriesBinOut = _out_of(
    "SeriesBinOut", SeriesBin, "One bar: the measurements that started in [start, start + bin_seconds).",
    describe={"recorded": "false when nothing was measured in this bar (beat was not running)",
              "written": "CRM records whose write the CRM accepted",
              "backlog": "the most inbox events seen waiting",
              "write_backlog": "the most leads seen waiting for a CRM write",
              "ingest_latency": "webhook received to processed, seconds",
              "write_latency": "score created to the CRM's acknowledgement, seconds"},
    ingest_latency=PercentilesOut, write_latency=PercentilesOut)
SeriesOut = _out_of(
    "SeriesOut", Series, "The overview's time charts: the measurements of a range in bars, and the window's totals.",
    describe={"end": "the end of the newest period measured",
              "measurements": "stored measurements (30-second or hour rows) in the window"},
    range=ChartRange, bins=list[SeriesBinOut], ingest_latency=PercentilesOut, write_latency=PercentilesOut)


class ScoreBand(Out):
    """How many leads have a score in this band."""

    band: str
    leads: int


class GradeDay(Out):
    """The grades of the leads scored in [start, end) (each lead's last score there)."""

    start: datetime
    end: datetime
    leads: int
    grades: dict[str, int] = Field(description='grade -> leads ("none": scored without a grade)')


class ReasonCount(Out):
    """A reason and how many leads show it."""

    reason: str
    leads: int


class LeadMixOut(Out):
    """The overview's lead charts: score distribution, grade mix today vs a week before, top reasons."""

    generated_at: datetime
    scored: int = Field(description="leads with a score")
    score_bands: list[ScoreBand]
    today: GradeDay = Field(description="the last 24 hours (current scores)")
    week_ago: GradeDay = Field(description="the same 24 hours a week earlier (from the score history)")
    reasons: list[ReasonCount]
    reason_leads: int = Field(description="the most recently scored leads whose reasons were counted")


# --- audit, users, tokens ---------------------------------------------------------------------------


class AuditQuery(Body):
    """Audit log filters."""

    action: Annotated[str, StringConstraints(max_length=100, pattern=LINE)] | None = Field(
        None, description="action prefix, e.g. source.")
    actor: Annotated[str, StringConstraints(max_length=320, pattern=LINE)] | None = None
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class AuditEntryOut(Out):
    """Who changed what and when."""

    id: int
    actor: str
    action: str
    target: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


class AuditPage(Out):
    """A page of audit entries, newest first."""

    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


class UserOut(Out):
    """A user (never the password hash)."""

    id: int
    email: str
    role: str
    created_at: datetime
    last_login_at: datetime | None


class UserList(Out):
    """All users."""

    items: list[UserOut]


class UserCreate(Body):
    """A new user."""

    email: Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=LINE)]
    password: Annotated[str, StringConstraints(min_length=12, max_length=1024)]
    role: Role = "viewer"


class UserUpdate(Body):
    """A user's new role."""

    role: Role


class TokenOut(Out):
    """An API token (never its value after creation)."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenList(Out):
    """The caller's tokens."""

    items: list[TokenOut]


class TokenCreate(Body):
    """A new API token for the caller."""

    name: Name


class NewTokenOut(Out):
    """A token just created: `token` is shown this once."""

    id: int
    name: str
    token: str
    created_at: datetime


class Me(Out):
    """Who the token belongs to."""

    id: int
    email: str
    role: str


# --- pilot (issue 17) -------------------------------------------------------------------------------


class PilotStart(Body):
    """A new pilot: a share of new leads (or of owners) is held back as the control group."""

    name: Name
    control_share: float = Field(0.10, gt=0, le=0.5, description="share of leads (or owners) held back as control")
    unit: Literal["lead", "owner"] = Field("lead", description="assign each lead, or whole CRM owners (clusters)")
    threshold: int | None = Field(None, ge=0, le=100, description="the MQL crossing; default: the alert rules'")
    horizon: int = Field(2000, ge=1, le=10_000_000, description="closed leads at which the result is called")
    effect: float = Field(0.05, gt=0, lt=1, description="pre-declared rise in the win rate (0.05 = 5 points)")


class PilotOut(Out):
    """A pilot, its settings and lifecycle, and how many leads each group has."""

    id: int
    name: str
    status: Literal["running", "paused", "ended"]
    unit: str
    control_share: float
    threshold: int
    horizon: int
    effect: float
    started_at: datetime
    paused_at: datetime | None
    ended_at: datetime | None
    created_by: str
    groups: dict[str, int]


class KpiOut(Out):
    """One KPI per group and the difference (pilot minus control) with its 95% interval; null: no data yet.

    Units: share (0-1), minutes, days, currency, currency/day."""

    name: str
    label: str
    unit: str
    difference: float | None
    ci_low: float | None = Field(description="null: no data, or no bound on that side yet")
    ci_high: float | None
    excludes_zero: bool
    method: str = Field(description="how the interval was computed")
    pilot: float | None
    n_pilot: int
    control: float | None
    n_control: int


class WeeklyOut(Out):
    """A KPI of one group over one week, with its 95% interval."""

    week: str
    group: str
    n: int
    value: float | None
    low: float | None
    high: float | None


class ValueExportQuery(Body):
    """The export's format."""

    format: Literal["csv", "json"] = "csv"


class ValueOut(Out):
    """The pilot's value: the plain sentence, the verdict, every KPI, and the weekly series (win_rate,
    response_time) for charts; `pilot` is null before the first pilot."""

    pilot: PilotOut | None
    as_of: datetime | None = None
    leads: dict[str, int] = Field(default_factory=dict)
    sentence: str | None = None
    conclusive: bool = False
    more_closed_leads_needed: int | None = None
    minimum_detectable_effect: float | None = Field(
        None, description="the smallest win-rate rise (0-1) the closed leads so far detect with 80% power")
    kpis: list[KpiOut] = Field(default_factory=list)
    weekly: dict[str, list[WeeklyOut]] = Field(default_factory=dict)


class PilotState(Out):
    """The open pilot, else the newest ended one (null before the first pilot)."""

    pilot: PilotOut | None
    warnings: list[str] = Field(default_factory=list)


# --- bands and the outcome definition (issue 16) ----------------------------------------------------


class BandIn(Body):
    """One band: its name (what the CRM's tier field shows) and its value (quantile: share of leads in %; fixed: the
    lowest score)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=LINE)]
    value: float = Field(ge=0, le=100)


class BandsUpdate(Body):
    """A new band set: a preset, or a mode and the bands top first (validated: ordered, 0-100, unique names)."""

    preset: Literal["quantile", "fixed-95-50"] | None = Field(None, description="use a preset instead of bands")
    mode: Literal["quantile", "fixed"] | None = None
    bands: list[BandIn] | None = Field(None, max_length=6)


class BandOut(Out):
    """A band with its cut-off in score points and its share of the leads scored in the window."""

    name: str
    value: float
    lowest: int = Field(description="the lowest score in the band (score points)")
    share: float = Field(description="share of the window's leads in the band (0-1)")


class BandsOut(Out):
    """The band set in force, resolved over the last `window_days` days."""

    version: int
    mode: str
    bands: list[BandOut]
    leads: int = Field(description="leads scored in the window")
    window_days: int
    presets: dict[str, Any]


class OutcomeRuleIn(Body):
    """What counts as converted in one CRM; any criterion met makes the lead won (unset criteria are off).

    HubSpot: lifecycle_stage, lead_status, deal_won. Salesforce: lead_converted, lead_status, opportunity_won.
    """

    lifecycle_stage: Annotated[str, StringConstraints(max_length=40, pattern=LINE)] | None = None
    lead_status: list[Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=LINE)]] = Field(
        default_factory=list, max_length=50)
    deal_won: bool | None = None
    lead_converted: bool | None = None
    opportunity_won: bool | None = None


class DefinitionOut(Out):
    """One saved outcome definition."""

    version: int
    crm: str
    rule: dict[str, Any]
    description: str
    actor: str
    created_at: datetime


class OutcomesOut(Out):
    """The outcome definition in force per CRM and its history."""

    version: int
    rules: dict[str, dict[str, Any]]
    descriptions: dict[str, str]
    history: list[DefinitionOut]
    criteria: dict[str, list[str]]
    lifecycle_stages: list[str]


class OutcomeChange(Out):
    """A saved outcome definition, how re-labelling changed the outcomes, and whether a retraining was queued."""

    version: int
    crm: str
    relabelled: dict[str, int]
    retrain_queued: bool
    definition: OutcomesOut
