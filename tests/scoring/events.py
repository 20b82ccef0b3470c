"""Helpers that build canonical events for the feature tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from core.records import Event

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def ev(lead: str, event_type: str, at: datetime, props: dict[str, Any] | None = None, *, email: str | None = None,
       key: str | None = None) -> Event:
    """One behavioural or trait event for `lead` at `at`."""
    return Event(
        source="test", crm="web", object_type="person", object_id=lead, event_type=event_type, occurred_at=at,
        received_at=at, properties=props or {}, dedupe_key=key if key is not None else f"{lead}:{event_type}:{at.isoformat()}",
        email=email,
    )


URLS = ["https://acme.io/pricing", "https://acme.io/docs/api", "https://acme.io/customers/bigco",
        "https://acme.io/careers", "https://blog.acme.io/post", "https://acme.io/", "/plans", "https://acme.io/about"]
TITLES = ["CEO", "VP Marketing", "Director of Ops", "Product Manager", "Engineer", "Student", ""]
DOMAINS = ["alpha.com", "beta.io", "gamma.co", "gmail.com", "yahoo.com"]


def random_stream(seed: int = 3, leads: int = 40, events: int = 2500, days: int = 60) -> list[Event]:
    """A seeded stream over `days`: identifies, page views, e-mails, forms, demos, with resends and ties."""
    rng = np.random.default_rng(seed)
    out: list[Event] = []
    for i in range(events):
        lead = f"p{int(rng.integers(0, leads))}"
        # Whole seconds, so several events share a timestamp (ties must resolve the same way).
        at = T0 + timedelta(seconds=int(rng.integers(0, days * 86400 // 600)) * 600)
        kind = rng.choice(["identify", "page_view", "session_start", "email_open", "email_click", "form_fill",
                           "download", "webinar", "demo_request"], p=[0.1, 0.45, 0.12, 0.1, 0.06, 0.05, 0.05, 0.04, 0.03])
        if kind == "identify":
            domain = DOMAINS[int(rng.integers(0, len(DOMAINS)))]
            props = {"title": TITLES[int(rng.integers(0, len(TITLES)))], "industry": rng.choice(["Software", "Retail"]),
                     "numberofemployees": int(rng.integers(1, 20000)), "country": rng.choice(["DE", "US", "IN"])}
            out.append(ev(lead, "identify", at, props, email=f"{lead}@{domain}", key=f"e{i}"))
        elif kind == "page_view":
            out.append(ev(lead, "page_view", at, {"url": URLS[int(rng.integers(0, len(URLS)))]}, key=f"e{i}"))
        else:
            out.append(ev(lead, str(kind), at, key=f"e{i}"))
        if rng.random() < 0.05:
            out.append(out[-1])  # a repeated delivery: must count once
    return out


def behaviour_world(seed: int = 5, leads: int = 400) -> tuple[list[Event], list]:
    """Leads whose hidden intent drives both their activity and whether they convert (seeded).

    Outcomes land on one of a few days, so the offline builder runs a handful of times.
    """
    from core.records import Outcome

    rng = np.random.default_rng(seed)
    events: list[Event] = []
    outcomes = []
    for i in range(leads):
        lead = f"w{i}"
        intent = rng.random()
        title = rng.choice(["CEO", "VP Sales", "Engineer", "Student", "Marketing Manager"])
        domain = rng.choice(["gmail.com", f"corp{i % 25}.com"], p=[0.4, 0.6])
        events.append(ev(lead, "identify", T0, {"title": str(title), "numberofemployees": int(rng.integers(5, 5000)),
                                                "industry": str(rng.choice(["Software", "Retail"]))},
                         email=f"{lead}@{domain}", key=f"{lead}:id"))
        decided = T0 + timedelta(days=int(rng.integers(25, 29)))
        for k in range(int(rng.poisson(2 + 10 * intent))):
            at = decided - timedelta(hours=int(rng.integers(1, 24 * 20)))
            url = "https://acme.io/pricing" if rng.random() < intent else "https://acme.io/blog/x"
            events.append(ev(lead, "page_view", at, {"url": url}, key=f"{lead}:pv{k}"))
        if rng.random() < intent * 0.6:
            events.append(ev(lead, "demo_request", decided - timedelta(days=2), key=f"{lead}:demo"))
        logit = -3.5 + 7 * intent + (0.8 if title in ("CEO", "VP Sales") else 0) - (1.5 if title == "Student" else 0) \
            - (0.8 if domain == "gmail.com" else 0)
        won = rng.random() < 1 / (1 + np.exp(-logit))
        outcomes.append(Outcome(lead_id=lead, won=bool(won), occurred_at=decided, source="test"))
    return events, outcomes
