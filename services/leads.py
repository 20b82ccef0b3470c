"""Leads: search by e-mail or CRM id, the current score, the score history and the events that moved it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core.records import Movement
from services import clean_text, get_row
from services.deliveries import Page, paginate
from storage.leads import account_crm_id_map, crm_id_map, crm_ids_of
from storage.models import Account, InboxEvent, Lead, LeadCrmId, ScoreHistory
from storage.scores import movement_of

MAX_HISTORY = 500
MAX_EVENTS = 500


@dataclass(frozen=True)
class LeadPage(Page):
    """A page of leads, with each lead's {crm: record id} (the record each CRM writes to)."""

    crm_ids: dict[int, dict[str, str]] = field(default_factory=dict)


def search_leads(session: Session, query: str | None = None, *, limit: int = 50, offset: int = 0) -> LeadPage:
    """Leads matching an e-mail (prefix) or a HubSpot/Salesforce/behavioural id; newest activity first."""
    text = clean_text(query, "search", max_length=320, required=False)
    select_leads = select(Lead)
    if text:
        lowered = text.lower()
        select_leads = select_leads.where(or_(
            Lead.email.startswith(lowered, autoescape=True), Lead.external_id == text[:128],
            Lead.id.in_(select(LeadCrmId.lead_id).where(LeadCrmId.crm.in_(("hubspot", "salesforce")),
                                                         LeadCrmId.object_id == text[:64])),
        ))
    page = paginate(session, select_leads, [Lead.updated_at.desc(), Lead.id.desc()], limit, offset)
    crm_ids = crm_ids_of(session, [lead.id for lead in page.rows])
    return LeadPage(page.rows, page.total, page.limit, page.offset,
                    {lead_id: crm_id_map(ids) for lead_id, ids in crm_ids.items()})


@dataclass(frozen=True)
class ScoreMove:
    """One score in the history, how much it moved, and the events received since the previous one."""

    at: datetime
    score: int
    delta: int | None
    grade: str | None
    trigger: str
    model_version: str
    reasons: list[Any]
    events: list[InboxEvent] = field(default_factory=list)


@dataclass(frozen=True)
class LeadDetail:
    """Everything the lead page shows."""

    lead: Lead
    account: Account | None
    history: list[ScoreHistory]
    events: list[InboxEvent]
    moves: list[ScoreMove]
    crm_ids: dict[str, str] = field(default_factory=dict)  # {crm: record id}: the record each CRM writes to
    account_crm_ids: dict[str, str] = field(default_factory=dict)
    movement: Movement = field(default_factory=Movement)  # how the score last moved, as the CRM shows it

    @property
    def change(self) -> int | None:
        """The current score minus the previous one (None before a second score)."""
        return self.movement.change(self.lead.score)


def _event_filter(lead: Lead, crm_ids: Sequence[LeadCrmId]) -> Any:
    clauses = [and_(InboxEvent.crm == row.crm, InboxEvent.object_id == row.object_id) for row in crm_ids]
    if lead.external_id:
        clauses.append(and_(InboxEvent.crm == "web", InboxEvent.object_id == lead.external_id))
    if lead.email:
        clauses.append(InboxEvent.email == lead.email)
    return or_(*clauses) if clauses else None


def lead_detail(session: Session, lead_id: int) -> LeadDetail:
    """The lead, its account, score history (oldest first), its events and the moves between scores."""
    lead = get_row(session, Lead, lead_id, "lead")
    account = session.get(Account, lead.account_id) if lead.account_id else None
    history = list(reversed(list(session.scalars(
        select(ScoreHistory).where(ScoreHistory.lead_id == lead.id)
        .order_by(ScoreHistory.created_at.desc(), ScoreHistory.id.desc()).limit(MAX_HISTORY)))))
    rows = crm_ids_of(session, [lead.id]).get(lead.id, [])
    condition = _event_filter(lead, rows)
    events: list[InboxEvent] = []
    if condition is not None:
        events = list(reversed(list(session.scalars(
            select(InboxEvent).where(condition).order_by(InboxEvent.occurred_at.desc(), InboxEvent.id.desc())
            .limit(MAX_EVENTS)))))
    return LeadDetail(lead, account, history, events, score_moves(history, events), crm_id_map(rows),
                      account_crm_id_map(session, account.id) if account else {}, movement_of(lead))


def score_moves(history: list[ScoreHistory], events: list[InboxEvent]) -> list[ScoreMove]:
    """Pair each score with the events that arrived after the previous score's feature time, up to its own."""
    moves = []
    previous: ScoreHistory | None = None
    for point in history:
        low = previous.feature_time if previous is not None else None
        window = [e for e in events if (low is None or e.occurred_at > low) and e.occurred_at <= point.feature_time]
        moves.append(ScoreMove(
            at=point.created_at, score=point.score, delta=(point.score - previous.score) if previous else None,
            grade=point.grade, trigger=point.trigger, model_version=point.model_version,
            reasons=list(point.reasons or []), events=window,
        ))
        previous = point
    return list(reversed(moves))  # newest first on the page
