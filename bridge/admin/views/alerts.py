"""Alert rules: thresholds, channel, cooldown, routing filters, own Slack webhook, and a test alert."""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin import pages
from bridge.admin.forms import form_int
from bridge.admin.pages import bp, db
from bridge.extensions import services
from connectors.registry import PROVIDERS
from core.actions import ACTION_KINDS
from services import OperationError
from services import alerts as ops

# The editor's choices, in the order a rule usually runs them, and what each parameter's field is called.
ACTION_LABELS = {"slack_channel": "Post to the rule's Slack channel", "slack_owner_dm": "Slack DM to the lead's owner",
                 "crm_task": "CRM task for the owner", "crm_owner": "Set the CRM owner (round robin or queue)",
                 "crm_list": "Add to a list / campaign", "crm_sequence": "Enrol in a HubSpot sequence"}
PARAM_LABELS = {"crm": "In CRM", "subject": "Task subject", "due_days": "Due in (days)", "priority": "Priority",
                "owners": "Owner ids, comma-separated (round robin)", "queue": "Salesforce queue id",
                "list_id": "List / campaign id", "sequence_id": "Sequence id", "user_id": "Sending user id",
                "sender_email": "Sender e-mail (connected inbox)"}


def _actions() -> list[dict[str, Any]] | None:
    """The editor's action rows (None when the form has none: an older form keeps the rule's actions)."""
    kinds = request.form.getlist("action_kind")
    if not kinds:
        return None
    columns = {name: request.form.getlist(f"action_{name}") for name in PARAM_LABELS}
    out = []
    for row, kind in enumerate(kinds):
        if not kind:
            continue  # an empty row: nothing to add, or an action removed
        params: dict[str, Any] = {}
        for name in ACTION_KINDS.get(kind, ("", (), ()))[1]:
            values = columns[name]
            value = values[row].strip() if row < len(values) else ""
            if not value:
                continue
            if name == "due_days":
                if not value.isdigit():
                    raise OperationError(f"action {len(out) + 1} ({kind}): due_days must be a whole number of days")
                params[name] = int(value)
            elif name == "owners":
                params[name] = [o.strip() for o in value.split(",") if o.strip()]
            else:
                params[name] = value
        out.append({"kind": kind, "params": params})
    if not out:
        raise OperationError("a rule needs at least one action")
    return out


def _input(with_actions: bool = True) -> ops.RuleInput:
    countries = [c for c in (request.form.get("countries") or "").split(",") if c.strip()]
    industries = [i for i in (request.form.get("industries") or "").split(",") if i.strip()]
    return ops.RuleInput(
        name=request.form.get("name"),
        threshold=form_int("threshold", label="the threshold", low=0, high=100),
        channel=request.form.get("channel"),
        cooldown_minutes=form_int("cooldown_minutes", label="the cooldown", low=0, high=ops.MAX_COOLDOWN),
        enabled=request.form.get("enabled") == "on",
        grades=request.form.getlist("grades"),
        countries=countries,
        industries=industries,
        min_employees=form_int("min_employees", label="the minimum company size", low=0, high=10_000_000, default=0),
        # An empty field keeps the stored webhook; the "remove" box clears it.
        webhook_url="" if request.form.get("remove_webhook") == "on" else (request.form.get("webhook_url") or None),
        actions=_actions() if with_actions else None,
    )


def _editor() -> dict[str, Any]:
    """What the rule form needs beside the rule: grades, action kinds, which parameter each kind takes."""
    return {"grades": ops.GRADES, "action_labels": ACTION_LABELS, "param_labels": PARAM_LABELS,
            "param_kinds": {name: [k for k, (_, params, _) in ACTION_KINDS.items() if name in params]
                            for name in PARAM_LABELS},
            "crm_choices": {name: p.label for name, p in PROVIDERS.items()},
            "default_webhook": services().settings.slack_webhook_url is not None}


@bp.get("/alerts")
def alerts() -> ResponseReturnValue:
    """All rules and the form to add one."""
    with db() as session:
        rules = [ops.rule_view(r) for r in ops.list_rules(session)]
    return render_template("admin/alerts.html", rules=rules, **_editor())


@bp.post("/alerts")
@security.admin_only
def create_alert() -> ResponseReturnValue:
    """Create a rule."""
    with db(write=True) as session:
        rule = ops.create_rule(session, security.actor(), _input())
        name = rule.name
    return pages.done(f"Alert rule {name!r} created.", "admin.alerts")


@bp.get("/alerts/<int:rule_id>")
def alert(rule_id: int) -> ResponseReturnValue:
    """One rule's edit form."""
    with db() as session:
        rule = ops.rule_view(ops.get_rule(session, rule_id))
    return render_template("admin/alert.html", rule=rule, **_editor())


@bp.post("/alerts/<int:rule_id>")
@security.admin_only
def update_alert(rule_id: int) -> ResponseReturnValue:
    """Save a rule's settings."""
    with db(write=True) as session:
        rule = ops.update_rule(session, security.actor(), rule_id, _input())
        name = rule.name
    return pages.done(f"Alert rule {name!r} saved.", "admin.alerts")


@bp.post("/alerts/dry-run")
@security.admin_only  # the editor it serves is an admin's
def dry_run_alert() -> ResponseReturnValue:
    """How many leads the editor's (unsaved) settings would have fired over the last 7 days, as JSON."""
    try:
        rule_id = form_int("rule_id", label="the rule", low=1, high=2**31)
        data = _input(with_actions=False)
        with db() as session:
            result = ops.dry_run(session, data, rule_id)
    except OperationError as exc:
        return jsonify({"error": exc.code, "message": exc.message}), exc.status
    return jsonify({"leads": result.leads, "crossings": result.crossings, "days": result.days,
                    "since": result.since.isoformat(), "examples": result.examples})


@bp.post("/alerts/<int:rule_id>/delete")
@security.admin_only
def delete_alert(rule_id: int) -> ResponseReturnValue:
    """Remove a rule."""
    with db(write=True) as session:
        ops.delete_rule(session, security.actor(), rule_id)
    return pages.done("Alert rule removed.", "admin.alerts")


@bp.post("/alerts/<int:rule_id>/test")
@security.admin_only
def test_alert(rule_id: int) -> ResponseReturnValue:
    """Post a test message to the rule's Slack webhook and say what Slack answered."""
    with db(write=True) as session:
        result = ops.send_test_alert(session, services().settings, security.actor(), rule_id)
    if result.sent:
        flash("Test alert sent: Slack accepted it.", "info")
    else:
        flash(f"Slack refused the test alert: {result.error}", "error")
    return redirect(url_for("admin.alerts"))
