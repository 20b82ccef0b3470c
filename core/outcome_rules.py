"""What counts as converted, per CRM, as plain data (the outcome definition; versioned in outcome_definitions).

A definition is a set of criteria; any one of them met makes the lead won (one win is enough, scoring/labels.py):
- HubSpot: `lifecycle_stage` (the contact's lifecycle stage reaching this stage or a later one), `lead_status`
  (the contact's hs_lead_status taking one of these values), `deal_won` (an associated deal closed won; a
  closed-lost deal is then recorded as a loss).
- Salesforce: `lead_converted` (the Lead converted), `lead_status` (the Lead's Status taking one of these
  values), `opportunity_won` (a won Opportunity of the Contact; a lost one is recorded as a loss).
The defaults are the rules that held before definitions were configurable: HubSpot lifecycle stage customer or
a closed-won deal; Salesforce Lead conversion or a won Opportunity. connectors/<crm>/outcomes.py applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# HubSpot's default lifecycle stages, in the order a contact moves through them.
LIFECYCLE_STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
                    "evangelist")
CRITERIA: dict[str, tuple[str, ...]] = {
    "hubspot": ("lifecycle_stage", "lead_status", "deal_won"),
    "salesforce": ("lead_converted", "lead_status", "opportunity_won"),
}
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "hubspot": {"lifecycle_stage": "customer", "lead_status": [], "deal_won": True},
    "salesforce": {"lead_converted": True, "lead_status": [], "opportunity_won": True},
}


class OutcomeRuleError(ValueError):
    """An outcome definition that cannot be used, with a message naming the problem."""


def parse_rule(crm: str, data: Any) -> dict[str, Any]:
    """A complete, validated rule for `crm` from JSON-like input (missing criteria are off); error if unusable."""
    if crm not in CRITERIA:
        raise OutcomeRuleError(f"unknown CRM {crm!r}: choose one of {', '.join(CRITERIA)}")
    if not isinstance(data, Mapping):
        raise OutcomeRuleError("an outcome definition is an object of criteria")
    unknown = sorted(set(data) - set(CRITERIA[crm]))
    if unknown:
        raise OutcomeRuleError(f"unknown {crm} criteria: {', '.join(unknown)} (known: {', '.join(CRITERIA[crm])})")
    statuses = data.get("lead_status") or []
    if isinstance(statuses, str):
        statuses = [s for s in (part.strip() for part in statuses.split(",")) if s]
    if not isinstance(statuses, list) or not all(isinstance(s, str) and s.strip() for s in statuses):
        raise OutcomeRuleError("lead_status must be a list of status values")
    if any(len(s) > 100 for s in statuses):
        raise OutcomeRuleError("a lead_status value is at most 100 characters")
    statuses = sorted({s.strip() for s in statuses})
    if crm == "hubspot":
        stage = data.get("lifecycle_stage") or None
        if stage is not None:
            stage = str(stage).strip().lower()
            if stage not in LIFECYCLE_STAGES:
                raise OutcomeRuleError(f"lifecycle_stage {stage!r} is not a HubSpot lifecycle stage "
                                       f"({', '.join(LIFECYCLE_STAGES)})")
        rule: dict[str, Any] = {"lifecycle_stage": stage, "lead_status": statuses,
                                "deal_won": _flag(data, "deal_won")}
        met = stage is not None or rule["deal_won"]
    else:
        rule = {"lead_converted": _flag(data, "lead_converted"), "lead_status": statuses,
                "opportunity_won": _flag(data, "opportunity_won")}
        met = rule["lead_converted"] or rule["opportunity_won"]
    if not met and not statuses:
        raise OutcomeRuleError(f"choose at least one {crm} criterion that counts as converted")
    return rule


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if isinstance(value, str):
        if value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if value.strip().lower() in ("false", "0", "no", "off", ""):
            return False
    if not isinstance(value, bool):
        raise OutcomeRuleError(f"{name} must be true or false (got {value!r})")
    return value


def stage_reached(stage: Any, target: str) -> bool:
    """True when HubSpot lifecycle stage `stage` is `target` or a later one."""
    value = str(stage or "").strip().lower()
    if value not in LIFECYCLE_STAGES:
        return False
    return LIFECYCLE_STAGES.index(value) >= LIFECYCLE_STAGES.index(target)


def describe(crm: str, rule: Mapping[str, Any]) -> str:
    """One line a person reads: what counts as converted under `rule`."""
    parts = []
    if crm == "hubspot":
        if rule.get("lifecycle_stage"):
            parts.append(f"lifecycle stage {rule['lifecycle_stage']} or later")
        if rule.get("deal_won"):
            parts.append("a closed-won deal")
    else:
        if rule.get("lead_converted"):
            parts.append("Lead converted")
        if rule.get("opportunity_won"):
            parts.append("a won Opportunity")
    if rule.get("lead_status"):
        parts.append("lead status " + " / ".join(rule["lead_status"]))
    return " or ".join(parts)
