"""Sales reps working the sandbox CRM in real time, for sandbox mode's demo pilot (issue 17).

The reps watch the HubSpot contacts as a sales team would: a contact whose leadbridge score shows hot (the alert
a pilot lead raises) gets its owner's call within about `alert_seconds`; every other contact, including the
control group's hot leads, whose scores are hidden, is reached from the work queue about `queue_minutes` after
it was created. Each call is logged in the CRM by the rep's own user, as a rep in HubSpot's UI would (so it
counts as a touch; leadbridge's own activity never does). The pilot's response-time KPI on the Value page then
shows the difference within minutes of `make run`. The delays are lognormal and reproducible from the seed.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

from connectors.hubspot.fields import SCORE_FIELD_NAMES
from sandbox.reps import HUBSPOT_REP_USER_BASE
from sandbox.server import DEFAULT_HUBSPOT_TOKEN

SCORE_PROPERTY = SCORE_FIELD_NAMES["score"]


@dataclass(frozen=True)
class LiveRepConfig:
    """How quickly the demo's reps act, in real time."""

    reps: int = 6
    threshold: int = 75  # a visible score at or above it is the alert
    alert_seconds: float = 40.0  # median delay from a visible hot score to the owner's call
    queue_minutes: float = 8.0  # median delay from a contact's creation to a call from the work queue
    spread: float = 0.6  # lognormal sigma of both delays


@dataclass
class LiveReps:
    """The demo's reps; `tick` does one round (list contacts, log the calls that are due), `run` loops."""

    base_url: str
    config: LiveRepConfig = field(default_factory=LiveRepConfig)
    seed: int = 0
    token: str = DEFAULT_HUBSPOT_TOKEN
    admin_token: str | None = None
    touched: set[str] = field(default_factory=set)
    due: dict[str, float] = field(default_factory=dict)  # contact id -> when its call is due (epoch seconds)
    alerted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.session = requests.Session()
        self.session.trust_env = False
        self.base = self.base_url.rstrip("/")

    def _delay(self, median: float) -> float:
        return median * self.rng.lognormvariate(0.0, self.config.spread)

    def _contacts(self) -> list[dict[str, object]]:
        """Every contact with its creation time and visible score, through the HubSpot API (paged)."""
        out: list[dict[str, object]] = []
        after: str | None = None
        while True:
            params = {"limit": "100", "properties": f"createdate,{SCORE_PROPERTY}", **({"after": after} if after else {})}
            resp = self.session.get(self.base + "/crm/v3/objects/contacts", params=params, timeout=30,
                                    headers={"Authorization": f"Bearer {self.token}"})
            resp.raise_for_status()
            body = resp.json()
            out += body.get("results", [])
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return out

    def _call(self, contact_id: str, at: float) -> None:
        """Log the owner's call on the contact, as the rep's own HubSpot user."""
        rep = str(HUBSPOT_REP_USER_BASE + int(contact_id) % self.config.reps)
        stamp = datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(at * 1000) % 1000:03d}Z"
        headers = {"X-Sandbox-Admin-Token": self.admin_token} if self.admin_token else {}
        call = self.session.post(self.base + "/_sandbox/hubspot/calls", timeout=30, headers=headers, json={
            "properties": {"hs_timestamp": stamp, "hubspot_owner_id": rep, "hs_call_direction": "OUTBOUND",
                           "hs_call_status": "COMPLETED", "hs_call_title": "First call"},
            "source": "CRM_UI", "user_id": rep})
        call.raise_for_status()
        self.session.put(self.base + "/_sandbox/hubspot/associations", timeout=30, headers=headers, json={
            "from_type": "calls", "from_id": call.json()["id"], "to_type": "contacts", "to_id": contact_id,
        }).raise_for_status()

    def tick(self, now: float | None = None) -> int:
        """One round: note new hot scores and new contacts, log every call that is due; the calls logged."""
        now = time.time() if now is None else now
        calls = 0
        for contact in self._contacts():
            cid = str(contact["id"])
            if cid in self.touched:
                continue
            props = contact.get("properties") or {}
            assert isinstance(props, dict)
            if cid not in self.due:
                created = datetime.fromisoformat(str(props.get("createdate")).replace("Z", "+00:00")).timestamp()
                self.due[cid] = created + 60 * self._delay(self.config.queue_minutes)
            score = props.get(SCORE_PROPERTY)
            if cid not in self.alerted and score not in (None, "") and float(str(score)) >= self.config.threshold:
                self.alerted.add(cid)
                self.due[cid] = min(self.due[cid], now + self._delay(self.config.alert_seconds))
            if self.due[cid] <= now:
                self._call(cid, now)
                self.touched.add(cid)
                calls += 1
        return calls

    def run(self, stop: threading.Event, every: float = 5.0) -> None:
        """Tick every `every` seconds until `stop` is set; a sandbox that does not answer is tried again."""
        while not stop.is_set():
            try:
                self.tick()
            except requests.RequestException:
                pass  # the sandbox is restarting or busy: the next round catches up
            stop.wait(every)
