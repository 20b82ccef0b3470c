"""Canonical records shared by every layer: Event, Lead, Account, Score, Movement, Outcome, a lead's CRM activity.

Vendor payload shapes are translated into these at the edges (the webhook parsers in bridge/ and the
connectors in connectors/); everything in between speaks only these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Mapping

Crm = Literal["hubspot", "salesforce", "web"]

# Canonical event types. Vendor subscription types and Segment event names map onto these.
EVENT_TYPES = frozenset(
    {
        "created",  # a CRM record was created
        "property_change",  # a CRM property changed (properties holds {name: new value})
        "deleted",
        "merged",
        "restored",
        "association_change",
        "privacy_deletion",  # GDPR delete: purge everything about the person
        "identify",  # behavioural: traits for a known person
        "page_view",  # properties: url, title, page_class
        "session_start",
        "email_open",
        "email_click",
        "form_fill",
        "download",
        "webinar",
        "demo_request",
        "outcome",  # a won/lost/converted signal from the CRM
    }
)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One normalised thing that happened to a CRM record or a person."""

    source: str  # the webhook source's name (or "backfill", "simulator")
    crm: Crm
    object_type: str  # contact | company | deal | lead | account | opportunity | person
    object_id: str  # the CRM id, or the behavioural user id / anonymous id
    event_type: str  # one of EVENT_TYPES
    occurred_at: datetime
    received_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    dedupe_key: str = ""
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """A company, as far as scoring cares."""

    id: str
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    country: str | None = None
    crm_ids: Mapping[str, str] = field(default_factory=dict)  # {"hubspot": "123", "salesforce": "001..."}


@dataclass(frozen=True, slots=True)
class Lead:
    """A person we score: a HubSpot contact, a Salesforce Lead or Contact."""

    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    country: str | None = None
    account_id: str | None = None
    crm_ids: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Score:
    """The result of scoring one lead at one instant."""

    value: int  # 0-100
    probability: float
    grade: str | None  # A-F from the fit-only model; None when no fit model exists
    reasons: tuple[str, ...]
    model_version: str
    feature_time: datetime


@dataclass(frozen=True, slots=True)
class Movement:
    """How a lead's score last moved: the score before, the trend over a window, when and why it last changed.

    All None until a lead has a second score (nothing to compare with); scoring.movement computes it.
    """

    previous: int | None = None
    trend: str | None = None  # improving | steady | declining
    changed_at: datetime | None = None  # when the score last took a new value
    reason: str | None = None  # what changed, from the reasons: "+12: requested a demo"

    def change(self, current: int | None) -> int | None:
        """Points between `current` and the previous score (None without both)."""
        return None if current is None or self.previous is None else current - self.previous


@dataclass(frozen=True, slots=True)
class Outcome:
    """A label: the lead converted (won) or definitely did not (lost)."""

    lead_id: str
    won: bool
    occurred_at: datetime
    source: str = ""
    detail: str = ""


@dataclass
class StoredEvents:
    """Stored events about leads, in time order, with the lead each belongs to (for labels and training)."""

    events: list[Event]
    lead_ids: dict[str, str]  # event uid (dedupe key) -> lead id (as text, the feature store's entity id)
    first_seen: dict[str, datetime]
    activity: dict[str, list[datetime]]

    def lead_of(self, event: Event) -> str:
        """The lead an event belongs to (for scoring.features' `lead_of`)."""
        return self.lead_ids.get(event.dedupe_key, event.object_id)


# What an owner can do to a lead that counts as a touch (a status change by the owner counts too).
TOUCH_KINDS = frozenset({"call", "email", "meeting", "note", "task", "status_change"})
# Canonical names of the stage fields a CRM's history reports (values stay the CRM's own, e.g. "salesqualifiedlead").
STAGE_FIELDS = frozenset({"lifecycle_stage", "lead_status", "opportunity_stage"})


@dataclass(frozen=True, slots=True)
class Touch:
    """One thing someone did to a lead in the CRM: a call, e-mail, meeting, note, task, or a status change.

    `by_integration`: the CRM user leadbridge works as created it (our own tasks, sequence e-mails), so it is
    never an owner's touch.
    """

    at: datetime
    kind: str  # one of TOUCH_KINDS
    owner_id: str | None
    by_integration: bool = False


@dataclass(frozen=True, slots=True)
class StageChange:
    """A stage field of a lead (or of its opportunity) took a value at `at`; `field` is one of STAGE_FIELDS."""

    at: datetime
    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A deal the lead is on: when it was created, its amount, and how it closed (won None while open)."""

    id: str
    created_at: datetime | None
    amount: float | None
    closed_at: datetime | None
    won: bool | None


@dataclass(frozen=True, slots=True)
class LeadActivity:
    """What the CRM recorded about working one lead: touches, stage history and opportunities, oldest first."""

    crm_id: str
    touches: tuple[Touch, ...] = ()
    stages: tuple[StageChange, ...] = ()
    opportunities: tuple[Opportunity, ...] = ()
    created_at: datetime | None = None  # the lead's creation in the CRM
    owner_id: str | None = None  # its current owner (a pilot's cluster when owners were assigned)
