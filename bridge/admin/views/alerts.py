"""Alert rules: thresholds, channel, cooldown, routing filters, own Slack webhook, and a test alert."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin import pages
from bridge.admin.pages import bp, db
from services import alerts as ops
from bridge.admin.forms import form_int
from bridge.extensions import services


def _input() -> ops.RuleInput:
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
    )


@bp.get("/alerts")
def alerts() -> ResponseReturnValue:
    """All rules and the form to add one."""
    with db() as session:
        rules = [ops.rule_view(r) for r in ops.list_rules(session)]
    default_webhook = services().settings.slack_webhook_url is not None
    return render_template("admin/alerts.html", rules=rules, grades=ops.GRADES,
                           default_webhook=default_webhook)


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
    return render_template("admin/alert.html", rule=rule, grades=ops.GRADES,
                           default_webhook=services().settings.slack_webhook_url is not None)


@bp.post("/alerts/<int:rule_id>")
@security.admin_only
def update_alert(rule_id: int) -> ResponseReturnValue:
    """Save a rule's settings."""
    with db(write=True) as session:
        rule = ops.update_rule(session, security.actor(), rule_id, _input())
        name = rule.name
    return pages.done(f"Alert rule {name!r} saved.", "admin.alerts")


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
