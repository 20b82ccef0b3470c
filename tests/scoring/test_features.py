"""Feature declarations, derivations, windows and point-in-time correctness (offline builder)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scoring.features import (
    FEATURE_NAMES,
    FEATURES_BY_NAME,
    build_offline,
    classify_page,
    describe_declared,
    email_domain_type,
    employees_bucket,
    seniority_of,
    traits_of,
)
from tests.scoring.events import T0, ev


@pytest.mark.parametrize(("url", "page_class"), [
    ("https://acme.io/pricing", "pricing"), ("https://acme.io/en/plans?x=1", "pricing"),
    ("https://docs.acme.io/start", "docs"), ("/documentation/api", "docs"),
    ("https://acme.io/customers/bigco", "case_studies"), ("https://acme.io/case-studies", "case_studies"),
    ("https://acme.io/careers/jobs", "careers"), ("https://acme.io/blog/pricing-strategies", "blog"),
    ("https://acme.io/", "other"), (None, "other"), ("not a url", "other"),
])
def test_classify_page(url, page_class) -> None:
    assert classify_page(url) == page_class


@pytest.mark.parametrize(("title", "level"), [
    ("CEO", "c-level"), ("Co-Founder & CTO", "c-level"), ("Chief Revenue Officer", "c-level"),
    ("VP of Sales", "vp"), ("Senior Vice President, Marketing", "vp"), ("Director of Engineering", "director"),
    ("Head of Growth", "director"), ("Marketing Manager", "manager"), ("Team Lead", "manager"),
    ("Software Engineer", "individual"), ("MBA Student", "student"), ("Marketing Intern", "student"),
    ("", None), (None, None),
])
def test_seniority_from_title(title, level) -> None:
    assert seniority_of(title) == level


def test_fit_derivations() -> None:
    assert employees_bucket(8) == "1-10"
    assert employees_bucket("51-200") == "50-199"
    assert employees_bucket("1,000+") == "1000-4999"
    assert employees_bucket(12000) == "5000+"
    assert employees_bucket(None) is None and employees_bucket("unknown") is None
    assert email_domain_type("a@gmail.com") == "free"
    assert email_domain_type("a@Acme.COM") == "corporate"
    assert email_domain_type("nonsense") is None


def test_traits_and_account_key() -> None:
    e = ev("p1", "identify", T0, {"jobtitle": "CEO", "numberofemployees": "250"}, email="Ann@Acme.com")
    assert traits_of(e) == {"title": "CEO", "employees": "250", "email": "ann@acme.com", "account": "domain:acme.com"}
    free = ev("p2", "identify", T0, {}, email="bob@gmail.com")
    assert "account" not in traits_of(free)
    explicit = ev("p3", "property_change", T0, {"company_domain": "https://www.Beta.io/x", "email": "c@gmail.com"})
    assert traits_of(explicit)["account"] == "domain:beta.io"


def test_every_feature_declared_once_with_a_reason() -> None:
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    for stream in ("pricing_views", "docs_views", "case_studies_views", "careers_views", "blog_views", "other_views",
                   "sessions", "email_opens", "email_clicks", "downloads", "webinars", "form_fills", "demo_requests"):
        for window in ("1d", "7d", "30d"):
            assert f"{stream}_{window}" in FEATURES_BY_NAME
    assert describe_declared("pricing_views_7d", 4.0, "+") == "viewed pricing 4x in 7 days"
    assert describe_declared("pricing_views_7d", 0.0, "-") == "no pricing page views in 7 days"
    assert describe_declared("email_domain_type", "free", "-") == "free e-mail domain"
    assert describe_declared("seniority", None, "-") == "no job title"
    assert describe_declared("seniority", "vp", "+") == "VP title"
    assert describe_declared("pricing_views_30d", 2.0, "-") == "only viewed pricing 2x in 30 days"
    assert describe_declared("not_a_feature", 1.0, "+") is None


def test_window_boundaries_are_half_open() -> None:
    as_of = T0 + timedelta(days=10)
    events = [
        ev("p", "page_view", as_of - timedelta(days=7), {"url": "/pricing"}, key="exactly-7d"),  # out of 7d
        ev("p", "page_view", as_of - timedelta(days=7) + timedelta(milliseconds=1), {"url": "/pricing"}, key="in"),
        ev("p", "page_view", as_of, {"url": "/pricing"}, key="now"),  # in
        ev("p", "page_view", as_of + timedelta(milliseconds=1), {"url": "/pricing"}, key="future"),  # not yet
        ev("p", "page_view", as_of - timedelta(hours=23), {"url": "/pricing"}, key="today"),
    ]
    f = build_offline(events, as_of)["p"]
    assert f["pricing_views_1d"] == 2
    assert f["pricing_views_7d"] == 3
    assert f["pricing_views_30d"] == 4
    assert f["days_since_last_activity"] == 0.0


def test_point_in_time_ignores_later_events_and_later_traits() -> None:
    early = T0 + timedelta(days=1)
    events = [
        ev("p", "identify", T0, {"title": "Engineer"}, email="p@acme.com"),
        ev("p", "demo_request", early),
        ev("p", "identify", T0 + timedelta(days=5), {"title": "CEO"}, email="p@gmail.com"),
        ev("p", "demo_request", T0 + timedelta(days=6)),
    ]
    at_2 = build_offline(events, T0 + timedelta(days=2))["p"]
    assert at_2["seniority"] == "individual" and at_2["email_domain_type"] == "corporate"
    assert at_2["demo_requests_30d"] == 1
    assert at_2["days_since_last_activity"] == 1.0
    at_7 = build_offline(events, T0 + timedelta(days=7))["p"]
    assert at_7["seniority"] == "c-level" and at_7["email_domain_type"] == "free"
    assert at_7["demo_requests_30d"] == 2


def test_duplicates_count_once_and_unknown_leads_get_empty_vectors() -> None:
    e = ev("p", "email_click", T0, key="same")
    f = build_offline([e, e, e], T0 + timedelta(hours=1), lead_ids=["p", "nobody"])
    assert f["p"]["email_clicks_1d"] == 1
    assert f["nobody"]["email_clicks_30d"] == 0 and f["nobody"]["days_since_last_activity"] is None
    assert f["nobody"]["seniority"] is None


def test_decay_and_account_engagement() -> None:
    as_of = T0 + timedelta(days=14)
    events = [
        ev("a", "identify", T0, {}, email="a@acme.com"),
        ev("b", "identify", T0, {}, email="b@acme.com"),
        ev("c", "identify", T0, {}, email="c@gmail.com"),
        ev("a", "demo_request", as_of - timedelta(days=7)),  # weight 5, one half-life old -> 2.5
        ev("b", "session_start", as_of - timedelta(days=1)),
        ev("c", "session_start", as_of - timedelta(days=1)),
        ev("a", "session_start", as_of - timedelta(days=8)),  # a's latest is 7 days ago: outside (as_of-7d, as_of]
    ]
    f = build_offline(events, as_of)
    assert f["a"]["engagement_decay"] == pytest.approx(2.5 + 0.5 ** (8 / 7), abs=1e-4)
    assert f["b"]["account_engaged_contacts_7d"] == 1  # only b: a's demo was exactly 7 days ago
    assert f["c"]["account_engaged_contacts_7d"] is None  # free mail: no company
