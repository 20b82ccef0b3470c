"""Identifier and timestamp formats the sandbox shares with the real CRMs."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

# The HubSpot portal (account) id the sandbox CRM answers as, in its webhooks and record URLs.
DEFAULT_HUBSPOT_PORTAL_ID = 62515

# Salesforce key prefixes (first three characters of every record id).
SF_KEY_PREFIXES = {"Lead": "00Q", "Contact": "003", "Account": "001", "Opportunity": "006", "User": "005",
                   "LeadHistory": "017", "ContactHistory": "017",  # 017: field history rows
                   "Task": "00T", "Event": "00U", "OpportunityHistory": "008", "OpportunityContactRole": "00K",
                   "Group": "00G", "QueueSobject": "03g", "Campaign": "701", "CampaignMember": "00v"}


def base62(number: int, width: int) -> str:
    """Encode a non-negative integer in base 62, left-padded with zeros to `width`."""
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(_BASE62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def sf_id18(id15: str) -> str:
    """Return the 18-character, case-insensitive form of a 15-character Salesforce id."""
    if len(id15) == 18:
        return id15[:15] + sf_id18(id15[:15])[15:]
    if len(id15) != 15:
        raise ValueError("a Salesforce id has 15 or 18 characters")
    suffix = ""
    for chunk in range(3):
        bits = 0
        for pos, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << pos
        suffix += _SUFFIX[bits]
    return id15 + suffix


def sf_new_id(prefix: str, counter: int) -> str:
    """Build a well-formed 18-character Salesforce id with the given key prefix."""
    return sf_id18(prefix + "Sb" + "0000" + base62(counter, 6))


def iso_ms(ts: float | None = None) -> str:
    """Format a unix time as ISO-8601 UTC with milliseconds, the way both CRMs do."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def sf_datetime(ts: float | None = None) -> str:
    """Format a unix time the way Salesforce REST returns datetimes (+0000 offset)."""
    return iso_ms(ts)[:-1] + "+0000"


def correlation_id() -> str:
    """Return a fresh HubSpot-style correlation id (a UUID)."""
    return str(uuid.uuid4())
