"""`leadbridge rules ...`: alert rules and their actions, the same operations as the admin's Alert rules page and
/api/alert-rules (services.alerts), each audited.

`rules list [--json]`, `rules add NAME --channel ... [--action JSON ...]`, `rules set ID [--action JSON ...]` (the
actions given replace the rule's), `rules remove ID`, `rules dry-run [ID] [--threshold ...]` (how many leads the last
7 days of score history would have fired). An action is `{"kind": ..., "params": {...}}` or just a kind
(`--action slack_owner_dm`); a bad one exits 1 naming the action and the parameter.
"""

from __future__ import annotations

import json
from typing import Any

import click


def _action(text: str) -> Any:
    """One --action value: a bare kind, or the action's JSON."""
    text = text.strip()
    if not text.startswith("{"):
        return {"kind": text, "params": {}}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None


def _run(change: Any) -> Any:
    """Run `change(session, actor)` in one write transaction; the service's refusal exits 1 with its message."""
    from cli.context import fail
    from cli.model_commands import actor, services
    from services import OperationError

    with services(need_redis=False) as (_settings, database, _redis):
        try:
            with database.session(write=True) as session:
                return change(session, actor())
        except OperationError as exc:
            fail(exc.message, code=1)


def _describe(view: dict[str, Any]) -> str:
    actions = ", ".join(a["kind"] + (f" {json.dumps(a['params'], sort_keys=True)}" if a.get("params") else "")
                        for a in view["actions"])
    segment = [f"grades {'/'.join(view['grades'])}"] if view["grades"] else []
    segment += [f"countries {', '.join(view['countries'])}"] if view["countries"] else []
    segment += [f"industries {', '.join(view['industries'])}"] if view["industries"] else []
    segment += [f"{view['min_employees']}+ employees"] if view["min_employees"] else []
    return (f"{view['id']}: {view['name']!r} at {view['threshold']} -> {actions}; channel {view['channel']}, cooldown "
            f"{view['cooldown_minutes']} min, {'; '.join(segment) or 'every lead'}"
            f"{'' if view['enabled'] else ' (off)'}")


@click.group("rules")
def rules() -> None:
    """Alert rules: what happens when a lead's score crosses a threshold."""


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
def list_command(as_json: bool) -> None:
    """Every rule with its actions."""
    from services import alerts as ops

    views = _run(lambda session, _actor: [ops.rule_view(r) for r in ops.list_rules(session)])
    if as_json:
        click.echo(json.dumps(views, default=str, indent=2))
        return
    for view in views:
        click.echo(_describe(view))
    if not views:
        click.echo("no rules yet: leadbridge rules add NAME --channel '#sales'")


def _rule_options(function: Any) -> Any:
    for option in reversed([
        click.option("--threshold", type=click.IntRange(0, 100), help="The score that fires the rule."),
        click.option("--channel", help="The Slack channel (what the channel post and the DM fallback name)."),
        click.option("--cooldown", "cooldown_minutes", type=click.IntRange(0, 43200),
                     help="Minutes before the same lead can fire the rule again."),
        click.option("--grade", "grades", multiple=True, help="Only leads with this fit grade (repeat)."),
        click.option("--country", "countries", multiple=True, help="Only leads in this country (repeat)."),
        click.option("--industry", "industries", multiple=True, help="Only accounts in this industry (repeat)."),
        click.option("--min-employees", type=click.IntRange(0, 10_000_000), help="Only accounts this large."),
        click.option("--action", "actions", multiple=True, callback=lambda _c, _p, v: [_action(a) for a in v],
                     help='An action: a kind (slack_owner_dm) or JSON ({"kind": "crm_task", "params": '
                          '{"due_days": 1}}); repeat for more; replaces the rule\'s actions.'),
    ]):
        function = option(function)
    return function


def _input(name: str | None, enabled: bool | None, **options: Any) -> Any:
    from services.alerts import RuleInput

    values = {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in options.items()}
    values = {k: v for k, v in values.items() if v not in (None, [])}
    return RuleInput(name=name, enabled=enabled, **values)


@rules.command("add")
@click.argument("name")
@_rule_options
def add_command(name: str, **options: Any) -> None:
    """Create a rule (without --action it posts to its channel)."""
    from services import alerts as ops

    options["channel"] = options.get("channel") or "#hot-leads"  # the admin's new-rule form suggests the same
    view = _run(lambda session, actor: ops.rule_view(ops.create_rule(session, actor, _input(name, None, **options))))
    click.echo(f"created {_describe(view)}")


@rules.command("set")
@click.argument("rule_id", type=int)
@click.option("--name", help="A new name.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the rule on or off.")
@_rule_options
def set_command(rule_id: int, name: str | None, enabled: bool | None, **options: Any) -> None:
    """Change a rule: what is given changes, the rest stays."""
    from services import alerts as ops

    view = _run(lambda session, actor: ops.rule_view(ops.update_rule(session, actor, rule_id,
                                                                     _input(name, enabled, **options))))
    click.echo(f"saved {_describe(view)}")


@rules.command("remove")
@click.argument("rule_id", type=int)
def remove_command(rule_id: int) -> None:
    """Delete a rule."""
    from services import alerts as ops

    _run(lambda session, actor: ops.delete_rule(session, actor, rule_id))
    click.echo(f"removed rule {rule_id}")


@rules.command("dry-run")
@click.argument("rule_id", type=int, required=False)
@click.option("--threshold", type=click.IntRange(0, 100), help="Try this threshold instead of the rule's.")
@click.option("--cooldown", "cooldown_minutes", type=click.IntRange(0, 43200), help="Try this cooldown (minutes).")
@click.option("--grade", "grades", multiple=True, help="Only leads with this fit grade (repeat).")
@click.option("--min-employees", type=click.IntRange(0, 10_000_000), help="Only accounts this large.")
@click.option("--days", type=click.IntRange(1, 90), default=7, show_default=True, help="How far back to look.")
def dry_run_command(rule_id: int | None, days: int, **options: Any) -> None:
    """How many leads would have fired a rule (or these settings) over the last days of score history."""
    from services import alerts as ops

    result = _run(lambda session, _actor: ops.dry_run(session, _input(None, None, **options), rule_id, days=days))
    click.echo(f"{result.leads} lead(s) would have fired it in the last {result.days} days "
               f"({result.crossings} time(s), counting the cooldown)")
