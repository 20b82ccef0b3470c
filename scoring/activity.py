"""A lead's CRM activity (core.records.LeadActivity) as the facts the pilot KPIs read (scoring.value.LeadFacts).

Framework-free and vendor-free: each connector reads its CRM's engagements, stage history and opportunities
into LeadActivity, and says which stage values mean "sales qualified" (its SQL rules); this module only picks
the times and sums out of them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.records import LeadActivity, Opportunity, StageChange
from scoring.value import LeadFacts

# Canonical stage field -> the values that mean the lead is sales qualified (compared case-insensitively).
SqlRules = Mapping[str, Collection[str]]


def first_touch(activity: LeadActivity, after: datetime | None = None) -> datetime | None:
    """The first touch at or after `after` (default: the lead's creation) that the integration did not make."""
    start = after if after is not None else activity.created_at
    times = [t.at for t in activity.touches if not t.by_integration and (start is None or t.at >= start)]
    return min(times, default=None)


def sql_time(stages: Sequence[StageChange], rules: SqlRules) -> datetime | None:
    """When a stage field first took a value the rules count as sales qualified, else None."""
    wanted = {name: {str(v).strip().lower() for v in values} for name, values in rules.items()}
    times = [s.at for s in stages if str(s.value).strip().lower() in wanted.get(s.field, ())]
    return min(times, default=None)


@dataclass(frozen=True)
class OpportunityFacts:
    """What a lead's opportunities add up to: the first one's creation, the pipeline, and how the lead closed."""

    opportunity_at: datetime | None
    amount: float
    closed_at: datetime | None
    won: bool | None


def opportunity_facts(opportunities: Sequence[Opportunity]) -> OpportunityFacts:
    """The earliest opportunity, the amounts summed, and the outcome: won at the first won close; lost at the last
    close once every opportunity closed lost; open (None) while any is open and none is won."""
    created = [o.created_at for o in opportunities if o.created_at is not None]
    amount = float(sum(o.amount or 0.0 for o in opportunities))
    won = [o.closed_at for o in opportunities if o.won and o.closed_at is not None]
    if won:
        return OpportunityFacts(min(created, default=None), amount, min(won), True)
    closed = [o.closed_at for o in opportunities if o.won is False and o.closed_at is not None]
    if opportunities and len(closed) == len(opportunities):
        return OpportunityFacts(min(created, default=None), amount, max(closed), False)
    return OpportunityFacts(min(created, default=None), amount, None, None)


def lead_facts(activity: LeadActivity, *, lead_id: str, group: str, created_at: datetime, rules: SqlRules,
               crossed_at: datetime | None = None, cluster: str | None = None) -> LeadFacts:
    """The KPI facts of one lead from its CRM activity (cluster: the owner unless given).

    An opportunity means the lead was qualified by then, so SQL is the earlier of the qualifying stage change
    and the first opportunity.
    """
    opp = opportunity_facts(activity.opportunities)
    qualified = [t for t in (sql_time(activity.stages, rules), opp.opportunity_at) if t is not None]
    return LeadFacts(lead_id=lead_id, group=group, created_at=created_at,
                     cluster=cluster if cluster is not None else activity.owner_id, crossed_at=crossed_at,
                     first_touch_at=first_touch(activity, created_at), sql_at=min(qualified, default=None),
                     opportunity_at=opp.opportunity_at, amount=opp.amount, closed_at=opp.closed_at, won=opp.won)


def merge_activity(parts: Sequence[LeadActivity]) -> LeadActivity | None:
    """One lead's activity from several CRM records (a converted Salesforce Lead and its Contact): every touch,
    stage change and opportunity once, oldest first; the earliest creation; the newest record's owner."""
    if not parts:
        return None
    touches = sorted(set(t for p in parts for t in p.touches), key=lambda t: t.at)
    stages = sorted(set(s for p in parts for s in p.stages), key=lambda s: s.at)
    opportunities = list({o.id: o for p in parts for o in p.opportunities}.values())
    created = [p.created_at for p in parts if p.created_at is not None]
    owner = next((p.owner_id for p in reversed(parts) if p.owner_id), None)
    return LeadActivity(crm_id=parts[-1].crm_id, touches=tuple(touches), stages=tuple(stages),
                        opportunities=tuple(opportunities), created_at=min(created, default=None), owner_id=owner)
