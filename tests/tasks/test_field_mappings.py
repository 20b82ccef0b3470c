"""Admin field mappings reach the writeback: a mapped output goes to the chosen field, an empty one is skipped."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete

from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from storage.field_mappings import mapping_overrides
from storage.models import FieldMapping


def test_mapped_fields_are_written_and_unmapped_skipped(db: Database) -> None:
    with db.session() as session:
        session.execute(delete(FieldMapping))
        session.add(FieldMapping(crm="hubspot", object_type="contacts", output="score", field_name="lead_rank"))
        session.add(FieldMapping(crm="hubspot", object_type="contacts", output="tier", field_name=""))
        session.add(FieldMapping(crm="hubspot", object_type="companies", output="score", field_name="company_rank"))
    with db.session() as session:
        overrides = mapping_overrides(session, "hubspot")
    assert overrides == {"score": "lead_rank", "tier": ""}

    crm = SandboxCRM()
    crm.start(port=0)
    try:
        connector = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=crm.base_url)
        connector.provision_fields()
        connector.api.crm.properties.core_api.create("contacts", {
            "name": "lead_rank", "label": "Lead rank", "type": "number", "fieldType": "number", "groupName": "leadbridge"})
        contact = crm.store.hs_create("contacts", {"email": "map@example.com"})
        connector.field_names = overrides
        result = connector.write_fields({contact["id"]: {
            "score": 81, "grade": "A", "reasons": ["+ demo requested"], "tier": "hot", "model_version": "rules:v1",
            "scored_at": datetime.now(UTC)}})
        assert result.written == (contact["id"],)
        props = crm.store.hs_get("contacts", contact["id"])["properties"]
        assert props["lead_rank"] == "81"
        assert props["leadbridge_grade"] == "A"
        assert not props.get("leadbridge_score") and not props.get("leadbridge_tier")
    finally:
        crm.stop()
        with db.session() as session:
            session.execute(delete(FieldMapping))
