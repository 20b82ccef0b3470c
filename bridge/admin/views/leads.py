"""Leads: search, and one lead's score, grade, reasons, history chart and the events that moved it."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue

from bridge.admin.pages import bp, db
from services import leads as ops
from bridge.admin.forms import PAGE_SIZE, page_args


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
    return render_template("admin/lead.html", d=detail, chart=ops.score_chart(detail.history))
