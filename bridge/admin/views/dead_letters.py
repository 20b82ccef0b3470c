"""Dead letters: work a stage set aside, opened with its payload, error and attempts; retry and discard."""

from __future__ import annotations

import json

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.pages import bp, db, pretty_json
from services import dead_letters as ops
from bridge.admin.forms import PAGE_SIZE, form_ids, page_args
from bridge.extensions import services
from storage.dead_letters import STAGES, STATUSES


@bp.get("/dead-letters")
def dead_letters() -> ResponseReturnValue:
    """Dead letters by stage and status (the open ones first)."""
    stage = request.args.get("stage") or None
    status = request.args.get("status", "open") or None
    stage = stage if stage in STAGES else None
    status = status if status in STATUSES else None
    page, offset = page_args()
    with db() as session:
        result = ops.list_dead_letters(session, stage=stage, status=status, limit=PAGE_SIZE, offset=offset)
        counts = ops.counts(session)
    return render_template("admin/dead_letters.html", page=result, counts=counts, stage=stage or "",
                           status=status or "", stages=STAGES, statuses=STATUSES, page_number=page,
                           page_size=PAGE_SIZE)


@bp.get("/dead-letters/<int:letter_id>")
def dead_letter(letter_id: int) -> ResponseReturnValue:
    """One dead letter: what the stage was given, the error and the attempts (e-mails masked for viewers)."""
    with db() as session:
        view = ops.get_dead_letter(session, letter_id, mask_personal=not security.sees_personal_data())
    return render_template("admin/dead_letter.html", d=view, payload=pretty_json(view.payload))


def _ids() -> list[int]:
    return form_ids("choose at least one dead letter", required=True)


@bp.post("/dead-letters/retry")
@security.admin_only
def retry_dead_letters() -> ResponseReturnValue:
    """Hand the chosen dead letters back to their stages."""
    svc = services()
    with db(write=True) as session:
        plan = ops.retry_dead_letters(session, svc.redis, security.actor(), _ids())
    if ops.enqueue_retry(svc.celery, plan):
        flash(f"{plan.count} piece(s) of work handed back to their stages.", "info")
    else:
        flash("Handed back, but the queue is unreachable: the sweepers will send the work when it is back.", "error")
    return redirect(url_for("admin.dead_letters"))


@bp.post("/dead-letters/discard")
@security.admin_only
def discard_dead_letters() -> ResponseReturnValue:
    """Close the chosen dead letters without doing their work."""
    with db(write=True) as session:
        closed = ops.discard_dead_letters(session, services().redis, security.actor(), _ids())
    flash(f"Discarded {len(closed)} dead letter(s).", "info")
    return redirect(url_for("admin.dead_letters"))
