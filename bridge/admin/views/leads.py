"""Leads: search, and one lead's score, grade, reasons, history chart and the events that moved it."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from bridge.admin import charts
from bridge.admin.forms import PAGE_SIZE, page_args
from bridge.admin.pages import bp, db
from bridge.extensions import services
from core.records import utcnow
from services import leads as ops


@bp.get("/leads")
def leads() -> ResponseReturnValue:
    """Search leads by e-mail or CRM id (the most recently active first without a query)."""
    query = request.args.get("q", "")
    page, offset = page_args()
    with db() as session:
        result = ops.search_leads(session, query, limit=PAGE_SIZE, offset=offset)
    return render_template("admin/leads.html", page=result, query=query, page_number=page, page_size=PAGE_SIZE)


@bp.get("/leads/<int:lead_id>")
def lead(lead_id: int) -> ResponseReturnValue:
    """One lead in full."""
    with db() as session:
        detail = ops.lead_detail(session, lead_id)
    return render_template("admin/lead.html", d=detail, chart=score_steps(detail),
                           trend_hours=services().settings.trend_window_hours)


def event_text(event: object) -> str:
    """An event as the chart's tooltip names it: its type, the page class of a page view, its source."""
    properties = getattr(event, "properties", None) or {}
    page_class = properties.get("page_class") if isinstance(properties, dict) else None
    kind = str(getattr(event, "event_type", ""))
    return f"{kind}{f' ({page_class})' if page_class else ''} from {getattr(event, 'crm', '')}"


def score_steps(detail: ops.LeadDetail) -> Markup | None:
    """The lead's score history as a step chart, each step noting what moved it, with its events under it."""
    if not detail.history and not detail.events:
        return None
    steps = []
    for move in reversed(detail.moves):  # oldest first
        note = "first score" if move.delta is None else f"{move.delta:+d}"
        note += f" ({move.trigger})"
        if move.events:
            shown = ", ".join(event_text(e) for e in move.events[:5])
            note += f" after {shown}" + (f" and {len(move.events) - 5} more" if len(move.events) > 5 else "")
        steps.append(charts.Step(move.at, move.score, note))
    marks = [charts.Mark(e.received_at, f"{event_text(e)}, occurred {e.occurred_at:%Y-%m-%d %H:%M:%S}")
             for e in detail.events]
    return charts.step_chart(steps, marks, until=utcnow(), label="the lead's score over time, with its events")
