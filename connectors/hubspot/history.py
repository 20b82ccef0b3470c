"""HubSpot history for a backfill: every contact, company and deal, and each contact's company traits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import CrmRecord, History, Progress, SilentProgress, filled_traits

KEY_CODE = "hs"  # in backfill dedupe keys (bf:hs:...): short, so the longest key fits in 64 characters
CONTACT_PROPERTIES = ["email", "firstname", "lastname", "jobtitle", "country", "company", "lifecyclestage",
                      "hs_analytics_source", "createdate", "lastmodifieddate"]
COMPANY_PROPERTIES = ["name", "domain", "industry", "numberofemployees", "country", "annualrevenue",
                      "createdate", "hs_lastmodifieddate"]
DEAL_PROPERTIES = ["dealname", "dealstage", "pipeline", "amount", "closedate", "createdate", "hs_lastmodifieddate"]
# Fields that describe where a record stands now, not what it was when created (see tasks.backfill).
STATE_FIELDS = frozenset({"lifecyclestage", "dealstage", "closedate", "amount"})
# Fields that change on every write (ours included) and say nothing about the record.
VOLATILE_FIELDS = frozenset({"createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_object_id"})


def fetch(connector: Any, progress: Progress | None = None,
          mapped: Mapping[str, Sequence[str]] | None = None) -> History:
    """Page through every contact, company and deal (100 a call) and derive each contact's outcome.

    `mapped["contacts"]`: properties mapped to features, read with their value history (propertiesWithHistory,
    50 contacts a call), so every value enters training at the time it was set.
    """
    progress = progress or SilentProgress()
    history = History("hubspot")
    progress.stage("companies")
    history.drain(connector.iter_records("companies", COMPANY_PROPERTIES), "companies", progress)
    progress.stage("contacts")
    extra = list(dict.fromkeys((mapped or {}).get("contacts") or ()))
    contacts = history.drain(connector.iter_records("contacts", list(dict.fromkeys([*CONTACT_PROPERTIES, *extra])),
                                                    associations=["companies"], history=extra),
                             "contacts", progress)
    progress.stage("deals")
    deals = history.drain(connector.iter_records("deals", DEAL_PROPERTIES, associations=["contacts"]), "deals",
                          progress)
    history.outcomes = connector.outcomes_from_records(deals, contacts)
    return history


def company_of(record: CrmRecord, by_id: dict[tuple[str, str], CrmRecord]) -> CrmRecord | None:
    """The company a contact is associated with (its primary link), if fetched."""
    return record.linked("company", by_id) if record.object_type == "contact" else None


def company_traits(company: CrmRecord) -> dict[str, Any]:
    """The firmographics live enrichment gives a person, from their company record."""
    p = company.properties
    return filled_traits({"company": p.get("name"), "domain": p.get("domain"), "industry": p.get("industry"),
                          "numberofemployees": p.get("numberofemployees")})
