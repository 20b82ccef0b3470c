"""The audit log page (admins only)."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.pages import bp, db
from services import clean_text
from bridge.admin.forms import PAGE_SIZE, page_args
from storage.audit import list_entries


@bp.get("/audit")
@security.admin_only
def audit() -> ResponseReturnValue:
    """Configuration changes, newest first, filterable by action prefix and actor."""
    action = clean_text(request.args.get("action"), "the action filter", max_length=100, required=False)
    actor = clean_text(request.args.get("actor"), "the actor filter", max_length=320, required=False)
    page, offset = page_args()
    with db() as session:
        entries, total = list_entries(session, limit=PAGE_SIZE, offset=offset, action=action, actor=actor)
    return render_template("admin/audit.html", entries=entries, total=total, action=action or "", actor=actor or "",
                           page_number=page, page_size=PAGE_SIZE)
