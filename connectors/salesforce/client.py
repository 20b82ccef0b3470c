"""Salesforce connector on simple-salesforce: field checks, SOQL reads, sObject Collections writes, API budget."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors.base import (
    MOVEMENT_FIELDS,
    TREND_VALUES,
    AuthConnectorError,
    CallPolicy,
    ConnectorError,
    CrmRecord,
    FieldSpec,
    LeadWithAccount,
    PermanentConnectorError,
    PropertyInfo,
    ProvisionReport,
    TransientConnectorError,
    WriteResult,
    comparable_values,
    mapped_fields,
    parse_time,
    reasons_text,
    same_field_value,
    sampled_properties,
)
from connectors.plainhttp import sandbox_instance, sandbox_requests_session
from connectors.ratelimit import RedisTokenBucket
from connectors.retry import RetryPolicy, call_with_retries
from connectors.salesforce import actions, activity
from connectors.salesforce.fields import (
    ACTION_KEY_FIELD,
    GROUP_FIELD_NAME,
    GROUP_OBJECTS,
    SCORE_FIELD_NAMES,
    WRITTEN_FIELD_NAMES,
)
from connectors.salesforce.outcomes import outcome_of_record
from core.actions import Action, ActionResult, ActionTarget
from core.records import Account, Lead, LeadActivity, Outcome
from core.settings import Settings
from core.values import clean_account, clean_lead

T = TypeVar("T")

COLLECTION_LIMIT = 200  # sObject Collections take at most 200 records a call
SOQL_ID_CHUNK = 200  # ids per IN (...) clause, far below SOQL's 100,000-character limit
SCORED_OBJECTS = ("Lead", "Contact", "Account")
REASONS_MAX = 32768
DESCRIBE_TTL = 600.0  # seconds before a cached describe is read again for a field it lacked
_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
_FIELD_META: dict[str, dict[str, Any]] = {
    # Tooling API CustomField Metadata (the same keys the Metadata API's CustomField uses).
    "score": {"type": "Number", "label": "Leadbridge Score", "precision": 5, "scale": 2,
              "description": "Predicted conversion score, 0-100"},
    "grade": {"type": "Text", "label": "Leadbridge Grade", "length": 2, "description": "Fit grade, A-F"},
    "reasons": {"type": "LongTextArea", "label": "Leadbridge Reasons", "length": REASONS_MAX, "visibleLines": 5,
                "description": "Why the score is what it is, one reason per line"},
    "tier": {"type": "Text", "label": "Leadbridge Tier", "length": 40, "description": "Routing tier"},
    "model_version": {"type": "Text", "label": "Leadbridge Model Version", "length": 64,
                      "description": "Model that produced the score"},
    "scored_at": {"type": "DateTime", "label": "Leadbridge Scored At", "description": "When the score was computed"},
    # How a Lead's or Contact's score last moved (Accounts keep no score history: not on Account).
    "previous_score": {"type": "Number", "label": "Leadbridge Previous Score", "precision": 3, "scale": 0,
                       "description": "The score before the last change"},
    "score_change": {"type": "Number", "label": "Leadbridge Score Change", "precision": 4, "scale": 0,
                     "description": "Score minus the previous score"},
    "score_trend": {"type": "Picklist", "label": "Leadbridge Score Trend",
                    "description": "Score now against the score one trend window ago",
                    "valueSet": {"restricted": True, "valueSetDefinition": {"sorted": False, "value": [
                        {"fullName": v, "label": v.capitalize(), "default": False} for v in TREND_VALUES]}}},
    "score_changed_at": {"type": "DateTime", "label": "Leadbridge Score Changed At",
                         "description": "When the score last changed"},
    "score_change_reason": {"type": "Text", "label": "Leadbridge What Changed", "length": 255,
                            "description": "The reasons that came or went with the last change"},
}
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_UNSAMPLED_TYPES = frozenset({"address", "location", "base64"})
_DESCRIBE_TYPES = {"Number": "double", "Text": "string", "LongTextArea": "textarea", "DateTime": "datetime",
                   "Picklist": "picklist"}


def field_specs() -> list[FieldSpec]:
    """The custom fields leadbridge writes on Lead, Contact and Account, with Tooling API create payloads."""
    specs = []
    for sobject in SCORED_OBJECTS:
        for key, name in SCORE_FIELD_NAMES.items():
            if sobject == "Account" and key in MOVEMENT_FIELDS:
                continue  # accounts keep no score history
            meta = dict(_FIELD_META[key])
            specs.append(FieldSpec(sobject, name, meta["label"], meta["type"],
                                   {"FullName": f"{sobject}.{name}", "Metadata": meta}))
    for sobject in GROUP_OBJECTS:  # the pilot group (issue 17): leave it off page layouts reps use
        meta = {"type": "Text", "label": "Leadbridge Pilot Group", "length": 10,
                "description": "pilot or control: whether leadbridge shows this lead's score"}
        specs.append(FieldSpec(sobject, GROUP_FIELD_NAME, meta["label"], "Text",
                               {"FullName": f"{sobject}.{GROUP_FIELD_NAME}", "Metadata": meta}))
    # A rule's task (issue 16) is upserted by this unique External ID: a retry can never make a second one.
    key = {"type": "Text", "label": "Leadbridge Action Key", "length": 40, "externalId": True, "unique": True,
           "caseSensitive": False, "description": "The rule action that made this task (its idempotency key)"}
    specs.append(FieldSpec("Task", ACTION_KEY_FIELD, key["label"], "Text",
                           {"FullName": f"Task.{ACTION_KEY_FIELD}", "Metadata": key}))
    return specs


def map_salesforce_error(exc: Exception, action: str) -> ConnectorError:
    """Translate simple-salesforce / requests exceptions into our error hierarchy."""
    if isinstance(exc, ConnectorError):  # raised by our own code inside a call: already ours
        return exc
    if isinstance(exc, SalesforceAuthenticationFailed):
        return AuthConnectorError(f"Salesforce login failed: {exc.code}: {exc.message}", vendor="salesforce",
                                  code=str(exc.code), vendor_message=str(exc.message))
    if isinstance(exc, SalesforceError):
        status = int(getattr(exc, "status", 0) or 0)
        content = getattr(exc, "content", None)
        first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
        code = first.get("errorCode")
        vendor_message = str(first.get("message") or content or "no message").strip()
        message = f"Salesforce {action} failed: HTTP {status} {code or ''}: {vendor_message}".replace("  ", " ")
        kwargs: dict[str, Any] = {"vendor": "salesforce", "status": status, "code": code,
                                  "vendor_message": vendor_message}
        if isinstance(exc, SalesforceRefusedRequest) and code == "REQUEST_LIMIT_EXCEEDED":
            # The daily budget is a rolling 24 h window and Salesforce sends no Retry-After: back off for long.
            return TransientConnectorError(message, retry_after=3600.0, **kwargs)
        if isinstance(exc, (SalesforceExpiredSession, SalesforceRefusedRequest)) or status in (401, 403):
            return AuthConnectorError(message, **kwargs)
        if isinstance(exc, (SalesforceMalformedRequest, SalesforceResourceNotFound)) or 400 <= status < 500 and status not in (408, 429):
            return PermanentConnectorError(message, **kwargs)
        return TransientConnectorError(message, retry_after=None, **kwargs)
    if isinstance(exc, requests.RequestException):
        return TransientConnectorError(f"Salesforce {action} failed: {type(exc).__name__}: {exc}", vendor="salesforce")
    return ConnectorError(f"Salesforce {action} failed: {type(exc).__name__}: {exc}", vendor="salesforce")


def soql_quote(value: str) -> str:
    """Quote a string literal for SOQL (backslash and single quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _to_datetime(value: Any) -> datetime | None:
    return parse_time(value) if value else None


def _domain(email: str | None, website: str | None) -> str | None:
    if website:
        host = re.sub(r"^https?://", "", website.strip().lower()).split("/")[0]
        return host[4:] if host.startswith("www.") else host or None
    if email and "@" in email:
        return email.rsplit("@", 1)[1].lower()
    return None


class SalesforceConnector(CallPolicy):
    """leadbridge's view of one Salesforce org."""

    crm = "salesforce"
    write_batch = COLLECTION_LIMIT  # records one write_fields call sends together

    def __init__(self, *, username: str | None = None, password: str | None = None, security_token: str | None = None,
                 domain: str = "login", instance_url: str | None = None, session_id: str | None = None,
                 session: requests.Session | None = None, version: str = "59.0",
                 limiter: RedisTokenBucket | None = None, retry_attempts: int = 5, retry_max_elapsed: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, client: Salesforce | None = None,
                 integration_user_id: str | None = None) -> None:
        if client is None and not (session_id and instance_url) and not (username and password):
            raise ValueError("Salesforce needs session_id + instance_url, or username + password (+ security token)")
        self._client = client
        self._creds = {"username": username, "password": password, "security_token": security_token or "",
                       "domain": domain, "instance_url": instance_url, "session_id": session_id}
        self.session = session
        self.version = version
        self.set_call_policy(limiter, retry_attempts, retry_max_elapsed, sleep)
        self.api_usage: tuple[int, int] | None = None  # (used, limit) from the last Sforce-Limit-Info header
        self._described: dict[str, tuple[float, dict[str, str]]] = {}  # sObject -> (when, field lower -> name)
        # The API user's Id: its Tasks and Events are leadbridge's own (None: ask userinfo on first need).
        self.integration_user_id = integration_user_id
        self.sql_rules = dict(activity.SQL_RULES)  # Lead Status values that mean sales qualified (scoring.activity)

    @classmethod
    def from_settings(cls, settings: Settings, *, retry: RetryPolicy,
                      session: requests.Session | None = None) -> SalesforceConnector | None:
        """The connector for the Salesforce org `settings` name, or None when they name none."""
        if not (settings.salesforce_username or settings.salesforce_session_id):
            return None
        secret = lambda s: s.get_secret_value() if s is not None else None
        instance_url = settings.salesforce_instance_url
        if settings.salesforce_sandbox_url and session is None:
            # Development only: simple-salesforce hard-codes https, so every process that builds this connector
            # (workers, CLI, admin) reaches the plain-http sandbox CRM through a routing session.
            session = sandbox_requests_session(settings.salesforce_sandbox_url, settings.salesforce_domain)
            instance_url = instance_url or "https://" + sandbox_instance(settings.salesforce_sandbox_url)
        return cls(username=settings.salesforce_username, password=secret(settings.salesforce_password),
                   security_token=secret(settings.salesforce_security_token),
                   domain=settings.salesforce_domain, instance_url=instance_url,
                   session_id=secret(settings.salesforce_session_id), session=session,
                   retry_attempts=retry.attempts, retry_max_elapsed=retry.max_elapsed,
                   integration_user_id=settings.salesforce_integration_user_id)

    def rate_limit(self, settings: Settings) -> tuple[str, int, float] | None:
        """No shared bucket: Salesforce counts a daily API budget (api_budget), not a request rate."""
        return None

    # ------------------------------------------------------------------ plumbing
    @property
    def sf(self) -> Salesforce:
        """The simple-salesforce client, logging in on first use."""
        if self._client is None:
            c = self._creds
            try:
                if c["session_id"]:
                    self._client = Salesforce(session_id=c["session_id"], instance_url=c["instance_url"],
                                              session=self.session, version=self.version)
                else:
                    self._client = Salesforce(username=c["username"], password=c["password"],
                                              security_token=c["security_token"], domain=c["domain"],
                                              session=self.session, version=self.version)
            except Exception as exc:
                raise map_salesforce_error(exc, "login") from exc
        return self._client

    def _call(self, action: str, fn: Callable[[Salesforce], T], retry: bool = True) -> T:
        """One API call: take a rate-limit token, map errors, retry transient ones (unless `retry` is False: the
        caller retries a larger unit), track the API budget."""
        def attempt() -> T:
            sf = self.sf
            if self.limiter is not None:
                self.limiter.acquire()
            self.calls += 1
            try:
                result = fn(sf)
            except Exception as exc:
                raise map_salesforce_error(exc, action) from exc
            usage = (sf.api_usage or {}).get("api-usage")
            if usage is not None:
                self.api_usage = (int(usage.used), int(usage.total))
            return result

        if not retry:
            return attempt()
        return call_with_retries(attempt, attempts=self.retry_attempts, max_elapsed=self.retry_max_elapsed,
                                 sleep=self.sleep)

    def run_action(self, action: Action, target: ActionTarget, key: str) -> ActionResult:
        """Carry out one CRM rule action once for idempotency `key` (see connectors/salesforce/actions.py)."""
        return actions.run_action(self, action, target, key)

    def api_budget(self) -> dict[str, int]:
        """Daily API budget: {used, limit, remaining}, from the last Sforce-Limit-Info (or /limits if none yet)."""
        if self.api_usage is None:
            limits = self._call("read limits", lambda sf: sf.limits())
            daily = limits["DailyApiRequests"]
            # The limits call itself was counted: prefer the header it returned when there was one.
            if self.api_usage is None:
                self.api_usage = (int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))
        used, limit = self.api_usage
        return {"used": used, "limit": limit, "remaining": max(0, limit - used)}

    def query_all(self, soql: str, action: str = "query") -> list[dict[str, Any]]:
        """Run SOQL and follow nextRecordsUrl; each page is one (retried) API call."""
        page = self._call(action, lambda sf: sf.query(soql))
        records = list(page.get("records", []))
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            url = page["nextRecordsUrl"]
            page = self._call(action + " (next page)", lambda sf, u=url: sf.query_more(u, identifier_is_url=True))
            records.extend(page.get("records", []))
        return records

    def api_user_id(self) -> str:
        """The Id of the User this connector works as: configured, else the session's (GET /services/oauth2/userinfo)."""
        if self.integration_user_id is None:
            def ask(sf: Salesforce) -> dict[str, Any]:
                response = sf.session.get(f"https://{sf.sf_instance}/services/oauth2/userinfo", headers=sf.headers,
                                          timeout=30)
                if response.status_code != 200:
                    raise AuthConnectorError(f"Salesforce userinfo failed: HTTP {response.status_code}: "
                                             f"{response.text[:200]}", vendor="salesforce",
                                             status=response.status_code)
                return dict(response.json())

            self.integration_user_id = str(self._call("read userinfo", ask)["user_id"])
        return self.integration_user_id

    def read_activity(self, ids: Sequence[str]) -> dict[str, LeadActivity]:
        """Each Lead's or Contact's Tasks, Events, Status history and Opportunities (connectors/salesforce/activity.py)."""
        return activity.read_activity(self, ids)

    def iter_records(self, sobject: str, fields: Sequence[str], where: str = "") -> Iterator[list[CrmRecord]]:
        """Every record of `sobject` (SOQL, following nextRecordsUrl), one result page per API call.

        Id, CreatedDate and LastModifiedDate are always selected; reference fields (AccountId, ContactId,
        ConvertedContactId, ...) become links.
        """
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", sobject) or not all(
                re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]*", f) for f in fields):
            raise ValueError("sObject and field names must be plain API names")
        wanted = list(dict.fromkeys(["Id", "CreatedDate", "LastModifiedDate", *fields]))
        soql = f"SELECT {', '.join(wanted)} FROM {sobject}" + (f" WHERE {where}" if where else "")
        page = self._call(f"list {sobject}", lambda sf: sf.query(soql))
        while True:
            yield [self._record(sobject, rec) for rec in page.get("records", [])]
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            url = page["nextRecordsUrl"]
            page = self._call(f"list {sobject} (next page)",
                              lambda sf, u=url: sf.query_more(u, identifier_is_url=True))

    @staticmethod
    def _record(sobject: str, rec: Mapping[str, Any]) -> CrmRecord:
        props = {k: v for k, v in rec.items() if k != "attributes" and v is not None}
        links: dict[str, tuple[str, ...]] = {}
        for name, value in props.items():
            if name.endswith("Id") and name != "Id" and isinstance(value, str) and _ID.match(value):
                target = name.removeprefix("Converted").removesuffix("Id").lower()
                links[target] = links.get(target, ()) + (value,)
        return CrmRecord("salesforce", sobject.lower(), str(rec["Id"]), props, _to_datetime(rec.get("CreatedDate")),
                         _to_datetime(rec.get("LastModifiedDate")), links)

    # ------------------------------------------------------------------ fields
    def check_fields(self) -> ProvisionReport:
        """Describe Lead/Contact/Account and report exactly which leadbridge fields are missing or unusable."""
        existing: list[str] = []
        missing: list[FieldSpec] = []
        problems: list[str] = []
        described: dict[str, dict[str, dict[str, Any]]] = {}
        for sobject in dict.fromkeys(spec.object_type for spec in field_specs()):
            desc = self._call(f"describe {sobject}", lambda sf, o=sobject: getattr(sf, o).describe())
            described[sobject] = {f["name"].lower(): f for f in desc.get("fields", [])}
        for spec in field_specs():
            current = described[spec.object_type].get(spec.name.lower())
            if current is None:
                missing.append(spec)
                continue
            existing.append(spec.full_name)
            if not current.get("updateable", False):
                problems.append(f"{spec.full_name} exists but is not updateable (check field-level security)")
            expected = _DESCRIBE_TYPES[spec.field_type]
            if current.get("type") != expected:
                problems.append(f"{spec.full_name} has type {current.get('type')!r}, expected {expected!r}")
            if spec.metadata["Metadata"].get("externalId") and not current.get("externalId"):
                problems.append(f"{spec.full_name} exists but is not an External ID (upserts need one)")
        return ProvisionReport((), tuple(existing), tuple(missing), tuple(problems))

    def provision_fields(self, create: bool = False) -> ProvisionReport:
        """Check the fields; with create=True add missing ones through the Tooling API, then check again."""
        report = self.check_fields()
        if not create or not report.missing:
            return report
        created = []
        for spec in report.missing:
            try:
                self._call(f"create field {spec.full_name}",
                           lambda sf, s=spec: sf.restful("tooling/sobjects/CustomField", method="POST",
                                                         json=dict(s.metadata)))
                created.append(spec.full_name)
            except PermanentConnectorError as exc:
                if exc.code != "DUPLICATE_DEVELOPER_NAME":
                    raise
        after = self.check_fields()
        return ProvisionReport(tuple(created), tuple(n for n in after.existing if n not in created), after.missing,
                               after.problems)

    # ------------------------------------------------------------------ discovery
    def list_properties(self, object_type: str = "Lead") -> list[PropertyInfo]:
        """Every field of an sObject (GET sobjects/{object}/describe), standard and custom (__c) ones."""
        if not _API_NAME.fullmatch(object_type):
            raise PermanentConnectorError(f"{object_type!r} is not an sObject API name", vendor="salesforce",
                                          status=404, code="NOT_FOUND")
        desc = self._call(f"describe {object_type}", lambda sf: getattr(sf, object_type).describe())
        return [_field_info(object_type, f) for f in desc.get("fields", [])]

    def sample_records(self, object_type: str, fields: Sequence[str], limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` records of an sObject (ORDER BY CreatedDate DESC), with the values of `fields`."""
        if limit <= 0 or not fields:
            return []
        if not _API_NAME.fullmatch(object_type) or not all(_API_NAME.fullmatch(f) for f in fields):
            raise ValueError("sObject and field names must be plain API names")
        soql = f"SELECT {', '.join(dict.fromkeys(fields))} FROM {object_type} ORDER BY CreatedDate DESC LIMIT {int(limit)}"
        return [{k: v for k, v in rec.items() if k != "attributes"}
                for rec in self.query_all(soql, f"sample {object_type}")]

    def discover_properties(self, object_type: str = "Lead", sample: int = 200) -> list[PropertyInfo]:
        """The sObject's fields with their fill rate across the newest `sample` records."""
        infos = self.list_properties(object_type)
        # Compound (address, location) and base64 fields cannot be read many records at a time.
        names = [p.name for p in infos if p.crm_type not in _UNSAMPLED_TYPES]
        records = self.sample_records(object_type, names, sample)
        return sampled_properties(infos, records, set(names) if sample > 0 else set())

    # ------------------------------------------------------------------ reads
    def read_leads(self, lead_ids: Sequence[str],
                   properties: Mapping[str, Sequence[str]] | None = None) -> list[LeadWithAccount]:
        """Read Leads (00Q) and Contacts (003) by id with their account; unknown ids are left out.

        `properties["Lead"]` / `properties["Contact"]` are selected in the same SOQL, those the org has
        (describe, cached): each lead's `values`, known as of the record's LastModifiedDate.
        """
        ids = list(dict.fromkeys(str(i) for i in lead_ids))
        bad = [i for i in ids if not _ID.match(i) or i[:3] not in ("00Q", "003")]
        if bad:
            raise PermanentConnectorError(f"not Lead or Contact ids: {bad[:5]}", vendor="salesforce")
        found: dict[str, LeadWithAccount] = {}
        reads: tuple[tuple[str, str, str, str, Callable[[Mapping[str, Any]], LeadWithAccount]], ...] = (
            ("00Q", "Lead", "SELECT Id, FirstName, LastName, Email, Title, Company, Industry, NumberOfEmployees, "
                            "Country, Website, LeadSource, Status, OwnerId, IsConverted, ConvertedContactId, "
                            "ConvertedAccountId, CreatedDate, LastModifiedDate", "read leads", self._from_lead),
            ("003", "Contact", "SELECT Id, FirstName, LastName, Email, Title, MailingCountry, LeadSource, OwnerId, AccountId, "
                               "Account.Name, Account.Website, Account.Industry, Account.NumberOfEmployees, "
                               "Account.BillingCountry, CreatedDate, LastModifiedDate", "read contacts",
             self._from_contact),
        )
        for prefix, sobject, select, action, convert in reads:
            chunks = list(_chunks([i for i in ids if i.startswith(prefix)], SOQL_ID_CHUNK))
            if not chunks:
                continue
            asked = list(dict.fromkeys((properties or {}).get(sobject) or ()))
            # The mapped name -> the org's own spelling of it; a field the org lacks is not asked for (SOQL
            # would refuse the whole query).
            present = self.existing_fields(sobject, asked) if asked else {}
            selected = {name.lower() for name in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", select)}
            extra = [real for real in dict.fromkeys(present.values()) if real.lower() not in selected]
            columns = select + "".join(f", {real}" for real in extra)
            for chunk in chunks:
                soql = f"{columns} FROM {sobject} WHERE Id IN ({', '.join(soql_quote(i) for i in chunk)})"
                for rec in self.query_all(soql, action):
                    item = convert(rec)
                    by_lower = {k.lower(): v for k, v in rec.items()}
                    values = {name: by_lower.get(real.lower()) for name, real in present.items()}
                    found[rec["Id"][:15]] = replace(item, values=values, object_type=sobject.lower(),
                                                    changed_at=_to_datetime(rec.get("LastModifiedDate")))
        return [found[i[:15]] for i in ids if i[:15] in found]

    def existing_fields(self, sobject: str, names: Sequence[str]) -> dict[str, str]:
        """Of `names`, those `sobject` has: name -> the org's spelling. Describe is read once and cached; again
        (at most every DESCRIBE_TTL seconds) when a name is missing, since an admin may have added the field."""
        cached = self._described.get(sobject)
        now = time.monotonic()
        if cached is None or (any(n.lower() not in cached[1] for n in names) and now - cached[0] > DESCRIBE_TTL):
            desc = self._call(f"describe {sobject}", lambda sf, o=sobject: getattr(sf, o).describe())
            cached = (now, {f["name"].lower(): f["name"] for f in desc.get("fields", [])})
            self._described[sobject] = cached
        return {n: cached[1][n.lower()] for n in names if n.lower() in cached[1]}

    def tracked_fields(self, sobject: str, names: Sequence[str]) -> dict[str, str]:
        """Of `names`, those whose changes `sobject`'s History object records: name -> the org's spelling.

        The History object's describe lists them as values of its `Field` picklist (with `created` and the like);
        an object without history (no LeadHistory, say) tracks nothing.
        """
        history = f"{sobject}History"
        try:
            desc = self._call(f"describe {history}", lambda sf: getattr(sf, history).describe())
        except PermanentConnectorError as exc:
            if exc.status == 404:
                return {}
            raise
        field = next((f for f in desc.get("fields", []) if f.get("name") == "Field"), {})
        values = {str(v["value"]).lower(): str(v["value"]) for v in field.get("picklistValues") or []
                  if v.get("active", True) and v.get("value")}
        return {n: values[n.lower()] for n in names if n.lower() in values}

    def field_history(self, sobject: str, record_ids: Sequence[str],
                      fields: Sequence[str]) -> dict[str, list[tuple[str, datetime, Any, Any]]]:
        """The History rows of `fields` on those records, oldest first: record id (15 characters) ->
        [(field, when, old value, new value)]. One SOQL per 200 records (following nextRecordsUrl)."""
        if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", f) for f in [sobject, *fields]):
            raise ValueError("sObject and field names must be plain API names")
        out: dict[str, list[tuple[str, datetime, Any, Any]]] = {}
        ids = [i for i in dict.fromkeys(str(r) for r in record_ids) if _ID.match(i)]
        if not ids or not fields:
            return out
        parent = f"{sobject}Id"
        names = ", ".join(soql_quote(f) for f in fields)
        for chunk in _chunks(ids, SOQL_ID_CHUNK):
            soql = (f"SELECT {parent}, Field, OldValue, NewValue, CreatedDate FROM {sobject}History "
                    f"WHERE {parent} IN ({', '.join(soql_quote(i) for i in chunk)}) AND Field IN ({names}) "
                    "ORDER BY CreatedDate")
            for row in self.query_all(soql, f"read {sobject} field history"):
                when = _to_datetime(row.get("CreatedDate"))
                if when is not None:
                    out.setdefault(str(row[parent])[:15], []).append(
                        (str(row["Field"]), when, row.get("OldValue"), row.get("NewValue")))
        for rows in out.values():
            rows.sort(key=lambda r: r[1])  # stable: rows of one instant keep the order Salesforce gave
        return out

    def _from_lead(self, rec: Mapping[str, Any]) -> LeadWithAccount:
        domain = _domain(rec.get("Email"), rec.get("Website"))
        account = None
        if rec.get("Company") or domain:
            # A Lead has no Account record; its company fields stand in, keyed by domain (else by name).
            account = Account(id=domain or f"company:{str(rec.get('Company')).strip().lower()}", name=rec.get("Company"),
                              domain=domain, industry=rec.get("Industry"), employees=rec.get("NumberOfEmployees"),
                              country=rec.get("Country"), crm_ids={})
        props = {k: v for k, v in rec.items() if k != "attributes" and v is not None}
        lead = Lead(id=rec["Id"], email=rec.get("Email"), first_name=rec.get("FirstName"), last_name=rec.get("LastName"),
                    title=rec.get("Title"), country=rec.get("Country"), account_id=account.id if account else None,
                    crm_ids={"salesforce": rec["Id"]}, properties=props)
        # Values a CRM holds are checked where they become our records, as webhook values are (core.values).
        return LeadWithAccount(clean_lead(lead), clean_account(account) if account else None)

    def _from_contact(self, rec: Mapping[str, Any]) -> LeadWithAccount:
        acc = rec.get("Account") or None
        account = None
        if acc and rec.get("AccountId"):
            account = Account(id=rec["AccountId"], name=acc.get("Name"), domain=_domain(None, acc.get("Website")),
                              industry=acc.get("Industry"), employees=acc.get("NumberOfEmployees"),
                              country=acc.get("BillingCountry"), crm_ids={"salesforce": rec["AccountId"]})
        props = {k: v for k, v in rec.items() if k not in ("attributes", "Account") and v is not None}
        lead = Lead(id=rec["Id"], email=rec.get("Email"), first_name=rec.get("FirstName"), last_name=rec.get("LastName"),
                    title=rec.get("Title"), country=rec.get("MailingCountry"),
                    account_id=account.id if account else None, crm_ids={"salesforce": rec["Id"]}, properties=props)
        # Values a CRM holds are checked where they become our records, as webhook values are (core.values).
        return LeadWithAccount(clean_lead(lead), clean_account(account) if account else None)

    def read_outcomes(self, since: datetime | None = None) -> list[Outcome]:
        """Converted Leads (won) and closed Opportunities of Contacts, by the rule webhooks use (outcomes.py)."""
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if since else None
        where = f" AND LastModifiedDate >= {stamp}" if stamp else ""
        reads = (("lead", "SELECT Id, IsConverted, ConvertedDate, ConvertedContactId, LastModifiedDate FROM Lead "
                          f"WHERE IsConverted = TRUE{where}", "read converted leads"),
                 ("opportunity", "SELECT Id, ContactId, IsWon, IsClosed, CloseDate, StageName, LastModifiedDate "
                                 f"FROM Opportunity WHERE IsClosed = TRUE{where}", "read closed opportunities"))
        outcomes: list[Outcome] = []
        for object_type, soql, action in reads:
            for rec in self.query_all(soql, action):
                changed = _to_datetime(rec.get("LastModifiedDate")) or datetime.now(UTC)
                # SOQL answers with the same field names and value forms an Outbound Message carries.
                outcome = outcome_of_record(object_type, str(rec["Id"]), rec, changed)
                if outcome is not None:
                    outcomes.append(outcome)
        # Won before lost for one person at one instant: storage keeps the first of (lead, source, time).
        return sorted(outcomes, key=lambda o: (o.occurred_at, o.lead_id, not o.won))

    # ------------------------------------------------------------------ writes
    def to_fields(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Map canonical score fields to Salesforce custom field values (JSON-typed)."""
        out: dict[str, Any] = {}
        for key, name, value in mapped_fields(values, self.field_names, WRITTEN_FIELD_NAMES, "salesforce"):
            if value is None:
                out[name] = None
            elif key == "score":
                out[name] = round(float(value), 2)
            elif key in ("previous_score", "score_change"):
                out[name] = int(round(float(value)))
            elif key == "reasons":
                out[name] = reasons_text(value, REASONS_MAX)
            elif key in ("scored_at", "score_changed_at"):
                dt = value if isinstance(value, datetime) else _to_datetime(value)
                out[name] = dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") if dt else None
            else:
                out[name] = str(value)
        return out

    def shows_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """Ids among `updates` whose records already show those score fields (scored_at aside): writes that landed."""
        wanted = {str(rid): self.to_fields(comparable_values(values)) for rid, values in updates.items()}
        shown: set[str] = set()
        for prefix, sobject in (("00Q", "Lead"), ("003", "Contact"), ("001", "Account")):
            ids = [rid for rid in wanted if rid.startswith(prefix) and _ID.match(rid)]
            names = sorted({name for rid in ids for name in wanted[rid]})
            if not ids or not names:
                continue
            by_short = {rid[:15]: rid for rid in ids}
            for chunk in _chunks(ids, SOQL_ID_CHUNK):
                soql = (f"SELECT Id, {', '.join(names)} FROM {sobject} "
                        f"WHERE Id IN ({', '.join(soql_quote(i) for i in chunk)})")
                for rec in self.query_all(soql, f"read {sobject} score fields"):
                    rid = by_short.get(str(rec.get("Id", ""))[:15])
                    if rid and all(same_field_value(rec.get(n), v) for n, v in wanted[rid].items()):
                        shown.add(rid)
        return shown

    def write_fields(self, updates: Mapping[str, Mapping[str, Any]], all_or_none: bool = False) -> WriteResult:
        """Update Leads/Contacts/Accounts through sObject Collections, 200 records a call, per-record results."""
        records = []
        for rid, values in updates.items():
            if not values:
                continue
            sobject = {"00Q": "Lead", "003": "Contact", "001": "Account"}.get(str(rid)[:3])
            if sobject is None:
                raise PermanentConnectorError(f"{rid} is not a Lead, Contact or Account id", vendor="salesforce")
            records.append(dict({"attributes": {"type": sobject}, "id": str(rid)}, **self.to_fields(values)))
        # Group by type so each call has few "chunks" (runs of the same type; Salesforce allows 10 per call).
        records.sort(key=lambda r: r["attributes"]["type"])
        written: list[str] = []
        failed: dict[str, str] = {}
        calls = 0
        for chunk in _chunks(records, COLLECTION_LIMIT):
            calls += 1
            body = {"allOrNone": all_or_none, "records": list(chunk)}
            results = self._call("update records", lambda sf, b=body: sf.restful("composite/sobjects", method="PATCH",
                                                                                 json=b))
            for rec, res in zip(chunk, results or []):
                if res.get("success"):
                    written.append(rec["id"])
                else:
                    errs = res.get("errors") or [{}]
                    failed[rec["id"]] = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errs)
        return WriteResult(tuple(written), failed, calls)

    def write_account_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> WriteResult:
        """Update Accounts' score fields (the ids say the sObject)."""
        return self.write_fields(updates)

    def shows_account_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """Account ids among `updates` whose records already show those score fields (scored_at aside)."""
        return self.shows_fields(updates)

    def is_account_id(self, record_id: str) -> bool:
        """Whether `record_id` is an Account's (key prefix 001)."""
        return str(record_id).startswith("001")

    def owner_email(self, owner_id: str) -> str | None:
        """The e-mail of the User `owner_id` owning a record (an owner DM's Slack lookup); None for a queue (00G) or
        a User without one. An unknown id is a PermanentConnectorError."""
        if not _ID.match(str(owner_id)):
            raise PermanentConnectorError(f"{owner_id!r} is not a Salesforce id", vendor="salesforce")
        if not str(owner_id).startswith("005"):
            return None  # a queue owns it: nobody to message
        rows = self.query_all(f"SELECT Email FROM User WHERE Id = '{owner_id}'", "read owner")
        if not rows:
            raise PermanentConnectorError(f"no User {owner_id}", vendor="salesforce")
        return str(rows[0].get("Email") or "") or None


def _field_info(sobject: str, f: Mapping[str, Any]) -> PropertyInfo:
    """Our PropertyInfo for one field of a describe (formula, roll-up and auto-number fields count as calculated)."""
    return PropertyInfo(
        crm="salesforce", object_type=sobject, name=str(f["name"]), label=str(f.get("label") or f["name"]),
        crm_type=str(f.get("type") or ""), field_type=str(f.get("soapType") or ""), custom=bool(f.get("custom")),
        read_only=not f.get("updateable", False),
        calculated=bool(f.get("calculated") or f.get("calculatedFormula") or f.get("autoNumber")),
        unique=bool(f.get("unique")), options=sum(1 for v in f.get("picklistValues") or [] if v.get("active", True)),
        references=",".join(str(r) for r in f.get("referenceTo") or []))


def check_credentials(settings: Settings) -> tuple[bool | None, str]:
    """Whether Salesforce accepts the configured login or session (None: neither set), and the API budget left."""
    if settings.salesforce_username is None and settings.salesforce_session_id is None:
        return None, "SALESFORCE_USERNAME / SALESFORCE_SESSION_ID not set"
    try:
        if settings.salesforce_session_id is not None:
            sf = Salesforce(
                instance_url=settings.salesforce_instance_url,
                session_id=settings.salesforce_session_id.get_secret_value(),
            )
        else:
            sf = Salesforce(
                username=settings.salesforce_username,
                password=settings.salesforce_password.get_secret_value() if settings.salesforce_password else "",
                security_token=(
                    settings.salesforce_security_token.get_secret_value() if settings.salesforce_security_token else ""
                ),
                domain=settings.salesforce_domain,
            )
        limits = sf.limits()
        daily = limits.get("DailyApiRequests", {})
        return True, f"API budget {daily.get('Remaining')}/{daily.get('Max')} left today"
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure (login, network, SDK), never crashes
        return False, f"{type(exc).__name__}: {str(exc)[:200]}"
