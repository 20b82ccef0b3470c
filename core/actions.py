"""Rule actions as plain data: what a rule does when a lead's score crosses its threshold.

A rule holds any number of actions (`alert_rules.actions`, a JSON list of `Action.to_json()`). Each action
is carried out once per threshold crossing: the alerts stage gives every (rule, lead, crossing, action) an
idempotency key (`action_key`) that travels with the action through retries and replays, so the CRM or
Slack sees one task, one message, one enrolment per crossing. Who carries an action out:

| kind            | where                          | what it does                                               |
|-----------------|--------------------------------|------------------------------------------------------------|
| slack_channel   | connectors.slack               | posts the hot-lead message to the rule's channel           |
| slack_owner_dm  | connectors.slack               | messages the lead's owner (CRM owner e-mail -> Slack user), |
|                 |                                | falling back to the channel and saying why                 |
| crm_task        | connectors.<crm>.actions       | a task for the lead's owner, due in `due_days`             |
| crm_owner       | connectors.<crm>.actions       | sets the owner: round robin over `owners` (active ones     |
|                 |                                | only), or a Salesforce `queue`                             |
| crm_list        | connectors.<crm>.actions       | adds the lead to a HubSpot static list / Salesforce        |
|                 |                                | campaign (`list_id`)                                       |
| crm_sequence    | connectors.hubspot.actions     | enrols the contact in a HubSpot sequence                   |

A CRM action runs in the CRM the lead is in (HubSpot first when it is in both), or, with a `crm` parameter, only
in that CRM: owner ids, lists and campaigns are one CRM's, so a rule for leads in both names each action's CRM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# kind -> (who carries it out, the parameters it takes, the ones it needs)
ACTION_KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "slack_channel": ("slack", (), ()),
    "slack_owner_dm": ("slack", (), ()),
    "crm_task": ("crm", ("crm", "subject", "due_days", "priority"), ()),
    "crm_owner": ("crm", ("crm", "owners", "queue"), ()),
    "crm_list": ("crm", ("crm", "list_id",), ("list_id",)),
    "crm_sequence": ("hubspot", ("sequence_id", "user_id", "sender_email"),
                     ("sequence_id", "user_id", "sender_email")),
}
TASK_PRIORITIES = ("low", "medium", "high")


class ActionSpecError(ValueError):
    """An action's kind or parameters are not ones leadbridge can carry out (the message names which)."""


@dataclass(frozen=True)
class Action:
    """One thing a rule does on a crossing: a kind (ACTION_KINDS) and its parameters."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def channel(self) -> str:
        """Who carries it out: 'slack', 'crm' (either CRM) or one CRM's name."""
        return ACTION_KINDS[self.kind][0]

    @property
    def crm(self) -> str | None:
        """The one CRM this action runs in: its `crm` parameter, or the CRM of a one-CRM kind (None: the lead's)."""
        if self.channel not in ("slack", "crm"):
            return self.channel
        named = self.params.get("crm")
        return str(named) if named else None

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, as stored on the rule."""
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: Any) -> Action:
        """An action from its stored or submitted form; ActionSpecError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ActionSpecError("an action must be an object with a kind and params")
        kind = data.get("kind")
        if kind not in ACTION_KINDS:
            raise ActionSpecError(f"action kind must be one of {', '.join(ACTION_KINDS)}, not {kind!r}")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ActionSpecError(f"{kind}: params must be an object")
        _, allowed, needed = ACTION_KINDS[kind]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ActionSpecError(f"{kind}: unknown parameter(s) {', '.join(unknown)}"
                                  + (f"; it takes {', '.join(allowed)}" if allowed else "; it takes none"))
        missing = [name for name in needed if params.get(name) in (None, "", [])]
        if missing:
            raise ActionSpecError(f"{kind}: {', '.join(missing)} required")
        return cls(kind, dict(params))


@dataclass(frozen=True)
class ActionTarget:
    """The lead an action is about, as the connectors need it (no more personal data than the alert has)."""

    lead_id: int
    crm: str | None  # the CRM the record is in (None: a lead known from web events only)
    object_type: str | None  # contacts (HubSpot) / Lead, Contact (Salesforce)
    object_id: str | None
    owner_id: str | None  # the CRM owner (hubspot_owner_id / OwnerId) as last read
    name: str
    company: str | None
    score: int
    previous_score: int | None
    grade: str | None
    reasons: Sequence[str] = ()
    crm_url: str | None = None
    rule: str = ""
    turn: int = 0  # the crossing's place in the rule's round robin (decided once, kept through retries)


@dataclass(frozen=True)
class ActionResult:
    """What an action did: done, already there (a retry found the CRM had it), or a fallback, and the vendor id."""

    status: str  # done | exists | fallback
    detail: str = ""  # one plain sentence for deliveries ("task 123 for owner 77, due 2026-12-06")
    vendor_id: str | None = None


def action_key(rule_id: int, lead_id: int, crossed_at: datetime, index: int, kind: str) -> str:
    """The idempotency key of one action of one crossing: the same through every retry and replay."""
    raw = f"{rule_id}:{lead_id}:{crossed_at.isoformat()}:{index}:{kind}"
    return "lb" + hashlib.sha256(raw.encode()).hexdigest()[:30]
