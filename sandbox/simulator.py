"""Traffic simulator: a realistic B2B funnel driven by a hidden intent process, fed to the bridge and the sandbox CRM.

Every contact has a latent intent (plus its account's fit). Intent drives behaviour (sessions, page views of
pricing/docs/case studies/careers/blog, e-mail opens and clicks, form fills, downloads, webinars, demo
requests) and, separately, whether the contact converts; won/lost outcomes arrive days after the activity.
Nothing observable is copied into the label, so a model has to learn the relation from behaviour, as it would
with a real funnel. With `drift_day` set, the funnel changes on that day, in one of three ways (`drift_kind`):
- "sudden" (the default): pricing views stop depending on intent while webinar attendance starts to;
- "gradual": a new segment (say, developers arriving through the docs) takes a growing share of new
  contacts, from 0 on the drift day to `segment_share` `segment_ramp_days` later; for them pricing
  views say nothing about intent and docs views say a lot;
- "seasonal": a campaign brought low-intent contacts (`campaign_share` of new contacts, intent lowered by
  `campaign_intent_shift`) that behaved like everyone else while it ran; when it ends, on the drift day,
  its audience stays (it keeps arriving) and is retargeted with a pricing-page ad: intent-free pricing
  views from the people least likely to buy.
Concept drifts the learning loop should notice.

Everything is deterministic given the seed (one `random.Random`, consumed in a fixed order; message ids are
UUIDv5 of the seed and a counter). Events can be produced with simulated timestamps (fast, for training and
benchmarks) or emitted in real time at a chosen event rate, as Standard-Webhooks-signed Segment-style batches.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from standardwebhooks import Webhook

INDUSTRIES = [("Software", 1.0), ("Financial Services", 0.6), ("Healthcare", 0.3), ("Manufacturing", 0.2),
              ("Retail", -0.2), ("Education", -0.5), ("Non-profit", -0.8)]
COUNTRIES = [("US", 0.3), ("GB", 0.2), ("DE", 0.2), ("FR", 0.0), ("NL", 0.1), ("IN", -0.3), ("BR", -0.3)]
TITLES = [("VP Marketing", "vp", 0.8), ("Head of Growth", "head", 0.6), ("Marketing Manager", "manager", 0.2),
          ("CTO", "cxo", 0.7), ("Software Engineer", "ic", -0.3), ("Sales Director", "director", 0.5),
          ("Marketing Intern", "intern", -0.9), ("CEO", "cxo", 0.6), ("Data Analyst", "ic", -0.1),
          ("RevOps Lead", "head", 0.7)]
FREE_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "proton.me"]
FIRST = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kai", "Lena", "Mateo",
         "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Victor", "Wen", "Yara", "Zoe"]
LAST = ["Lopez", "Smith", "Muller", "Rossi", "Dubois", "Kowalski", "Nguyen", "Okafor", "Silva", "Tanaka", "Berg",
        "Haddad", "Novak", "Reyes", "Schmidt", "Walsh"]
SYLLABLES = ["ac", "me", "glo", "bex", "ini", "tech", "on", "vex", "lum", "ora", "nex", "dyn", "tri", "sol", "zen",
             "cor", "pro", "ly", "ify", "io"]
PAGES = {
    "pricing": ["/pricing", "/plans", "/pricing/enterprise"],
    "docs": ["/docs/getting-started", "/docs/api", "/docs/integrations/hubspot"],
    "case_studies": ["/customers/acme", "/case-studies/globex", "/customers/initech"],
    "careers": ["/careers", "/careers/engineering"],
    "blog": ["/blog/lead-scoring-101", "/blog/revops-metrics", "/blog/pricing-strategies"],
    "other": ["/", "/product", "/about"],
}
WEBSITE = "https://www.leadbridge-demo.com"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True, slots=True)
class SimAccount:
    """A company: firmographics plus the hidden fit the simulator uses."""

    key: str
    name: str
    domain: str
    industry: str
    employees: int
    country: str
    fit: float


@dataclass(frozen=True, slots=True)
class SimContact:
    """A person at an account. `intent` is hidden: it drives behaviour and conversion, and is never emitted."""

    key: str  # the behavioural userId
    anonymous_id: str
    account_key: str
    first_name: str
    last_name: str
    email: str
    title: str
    seniority: str
    created_at: datetime
    intent: float
    converts: bool
    segment: str = "core"  # core, or the drift scenario's "new" segment / "campaign" audience


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One behavioural event with its simulated time."""

    at: datetime
    contact_key: str
    type: str  # track | page | identify
    name: str  # track event name, page class, or "identify"
    properties: dict[str, Any]
    identified: bool  # False while the visitor is still anonymous
    message_id: str


@dataclass(frozen=True, slots=True)
class SimOutcome:
    """A won/lost label that arrives on a given simulated day."""

    contact_key: str
    won: bool
    at: datetime


@dataclass
class SimulatorConfig:
    """Size, time span and behaviour knobs of one simulated funnel."""

    seed: int = 7
    accounts: int = 150
    max_contacts_per_account: int = 5
    days: int = 120
    start: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))
    drift_day: int | None = None  # the day the funnel changes (how: drift_kind); None: it never does
    drift_kind: str = "sudden"  # sudden | gradual | seasonal (see the module docstring)
    segment_share: float = 0.7  # gradual: share of new contacts in the new segment once the ramp is over
    segment_ramp_days: float = 28.0  # gradual: days from the drift until the new segment reaches its share
    campaign_share: float = 0.35  # seasonal: share of new contacts the campaign brings
    campaign_intent_shift: float = -1.0  # seasonal: the campaign audience's intent, relative to everyone else's
    free_email_share: float = 0.2
    base_rate: float = -2.2  # conversion log-odds offset (about 15-25% of contacts convert)
    lost_label_share: float = 0.7  # non-converters whose "lost" outcome is recorded (the rest stay open)


class FunnelSimulation:
    """The generated funnel: accounts, contacts, time-ordered events and outcomes."""

    def __init__(self, config: SimulatorConfig, accounts: list[SimAccount], contacts: list[SimContact],
                 events: list[SimEvent], outcomes: list[SimOutcome]) -> None:
        self.config = config
        self.accounts = accounts
        self.contacts = contacts
        self.events = events
        self.outcomes = outcomes
        self.account_by_key = {a.key: a for a in accounts}
        self.contact_by_key = {c.key: c for c in contacts}

    def segment_event(self, event: SimEvent, timestamp: datetime | None = None) -> dict[str, Any]:
        """Render one event as a Segment-style call (timestamp defaults to the simulated time)."""
        contact = self.contact_by_key[event.contact_key]
        at = (timestamp or event.at).astimezone(UTC)
        out: dict[str, Any] = {
            "type": event.type, "anonymousId": contact.anonymous_id, "messageId": event.message_id,
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "context": {"library": {"name": "leadbridge-simulator", "version": "1"}, "ip": "0.0.0.0"},
        }
        if event.identified:
            out["userId"] = contact.key
            out["context"]["traits"] = {"email": contact.email}
        if event.type == "page":
            out["name"] = event.name
            out["properties"] = dict(event.properties)
        elif event.type == "track":
            out["event"] = event.name
            out["properties"] = dict(event.properties)
        else:
            out["traits"] = dict(event.properties)
        return out

    def behaviour_counts(self, contact_key: str, until: datetime, since: datetime | None = None) -> dict[str, int]:
        """Counts of observable behaviour for one contact in [since, until) (what a feature builder could see)."""
        counts: dict[str, int] = {}
        for ev in self._events_by_contact().get(contact_key, []):
            if ev.at >= until or (since is not None and ev.at < since):
                continue
            key = f"page:{ev.name}" if ev.type == "page" else ev.name
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _events_by_contact(self) -> dict[str, list[SimEvent]]:
        cache = getattr(self, "_by_contact", None)
        if cache is None:
            cache = {}
            for ev in self.events:
                cache.setdefault(ev.contact_key, []).append(ev)
            self._by_contact = cache
        return cache


DRIFT_KINDS = ("sudden", "gradual", "seasonal")


def simulate(config: SimulatorConfig | None = None) -> FunnelSimulation:
    """Generate a funnel deterministically from the config's seed."""
    cfg = config or SimulatorConfig()
    if cfg.drift_kind not in DRIFT_KINDS:
        raise ValueError(f"unknown drift_kind {cfg.drift_kind!r}; use one of {', '.join(DRIFT_KINDS)}")
    rng = random.Random(cfg.seed)
    ids = _Ids(cfg.seed)
    accounts = [_make_account(rng, i) for i in range(cfg.accounts)]
    contacts: list[SimContact] = []
    events: list[SimEvent] = []
    outcomes: list[SimOutcome] = []
    used_emails: set[str] = set()
    for account in accounts:
        for _ in range(rng.randint(1, cfg.max_contacts_per_account)):
            contact = _make_contact(rng, cfg, account, ids, used_emails)
            contacts.append(contact)
            outcome_at = contact.created_at + timedelta(days=rng.uniform(12, 45))
            horizon = cfg.start + timedelta(days=cfg.days)
            end = min(outcome_at, horizon)
            events.extend(_behaviour(rng, cfg, contact, end, ids))
            if outcome_at < horizon and (contact.converts or rng.random() < cfg.lost_label_share):
                outcomes.append(SimOutcome(contact.key, contact.converts, outcome_at))
    events.sort(key=lambda e: (e.at, e.message_id))
    outcomes.sort(key=lambda o: (o.at, o.contact_key))
    return FunnelSimulation(cfg, accounts, contacts, events, outcomes)


class _Ids:
    """Deterministic ids: UUIDv5 of the seed and a counter."""

    def __init__(self, seed: int) -> None:
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, f"leadbridge-simulator/{seed}")
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return str(uuid.uuid5(self.ns, str(self.n)))


def _pick(rng: random.Random, items: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    return items[rng.randrange(len(items))]


def _make_account(rng: random.Random, i: int) -> SimAccount:
    name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    industry, ind_w = _pick(rng, INDUSTRIES)
    country, cty_w = _pick(rng, COUNTRIES)
    employees = int(math.exp(rng.uniform(math.log(5), math.log(20000))))
    size_w = 0.6 if 100 <= employees <= 5000 else (-0.4 if employees < 20 else 0.1)
    fit = ind_w + cty_w + size_w + rng.gauss(0, 0.3)
    return SimAccount(f"acct-{i:05d}", f"{name} {rng.choice(['Inc', 'GmbH', 'Ltd', 'Labs', 'Group'])}",
                      f"{name.lower()}{i}.com", industry, employees, country, fit)


def _make_contact(rng: random.Random, cfg: SimulatorConfig, account: SimAccount, ids: _Ids,
                  used: set[str]) -> SimContact:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    title, seniority, title_w = _pick(rng, TITLES)
    free = rng.random() < cfg.free_email_share
    domain = rng.choice(FREE_DOMAINS) if free else account.domain
    email = f"{first}.{last}".lower() + f"@{domain}"
    n = 2
    while email in used:
        email = f"{first}.{last}{n}".lower() + f"@{domain}"
        n += 1
    used.add(email)
    created = cfg.start + timedelta(days=rng.uniform(0, max(1.0, cfg.days - 10)))
    # The segment is drawn only in the scenarios that have one, so every other funnel consumes the
    # random stream exactly as before (same seed, same funnel).
    segment = _segment(rng, cfg, created)
    intent = rng.gauss(0, 1) + 0.5 * account.fit + 0.4 * title_w - (0.5 if free else 0.0)
    if segment == "campaign":
        intent += cfg.campaign_intent_shift
    p = conversion_probability(cfg, intent, account.fit)
    converts = rng.random() < p
    key = ids.next().replace("-", "")[:16]
    return SimContact(f"u_{key}", ids.next(), account.key, first, last, email, title, seniority, created, intent,
                      converts, segment)


def conversion_probability(cfg: SimulatorConfig, intent: float, fit: float) -> float:
    """How likely a contact converts: from its hidden intent and its account's fit only (behaviour is a noisy
    window onto intent, never a cause)."""
    return _sigmoid(cfg.base_rate + 1.6 * intent + 0.3 * fit)


def _segment(rng: random.Random, cfg: SimulatorConfig, created: datetime) -> str:
    if cfg.drift_day is None or cfg.drift_kind == "sudden":
        return "core"
    if cfg.drift_kind == "seasonal":
        return "campaign" if rng.random() < cfg.campaign_share else "core"
    days_in = (created - cfg.start).total_seconds() / 86400 - cfg.drift_day
    share = 0.0 if days_in < 0 else cfg.segment_share * min(1.0, days_in / max(cfg.segment_ramp_days, 1e-9))
    return "new" if rng.random() < share else "core"


def _behaviour(rng: random.Random, cfg: SimulatorConfig, c: SimContact, end: datetime, ids: _Ids) -> list[SimEvent]:
    out: list[SimEvent] = []
    drift_at = cfg.start + timedelta(days=cfg.drift_day) if cfg.drift_day is not None else None
    sudden = cfg.drift_kind == "sudden"
    weekly_sessions = math.exp(0.3 + 0.6 * c.intent)
    t = c.created_at
    identified = False
    sessions = 0
    while True:
        t = t + timedelta(days=rng.expovariate(max(0.05, weekly_sessions / 7.0)))
        if t >= end:
            break
        sessions += 1
        drifted = sudden and drift_at is not None and t >= drift_at
        if not identified and sessions >= 2 and rng.random() < 0.6:
            identified = True
            out.append(SimEvent(t, c.key, "identify", "identify", {
                "email": c.email, "firstName": c.first_name, "lastName": c.last_name, "title": c.title}, True, ids.next()))
            out.append(SimEvent(t + timedelta(seconds=1), c.key, "track", "Form Submitted",
                                {"form": "newsletter", "url": WEBSITE + "/newsletter"}, True, ids.next()))
        out.append(SimEvent(t, c.key, "track", "Session Started", {"referrer": rng.choice(
            ["google", "linkedin", "direct", "newsletter", "g2"])}, identified, ids.next()))
        pages = 1 + min(12, int(rng.expovariate(1 / (1.5 + 0.4 * max(0.0, c.intent)))))
        for p in range(pages):
            # After the drift, pricing visits come from a separate, intent-free process (below), not sessions.
            pricing_w = 0.0 if drifted else _sigmoid(-2.2 + 1.3 * c.intent)
            docs_w = 0.15 + 0.05 * max(0.0, c.intent)
            if c.segment == "new":  # the new segment reads the docs when it means business, and glances at pricing
                pricing_w, docs_w = 0.12, 0.05 + 0.8 * _sigmoid(-1.5 + 1.6 * c.intent)
            weights = {"pricing": pricing_w, "docs": docs_w,
                       "case_studies": _sigmoid(-2.5 + 0.7 * c.intent), "careers": _sigmoid(-2.5 - 0.8 * c.intent),
                       "blog": 0.3, "other": 0.25}
            page_class = _weighted(rng, weights)
            path = rng.choice(PAGES[page_class])
            out.append(SimEvent(t + timedelta(seconds=20 * (p + 1)), c.key, "page", page_class.replace("_", " ").title(),
                                {"url": WEBSITE + path, "path": path, "title": page_class}, identified, ids.next()))
        if identified:
            st = t + timedelta(minutes=10)
            if rng.random() < _sigmoid(-3.0 + 0.8 * c.intent):
                out.append(SimEvent(st, c.key, "track", "Whitepaper Downloaded", {"asset": "lead-scoring-guide.pdf"},
                                    True, ids.next()))
            webinar_p = _sigmoid(-3.2 + 1.4 * c.intent) if drifted else 0.03
            if rng.random() < webinar_p:
                out.append(SimEvent(st + timedelta(minutes=1), c.key, "track", "Webinar Attended",
                                    {"webinar": "scoring-in-practice"}, True, ids.next()))
            if rng.random() < _sigmoid(-4.2 + 1.5 * c.intent):
                out.append(SimEvent(st + timedelta(minutes=2), c.key, "track", "Demo Requested",
                                    {"form": "demo", "url": WEBSITE + "/demo"}, True, ids.next()))
    retargeted = cfg.drift_kind == "seasonal" and c.segment == "campaign"
    if drift_at is not None and drift_at < end and (sudden or retargeted):
        # Sudden: after the drift everyone looks at pricing at the same rate (say, a public price change): the
        # count no longer says anything about intent. Seasonal: the campaign's audience clicks the retargeting
        # ad to the pricing page about twice a week, whatever its intent.
        t = max(c.created_at, drift_at)
        per_day = 2.0 / 7.0 if retargeted else 1.0 / 7.0
        while True:
            t = t + timedelta(days=rng.expovariate(per_day))
            if t >= end:
                break
            path = rng.choice(PAGES["pricing"])
            out.append(SimEvent(t, c.key, "page", "Pricing", {"url": WEBSITE + path, "path": path, "title": "pricing"},
                                identified or any(e.identified for e in out), ids.next()))
    # Weekly nurture e-mail once the person is known.
    if any(e.identified for e in out):
        first_known = min(e.at for e in out if e.identified)
        send = first_known + timedelta(days=7)
        while send < end:
            if rng.random() < _sigmoid(-0.8 + 0.7 * c.intent):
                out.append(SimEvent(send + timedelta(hours=rng.uniform(0, 30)), c.key, "track", "Email Opened",
                                    {"campaign": "nurture"}, True, ids.next()))
                if rng.random() < _sigmoid(-1.8 + 0.9 * c.intent):
                    out.append(SimEvent(send + timedelta(hours=rng.uniform(30, 40)), c.key, "track",
                                        "Email Link Clicked", {"campaign": "nurture", "url": WEBSITE + "/pricing"},
                                        True, ids.next()))
            send += timedelta(days=7)
    return [e for e in out if e.at < end]


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    total = sum(weights.values())
    r = rng.random() * total
    for key, w in weights.items():
        r -= w
        if r <= 0:
            return key
    return next(reversed(weights))


# ---------------------------------------------------------------------------------------------------- delivery
class EventSender:
    """Posts Segment-style batches signed with Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)."""

    def __init__(self, url: str, secret: str, *, batch_size: int = 100, timeout: float = 10.0, attempts: int = 5,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        if batch_size < 1 or batch_size > 500:
            raise ValueError("batch_size must be between 1 and 500")
        self.url = url
        self.webhook = Webhook(secret)
        self.batch_size = batch_size
        self.timeout = timeout
        self.attempts = attempts
        self.session = session or requests.Session()
        self.session.trust_env = False
        self.sleep = sleep
        self.sent_batches = 0
        self.sent_events = 0
        self.failed_batches = 0

    def send(self, events: Sequence[dict[str, Any]]) -> int:
        """Send one batch (retrying 429/5xx/connection errors with backoff); returns the final HTTP status."""
        body = json.dumps({"batch": list(events)}, separators=(",", ":"))
        msg_id = "msg_" + uuid.uuid5(uuid.NAMESPACE_OID, body).hex
        status = 0
        for attempt in range(self.attempts):
            now = datetime.now(UTC)
            headers = {"Content-Type": "application/json", "webhook-id": msg_id,
                       "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": self.webhook.sign(msg_id, now, body)}
            try:
                resp = self.session.post(self.url, data=body.encode(), headers=headers, timeout=self.timeout)
                status = resp.status_code
                if status < 300:
                    self.sent_batches += 1
                    self.sent_events += len(events)
                    return status
                if status != 429 and status < 500:
                    break  # the receiver refuses this batch; sending it again cannot help
                wait = float(resp.headers.get("Retry-After", 0) or 0) or min(30.0, 0.5 * 2 ** attempt)
            except requests.RequestException:
                wait = min(30.0, 0.5 * 2 ** attempt)
            if attempt + 1 < self.attempts:
                self.sleep(wait)
        self.failed_batches += 1
        return status

    def send_all(self, events: Iterable[dict[str, Any]], progress: Callable[[int], None] | None = None) -> None:
        """Send events in batches of `batch_size`."""
        batch: list[dict[str, Any]] = []
        for ev in events:
            batch.append(ev)
            if len(batch) >= self.batch_size:
                self.send(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self.send(batch)
            if progress:
                progress(len(batch))


class SandboxCrmFeed:
    """Creates the simulated accounts, contacts and outcomes in the sandbox CRM (HubSpot and/or Salesforce).

    Changes go through the sandbox's admin API as CRM-user edits (changeSource CRM_UI), so the sandbox sends
    its outbound webhooks exactly as for any other record change.
    """

    def __init__(self, base_url: str, crms: Sequence[str] = ("hubspot",), *, admin_token: str | None = None,
                 session: requests.Session | None = None) -> None:
        bad = [c for c in crms if c not in ("hubspot", "salesforce")]
        if bad:
            raise ValueError(f"unknown CRM(s) {bad}; use hubspot and/or salesforce")
        self.base = base_url.rstrip("/") + "/_sandbox"
        self.crms = tuple(crms)
        self.session = session or requests.Session()
        self.session.trust_env = False
        if admin_token:
            self.session.headers["X-Sandbox-Admin-Token"] = admin_token
        self.hubspot_companies: dict[str, str] = {}
        self.hubspot_contacts: dict[str, str] = {}
        self.salesforce_leads: dict[str, str] = {}

    def _post(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.session.request(method, self.base + path, json=body, timeout=30)
        if resp.status_code >= 300:
            raise RuntimeError(f"sandbox {method} {path} answered {resp.status_code}: {resp.text[:200]}")
        return resp.json() if resp.content else {}

    def add_contact(self, sim: FunnelSimulation, contact: SimContact) -> None:
        """Create the contact (and its account on first use) in each CRM."""
        account = sim.account_by_key[contact.account_key]
        if "hubspot" in self.crms:
            if account.key not in self.hubspot_companies:
                company = self._post("POST", "/hubspot/companies", {"properties": {
                    "name": account.name, "domain": account.domain, "industry": account.industry,
                    "numberofemployees": str(account.employees), "country": account.country}})
                self.hubspot_companies[account.key] = company["id"]
            obj = self._post("POST", "/hubspot/contacts", {"properties": {
                "email": contact.email, "firstname": contact.first_name, "lastname": contact.last_name,
                "jobtitle": contact.title, "country": account.country, "company": account.name}})
            self.hubspot_contacts[contact.key] = obj["id"]
            self._post("PUT", "/hubspot/associations", {"from_type": "contacts", "from_id": obj["id"],
                                                         "to_type": "companies",
                                                         "to_id": self.hubspot_companies[account.key], "primary": True})
        if "salesforce" in self.crms:
            lead = self._post("POST", "/salesforce/Lead", {"fields": {
                "FirstName": contact.first_name, "LastName": contact.last_name, "Email": contact.email,
                "Title": contact.title, "Company": account.name, "Industry": account.industry,
                "NumberOfEmployees": account.employees, "Country": account.country,
                "Website": f"https://www.{account.domain}", "LeadSource": "Web"}})
            self.salesforce_leads[contact.key] = lead["id"]

    def add_outcome(self, outcome: SimOutcome) -> None:
        """Record a won/lost outcome: a closed deal + lifecycle stage (HubSpot), a converted or closed Lead (Salesforce)."""
        if "hubspot" in self.crms and outcome.contact_key in self.hubspot_contacts:
            cid = self.hubspot_contacts[outcome.contact_key]
            deal = self._post("POST", "/hubspot/deals", {"properties": {
                "dealname": f"Deal for contact {cid}", "dealstage": "closedwon" if outcome.won else "closedlost",
                "amount": "12000", "closedate": outcome.at.strftime("%Y-%m-%dT%H:%M:%S.000Z")}})
            self._post("PUT", "/hubspot/associations", {"from_type": "deals", "from_id": deal["id"],
                                                         "to_type": "contacts", "to_id": cid})
            if outcome.won:
                self._post("PATCH", f"/hubspot/contacts/{cid}", {"properties": {"lifecyclestage": "customer"}})
        if "salesforce" in self.crms and outcome.contact_key in self.salesforce_leads:
            lead_id = self.salesforce_leads[outcome.contact_key]
            # A converted Lead is the positive label (connectors/salesforce/outcomes.py); a lost one is closed
            # without conversion, as a rep would, and becomes a negative once the maturity window passes.
            if outcome.won:
                self._post("POST", f"/salesforce/Lead/{lead_id}/convert", {"won": True})
            else:
                self._post("PATCH", f"/salesforce/Lead/{lead_id}", {"fields": {"Status": "Closed - Not Converted"}})


@dataclass
class RunStats:
    """What a run delivered."""

    events: int = 0
    batches: int = 0
    failed_batches: int = 0
    contacts: int = 0
    outcomes: int = 0
    seconds: float = 0.0


def timeline(sim: FunnelSimulation) -> Iterator[tuple[datetime, str, Any]]:
    """Merge contact creations, events and outcomes into one simulated-time-ordered stream."""
    items: list[tuple[datetime, int, str, Any]] = [(c.created_at, 0, "contact", c) for c in sim.contacts]
    items += [(e.at, 1, "event", e) for e in sim.events]
    items += [(o.at, 2, "outcome", o) for o in sim.outcomes]
    items.sort(key=lambda x: (x[0], x[1]))
    for at, _, kind, item in items:
        yield at, kind, item


def run(sim: FunnelSimulation, *, sender: EventSender | None = None, crm: SandboxCrmFeed | None = None,
        realtime_rate: float | None = None, max_events: int | None = None,
        progress: Callable[[str, int], None] | None = None, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> RunStats:
    """Deliver a simulation: fast (simulated timestamps) or, with `realtime_rate`, paced at that many events a
    second with wall-clock timestamps. CRM creations and outcomes are interleaved in simulated-time order."""
    stats = RunStats()
    started = clock()
    pending: list[dict[str, Any]] = []
    batch_size = sender.batch_size if sender else 100

    def flush() -> None:
        if sender and pending:
            status = sender.send(list(pending))
            stats.batches += 1
            stats.failed_batches += 0 if status < 300 else 1
        pending.clear()

    for _, kind, item in timeline(sim):
        if kind == "contact":
            if crm:
                flush()  # events about a person never arrive before the CRM knows them in fast mode
                crm.add_contact(sim, item)
            stats.contacts += 1
            if progress:
                progress("contact", 1)
        elif kind == "outcome":
            if crm:
                flush()
                crm.add_outcome(item)
            stats.outcomes += 1
            if progress:
                progress("outcome", 1)
        else:
            if max_events is not None and stats.events >= max_events:
                break
            if realtime_rate:
                due = started + stats.events / realtime_rate
                delay = due - clock()
                if delay > 0:
                    flush()
                    sleep(delay)
                pending.append(sim.segment_event(item, datetime.now(UTC)))
                # In real time, batches are small: whatever accumulated within ~a tenth of a second.
                if len(pending) >= max(1, min(batch_size, int(realtime_rate / 10))):
                    flush()
            else:
                pending.append(sim.segment_event(item))
                if len(pending) >= batch_size:
                    flush()
            stats.events += 1
            if progress:
                progress("event", 1)
    flush()
    stats.seconds = clock() - started
    return stats
