"""Salesforce history for a backfill: every Account, Lead, Contact and Opportunity, and each Contact's Account."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import CrmRecord, History, Progress, SilentProgress, filled_traits

KEY_CODE = "sf"  # in backfill dedupe keys (bf:sf:...): short, so the longest key fits in 64 characters
FIELDS = {
    "Lead": ["FirstName", "LastName", "Email", "Title", "Company", "Industry", "NumberOfEmployees", "Country",
             "Website", "LeadSource", "Status", "IsConverted", "ConvertedDate", "ConvertedAccountId",
             "ConvertedContactId", "ConvertedOpportunityId"],
    "Contact": ["FirstName", "LastName", "Email", "Title", "MailingCountry", "LeadSource", "AccountId"],
    "Account": ["Name", "Website", "Industry", "NumberOfEmployees", "BillingCountry"],
    "Opportunity": ["Name", "StageName", "IsClosed", "IsWon", "CloseDate", "Amount", "AccountId", "ContactId"],
}
# Fields that describe where a record stands now, not what it was when created (see tasks.backfill).
STATE_FIELDS = frozenset({"Status", "IsConverted", "ConvertedDate", "ConvertedAccountId", "ConvertedContactId",
                          "ConvertedOpportunityId", "StageName", "IsClosed", "IsWon", "CloseDate", "Amount"})
# Fields that change on every write (ours included) and say nothing about the record.
VOLATILE_FIELDS = frozenset({"CreatedDate", "LastModifiedDate", "SystemModstamp", "Id"})


def fetch(connector: Any, progress: Progress | None = None,
          mapped: Mapping[str, Sequence[str]] | None = None) -> History:
    """SOQL through every Account, Lead, Contact and Opportunity, and read converted/closed outcomes.

    `mapped["Lead"]` / `mapped["Contact"]`: fields mapped to features, selected too (those the org has). Field
    history (LeadHistory / ContactHistory) is not read: each value is known only as of the record's
    LastModifiedDate, and tasks.backfill reports what that costs training.
    """
    progress = progress or SilentProgress()
    history = History("salesforce")
    for sobject in ("Account", "Lead", "Contact", "Opportunity"):
        stage = sobject.lower() + "s"
        progress.stage(stage)
        asked = list((mapped or {}).get(sobject) or ())
        present = connector.existing_fields(sobject, asked) if asked else {}
        fields = list(dict.fromkeys([*FIELDS[sobject], *present.values()]))
        history.drain(connector.iter_records(sobject, fields), stage, progress)
    history.outcomes = connector.read_outcomes()
    return history


def company_of(record: CrmRecord, by_id: dict[tuple[str, str], CrmRecord]) -> CrmRecord | None:
    """The Account a Contact belongs to, if fetched (a Lead carries its company's fields itself)."""
    return record.linked("account", by_id) if record.object_type == "contact" else None


def company_traits(company: CrmRecord) -> dict[str, Any]:
    """The firmographics a Contact gets from its Account, as identify traits."""
    p = company.properties
    return filled_traits({"company": p.get("Name"), "website": p.get("Website"),
                          "industry": p.get("Industry"), "numberofemployees": p.get("NumberOfEmployees"),
                          "country": p.get("BillingCountry"), "accountid": company.id})

