"""Deliveries: inbox and outbox with status, attempts and errors, filters, replay, and the dead letter; one inbox
row opened with its payload and history, retried or discarded."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin.forms import PAGE_SIZE, form_ids, page_args, query_int
from bridge.admin.pages import bp, db, done, pretty_json
from bridge.extensions import services
from services import deliveries as ops
from services import inbox as inbox_ops

TABS = ("inbox", "outbox", "dead")


@bp.get("/deliveries")
def deliveries() -> ResponseReturnValue:
    """One tab (inbox, outbox, or the dead letter) with its filters."""
    tab = request.args.get("tab", "inbox")
    tab = tab if tab in TABS else "inbox"
    status = request.args.get("status") or None
    search = request.args.get("q") or None
    page, offset = page_args()
    with db() as session:
        names = ops.source_names(session)
        if tab == "inbox":
            source_id = query_int("source")
            result = ops.list_inbox(session, status=status, source_id=source_id, search=search, limit=PAGE_SIZE,
                                    offset=offset)
            counts = ops.inbox_counts(session)
        else:
            target = request.args.get("target") or None
            result = ops.list_outbox(session, status="dead" if tab == "dead" else status, target=target,
                                     search=search, limit=PAGE_SIZE, offset=offset)
            counts = ops.outbox_counts(session)
    return render_template(
        "admin/deliveries.html", tab=tab, page=result, page_number=page, counts=counts, names=names,
        status=status or "", search=search or "", source=request.args.get("source", ""),
        target=request.args.get("target", ""), inbox_statuses=ops.INBOX_STATUSES, outbox_statuses=ops.OUTBOX_STATUSES,
        page_size=PAGE_SIZE,
    )


@bp.post("/deliveries/replay")
@security.admin_only
def replay() -> ResponseReturnValue:
    """Replay the chosen inbox rows: back to pending and handed to the ingest stage again."""
    chosen = form_ids("delivery ids are numbers")
    with db(write=True) as session:
        ids = ops.replay_inbox(session, security.actor(), chosen)
    if ops.enqueue_ingest(services().celery, ids):
        flash(f"Replayed {len(ids)} inbox event(s); they are queued for ingest.", "info")
    else:
        flash(f"{len(ids)} inbox event(s) set back to pending; the queue is unreachable, so the sweeper will "
              "hand them over when it is back.", "error")
    return redirect(_next_or_deliveries())


@bp.post("/deliveries/replay-outbox")
@security.admin_only
def replay_outbox() -> ResponseReturnValue:
    """Queue the leads of the chosen failed CRM writes for the writeback stage again."""
    ids = form_ids("delivery ids are numbers")
    svc = services()
    with db(write=True) as session:
        actions, writes = ops.split_actions(session, ids)
        replayed = ops.replay_actions(session, security.actor(), actions) if actions else []
        leads = ops.replay_outbox(session, svc.redis, security.actor(), writes) if writes else {}
    if replayed:
        if ops.enqueue_actions(svc.celery, replayed):
            flash(f"{len(replayed)} rule action(s) queued again, with the same idempotency key: one that did land "
                  "is found, not made twice.", "info")
        else:
            flash(f"{len(replayed)} rule action(s) set back to pending; the queue is unreachable: replay them again "
                  "when it is back.", "error")
        if not writes:
            return redirect(_next_or_deliveries())
    count = sum(len(v) for v in leads.values())
    if ops.enqueue_writeback(svc.celery, list(leads)):
        flash(f"{count} lead(s) queued for writing to {', '.join(leads)} again, with their current values.", "info")
    else:
        flash(f"{count} lead(s) marked for writing; the queue is unreachable, so the periodic flush will write them.",
              "error")
    return redirect(_next_or_deliveries())


@bp.get("/deliveries/inbox/<int:inbox_id>")
def inbox_event(inbox_id: int) -> ResponseReturnValue:
    """One received event: payload, error, attempts and what happened to it (personal data masked for viewers)."""
    with db() as session:
        view = inbox_ops.get_inbox_event(session, inbox_id, mask_personal=not security.sees_personal_data())
    return render_template("admin/inbox_event.html", e=view, payload=pretty_json(view.payload))


@bp.post("/deliveries/inbox/<int:inbox_id>/retry")
@security.admin_only
def retry_inbox_event(inbox_id: int) -> ResponseReturnValue:
    """Set one inbox row back to pending (a fresh count of attempts) and hand it to the ingest stage."""
    with db(write=True) as session:
        row_id = inbox_ops.retry_inbox_event(session, security.actor(), inbox_id)
    if ops.enqueue_ingest(services().celery, [row_id]):
        flash(f"Inbox event {row_id} is pending again and queued for ingest.", "info")
    else:
        flash(f"Inbox event {row_id} is pending again; the queue is unreachable, so the sweeper will hand it over "
              "when it is back.", "error")
    return redirect(url_for("admin.inbox_event", inbox_id=row_id))


@bp.post("/deliveries/inbox/<int:inbox_id>/discard")
@security.admin_only
def discard_inbox_event(inbox_id: int) -> ResponseReturnValue:
    """Set one unprocessed inbox row aside for good."""
    with db(write=True) as session:
        row_id = inbox_ops.discard_inbox_event(session, security.actor(), inbox_id)
    return done(f"Inbox event {row_id} discarded: it will not be processed.", "admin.inbox_event", inbox_id=row_id)


def _next_or_deliveries() -> str:
    target = request.form.get("next") or ""
    return target if target.startswith("/admin/") and not target.startswith("//") else url_for("admin.deliveries")
