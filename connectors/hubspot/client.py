"""HubSpot connector on hubspot-api-client: provisioning, batch reads with companies, batch writes, outcomes."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import requests
import urllib3
from hubspot import HubSpot
from hubspot.crm.associations.v4 import exceptions as assoc_exc
from hubspot.crm.companies import exceptions as companies_exc
from hubspot.crm.contacts import exceptions as contacts_exc
from hubspot.crm.deals import exceptions as deals_exc
from hubspot.crm.lists import exceptions as lists_exc
from hubspot.crm.objects import exceptions as objects_exc
from hubspot.crm.owners import exceptions as owners_exc
from hubspot.crm.pipelines import exceptions as pipelines_exc
from hubspot.crm.properties import exceptions as properties_exc
from urllib3.util.retry import Retry

from connectors.base import (
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
    reasons_text,
    same_field_value,
    sampled_properties,
)
from connectors.hubspot import actions, activity
from connectors.hubspot.fields import GROUP_FIELD_NAME, SCORE_FIELD_NAMES, WRITTEN_FIELD_NAMES
from connectors.ratelimit import RateLimitTimeout, RedisTokenBucket
from connectors.retry import RetryPolicy, call_with_retries
from core.actions import Action, ActionResult, ActionTarget
from core.records import Account, Lead, LeadActivity, Outcome
from core.settings import Settings
from core.values import clean_account, clean_lead

T = TypeVar("T")

BATCH_LIMIT = 100  # HubSpot batch endpoints take at most 100 inputs
HISTORY_PAGE_LIMIT = 50  # records a page holds when properties are read with their history
GROUP_NAME = "leadbridge"
CONTACT_PROPERTIES = ["email", "firstname", "lastname", "jobtitle", "country", "company", "lifecyclestage",
                      "hubspot_owner_id", "hs_analytics_source", "createdate", "lastmodifieddate",
                      *SCORE_FIELD_NAMES.values()]
COMPANY_PROPERTIES = ["name", "domain", "industry", "numberofemployees", "country", "annualrevenue"]
_API_EXCEPTIONS: tuple[type[Exception], ...] = (
    contacts_exc.ApiException, companies_exc.ApiException, properties_exc.ApiException, assoc_exc.ApiException,
    deals_exc.ApiException, pipelines_exc.ApiException, objects_exc.ApiException, owners_exc.ApiException,
    lists_exc.ApiException,
)
_SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal"}
REASONS_MAX = 1000  # keep the text short enough for list views; HubSpot itself allows 65,536


def property_specs() -> list[FieldSpec]:
    """The contact and company properties leadbridge writes, with HubSpot create payloads."""
    defs = [
        ("score", "LeadBridge score", "number", "number", "Predicted conversion score, 0-100", None),
        ("grade", "LeadBridge fit grade", "enumeration", "select", "Fit with the ideal customer profile, A-F",
         ["A", "B", "C", "D", "E", "F"]),
        ("reasons", "LeadBridge reasons", "string", "textarea", "Why the score is what it is, one reason per line",
         None),
        ("tier", "LeadBridge tier", "string", "text", "Routing tier derived from score and grade", None),
        ("model_version", "LeadBridge model version", "string", "text", "Model that produced the score", None),
        ("scored_at", "LeadBridge scored at", "datetime", "date", "When the score was computed", None),
    ]
    # How a contact's score last moved (companies keep no score history, so they get none of these).
    movement = [
        ("previous_score", "LeadBridge previous score", "number", "number", "The score before the last change", None),
        ("score_change", "LeadBridge score change", "number", "number", "Score minus the previous score", None),
        ("score_trend", "LeadBridge score trend", "enumeration", "select",
         "Score now against the score one trend window ago", list(TREND_VALUES)),
        ("score_changed_at", "LeadBridge score changed at", "datetime", "date", "When the score last changed", None),
        ("score_change_reason", "LeadBridge what changed", "string", "text",
         "The reasons that came or went with the last change, e.g. +12: requested a demo", None),
    ]
    specs = []
    for object_type, object_defs in (("contacts", defs + movement), ("companies", defs)):
        for key, label, type_, field_type, description, options in object_defs:
            payload: dict[str, Any] = {"name": SCORE_FIELD_NAMES[key], "label": label, "type": type_,
                                       "fieldType": field_type, "groupName": GROUP_NAME, "description": description,
                                       "formField": False, "hidden": False}
            if options:
                payload["options"] = [{"label": o.capitalize() if key == "score_trend" else o, "value": o,
                                       "hidden": False, "displayOrder": i} for i, o in enumerate(options)]
            specs.append(FieldSpec(object_type, SCORE_FIELD_NAMES[key], label, type_, payload))
    # A contact's pilot group (issue 17): hidden from HubSpot's record views, written for pilot and control leads.
    group = {"name": GROUP_FIELD_NAME, "label": "LeadBridge pilot group", "type": "enumeration", "fieldType": "select",
             "groupName": GROUP_NAME, "description": "pilot or control: whether leadbridge shows this lead's score",
             "formField": False, "hidden": True,
             "options": [{"label": o, "value": o, "hidden": False, "displayOrder": i}
                         for i, o in enumerate(("pilot", "control"))]}
    specs.append(FieldSpec("contacts", GROUP_FIELD_NAME, group["label"], "enumeration", group))
    return specs


def _parse_body(body: Any) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return {"message": str(body)[:500]}
    return data if isinstance(data, dict) else {"message": str(data)[:500]}


def map_hubspot_error(exc: Exception, action: str) -> ConnectorError:
    """Translate an SDK or transport exception into our error hierarchy (the caller raises it `from exc`)."""
    if isinstance(exc, ConnectorError):  # raised by our own code inside a call: already ours
        return exc
    if isinstance(exc, _API_EXCEPTIONS):
        return hubspot_status_error(int(getattr(exc, "status", 0) or 0), getattr(exc, "body", None),
                                    getattr(exc, "headers", None) or {}, str(getattr(exc, "reason", "") or ""), action)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, requests.RequestException)):
        return TransientConnectorError(f"HubSpot {action} failed: {type(exc).__name__}: {exc}", vendor="hubspot")
    return ConnectorError(f"HubSpot {action} failed: {type(exc).__name__}: {exc}", vendor="hubspot")


def hubspot_status_error(status: int, raw_body: Any, headers: Mapping[str, Any], reason: str,
                         action: str) -> ConnectorError:
    """Our error for one HubSpot error answer (its status, body and headers), from the SDK or a generic request."""
    body = _parse_body(raw_body)
    vendor_message = str(body.get("message") or reason or "no message")
    code = body.get("category") or body.get("errorType") or body.get("policyName")
    message = f"HubSpot {action} failed: HTTP {status}: {vendor_message}"
    kwargs: dict[str, Any] = {"vendor": "hubspot", "status": status, "code": code, "vendor_message": vendor_message}
    if status == 429:
        return TransientConnectorError(message, retry_after=_retry_after(headers), **kwargs)
    if status >= 500 or status == 0:
        return TransientConnectorError(message, retry_after=_header_seconds(headers, "Retry-After"), **kwargs)
    if status in (401, 403):
        return AuthConnectorError(message, **kwargs)
    return PermanentConnectorError(message, **kwargs)


def _header_seconds(headers: Mapping[str, Any], name: str) -> float | None:
    for key, value in dict(headers).items():
        if key.lower() == name.lower():
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _retry_after(headers: Mapping[str, Any]) -> float:
    """Retry-After if present, else the rate-limit interval, else 10 s (HUBSPOT.md §4.4)."""
    seconds = _header_seconds(headers, "Retry-After")
    if seconds is not None:
        return seconds
    interval = _header_seconds(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
    return interval / 1000.0 if interval is not None else 10.0


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _to_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class HubSpotConnector(CallPolicy):
    """leadbridge's view of one HubSpot account (a private-app token)."""

    crm = "hubspot"
    write_batch = BATCH_LIMIT  # records one write_fields call sends together

    def __init__(self, access_token: str, *, base_url: str | None = None, limiter: RedisTokenBucket | None = None,
                 portal_id: str | None = None, retry_attempts: int = 5, retry_max_elapsed: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, client: HubSpot | None = None,
                 integration_user_id: str | None = None) -> None:
        if not access_token and client is None:
            raise ValueError("a HubSpot private-app access token is required")
        # urllib3 would otherwise retry GETs on 429 by itself (and never POSTs, HUBSPOT.md §0): one retry layer,
        # ours, that treats every method alike and shares the rate-limit bucket.
        kwargs: dict[str, Any] = {"access_token": access_token, "retry": Retry(total=0, raise_on_status=False)}
        if base_url:
            kwargs["host"] = base_url.rstrip("/")
        self.api = client or HubSpot(**kwargs)
        self.base_url = (base_url or "https://api.hubapi.com").rstrip("/")  # for the SDK's generic api_request
        self.set_call_policy(limiter, retry_attempts, retry_max_elapsed, sleep)
        self.rate_wait = 60.0  # seconds a call may wait for a rate-limit token before it counts as transient
        self.portal_id = portal_id
        # The HubSpot user the private app acts as: what it creates is leadbridge's own activity, never a touch.
        self.integration_user_id = integration_user_id
        self.sql_rules = dict(activity.SQL_RULES)  # stage values that mean sales qualified (scoring.activity)
        # Keep one client object per API: each attribute access on the SDK builds a new one (HUBSPOT.md §0).
        self._contacts = self.api.crm.contacts
        self._companies = self.api.crm.companies
        self._deals = self.api.crm.deals
        self._properties = self.api.crm.properties
        self._assoc = self.api.crm.associations.v4
        self._pipelines = self.api.crm.pipelines
        self._objects = self.api.crm.objects  # any object type by name: the activities (calls, emails ...)
        self.account_key = portal_id or hashlib.sha256(access_token.encode()).hexdigest()[:16]

    @classmethod
    def from_settings(cls, settings: Settings, *, retry: RetryPolicy,
                      session: Any = None) -> HubSpotConnector | None:
        """The connector for the HubSpot account `settings` names, or None when they name none."""
        if settings.hubspot_access_token is None:
            return None
        connector = cls(settings.hubspot_access_token.get_secret_value(), base_url=settings.hubspot_base_url,
                        retry_attempts=retry.attempts, retry_max_elapsed=retry.max_elapsed,
                        integration_user_id=settings.hubspot_integration_user_id)
        connector.rate_wait = retry.rate_wait
        return connector

    def rate_limit(self, settings: Settings) -> tuple[str, int, float] | None:
        """(bucket, requests, window seconds): the budget every process using this HubSpot account shares."""
        return f"hubspot:{self.account_key}", settings.hubspot_rate_limit, settings.hubspot_rate_window

    # ------------------------------------------------------------------ plumbing
    def _call(self, action: str, fn: Callable[[], T], retry: bool = True) -> T:
        """One SDK call: take a rate-limit token, map errors, retry transient ones (unless `retry` is False: the
        caller retries a larger unit, as a create whose answer was lost must be looked for first)."""
        def attempt() -> T:
            if self.limiter is not None:
                try:
                    self.limiter.acquire(timeout=self.rate_wait)
                except RateLimitTimeout as exc:  # the shared budget is spent for now: a caller's retry decides
                    raise TransientConnectorError(f"{action}: {exc}", vendor="hubspot",
                                                  retry_after=self.rate_wait or 1.0) from None
            self.calls += 1
            try:
                return fn()
            except Exception as exc:
                raise map_hubspot_error(exc, action) from exc

        if not retry:
            return attempt()
        return call_with_retries(attempt, attempts=self.retry_attempts, max_elapsed=self.retry_max_elapsed,
                                 sleep=self.sleep)

    def api_json(self, action: str, method: str, path: str, *, qs: Mapping[str, Any] | None = None,
                 body: Any = None, retry: bool = True) -> dict[str, Any]:
        """A call to an API the SDK has no module for (sequences), through its generic `api_request`, as JSON."""
        def send() -> dict[str, Any]:
            options: dict[str, Any] = {"method": method, "path": path, "base_url": self.base_url}
            if qs:
                options["qs"] = dict(qs)
            if body is not None:
                options["body"] = body
            response = self.api.api_request(options)
            if response.status_code >= 400:
                raise hubspot_status_error(response.status_code, response.text, response.headers, response.reason,
                                           action)
            data = response.json() if response.content else {}
            return data if isinstance(data, dict) else {"results": data}

        return self._call(action, send, retry=retry)

    def run_action(self, action: Action, target: ActionTarget, key: str) -> ActionResult:
        """Carry out one CRM rule action once for idempotency `key` (see connectors/hubspot/actions.py)."""
        return actions.run_action(self, action, target, key)

    # ------------------------------------------------------------------ provisioning
    def provision_fields(self, create: bool = True) -> ProvisionReport:
        """Ensure the `leadbridge` group and its contact/company properties exist; a second run changes nothing."""
        created: list[str] = []
        existing: list[str] = []
        missing: list[FieldSpec] = []
        problems: list[str] = []
        for object_type in ("contacts", "companies"):
            if not self._exists(f"read property group {object_type}.{GROUP_NAME}",
                                lambda ot=object_type: self._properties.groups_api.get_by_name(ot, GROUP_NAME)):
                if create:
                    self._create_or_conflict(
                        f"create property group {object_type}.{GROUP_NAME}",
                        lambda ot=object_type: self._properties.groups_api.create(
                            ot, {"name": GROUP_NAME, "label": "LeadBridge", "displayOrder": -1}))
                    created.append(f"{object_type}.group:{GROUP_NAME}")
                else:
                    problems.append(f"property group {object_type}.{GROUP_NAME} does not exist")
        for spec in property_specs():
            current = self._get_property(spec)
            if current is not None:
                existing.append(spec.full_name)
                if current.type != spec.field_type:
                    problems.append(f"{spec.full_name} exists with type {current.type!r}, expected {spec.field_type!r}")
                continue
            if not create:
                missing.append(spec)
                continue
            was_created = self._create_or_conflict(
                f"create property {spec.full_name}",
                lambda s=spec: self._properties.core_api.create(s.object_type, dict(s.metadata)))
            (created if was_created else existing).append(spec.full_name)
        return ProvisionReport(tuple(created), tuple(existing), tuple(missing), tuple(problems))

    def _call_unless(self, status: int, action: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, its result), or (False, None) when the answer is `status` (the status, never the text)."""
        try:
            return True, self._call(action, fn)
        except PermanentConnectorError as exc:
            if exc.status == status:
                return False, None
            raise

    def _exists(self, action: str, fn: Callable[[], Any]) -> bool:
        return self._call_unless(404, action, fn)[0]

    def _get_property(self, spec: FieldSpec) -> Any:
        def read() -> Any:
            return self._properties.core_api.get_by_name(spec.object_type, spec.name)

        return self._call_unless(404, f"read property {spec.full_name}", read)[1]

    def _create_or_conflict(self, action: str, fn: Callable[[], Any]) -> bool:
        """Create; a 409 means another worker created it first."""
        return self._call_unless(409, action, fn)[0]

    # ------------------------------------------------------------------ reads
    def read_leads(self, lead_ids: Sequence[str],
                   properties: Mapping[str, Sequence[str]] | None = None) -> list[LeadWithAccount]:
        """Batch-read contacts (100 a call) with their primary company; unknown ids are left out.

        `properties["contacts"]` are read in the same calls: each lead's `values`, known as of the contact's
        `lastmodifieddate` (its last change of any property, so no later than any one value's own change).
        """
        ids = list(dict.fromkeys(str(i) for i in lead_ids))
        extra = list(dict.fromkeys((properties or {}).get("contacts") or ()))
        wanted = list(dict.fromkeys([*CONTACT_PROPERTIES, *extra]))
        contacts: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids, BATCH_LIMIT):
            body = self._call_json("batch read contacts", lambda c=chunk: self._contacts.batch_api.read(
                {"inputs": [{"id": i} for i in c], "properties": wanted, "propertiesWithHistory": []},
                _preload_content=False))
            for obj in body.get("results") or []:
                contacts[str(obj.get("id"))] = obj.get("properties") or {}
        company_of = self._primary_companies(list(contacts))
        companies = self._read_companies(sorted(set(company_of.values())))
        out = []
        for cid in ids:
            props = contacts.get(cid)
            if props is None:
                continue
            company_id = company_of.get(cid)
            account = companies.get(company_id) if company_id else None
            # Values a CRM holds are checked where they become our records, as webhook values are (core.values).
            # A property HubSpot does not have is absent from the answer; one without a value comes back null.
            values = {name: props[name] for name in extra if name in props}
            out.append(LeadWithAccount(clean_lead(_lead_of(cid, props, account)), account, values, "contact",
                                       _to_datetime(props.get("lastmodifieddate"))))
        return out

    def _primary_companies(self, contact_ids: list[str]) -> dict[str, str]:
        """contact id -> company id, preferring the primary association (type 1)."""
        out: dict[str, str] = {}
        for chunk in _chunks(contact_ids, BATCH_LIMIT):
            body = self._call_json("batch read contact->company associations",
                                   lambda c=chunk: self._assoc.batch_api.get_page(
                                       "contact", "company", {"inputs": [{"id": i} for i in c]}, _preload_content=False))
            for item in body.get("results") or []:
                links = item.get("to") or []
                primary = [link for link in links
                           if any(t.get("typeId") == 1 for t in link.get("associationTypes") or [])]
                chosen = (primary or links)[:1]
                if chosen:
                    out[str((item.get("from") or {}).get("id"))] = str(chosen[0].get("toObjectId"))
        return out

    def _read_companies(self, company_ids: list[str]) -> dict[str, Account]:
        out: dict[str, Account] = {}
        for chunk in _chunks(company_ids, BATCH_LIMIT):
            body = self._call_json("batch read companies", lambda c=chunk: self._companies.batch_api.read(
                {"inputs": [{"id": i} for i in c], "properties": COMPANY_PROPERTIES, "propertiesWithHistory": []},
                _preload_content=False))
            for obj in body.get("results") or []:
                cid, p = str(obj.get("id")), obj.get("properties") or {}
                out[cid] = clean_account(Account(
                    id=cid, name=p.get("name"), domain=p.get("domain"), industry=p.get("industry"),
                    employees=p.get("numberofemployees"), country=p.get("country"), crm_ids={"hubspot": cid}))
        return out

    def read_objects(self, object_type: str, ids: Sequence[str], properties: Sequence[str],
                     history: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Batch-read records of any object type by id, as HubSpot's JSON (100 a call; 50 when `history` properties
        are read with their values over time); unknown ids are left out."""
        size = HISTORY_PAGE_LIMIT if history else BATCH_LIMIT
        out: list[dict[str, Any]] = []
        for chunk in _chunks(list(dict.fromkeys(ids)), size):
            body = self._call_json(f"batch read {object_type}", lambda c=chunk: self._objects.batch_api.read(
                object_type, {"inputs": [{"id": i} for i in c], "properties": list(properties),
                              "propertiesWithHistory": list(history)}, _preload_content=False))
            out.extend(body.get("results") or [])
        return out

    def associated_ids(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        """from id -> the ids of its `to_type` records (v4 batch read, 100 ids a call); ids with none are left out."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), BATCH_LIMIT):
            body = self._call_json(f"batch read {from_type}->{to_type} associations",
                                   lambda c=chunk: self._assoc.batch_api.get_page(
                                       from_type, to_type, {"inputs": [{"id": i} for i in c]},
                                       _preload_content=False))
            for item in body.get("results") or []:
                links = out.setdefault(str((item.get("from") or {}).get("id")), [])
                links.extend(str(link.get("toObjectId")) for link in item.get("to") or [])
        return out

    def read_activity(self, ids: Sequence[str]) -> dict[str, LeadActivity]:
        """Each contact's touches, lifecycle/lead-status history and deals (see connectors/hubspot/activity.py)."""
        return activity.read_activity(self, ids)

    def _call_json(self, action: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """An SDK call made with _preload_content=False, its JSON body read with orjson.

        The SDK still sends, authenticates and raises on error statuses; building its models (and parsing
        every date with dateutil) cost more CPU than the rest of enrichment and writeback together.
        """
        raw = self._call(action, fn)
        try:
            body = orjson.loads(raw.data or b"{}")
        except orjson.JSONDecodeError as exc:
            raise TransientConnectorError(f"{action}: HubSpot answered with a body that is not JSON (cut short?)",
                                          vendor="hubspot") from exc
        finally:
            raw.release_conn()
        return body if isinstance(body, dict) else {}

    def search_contacts(self, filters: Sequence[Mapping[str, Any]], *, properties: Sequence[str] | None = None,
                        limit: int = 1000, sorts: Sequence[Any] | None = None) -> list[Lead]:
        """Contacts matching ANDed filters ({propertyName, operator, value|values}), paged 100 at a time."""
        found = self._search("contacts", [list(filters)], properties or CONTACT_PROPERTIES, limit, sorts)
        return [_lead_of(str(o.id), o.properties or {}, None) for o in found]

    def _search(self, object_type: str, groups: list[list[Mapping[str, Any]]], properties: Sequence[str], limit: int,
                sorts: Sequence[Any] | None = None) -> list[Any]:
        api = {"contacts": self._contacts, "deals": self._deals, "companies": self._companies}[object_type]
        out: list[Any] = []
        after: str | None = None
        while len(out) < limit:
            body: dict[str, Any] = {"filterGroups": [{"filters": list(g)} for g in groups], "properties": list(properties),
                                    "limit": min(100, limit - len(out)), "sorts": list(sorts or ["hs_object_id"])}
            if after:
                body["after"] = after
            resp = self._call(f"search {object_type}", lambda b=body: api.search_api.do_search(b))
            out.extend(resp.results or [])
            nxt = resp.paging.next if resp.paging else None
            if not nxt or not nxt.after:
                break
            after = nxt.after
        return out

    # ------------------------------------------------------------------ discovery
    def list_properties(self, object_type: str = "contacts") -> list[PropertyInfo]:
        """Every visible property of a HubSpot object (GET /crm/v3/properties/{object}), HubSpot's and custom ones."""
        resp = self._call(f"list {object_type} properties",
                          lambda: self._properties.core_api.get_all(object_type, archived=False))
        return [_property_info(object_type, p) for p in resp.results or [] if not p.hidden]

    def sample_records(self, object_type: str, properties: Sequence[str], limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` records of an object (by createdate), with the values of `properties`."""
        if object_type not in ("contacts", "companies", "deals") or limit <= 0:
            return []
        found = self._search(object_type, [], list(properties), limit,
                             [{"propertyName": "createdate", "direction": "DESCENDING"}])
        return [dict(obj.properties or {}) for obj in found]

    def discover_properties(self, object_type: str = "contacts", sample: int = 200) -> list[PropertyInfo]:
        """The object's properties with their fill rate across the newest `sample` records."""
        infos = self.list_properties(object_type)
        records = self.sample_records(object_type, [p.name for p in infos], sample)
        return sampled_properties(infos, records, {p.name for p in infos})

    # ------------------------------------------------------------------ outcomes
    def deal_stage_outcomes(self) -> dict[str, bool]:
        """Closed deal stage ids -> won? Read from the pipelines (probability 1.0 won, closed otherwise lost)."""
        resp = self._call("read deal pipelines", lambda: self._pipelines.pipelines_api.get_all("deals"))
        out: dict[str, bool] = {}
        for pipeline in resp.results or []:
            for stage in pipeline.stages or []:
                meta = stage.metadata or {}
                if str(meta.get("isClosed", "false")).lower() == "true":
                    out[str(stage.id)] = float(meta.get("probability", "0") or 0) >= 1.0
        return out

    def read_outcomes(self, since: datetime | None = None) -> list[Outcome]:
        """Won/lost from closed deals (per associated contact) and lifecycle stage `customer` (won)."""
        stages = self.deal_stage_outcomes()
        outcomes: dict[str, Outcome] = {}
        if stages:
            filters: list[dict[str, Any]] = [{"propertyName": "dealstage", "operator": "IN", "values": sorted(stages)}]
            if since is not None:
                filters.append({"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                "value": str(int(since.timestamp() * 1000))})
            deals = self._search("deals", [filters], ["dealstage", "closedate", "hs_lastmodifieddate", "dealname"], 10_000)
            contacts_of = self._deal_contacts([str(d.id) for d in deals])
            for deal in deals:
                p = deal.properties or {}
                won = stages.get(str(p.get("dealstage")))
                if won is None:
                    continue
                when = _to_datetime(p.get("closedate")) or _to_datetime(p.get("hs_lastmodifieddate")) or deal.updated_at
                for contact_id in contacts_of.get(str(deal.id), []):
                    prev = outcomes.get(contact_id)
                    # A contact with several closed deals counts as won if any deal was won.
                    if prev is None or (won and not prev.won):
                        outcomes[contact_id] = Outcome(contact_id, won, when, "hubspot.deal",
                                                       f"deal {deal.id} {p.get('dealstage')}")
        filters = [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"}]
        if since is not None:
            filters.append({"propertyName": "lastmodifieddate", "operator": "GTE",
                            "value": str(int(since.timestamp() * 1000))})
        for contact in self._search("contacts", [filters], ["lifecyclestage", "lastmodifieddate"], 10_000):
            cid = str(contact.id)
            if cid not in outcomes or not outcomes[cid].won:
                when = _to_datetime((contact.properties or {}).get("lastmodifieddate")) or contact.updated_at
                outcomes[cid] = Outcome(cid, True, when, "hubspot.lifecyclestage", "lifecycle stage customer")
        return sorted(outcomes.values(), key=lambda o: (o.occurred_at, o.lead_id))

    def _deal_contacts(self, deal_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for chunk in _chunks(deal_ids, BATCH_LIMIT):
            resp = self._call("batch read deal->contact associations", lambda c=chunk: self._assoc.batch_api.get_page(
                "deal", "contact", {"inputs": [{"id": i} for i in c]}))
            for item in resp.results or []:
                out[str(item._from.id)] = [str(link.to_object_id) for link in item.to or []]
        return out

    # ------------------------------------------------------------------ backfill (paged listing)
    def iter_records(self, object_type: str, properties: Sequence[str], *, associations: Sequence[str] = (),
                     page_size: int = BATCH_LIMIT, history: Sequence[str] = ()) -> Iterator[list[CrmRecord]]:
        """Every live contact, company or deal, one page (at most 100) per API call, in id order.

        `history`: properties read with every value they had and when it was set (propertiesWithHistory;
        HubSpot then serves at most 50 records a page), in each record's `history`.
        """
        api = {"contacts": self._contacts, "companies": self._companies, "deals": self._deals}.get(object_type)
        if api is None:
            raise ValueError(f"object_type must be contacts, companies or deals, not {object_type!r}")
        after: str | None = None
        most = HISTORY_PAGE_LIMIT if history else BATCH_LIMIT
        while True:
            kwargs: dict[str, Any] = {"limit": min(page_size, most), "properties": list(properties),
                                      "archived": False}
            if history:
                kwargs["properties_with_history"] = list(history)
            if associations:
                kwargs["associations"] = list(associations)
            if after:
                kwargs["after"] = after
            resp = self._call(f"list {object_type}", lambda k=kwargs: api.basic_api.get_page(**k))
            yield [self._record(object_type, obj) for obj in resp.results or []]
            nxt = resp.paging.next if resp.paging else None
            if not nxt or not nxt.after:
                return
            after = nxt.after

    @staticmethod
    def _record(object_type: str, obj: Any) -> CrmRecord:
        props = {k: v for k, v in (obj.properties or {}).items() if v is not None}
        links: dict[str, tuple[str, ...]] = {}
        for name, collection in (getattr(obj, "associations", None) or {}).items():
            items = list(getattr(collection, "results", None) or [])
            # The primary association comes first (its type lacks the `_unlabeled` suffix); ids once each.
            items.sort(key=lambda a: str(getattr(a, "type", "")).endswith("_unlabeled"))
            links[_SINGULAR.get(name, name)] = tuple(dict.fromkeys(str(a.id) for a in items))
        created = _to_datetime(getattr(obj, "created_at", None)) or _to_datetime(props.get("createdate"))
        updated = _to_datetime(getattr(obj, "updated_at", None)) or _to_datetime(
            props.get("lastmodifieddate") or props.get("hs_lastmodifieddate"))
        history: dict[str, tuple[tuple[datetime, Any], ...]] = {}
        for name, entries in (getattr(obj, "properties_with_history", None) or {}).items():
            # HubSpot lists a property's values newest first, each with the time it was set.
            values = [(when, entry.value if entry.value is not None else "") for entry in entries or []
                      if (when := _to_datetime(entry.timestamp)) is not None]
            history[name] = tuple(sorted(values, key=lambda item: item[0]))
        return CrmRecord("hubspot", _SINGULAR[object_type], str(obj.id), props, created, updated, links, history)

    def outcomes_from_records(self, deals: Iterable[CrmRecord], contacts: Iterable[CrmRecord]) -> list[Outcome]:
        """Won/lost per contact from listed deals and contacts, by the same rules as read_outcomes.

        Deals need dealstage, closedate, hs_lastmodifieddate and their contact links; contacts need
        lifecyclestage and lastmodifieddate. Costs one API call (the deal pipelines), however many records.
        """
        stages = self.deal_stage_outcomes()
        outcomes: dict[str, Outcome] = {}
        for deal in deals:
            won = stages.get(str(deal.properties.get("dealstage")))
            if won is None:
                continue
            when = (_to_datetime(deal.properties.get("closedate"))
                    or _to_datetime(deal.properties.get("hs_lastmodifieddate")) or deal.updated_at)
            if when is None:
                continue
            for contact_id in deal.links.get("contact", ()):
                prev = outcomes.get(contact_id)
                if prev is None or (won and not prev.won):
                    outcomes[contact_id] = Outcome(contact_id, won, when, "hubspot.deal",
                                                   f"deal {deal.id} {deal.properties.get('dealstage')}")
        for contact in contacts:
            if str(contact.properties.get("lifecyclestage", "")).lower() != "customer":
                continue
            if contact.id not in outcomes or not outcomes[contact.id].won:
                when = _to_datetime(contact.properties.get("lastmodifieddate")) or contact.updated_at
                if when is not None:
                    outcomes[contact.id] = Outcome(contact.id, True, when, "hubspot.lifecyclestage",
                                                   "lifecycle stage customer")
        return sorted(outcomes.values(), key=lambda o: (o.occurred_at, o.lead_id))

    # ------------------------------------------------------------------ writes
    def to_properties(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Map canonical score fields to HubSpot property values (strings, as the API wants them)."""
        out: dict[str, str] = {}
        for key, name, value in mapped_fields(values, self.field_names, WRITTEN_FIELD_NAMES, "hubspot"):
            if value is None:
                out[name] = ""
            elif key == "reasons":
                out[name] = reasons_text(value, REASONS_MAX)
            elif key in ("scored_at", "score_changed_at"):
                dt = value if isinstance(value, datetime) else _to_datetime(value)
                out[name] = str(int(dt.timestamp() * 1000)) if dt else ""
            elif key in ("score", "previous_score", "score_change"):
                out[name] = str(int(round(float(value))))
            else:
                out[name] = str(value)
        return out

    def write_fields(self, updates: Mapping[str, Mapping[str, Any]], object_type: str = "contacts") -> WriteResult:
        """Batch-update score fields, 100 records a call; ids HubSpot cannot find are reported, not raised."""
        items = [(str(rid), self.to_properties(values)) for rid, values in updates.items() if values]
        api = self._contacts if object_type == "contacts" else self._companies
        written: list[str] = []
        failed: dict[str, str] = {}
        calls = 0
        for chunk in _chunks(items, BATCH_LIMIT):
            calls += 1
            body = self._call_json(f"batch update {object_type}", lambda c=chunk: api.batch_api.update(
                {"inputs": [{"id": rid, "properties": props} for rid, props in c]}, _preload_content=False))
            ok = {str(o.get("id")) for o in body.get("results") or []}
            written.extend(rid for rid, _ in chunk if rid in ok)
            for err in body.get("errors") or []:
                for rid in (err.get("context") or {}).get("ids", []):
                    failed[str(rid)] = f"{err.get('category')}: {err.get('message')}"
            for rid, _ in chunk:
                if rid not in ok and rid not in failed:
                    failed[rid] = "not in HubSpot's batch response"
        return WriteResult(tuple(written), failed, calls)


    def shows_fields(self, updates: Mapping[str, Mapping[str, Any]], object_type: str = "contacts") -> set[str]:
        """Ids among `updates` whose records already show those score fields (scored_at aside): writes that landed."""
        wanted = {str(rid): self.to_properties(comparable_values(values)) for rid, values in updates.items()}
        names = sorted({name for props in wanted.values() for name in props})
        api = self._contacts if object_type == "contacts" else self._companies
        shown: set[str] = set()
        for chunk in _chunks(list(wanted), BATCH_LIMIT):
            body = self._call_json(f"batch read {object_type}", lambda c=chunk: api.batch_api.read(
                {"inputs": [{"id": i} for i in c], "properties": names, "propertiesWithHistory": []},
                _preload_content=False))
            for obj in body.get("results") or []:
                rid, props = str(obj.get("id")), obj.get("properties") or {}
                if rid in wanted and all(same_field_value(props.get(n), v) for n, v in wanted[rid].items()):
                    shown.add(rid)
        return shown

    def write_account_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> WriteResult:
        """Batch-update score fields of companies."""
        return self.write_fields(updates, object_type="companies")

    def shows_account_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """Company ids among `updates` whose records already show those score fields (scored_at aside)."""
        return self.shows_fields(updates, object_type="companies")

    def is_account_id(self, record_id: str) -> bool:
        """Every HubSpot company id names a company."""
        return True

    def owner_email(self, owner_id: str) -> str | None:
        """The e-mail of CRM owner `owner_id` (GET /crm/v3/owners/{id}: an owner DM's Slack lookup), or None.

        An archived or unknown owner is a PermanentConnectorError (HubSpot answers 404).
        """
        if not str(owner_id).isdigit():
            raise PermanentConnectorError(f"{owner_id!r} is not a HubSpot owner id", vendor="hubspot")
        body = self._call_json("read owner", lambda: self.api.crm.owners.owners_api.get_by_id(
            int(owner_id), id_property="id", archived=False, _preload_content=False))
        return str(body.get("email") or "") or None


def _property_info(object_type: str, prop: Any) -> PropertyInfo:
    """Our PropertyInfo for one SDK Property (HubSpot's own have hubspotDefined true; custom ones false or none)."""
    meta = prop.modification_metadata
    return PropertyInfo(
        crm="hubspot", object_type=object_type, name=str(prop.name), label=str(prop.label or prop.name),
        crm_type=str(prop.type), field_type=str(prop.field_type or ""), custom=not prop.hubspot_defined,
        read_only=bool(meta.read_only_value) if meta is not None else False,
        calculated=bool(prop.calculated or prop.calculation_formula),
        unique=bool(prop.has_unique_value), options=len([o for o in prop.options or [] if not o.hidden]),
        references=str(prop.referenced_object_type or ""))


def _lead_of(contact_id: str, p: Mapping[str, Any], account: Account | None) -> Lead:
    """Our Lead record for a HubSpot contact's properties."""
    return Lead(id=contact_id, email=(p.get("email") or None), first_name=p.get("firstname"),
                last_name=p.get("lastname"), title=p.get("jobtitle"), country=p.get("country"),
                account_id=account.id if account else None, crm_ids={"hubspot": contact_id},
                properties={k: v for k, v in p.items() if v is not None})


def check_credentials(settings: Settings) -> tuple[bool | None, str]:
    """Whether HubSpot's properties API accepts the configured token (None: no token set), and what was seen."""
    if settings.hubspot_access_token is None:
        return None, "HUBSPOT_ACCESS_TOKEN not set (sandbox mode)"
    token = settings.hubspot_access_token.get_secret_value()
    try:
        response = requests.get(f"{settings.hubspot_base_url}/crm/v3/properties/contacts",
                                headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}"
    if response.status_code == 200:
        return True, "credentials accepted"
    return False, f"HTTP {response.status_code}: {response.text[:120]}"
