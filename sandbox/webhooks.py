"""Outbound webhooks of the sandbox: HubSpot v3-signed JSON batches and Salesforce Outbound Message envelopes.

Record changes are queued per configured target; a background thread batches them (up to 100 events or
notifications per request), posts them, and retries failures with growing gaps: HubSpot up to 10 retries,
Salesforce until the receiver answers with an Ack (or the message is older than 24 hours).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import requests

from core.signatures import hmac_signature_header, hubspot_v1_signature, hubspot_v3_signature
from sandbox import schema
from sandbox.ids import DEFAULT_HUBSPOT_PORTAL_ID, base62, iso_ms, sf_id18
from sandbox.store import Change, SandboxStore

log = logging.getLogger(__name__)

MAX_BATCH = 100
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SUBSCRIPTION_IDS = {"creation": 1, "propertyChange": 2, "associationChange": 3, "deletion": 4}


class TargetSpecError(ValueError):
    """A webhook target description is invalid."""


@dataclass
class Target:
    """Where and how to deliver one CRM's change notifications."""

    kind: str  # hubspot | salesforce
    url: str
    client_secret: str = ""  # hubspot: app client secret; salesforce json: HMAC secret
    portal_id: int = DEFAULT_HUBSPOT_PORTAL_ID
    app_id: int = 54321
    object_types: list[str] = field(default_factory=lambda: ["contacts", "companies", "deals"])
    properties: list[str] | None = None  # hubspot: propertyChange subscriptions (None: every property)
    # hubspot: propertyChange subscriptions per object type (contacts -> [names]); wins over `properties`
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    include_v1: bool = True
    organization_id: str = ""
    objects: dict[str, list[str]] = field(default_factory=dict)  # salesforce: sObject -> fields to send
    format: str = "soap"  # salesforce: soap (Outbound Message) | json (Flow callout signed with HMAC)
    flush_seconds: float = 0.2  # how long to gather events before sending a batch
    timeout: float = 5.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 3600.0
    max_retries: int = 10  # hubspot
    max_age_seconds: float = 86400.0  # salesforce drops messages older than this
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if self.kind not in ("hubspot", "salesforce"):
            raise TargetSpecError("kind must be 'hubspot' or 'salesforce'")
        if not self.url.startswith(("http://", "https://")):
            raise TargetSpecError("url must be an http(s) URL")
        if self.kind == "hubspot":
            if not self.client_secret:
                raise TargetSpecError("client_secret is required for HubSpot targets (it signs X-HubSpot-Signature-v3)")
            bad = [t for t in self.object_types if schema.HS_TYPE_ALIASES.get(t) is None]
            if bad:
                raise TargetSpecError(f"unknown HubSpot object types: {bad}")
            self.object_types = [schema.HS_TYPE_ALIASES[t] for t in self.object_types]
            if not isinstance(self.subscriptions, dict) or not all(
                    isinstance(v, list) and all(isinstance(p, str) for p in v) for v in self.subscriptions.values()):
                raise TargetSpecError("subscriptions must map object types to lists of property names")
            bad = [t for t in self.subscriptions if schema.HS_TYPE_ALIASES.get(str(t).lower()) is None]
            if bad:
                raise TargetSpecError(f"unknown HubSpot object types in subscriptions: {bad}")
            self.subscriptions = {schema.HS_TYPE_ALIASES[t.lower()]: list(v) for t, v in self.subscriptions.items()}
        else:
            if not self.objects:
                raise TargetSpecError("objects ({sObject: [fields]}) is required for Salesforce targets")
            if self.format not in ("soap", "json"):
                raise TargetSpecError("format must be 'soap' or 'json'")
            if self.format == "json" and not self.client_secret:
                raise TargetSpecError("client_secret is required for json (Flow callout) targets")
            if not self.organization_id:
                raise TargetSpecError("organization_id is required for Salesforce targets")

    def subscribed(self, object_type: str, name: str) -> bool:
        """Whether a change of property `name` on `object_type` is sent (HubSpot: one subscription per property)."""
        names = self.subscriptions.get(object_type, self.properties)
        return names is None or name in names

    def public(self) -> dict[str, Any]:
        """Describe the target without its secret."""
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "client_secret"}
        out["has_secret"] = bool(self.client_secret)
        return out


def property_subscriptions(spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """object type -> subscribed property names, from HubSpot's webhooks.json `subscriptions` object.

    Reads `legacyCrmObjects` ({subscriptionType: "contact.propertyChange", propertyName, active}) and
    `crmObjects` ({subscriptionType: "object.propertyChange", objectName|objectType: "contact", propertyName,
    active}); inactive entries subscribe nothing, and other subscription types are left as they are.
    """
    if isinstance(spec.get("subscriptions"), Mapping):
        spec = spec["subscriptions"]  # the whole webhooks.json config, not only its subscriptions
    unknown = set(spec) - {"legacyCrmObjects", "crmObjects", "hubEvents"}
    if unknown:
        raise TargetSpecError(f"unknown subscription group(s): {', '.join(sorted(unknown))}; use legacyCrmObjects "
                              "or crmObjects")
    out: dict[str, list[str]] = {}
    for group in ("legacyCrmObjects", "crmObjects"):
        items = spec.get(group, [])
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise TargetSpecError(f"{group} must be a list of objects")
        for item in items:
            kind = str(item.get("subscriptionType", ""))
            if not kind.endswith(".propertyChange"):
                continue
            singular = kind.split(".")[0] if group == "legacyCrmObjects" else str(
                item.get("objectName") or item.get("objectType") or "")
            otype = schema.HS_TYPE_ALIASES.get(singular.lower())
            if otype is None:
                raise TargetSpecError(f"{group}: unknown object in {dict(item)}")
            name = item.get("propertyName")
            if not isinstance(name, str) or not name:
                raise TargetSpecError(f"{group}: a propertyChange subscription needs a propertyName: {dict(item)}")
            active = item.get("active", True)
            if not isinstance(active, bool):
                raise TargetSpecError(f"{group}: active must be true or false: {dict(item)}")
            names = out.setdefault(otype, [])
            if active and name not in names:
                names.append(name)
    return out


@dataclass
class _Batch:
    target: Target
    items: list[dict[str, Any]]
    attempt: int = 0
    due: float = 0.0
    first_queued: float = field(default_factory=time.time)
    message_id: str = ""


class WebhookDispatcher:
    """Turns store changes into signed deliveries, in a background thread."""

    def __init__(self, store: SandboxStore, session: requests.Session | None = None) -> None:
        self.store = store
        self.session = session or requests.Session()
        self.session.trust_env = False  # a local sandbox never goes through an environment proxy
        self._targets: dict[str, Target] = {}
        self._fresh: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self._retries: list[_Batch] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_ids = itertools.count(int(time.time()) * 1000)
        self._notification_ids = itertools.count(1)
        self.deliveries: list[dict[str, Any]] = []
        store.add_listener(self.on_change)

    # ---------------------------------------------------------------- targets
    def add_target(self, spec: Mapping[str, Any]) -> Target:
        """Register a target from a JSON-like spec; raises TargetSpecError."""
        known = set(Target.__dataclass_fields__) - {"id"}
        unknown = set(spec) - known
        if unknown:
            raise TargetSpecError(f"unknown target field(s): {', '.join(sorted(unknown))}")
        try:
            target = Target(**spec)
        except TypeError as exc:
            raise TargetSpecError(str(exc)) from None
        with self._lock:
            self._targets[target.id] = target
            self._fresh[target.id] = []
        return target

    def remove_target(self, target_id: str) -> bool:
        """Forget a target and everything queued for it."""
        with self._lock:
            self._fresh.pop(target_id, None)
            self._retries = [b for b in self._retries if b.target.id != target_id]
            return self._targets.pop(target_id, None) is not None

    def set_subscriptions(self, target_id: str, spec: Mapping[str, Any]) -> Target | None:
        """Replace a HubSpot target's propertyChange subscriptions from a webhooks.json `subscriptions` object.

        Only the object types the spec names change; None when there is no such target. Raises TargetSpecError.
        """
        wanted = property_subscriptions(spec)
        with self._lock:
            target = self._targets.get(target_id)
            if target is None:
                return None
            if target.kind != "hubspot":
                raise TargetSpecError("only HubSpot targets have property subscriptions")
            target.subscriptions.update(wanted)
            return target

    def targets(self) -> list[dict[str, Any]]:
        """Describe the registered targets."""
        with self._lock:
            return [t.public() for t in self._targets.values()]

    def pending(self) -> int:
        """Events or notifications not yet acknowledged."""
        with self._lock:
            return sum(len(v) for v in self._fresh.values()) + sum(len(b.items) for b in self._retries)

    # ---------------------------------------------------------------- change intake
    def on_change(self, change: Change) -> None:
        """Store listener: queue the change for every target that subscribes to it."""
        with self._lock:
            now = time.time()
            for target in self._targets.values():
                for item in self._items_for(target, change):
                    self._fresh[target.id].append((now, item))
            self._lock.notify()

    def _items_for(self, target: Target, change: Change) -> list[dict[str, Any]]:
        if target.kind == "hubspot":
            if change.crm != "hubspot" or change.object_type not in target.object_types:
                return []
            return self._hubspot_events(target, change)
        if change.crm != "salesforce" or change.object_type not in target.objects:
            return []
        if change.kind not in ("created", "property_change"):
            return []
        n = next(self._notification_ids)
        return [{"notification_id": sf_id18("04l" + "Sb" + "0000" + base62(n, 6)), "sobject": change.object_type,
                 "record_id": change.object_id, "kind": change.kind, "changed": dict(change.properties),
                 "occurred_at_ms": change.occurred_at_ms}]

    def _hubspot_events(self, target: Target, change: Change) -> list[dict[str, Any]]:
        def base(sub: str, object_id: str, stype: str) -> dict[str, Any]:
            event: dict[str, Any] = {
                "eventId": next(self._event_ids), "subscriptionId": SUBSCRIPTION_IDS[sub] * 1000
                + list(schema.HS_OBJECT_TYPES).index(stype), "portalId": target.portal_id, "appId": target.app_id,
                "occurredAt": change.occurred_at_ms, "subscriptionType": f"{schema.HS_SINGULAR[stype]}.{sub}",
                "attemptNumber": 0, "objectId": int(object_id), "changeSource": change.source}
            if change.source == "CRM_UI":
                event["sourceId"] = "userId:45678"
            return event

        if change.kind == "created":
            event = base("creation", change.object_id, change.object_type)
            event["changeFlag"] = "CREATED"
            return [event]
        if change.kind == "property_change":
            out = []
            for name, value in change.properties.items():
                if not target.subscribed(change.object_type, name):
                    continue
                event = base("propertyChange", change.object_id, change.object_type)
                event["propertyName"] = name
                event["propertyValue"] = "" if value is None else str(value)
                out.append(event)
            return out
        if change.kind == "association_change":
            extra = change.extra
            other_type = extra["toObjectType"]
            events = []
            for otype, frm, to in ((change.object_type, extra["fromObjectId"], extra["toObjectId"]),
                                   (other_type, extra["toObjectId"], extra["fromObjectId"])):
                if otype not in target.object_types:
                    continue
                event = base("associationChange", frm, otype)
                event.update({"associationType": f"{schema.HS_SINGULAR[otype]}_TO_"
                                                 f"{schema.HS_SINGULAR[other_type if otype == change.object_type else change.object_type]}".upper(),
                              "fromObjectId": int(frm), "toObjectId": int(to),
                              "associationRemoved": extra["associationRemoved"],
                              "isPrimaryAssociation": extra["isPrimaryAssociation"]})
                events.append(event)
            return events
        return []

    # ---------------------------------------------------------------- the sender thread
    def start(self) -> None:
        """Start the background sender."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sender (queued events stay queued)."""
        self._stop.set()
        with self._lock:
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or retrying; True when drained."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return self.pending() == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            work = self._collect()
            if not work:
                with self._lock:
                    self._lock.wait(timeout=0.05)
                continue
            for batch in work:
                if self._stop.is_set():
                    break
                self._send(batch)

    def _collect(self) -> list[_Batch]:
        now = time.time()
        work: list[_Batch] = []
        with self._lock:
            for tid, fresh in self._fresh.items():
                target = self._targets[tid]
                if not fresh:
                    continue
                if len(fresh) < MAX_BATCH and now - fresh[0][0] < target.flush_seconds:
                    continue
                while fresh:
                    chunk, self._fresh[tid] = fresh[:MAX_BATCH], fresh[MAX_BATCH:]
                    fresh = self._fresh[tid]
                    work.append(_Batch(target, [item for _, item in chunk], first_queued=chunk[0][0],
                                       message_id=uuid.uuid4().hex))
            due = [b for b in self._retries if b.due <= now]
            self._retries = [b for b in self._retries if b.due > now]
            work.extend(due)
        return work

    def _send(self, batch: _Batch) -> None:
        target = batch.target
        started = time.time()
        status: int | None = None
        error = ""
        try:
            if target.kind == "hubspot":
                body, headers = self._hubspot_request(batch)
            else:
                body, headers = self._salesforce_request(batch)
            resp = self.session.post(target.url, data=body, headers=headers, timeout=target.timeout)
            status = resp.status_code
            ok = 200 <= status < 300 if target.kind == "hubspot" or target.format == "json" else (
                status == 200 and _is_ack(resp.content))
            if not ok:
                error = f"HTTP {status}" + ("" if status != 200 else " without <Ack>true</Ack>")
        except requests.RequestException as exc:
            ok, error = False, type(exc).__name__
        with self._lock:
            self.deliveries.append({"target": target.id, "kind": target.kind, "t": started, "duration": time.time() - started,
                                    "attempt": batch.attempt, "count": len(batch.items), "status": status, "ok": ok,
                                    "error": error, "message_id": batch.message_id})
            if len(self.deliveries) > 10_000:
                del self.deliveries[:1000]
            if ok or target.id not in self._targets:
                return
            batch.attempt += 1
            too_old = time.time() - batch.first_queued > target.max_age_seconds
            if (target.kind == "hubspot" and batch.attempt > target.max_retries) or too_old:
                log.warning("sandbox.webhook.dropped", extra={"target": target.id, "events": len(batch.items)})
                return
            gap = min(target.retry_max_seconds, target.retry_base_seconds * 2 ** (batch.attempt - 1))
            batch.due = time.time() + gap * random.uniform(0.8, 1.2)
            self._retries.append(batch)

    def _hubspot_request(self, batch: _Batch) -> tuple[bytes, dict[str, str]]:
        target = batch.target
        events = [dict(e, attemptNumber=batch.attempt) for e in batch.items]
        body = json.dumps(events, separators=(",", ":")).encode()
        ts = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": hubspot_v3_signature(target.client_secret, "POST", target.url, body, ts),
            "X-HubSpot-Request-Timestamp": ts,
            "X-HubSpot-Timeout-Millis": str(int(target.timeout * 1000)),
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio-http-client) - "
                          "WebhooksExecutorDaemon-executor",
        }
        if target.include_v1:
            headers["X-HubSpot-Signature"] = hubspot_v1_signature(target.client_secret, body)
            headers["X-HubSpot-Signature-Version"] = "v1"
        return body, headers

    def _salesforce_request(self, batch: _Batch) -> tuple[bytes, dict[str, str]]:
        target = batch.target
        notes = []
        for item in batch.items:
            rec = self.store.sf_get(item["sobject"], item["record_id"])  # data is read at send time
            if rec is None:
                continue
            # Id, CreatedDate and LastModifiedDate are always part of the sandbox's message definition: receivers
            # use them to tell creations from edits and to order deliveries.
            fields = ["Id", "CreatedDate", "LastModifiedDate"] + [
                f for f in target.objects[item["sobject"]] if f not in ("Id", "CreatedDate", "LastModifiedDate")]
            notes.append((item, {f: rec.get(f) for f in fields if f in rec}))
        if target.format == "json":
            # A record-triggered Flow callout in leadbridge's flow shape: the changed fields, not the whole record.
            events = []
            for item in batch.items:
                fields = {k: v for k, v in item["changed"].items() if k in target.objects[item["sobject"]]}
                events.append({"object": item["sobject"], "id": item["record_id"], "type": item["kind"],
                               "fields": fields, "occurredAt": _iso_from_ms(item["occurred_at_ms"]),
                               "eventId": item["notification_id"]})
            body = json.dumps({"organizationId": target.organization_id, "events": events},
                              separators=(",", ":")).encode()
            return body, {"Content-Type": "application/json",
                          "X-Leadbridge-Signature": hmac_signature_header(target.client_secret, body, int(time.time()))}
        org15 = target.organization_id[:15]
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
            "<soapenv:Body>",
            f'<notifications xmlns="{OUTBOUND_NS}">',
            f"<OrganizationId>{escape(target.organization_id)}</OrganizationId>",
            f"<ActionId>{_action_id(target)}</ActionId>",
            '<SessionId xsi:nil="true"/>',
            f"<EnterpriseUrl>https://sandbox.leadbridge.invalid/services/Soap/c/59.0/{org15}</EnterpriseUrl>",
            f"<PartnerUrl>https://sandbox.leadbridge.invalid/services/Soap/u/59.0/{org15}</PartnerUrl>",
        ]
        for item, values in notes:
            parts.append(f"<Notification><Id>{item['notification_id']}</Id>")
            parts.append(f'<sObject xsi:type="sf:{item["sobject"]}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">')
            for name in sorted(values):
                value = values[name]
                if value is None:
                    continue
                parts.append(f"<sf:{name}>{escape(_soap_text(value))}</sf:{name}>")
            parts.append("</sObject></Notification>")
        parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
        return "".join(parts).encode(), {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def _action_id(target: Target) -> str:
    return sf_id18("04k" + "Sb" + "0000" + base62(int(target.id[:8], 16) % 62**6, 6))


def _soap_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value.endswith("+0000") and "T" in value:
        return value[:-5] + "Z"
    return str(value)


def _iso_from_ms(ms: int) -> str:
    return iso_ms(ms / 1000.0)


def _is_ack(content: bytes) -> bool:
    """True when a listener's answer is a SOAP body with <Ack>true</Ack>."""
    try:
        root = SafeET.fromstring(content)
    except Exception:  # noqa: BLE001 - any parse failure means "not acknowledged"
        return False
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Ack":
            return (el.text or "").strip().lower() == "true"
    return False
