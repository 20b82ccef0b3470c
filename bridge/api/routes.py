"""The API's routes: the same operations as the admin pages (services), as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery
from flask import Response
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy.orm import Session

from bridge import security
from bridge.api import schemas as s
from bridge.api.endpoints import endpoint
from bridge.extensions import Services, services
from bridge.metrics import configured_crms
from core.records import utcnow
from services import Conflict, NotFound, OperationError
from services import alerts as alert_ops
from services import bands as band_ops
from services import dead_letters as dead_letter_ops
from services import deliveries as delivery_ops
from services import field_discovery as discovery_ops
from services import fields as field_ops
from services import inbox as inbox_ops
from services import leads as lead_ops
from services import learning as learning_ops
from services import mappings as mapping_ops
from services import models as model_ops
from services import overview as overview_ops
from services import pilots as pilot_ops
from services import sources as source_ops
from services import users as user_ops
from services import value as value_ops
from services.overview import build_overview
from storage.audit import list_entries
from storage.users import list_tokens, list_users
from tasks.config import QUEUES


def _errors(*codes: int) -> dict[int, tuple[Any, str]]:
    text = {400: "invalid input", 401: "no valid API token", 403: "needs the admin role", 404: "not found",
            409: "conflicts with the current state", 413: "body too large", 415: "body is not JSON",
            502: "the CRM refused the call or could not be reached"}
    return {code: (s.Error, text[code]) for code in codes}


READ = _errors(400, 401)
WRITE = _errors(400, 401, 403, 413, 415)
T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)


def _db(write: bool = False) -> Any:
    return services().db.session(write=write)


def _actor() -> str:
    return security.actor()


def _paged(page: Any, item: type[BaseModel], out: type[P], **extra: Any) -> P:
    """One page of rows as the API's page model (inside the session: the rows are database objects)."""
    return out(items=[item.model_validate(row) for row in page.rows], total=page.total, limit=page.limit,
               offset=page.offset, **extra)


def _commit_then_queue(change: Callable[[Session, Services], T], enqueue: Callable[[Celery, T], bool]) -> tuple[T, bool]:
    """Make a change in one transaction, then queue its work: after the commit, or a fast worker would find nothing.

    Returns the change's result and whether the broker took the work (the sweepers send it later when not).
    """
    svc = services()
    with _db(write=True) as session:
        result = change(session, svc)
    return result, enqueue(svc.celery, result)


# --- sources -----------------------------------------------------------------------------------------


def _source_out(info: source_ops.SourceInfo) -> dict[str, Any]:
    return dict(info.__dict__)


@endpoint("/sources", "GET", summary="List webhook sources", tag="sources", responses={200: (s.SourceList, "sources"),
                                                                                      **READ})
def list_sources() -> ResponseReturnValue:
    """Every source with its webhook URL and masked secret."""
    with _db() as session:
        items = [s.SourceOut.model_validate(_source_out(i)) for i in source_ops.list_sources(session, services().settings)]
    return s.SourceList(items=items), 200


@endpoint("/sources", "POST", summary="Create a webhook source", tag="sources", role="admin", body=s.SourceCreate,
          responses={201: (s.SourceWithSecret, "created; the secret is shown only in this response"),
                     **WRITE, **_errors(409)})
def create_source(body: s.SourceCreate) -> ResponseReturnValue:
    """Create a source; the response is the only place its secret appears."""
    with _db(write=True) as session:
        info, secret = source_ops.create_source(
            session, services().settings, _actor(), kind=body.kind, name=body.name, secret=body.secret,
            org_id=body.org_id, signature_version=body.signature_version)
    return s.SourceWithSecret(**_source_out(info), secret=secret, setup_steps=source_ops.setup_steps(info)), 201


@endpoint("/sources/<int:source_id>", "GET", summary="Get a source", tag="sources",
          responses={200: (s.SourceDetail, "the source"), **READ, **_errors(404)})
def get_source(source_id: int) -> ResponseReturnValue:
    """One source with its setup steps and inbox status counts."""
    with _db() as session:
        info = source_ops.get_source(session, services().settings, source_id)
        counts = source_ops.status_counts(session, source_id)
    return s.SourceDetail(**_source_out(info), setup_steps=source_ops.setup_steps(info), status_counts=counts), 200


@endpoint("/sources/<int:source_id>", "PATCH", summary="Enable or disable a source", tag="sources", role="admin",
          body=s.SourceUpdate, responses={200: (s.SourceOut, "the source"), **WRITE, **_errors(404)})
def update_source(source_id: int, body: s.SourceUpdate) -> ResponseReturnValue:
    """A disabled source's deliveries are answered 403."""
    with _db(write=True) as session:
        info = source_ops.set_enabled(session, services().settings, _actor(), source_id, body.enabled)
    return s.SourceOut.model_validate(_source_out(info)), 200


@endpoint("/sources/<int:source_id>/rotate-secret", "POST", summary="Rotate a source's secret", tag="sources",
          role="admin", body=s.SecretRotation,
          responses={200: (s.SourceWithSecret, "the new secret, shown only in this response"), **WRITE,
                     **_errors(404)})
def rotate_source_secret(source_id: int, body: s.SecretRotation) -> ResponseReturnValue:
    """The old secret stays valid for the overlap, so no delivery is refused mid-change."""
    with _db(write=True) as session:
        info, secret = source_ops.rotate_secret(session, services().settings, _actor(), source_id,
                                                overlap_hours=body.overlap_hours, secret=body.secret)
    return s.SourceWithSecret(**_source_out(info), secret=secret, setup_steps=source_ops.setup_steps(info)), 200


@endpoint("/sources/<int:source_id>/deliveries", "GET", summary="A source's recent deliveries", tag="sources",
          query=s.InboxQuery, responses={200: (s.InboxPage, "newest first"), **READ, **_errors(404)})
def source_deliveries(source_id: int, query: s.InboxQuery) -> ResponseReturnValue:
    """The inbox rows this source delivered."""
    with _db() as session:
        source_ops.get_source(session, services().settings, source_id)
        page = delivery_ops.list_inbox(session, status=query.status, source_id=source_id, search=query.q,
                                       limit=query.limit, offset=query.offset)
        return _paged(page, s.InboxEventOut, s.InboxPage), 200


# --- deliveries -------------------------------------------------------------------------------------


@endpoint("/deliveries/inbox", "GET", summary="Inbox: events received", tag="deliveries", query=s.InboxQuery,
          responses={200: (s.InboxPage, "newest first"), **READ})
def list_inbox(query: s.InboxQuery) -> ResponseReturnValue:
    """Filter by status, source and object id / e-mail."""
    with _db() as session:
        page = delivery_ops.list_inbox(session, status=query.status, source_id=query.source_id, search=query.q,
                                       limit=query.limit, offset=query.offset)
        return _paged(page, s.InboxEventOut, s.InboxPage), 200


@endpoint("/deliveries/inbox/<int:inbox_id>", "GET", summary="One inbox event with its payload and history",
          tag="deliveries", responses={200: (s.InboxEventDetail, "the event"), **READ, **_errors(404)})
def get_inbox_event(inbox_id: int) -> ResponseReturnValue:
    """Payload, error, attempts and processing history (personal data masked for viewers)."""
    with _db() as session:
        view = inbox_ops.get_inbox_event(session, inbox_id, mask_personal=not security.sees_personal_data())
    return s.InboxEventDetail.model_validate(view), 200


@endpoint("/deliveries/inbox/<int:inbox_id>/retry", "POST", summary="Retry one inbox event", tag="deliveries",
          role="admin", responses={202: (s.InboxRetryResult, "set back to pending and queued"),
                                   **_errors(401, 403, 404)})
def retry_inbox_event(inbox_id: int) -> ResponseReturnValue:
    """Back to pending with a fresh count of attempts, handed to the ingest stage (audited)."""
    row_id, queued = _commit_then_queue(lambda session, _: inbox_ops.retry_inbox_event(session, _actor(), inbox_id),
                                        lambda celery, row: delivery_ops.enqueue_ingest(celery, [row]))
    return s.InboxRetryResult(id=row_id, status="pending", queued=queued), 202


@endpoint("/deliveries/inbox/<int:inbox_id>/discard", "POST", summary="Discard one inbox event", tag="deliveries",
          role="admin", responses={200: (s.InboxDiscardResult, "set aside; it will not be processed"),
                                   **_errors(401, 403, 404, 409)})
def discard_inbox_event(inbox_id: int) -> ResponseReturnValue:
    """Only a row not processed yet (pending, failed or dead) can be discarded (audited)."""
    with _db(write=True) as session:
        row_id = inbox_ops.discard_inbox_event(session, _actor(), inbox_id)
    return s.InboxDiscardResult(id=row_id, status="discarded"), 200


@endpoint("/deliveries/outbox", "GET", summary="Outbox: CRM and Slack writes (status dead = dead letter)",
          tag="deliveries", query=s.OutboxQuery, responses={200: (s.OutboxPage, "newest first"), **READ})
def list_outbox(query: s.OutboxQuery) -> ResponseReturnValue:
    """Filter by status, target and object id; dead-lettered rows carry the vendor's message in `error`."""
    with _db() as session:
        page = delivery_ops.list_outbox(session, status=query.status, target=query.target, search=query.q,
                                        limit=query.limit, offset=query.offset)
        return _paged(page, s.OutboxItemOut, s.OutboxPage), 200


@endpoint("/deliveries/inbox/replay", "POST", summary="Replay inbox events", tag="deliveries", role="admin",
          body=s.Replay, responses={202: (s.ReplayResult, "set back to pending and queued"), **WRITE, **_errors(404)})
def replay_inbox(body: s.Replay) -> ResponseReturnValue:
    """Set the rows back to pending and hand them to the ingest stage again."""
    ids, queued = _commit_then_queue(lambda session, _: delivery_ops.replay_inbox(session, _actor(), body.ids),
                                     delivery_ops.enqueue_ingest)
    return s.ReplayResult(replayed=ids, queued=queued), 202


@endpoint("/deliveries/outbox/replay", "POST", summary="Replay failed CRM writes", tag="deliveries", role="admin",
          body=s.Replay, responses={202: (s.OutboxReplayResult, "the leads are queued for writing again"), **WRITE,
                                    **_errors(404)})
def replay_outbox(body: s.Replay) -> ResponseReturnValue:
    """Queue the leads of failed or dead-lettered CRM writes for the writeback stage (with their current values)."""
    leads, queued = _commit_then_queue(
        lambda session, svc: delivery_ops.replay_outbox(session, svc.redis, _actor(), body.ids),
        lambda celery, crms: delivery_ops.enqueue_writeback(celery, list(crms)))
    return s.OutboxReplayResult(leads=leads, queued=queued), 202


@endpoint("/deliveries/actions/replay", "POST", summary="Replay rule actions", tag="deliveries", role="admin",
          body=s.Replay, responses={202: (s.ActionReplayResult, "set back to pending and queued"), **WRITE,
                                    **_errors(404, 409)})
def replay_actions(body: s.Replay) -> ResponseReturnValue:
    """Run rule actions again with their own idempotency keys: one that landed is found, never made twice."""
    ids, queued = _commit_then_queue(lambda session, _: delivery_ops.replay_actions(session, _actor(), body.ids),
                                     delivery_ops.enqueue_actions)
    return s.ActionReplayResult(replayed=ids, queued=queued), 202


# --- dead letters -----------------------------------------------------------------------------------


@endpoint("/dead-letters", "GET", summary="Dead letters: work a stage set aside", tag="dead letters",
          query=s.DeadLetterQuery, responses={200: (s.DeadLetterPage, "newest first"), **READ})
def list_dead_letters(query: s.DeadLetterQuery) -> ResponseReturnValue:
    """Inbox rows and leads that failed `max_attempts` times (or were refused by the CRM), with their errors."""
    with _db() as session:
        page = dead_letter_ops.list_dead_letters(session, stage=query.stage, status=query.status, limit=query.limit,
                                                 offset=query.offset)
        counts = dead_letter_ops.counts(session)
        return _paged(page, s.DeadLetterOut, s.DeadLetterPage, counts=counts), 200


@endpoint("/dead-letters/<int:letter_id>", "GET", summary="One dead letter with its payload", tag="dead letters",
          responses={200: (s.DeadLetterDetail, "the dead letter"), **READ, **_errors(404)})
def get_dead_letter(letter_id: int) -> ResponseReturnValue:
    """Payload, error and attempts (e-mail addresses masked for viewers)."""
    with _db() as session:
        view = dead_letter_ops.get_dead_letter(session, letter_id, mask_personal=not security.sees_personal_data())
    return s.DeadLetterDetail.model_validate(view), 200


@endpoint("/dead-letters/retry", "POST", summary="Retry dead letters", tag="dead letters", role="admin",
          body=s.DeadLetterIds, responses={202: (s.DeadLetterRetryResult, "handed back to their stages"), **WRITE,
                                           **_errors(404, 409)})
def retry_dead_letters(body: s.DeadLetterIds) -> ResponseReturnValue:
    """Hand open dead letters back to their stages (audited)."""
    plan, queued = _commit_then_queue(
        lambda session, svc: dead_letter_ops.retry_dead_letters(session, svc.redis, _actor(), body.ids),
        dead_letter_ops.enqueue_retry)
    return s.DeadLetterRetryResult(retried=sorted(set(body.ids)), inbox_rows=plan.inbox_ids,
                                   leads_scored=plan.score_leads, crms_written=plan.write_crms, queued=queued), 202


@endpoint("/dead-letters/discard", "POST", summary="Discard dead letters", tag="dead letters", role="admin",
          body=s.DeadLetterIds, responses={200: (s.DeadLetterDiscardResult, "closed without doing the work"),
                                           **WRITE, **_errors(404, 409)})
def discard_dead_letters(body: s.DeadLetterIds) -> ResponseReturnValue:
    """Close open dead letters without doing their work (audited)."""
    svc = services()
    with _db(write=True) as session:
        discarded = dead_letter_ops.discard_dead_letters(session, svc.redis, _actor(), body.ids)
    return s.DeadLetterDiscardResult(discarded=discarded), 200


# --- field mappings ---------------------------------------------------------------------------------

_MAPPING_PARAMS = {
    "crm": {"type": "string", "enum": ["hubspot", "salesforce"]},
    "object_type": {"type": "string", "enum": ["contacts", "companies", "Lead", "Contact", "Account"]},
}


@endpoint("/field-mappings", "GET", summary="Field mappings", tag="field mappings",
          responses={200: (s.MappingList, "every CRM object's outputs and fields"), **READ})
def list_mappings() -> ResponseReturnValue:
    """Which CRM field receives each output ("" = not written)."""
    with _db() as session:
        groups = mapping_ops.all_mappings(session)
    return s.MappingList.model_validate({"items": groups}), 200


@endpoint("/field-mappings/<crm>/<object_type>", "PUT", summary="Set field names", tag="field mappings",
          role="admin", body=s.MappingUpdate, path_params=_MAPPING_PARAMS,
          responses={200: (s.MappingGroup, "the mapping now in force"), **WRITE, **_errors(404)})
def update_mapping(crm: str, object_type: str, body: s.MappingUpdate) -> ResponseReturnValue:
    """Set the CRM field for some outputs (null or "" = do not write it; the default name clears the override)."""
    if object_type not in mapping_ops.OBJECT_TYPES[crm]:
        raise NotFound(f"{crm} has no object type {object_type!r}; use {', '.join(mapping_ops.OBJECT_TYPES[crm])}")
    with _db(write=True) as session:
        mapping_ops.save_mappings(session, _actor(), crm, object_type, dict(body.fields))
        group = next(g for g in mapping_ops.all_mappings(session) if g["crm"] == crm and g["object_type"] == object_type)
    return s.MappingGroup.model_validate(group), 200


@endpoint("/field-mappings/test-write", "POST", summary="Test write to one CRM record", tag="field mappings",
          role="admin", body=s.TrialWrite,
          responses={200: (s.TrialWriteOut, "what was sent and whether the CRM accepted it"), **WRITE,
                     **_errors(409)})
def test_write(body: s.TrialWrite) -> ResponseReturnValue:
    """Write the record's current leadbridge values through the real connector with the mapping in force."""
    with _db(write=True) as session:
        result = mapping_ops.trial_write(session, services().settings, services().redis, _actor(),
                                         crm=body.crm, record_id=body.record_id, object_type=body.object_type)
    return s.TrialWriteOut.model_validate(result.__dict__), 200


# --- field discovery --------------------------------------------------------------------------------


@endpoint("/fields/discover/<crm>", "GET", summary="Discover CRM fields", tag="fields",
          query=s.FieldDiscoveryQuery, path_params={"crm": {"type": "string", "enum": ["hubspot", "salesforce"]}},
          responses={200: (s.FieldDiscovery, "the objects' properties with fill rates and suggested kinds"), **READ,
                     **_errors(404, 409, 502)})
def discover_fields(crm: str, query: s.FieldDiscoveryQuery) -> ResponseReturnValue:
    """List the CRM's properties through its API, sample the newest records, and suggest a feature kind for each."""
    svc = services()
    report = discovery_ops.discover(svc.settings, crm, query.object, query.sample, redis_client=svc.redis)
    return s.FieldDiscovery.model_validate(report.as_dict()), 200


# --- feature schema (mapped fields) -----------------------------------------------------------------

_FIELD_PARAMS = {
    "crm": {"type": "string", "enum": ["hubspot", "salesforce"]},
    "object_type": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z]+$",
                    "description": 'contacts (HubSpot); Lead or Contact (Salesforce)'},
    "property_name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"^[A-Za-z0-9_]+$",
                      "description": "the property's internal (API) name"},
}


def _schema_out(schema: Any, model: Any = s.FeatureSchemaOut, **extra: Any) -> Any:
    return model.model_validate({**schema.to_json(), **extra})


@endpoint("/fields", "GET", summary="The feature schema in force", tag="fields",
          responses={200: (s.FeatureSchemaOut, "its version and the mapped fields"), **READ})
def list_fields() -> ResponseReturnValue:
    """The CRM properties used as model features, with their kind and feature name."""
    with _db() as session:
        schema = field_ops.current_schema(session)
    return _schema_out(schema), 200


@endpoint("/fields/history", "GET", summary="Feature schema versions", tag="fields", query=s.FieldHistoryQuery,
          responses={200: (s.FieldHistory, "newest first"), **READ})
def field_history(query: s.FieldHistoryQuery) -> ResponseReturnValue:
    """Every saved version: who saved it, when, its fields and what it changed."""
    with _db() as session:
        entries = field_ops.history_entries(session, query.limit)
    items = [_schema_out(e.schema, s.SchemaVersionOut, actor=e.actor, created_at=e.created_at,
                         changes=list(e.changes)) for e in entries]
    return s.FieldHistory(items=items), 200


@endpoint("/fields/<crm>/<object_type>/<property_name>", "PUT", summary="Map a CRM property to a feature",
          tag="fields", role="admin", body=s.FieldMap, path_params=_FIELD_PARAMS,
          responses={200: (s.FieldChangeOut, "the schema now in force (a new version when anything changed)"),
                     **WRITE, **_errors(404, 409)})
def map_field(crm: str, object_type: str, property_name: str, body: s.FieldMap) -> ResponseReturnValue:
    """Use the property as a feature (or change how it is used). The property is looked up in the CRM first: one
    the CRM does not have is refused; when the CRM cannot be asked it is mapped with a warning saying so."""
    svc = services()
    field = field_ops.make_field(crm, object_type, property_name, body.kind, feature=body.feature, label=body.label,
                                 fit=body.fit, top_n=body.top_n)
    with _db() as session:
        field_ops.check_mapped_field(session, field)  # refusals that need no CRM come first
    field, warnings = field_ops.check_in_crm(svc.settings, field, redis_client=svc.redis)
    with _db(write=True) as session:
        schema = field_ops.map_field(session, _actor(), field, force=body.force)
    if not field_ops.announce_schema(svc.redis, schema):
        warnings.append("Redis could not be told; workers pick the change up within a minute")
    return _schema_out(schema, s.FieldChangeOut, warnings=warnings), 200


@endpoint("/fields/<crm>/<object_type>/<property_name>", "DELETE", summary="Unmap a CRM property", tag="fields",
          role="admin", query=s.FieldUnmapQuery, path_params=_FIELD_PARAMS,
          responses={200: (s.FieldChangeOut, "the schema now in force"), **READ, **_errors(403, 404, 409)})
def unmap_field(crm: str, object_type: str, property_name: str, query: s.FieldUnmapQuery) -> ResponseReturnValue:
    """Stop using the property as a feature (404 when it is not mapped)."""
    svc = services()
    with _db(write=True) as session:
        schema = field_ops.unmap_field(session, _actor(), crm, object_type, property_name, force=query.force)
    warnings = [] if field_ops.announce_schema(svc.redis, schema) else [
        "Redis could not be told; workers pick the change up within a minute"]
    return _schema_out(schema, s.FieldChangeOut, warnings=warnings), 200


# --- pilot (issue 17) -------------------------------------------------------------------------------


@endpoint("/pilot", "GET", summary="The pilot and its group sizes", tag="pilot",
          responses={200: (s.PilotState, "the open pilot, else the newest ended one"), **READ})
def get_pilot() -> ResponseReturnValue:
    """The open (running or paused) pilot, else the newest ended one, with the leads in each group."""
    with _db() as session:
        return s.PilotState(pilot=pilot_ops.current_view(session)), 200


def _pilot_change(change: Callable[[Session, str], Any]) -> ResponseReturnValue:
    """Run a lifecycle change in one transaction, then tell the workers (after the commit)."""
    svc = services()
    with _db(write=True) as session:
        view = pilot_ops.pilot_view(session, change(session, _actor()))
    warnings = [] if pilot_ops.announce_pilot(svc.redis) else [
        "Redis could not be told; workers pick the change up within 30 seconds"]
    return s.PilotState(pilot=view, warnings=warnings), 200


@endpoint("/pilot", "POST", summary="Start a pilot", tag="pilot", role="admin", body=s.PilotStart,
          responses={200: (s.PilotState, "the pilot now running"), **WRITE, **_errors(409)})
def start_pilot(body: s.PilotStart) -> ResponseReturnValue:
    """Start a pilot: from now on each new lead is assigned to pilot or control (refused while one is open)."""
    return _pilot_change(lambda session, actor: pilot_ops.start_pilot(
        session, actor, pilot_ops.PilotInput(**body.model_dump())))


@endpoint("/pilot/pause", "POST", summary="Pause the pilot", tag="pilot", role="admin",
          responses={200: (s.PilotState, "the pilot, paused"), **WRITE, **_errors(409)})
def pause_pilot() -> ResponseReturnValue:
    """Pause the running pilot: no new assignments meanwhile; control leads stay held back."""
    return _pilot_change(pilot_ops.pause_pilot)


@endpoint("/pilot/resume", "POST", summary="Resume the pilot", tag="pilot", role="admin",
          responses={200: (s.PilotState, "the pilot, running again"), **WRITE, **_errors(409)})
def resume_pilot() -> ResponseReturnValue:
    """Resume the paused pilot (an ended one cannot be resumed)."""
    return _pilot_change(pilot_ops.resume_pilot)


@endpoint("/pilot/end", "POST", summary="End the pilot", tag="pilot", role="admin",
          responses={200: (s.PilotState, "the pilot, ended"), **WRITE, **_errors(409)})
def end_pilot() -> ResponseReturnValue:
    """End the pilot: no more assignments; control leads show their scores on their next write."""
    return _pilot_change(pilot_ops.end_pilot)


@endpoint("/value", "GET", summary="The pilot's value: KPIs per group with 95% intervals", tag="pilot",
          responses={200: (s.ValueOut, "the open pilot's KPIs, else the newest ended one's"), **READ})
def get_value() -> ResponseReturnValue:
    """Response time, conversion, win rate, cycle, pipeline and velocity per group, their differences with 95%
    intervals, the verdict and weekly series (the JSON export for finance)."""
    with _db() as session:
        view = value_ops.current_value(session, utcnow())
    if view is None:
        return s.ValueOut(pilot=None), 200
    return s.ValueOut.model_validate(view.to_json()), 200


@endpoint("/value/export", "GET", summary="The pilot's KPIs as a CSV or JSON file, for finance", tag="pilot",
          query=s.ValueExportQuery, responses={200: (None, "the file (text/csv or application/json)"), **READ,
                                               **_errors(404)})
def export_value(query: s.ValueExportQuery) -> ResponseReturnValue:
    """One row per KPI: raw numbers (shares as 0-1, minutes, days, currency), the interval and how it was computed."""
    with _db() as session:
        body, mimetype, name = value_ops.export(session, utcnow(), query.format)
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'}), 200


# --- alert rules ------------------------------------------------------------------------------------


def _rule_input(body: s.AlertRuleCreate | s.AlertRuleUpdate) -> alert_ops.RuleInput:
    return alert_ops.RuleInput(**body.model_dump(exclude_unset=isinstance(body, s.AlertRuleUpdate)))


@endpoint("/alert-rules", "GET", summary="Alert rules", tag="alert rules",
          responses={200: (s.AlertRuleList, "all rules"), **READ})
def list_alert_rules() -> ResponseReturnValue:
    """Every rule (webhook URLs masked)."""
    with _db() as session:
        items = [s.AlertRuleOut.model_validate(alert_ops.rule_view(r)) for r in alert_ops.list_rules(session)]
    return s.AlertRuleList(items=items), 200


@endpoint("/alert-rules", "POST", summary="Create an alert rule", tag="alert rules", role="admin",
          body=s.AlertRuleCreate, responses={201: (s.AlertRuleOut, "created"), **WRITE, **_errors(409)})
def create_alert_rule(body: s.AlertRuleCreate) -> ResponseReturnValue:
    """Threshold, channel, cooldown, routing filters and (optionally) the rule's own Slack webhook."""
    with _db(write=True) as session:
        rule = alert_ops.create_rule(session, _actor(), _rule_input(body))
        out = s.AlertRuleOut.model_validate(alert_ops.rule_view(rule))
    return out, 201


@endpoint("/alert-rules/dry-run", "POST", summary="Dry-run a rule over recent score history", tag="alert rules",
          body=s.AlertRuleDryRun, responses={200: (s.DryRunOut, "how many leads would have fired it"), **READ,
                                             **_errors(400, 404)})
def dry_run_alert_rule(body: s.AlertRuleDryRun) -> ResponseReturnValue:
    """Count the leads whose score history crossed these settings (threshold, segment, cooldown), before saving."""
    data = body.model_dump(exclude={"rule_id", "days"})
    with _db() as session:
        result = alert_ops.dry_run(session, alert_ops.RuleInput(**data), body.rule_id, days=body.days)
    return s.DryRunOut(leads=result.leads, crossings=result.crossings, days=result.days, since=result.since,
                       examples=result.examples), 200


@endpoint("/alert-rules/<int:rule_id>", "GET", summary="Get an alert rule", tag="alert rules",
          responses={200: (s.AlertRuleOut, "the rule"), **READ, **_errors(404)})
def get_alert_rule(rule_id: int) -> ResponseReturnValue:
    """One rule."""
    with _db() as session:
        out = s.AlertRuleOut.model_validate(alert_ops.rule_view(alert_ops.get_rule(session, rule_id)))
    return out, 200


@endpoint("/alert-rules/<int:rule_id>", "PATCH", summary="Change an alert rule", tag="alert rules", role="admin",
          body=s.AlertRuleUpdate, responses={200: (s.AlertRuleOut, "the rule"), **WRITE, **_errors(404, 409)})
def update_alert_rule(rule_id: int, body: s.AlertRuleUpdate) -> ResponseReturnValue:
    """Omitted fields stay as they are."""
    with _db(write=True) as session:
        rule = alert_ops.update_rule(session, _actor(), rule_id, _rule_input(body))
        out = s.AlertRuleOut.model_validate(alert_ops.rule_view(rule))
    return out, 200


@endpoint("/alert-rules/<int:rule_id>", "DELETE", summary="Delete an alert rule", tag="alert rules", role="admin",
          responses={204: (None, "deleted"), **_errors(401, 403, 404)})
def delete_alert_rule(rule_id: int) -> ResponseReturnValue:
    """Remove a rule."""
    with _db(write=True) as session:
        alert_ops.delete_rule(session, _actor(), rule_id)
    return None, 204


@endpoint("/alert-rules/<int:rule_id>/test", "POST", summary="Send a test alert", tag="alert rules", role="admin",
          responses={200: (s.TestAlertOut, "whether Slack accepted it"), **_errors(401, 403, 404, 409)})
def test_alert_rule(rule_id: int) -> ResponseReturnValue:
    """Post a marked test message to the rule's Slack webhook through the Slack connector."""
    with _db(write=True) as session:
        result = alert_ops.send_test_alert(session, services().settings, _actor(), rule_id)
    return s.TestAlertOut(rule_id=result.rule_id, sent=result.sent, error=result.error), 200


# --- leads ------------------------------------------------------------------------------------------


@endpoint("/leads", "GET", summary="Search leads", tag="leads", query=s.LeadQuery,
          responses={200: (s.LeadPage, "most recently active first"), **READ})
def search_leads(query: s.LeadQuery) -> ResponseReturnValue:
    """By e-mail prefix or HubSpot / Salesforce / web id."""
    with _db() as session:
        page = lead_ops.search_leads(session, query.q, limit=query.limit, offset=query.offset)
        items = [s.with_crm_ids(s.LeadOut, row, page.crm_ids.get(row.id, {})) for row in page.rows]
    return s.LeadPage(items=items, total=page.total, limit=page.limit, offset=page.offset), 200


@endpoint("/leads/<int:lead_id>", "GET", summary="A lead in full", tag="leads",
          responses={200: (s.LeadDetailOut, "score, history, events"), **READ, **_errors(404)})
def get_lead(lead_id: int) -> ResponseReturnValue:
    """Current score, grade and reasons; score history; the events that moved the score."""
    with _db() as session:
        d = lead_ops.lead_detail(session, lead_id)
        out = s.LeadDetailOut(
            lead=s.with_crm_ids(s.LeadOut, d.lead, d.crm_ids),
            account=s.with_crm_ids(s.AccountOut, d.account, d.account_crm_ids) if d.account else None,
            history=[s.ScorePointOut.model_validate(h) for h in d.history],
            events=[s.InboxEventOut.model_validate(e) for e in d.events],
            moves=[s.ScoreMoveOut(at=m.at, score=m.score, delta=m.delta, grade=m.grade, trigger=m.trigger,
                                  model_version=m.model_version, reasons=m.reasons, event_ids=[e.id for e in m.events])
                   for m in d.moves],
        )
    return out, 200


# --- models -----------------------------------------------------------------------------------------


def _model_out(info: model_ops.ModelInfo) -> s.ModelOut:
    row = info.row
    return s.ModelOut(
        version=row.version, kind=row.kind, status=row.status, feature_hash=row.feature_hash,
        features=len(row.features or []), metrics=info.metrics, baselines=info.baselines,
        feature_importance=[s.Ranked(feature=f, value=v) for f, v in info.importance],
        drift=[s.Ranked(feature=f, value=v) for f, v in info.drift],
        drift_check=s.DriftCheck.model_validate(info.drift_check) if info.drift_check else None,
        labelled_outcomes=row.labelled_outcomes,
        trained_at=row.trained_at, promoted_at=row.promoted_at, metadata_error=info.metadata_error,
    )


@endpoint("/models", "GET", summary="Model versions", tag="models",
          responses={200: (s.ModelList, "newest first"), **READ})
def list_models() -> ResponseReturnValue:
    """Versions with metrics against the baselines, feature importance and drift."""
    with _db() as session:
        items = [_model_out(model_ops.describe(row)) for row in model_ops.list_models(session)]
    return s.ModelList(items=items), 200


@endpoint("/models/<version>/promote", "POST", summary="Promote a version to champion", tag="models",
          role="admin", responses={200: (s.ModelOut, "the new champion"), **_errors(401, 403, 404, 409)})
def promote_model(version: str) -> ResponseReturnValue:
    """The previous champion of the same kind is retired."""
    with _db(write=True) as session:
        row = model_ops.promote(session, _actor(), version)
        out = _model_out(model_ops.describe(row))
    model_ops.announce_champion(services().redis, row)
    return out, 200


@endpoint("/models/rollback", "POST", summary="Roll back to the previous champion", tag="models", role="admin",
          body=s.Rollback, responses={200: (s.ModelOut, "the restored champion"), **WRITE, **_errors(409)})
def rollback_model(body: s.Rollback) -> ResponseReturnValue:
    """Retire the champion and restore the version promoted before it."""
    with _db(write=True) as session:
        row = model_ops.rollback(session, _actor(), body.kind)
        out = _model_out(model_ops.describe(row))
    model_ops.announce_champion(services().redis, row)
    return out, 200


@endpoint("/models/live-quality", "GET", summary="Live quality per model over time", tag="models",
          query=s.LiveQualityQuery, responses={200: (s.LiveQualityOut, "a point per week and model"), **READ})
def live_quality(query: s.LiveQualityQuery) -> ResponseReturnValue:
    """Rolling ROC AUC, log loss and ECE of the champion, the online learner and their blend on the same matured
    labels (each scored before the model learned it), with the events to mark. The models page charts it."""
    with _db() as session:
        view = learning_ops.live_quality(session, weeks=query.weeks, window_days=query.window_days)
    return s.LiveQualityOut.model_validate(view), 200


@endpoint("/models/drift", "GET", summary="Drift over time", tag="models", query=s.DriftQuery,
          responses={200: (s.DriftHistoryOut, "the drift checks of the weeks asked for"), **READ})
def drift_history(query: s.DriftQuery) -> ResponseReturnValue:
    """PSI of the live score and of the top features per drift check, the threshold, and the events to mark."""
    with _db() as session:
        view = learning_ops.drift_history(session, weeks=query.weeks, top=query.top)
    return s.DriftHistoryOut.model_validate(view), 200


# --- overview and audit -----------------------------------------------------------------------------


@endpoint("/overview", "GET", summary="Overview figures", tag="overview",
          responses={200: (s.OverviewOut, "events per minute, latency, backlog, CRM budget, failing parts"), **READ})
def overview() -> ResponseReturnValue:
    """The same numbers as the overview page."""
    svc = services()
    with _db() as session:
        view = build_overview(session, svc.redis, svc.celery, QUEUES, stall_after=svc.settings.stall_after_seconds,
                              crms=configured_crms(svc.settings))
    return s.OverviewOut(
        generated_at=view.generated_at,
        events_per_minute=[s.MinuteCount(minute=m, count=c) for m, c in view.events_per_minute],
        events_last_minute=view.events_last_minute,
        latency={k: s.PercentilesOut.model_validate(v) for k, v in view.latency.items()},
        backlog=view.backlog, queues=view.queues, crm_budget=view.crm_budget, checks=view.checks,
        failing=view.failing,
    ), 200


@endpoint("/overview/series", "GET", summary="Measurements over a range", tag="overview", query=s.SeriesQuery,
          responses={200: (s.SeriesOut, "events, CRM writes, backlogs and latencies in bars"), **READ})
def overview_series(query: s.SeriesQuery) -> ResponseReturnValue:
    """The overview's time charts: what beat measured every 30 s (hours once downsampled) over the range."""
    with _db() as session:
        series = overview_ops.measurement_series(session, query.range)
    return s.SeriesOut.model_validate(series), 200


@endpoint("/overview/leads", "GET", summary="Score distribution, grade mix and top reasons", tag="overview",
          responses={200: (s.LeadMixOut, "the overview's lead charts"), **READ})
def overview_leads() -> ResponseReturnValue:
    """How the scored leads are spread over scores, their grades today vs a week before, their top reasons."""
    with _db() as session:
        mix = overview_ops.lead_mix(session)
    return s.LeadMixOut(
        generated_at=mix.generated_at, scored=mix.scored,
        score_bands=[s.ScoreBand(band=band, leads=count) for band, count in mix.score_bands],
        today=s.GradeDay(start=mix.day_start, end=mix.generated_at, leads=sum(mix.grades_today.values()),
                         grades=mix.grades_today),
        week_ago=s.GradeDay(start=mix.week_ago_start, end=mix.week_ago_end, leads=sum(mix.grades_week_ago.values()),
                            grades=mix.grades_week_ago),
        reasons=[s.ReasonCount(reason=reason, leads=count) for reason, count in mix.reasons],
        reason_leads=mix.reason_leads,
    ), 200


@endpoint("/audit", "GET", summary="Audit log", tag="audit", role="admin", query=s.AuditQuery,
          responses={200: (s.AuditPage, "newest first"), **READ, **_errors(403)})
def audit_log(query: s.AuditQuery) -> ResponseReturnValue:
    """Who changed what and when (before/after without secrets)."""
    with _db() as session:
        entries, total = list_entries(session, limit=query.limit, offset=query.offset, action=query.action,
                                      actor=query.actor)
        items = [s.AuditEntryOut.model_validate(e) for e in entries]
    return s.AuditPage(items=items, total=total, limit=query.limit, offset=query.offset), 200


# --- users and tokens -------------------------------------------------------------------------------


def _me() -> security.Principal:
    principal = security.current()
    assert principal is not None  # the blueprint refused unauthenticated requests
    return principal


@endpoint("/me", "GET", summary="Who this token belongs to", tag="users", responses={200: (s.Me, "the user"), **READ})
def me() -> ResponseReturnValue:
    """The token's user and role."""
    principal = _me()
    return s.Me(id=principal.user_id, email=principal.email, role=principal.role), 200


@endpoint("/users", "GET", summary="Users", tag="users", role="admin",
          responses={200: (s.UserList, "all users"), **READ, **_errors(403)})
def list_users_route() -> ResponseReturnValue:
    """Every user and role."""
    with _db() as session:
        items = [s.UserOut.model_validate(u) for u in list_users(session)]
    return s.UserList(items=items), 200


@endpoint("/users", "POST", summary="Add a user", tag="users", role="admin", body=s.UserCreate,
          responses={201: (s.UserOut, "created"), **WRITE, **_errors(409)})
def add_user(body: s.UserCreate) -> ResponseReturnValue:
    """The password is hashed with argon2id and never returned."""
    with _db(write=True) as session:
        user = user_ops.add_user(session, _actor(), email=body.email, password=body.password, role=body.role)
        out = s.UserOut.model_validate(user)
    return out, 201


@endpoint("/users/<int:user_id>", "PATCH", summary="Change a user's role", tag="users", role="admin",
          body=s.UserUpdate, responses={200: (s.UserOut, "the user"), **WRITE, **_errors(404, 409)})
def update_user(user_id: int, body: s.UserUpdate) -> ResponseReturnValue:
    """The last admin cannot be demoted, and nobody changes their own role."""
    with _db(write=True) as session:
        out = s.UserOut.model_validate(user_ops.change_role(session, _actor(), user_id, body.role,
                                                            acting_user_id=_me().user_id))
    return out, 200


@endpoint("/users/<int:user_id>", "DELETE", summary="Remove a user", tag="users", role="admin",
          responses={204: (None, "removed"), **_errors(401, 403, 404, 409)})
def remove_user(user_id: int) -> ResponseReturnValue:
    """Removes the user's tokens too; nobody removes themselves."""
    with _db(write=True) as session:
        user_ops.remove_user(session, _actor(), user_id, acting_user_id=_me().user_id)
    return None, 204


@endpoint("/tokens", "GET", summary="Your API tokens", tag="users",
          responses={200: (s.TokenList, "newest first"), **READ})
def list_own_tokens() -> ResponseReturnValue:
    """The caller's tokens (never their values)."""
    with _db() as session:
        user = user_ops.get_user(session, _me().user_id)
        items = [s.TokenOut.model_validate(t) for t in list_tokens(session, user)]
    return s.TokenList(items=items), 200


@endpoint("/tokens", "POST", summary="Create an API token", tag="users", body=s.TokenCreate,
          responses={201: (s.NewTokenOut, "the token, shown only in this response"), **_errors(400, 401, 413, 415)})
def create_own_token(body: s.TokenCreate) -> ResponseReturnValue:
    """A token for the caller, acting with the caller's role."""
    with _db(write=True) as session:
        token = user_ops.create_token(session, _actor(), _me().user_id, body.name)
    return s.NewTokenOut(id=token.id, name=token.name, token=token.token, created_at=token.created_at), 201


@endpoint("/tokens/<int:token_id>", "DELETE", summary="Revoke one of your API tokens", tag="users",
          responses={204: (None, "revoked"), **_errors(401, 404, 409)})
def revoke_own_token(token_id: int) -> ResponseReturnValue:
    """Revoke a token of the caller's (not the one this request is using)."""
    if token_id == _me().token_id:
        raise Conflict("this request is authenticated with that token; revoke it with another token or in the UI")
    with _db(write=True) as session:
        user_ops.revoke_token(session, _actor(), token_id, owner_id=_me().user_id)
    return None, 204



# --- bands and the outcome definition (issue 16) ----------------------------------------------------


def _bands_out(session: Session) -> s.BandsOut:
    return s.BandsOut.model_validate(band_ops.bands_view(session))


@endpoint("/bands", "GET", summary="The score bands, their cut-offs and shares", tag="bands",
          responses={200: (s.BandsOut, "the bands in force over the last 7 days"), **READ})
def get_bands() -> ResponseReturnValue:
    """The bands the tier field shows: each one's cut-off in score points and its share of the last 7 days' leads."""
    with _db() as session:
        return _bands_out(session), 200


@endpoint("/bands", "PUT", summary="Change the score bands", tag="bands", role="admin", body=s.BandsUpdate,
          responses={200: (s.BandsOut, "the bands now in force"), **WRITE})
def put_bands(body: s.BandsUpdate) -> ResponseReturnValue:
    """Store a new band set (a preset, or a mode and bands top first); audited; the tier field follows."""
    if body.preset is not None and (body.mode is not None or body.bands is not None):
        raise OperationError("give either a preset or a mode with bands, not both")
    if body.preset is None and (body.mode is None or body.bands is None):
        raise OperationError("give a preset, or a mode and its bands")
    data: Any = body.preset or {"mode": body.mode, "bands": [b.model_dump() for b in body.bands or []]}
    with _db(write=True) as session:
        band_ops.save_bands(session, _actor(), data)
    svc = services()
    band_ops.publish_bands(svc.db, svc.redis)
    with _db() as session:
        return _bands_out(session), 200


@endpoint("/outcome-definition", "GET", summary="What counts as converted", tag="bands",
          responses={200: (s.OutcomesOut, "the outcome definition per CRM and its history"), **READ})
def get_outcome_definition() -> ResponseReturnValue:
    """The outcome definition in force per CRM (what training labels as won) and the saved versions."""
    with _db() as session:
        return s.OutcomesOut.model_validate(band_ops.outcomes_view(session)), 200


@endpoint("/outcome-definition/<crm>", "PUT", summary="Change what counts as converted", tag="bands", role="admin",
          body=s.OutcomeRuleIn, path_params={"crm": {"type": "string", "enum": ["hubspot", "salesforce"]}},
          responses={200: (s.OutcomeChange, "the new definition; history re-labelled, retraining queued"),
                     **WRITE, **_errors(404, 409)})
def put_outcome_definition(crm: str, body: s.OutcomeRuleIn) -> ResponseReturnValue:
    """Store a new definition for one CRM (audited), re-label its history under it and queue a retraining."""
    svc = services()
    data = body.model_dump(exclude_none=True)
    with _db(write=True) as session:
        version, counts = band_ops.save_outcome_definition(session, _actor(), crm, data, svc.redis)
    queued = band_ops.retrain_after(svc.celery, crm, version)
    with _db() as session:
        view = s.OutcomesOut.model_validate(band_ops.outcomes_view(session))
    return s.OutcomeChange(version=version, crm=crm, relabelled=counts, retrain_queued=queued, definition=view), 200
