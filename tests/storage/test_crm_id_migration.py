"""Migration 0004: hubspot_id / salesforce_id columns become lead_crm_ids / account_crm_ids rows, and back."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from storage.db import make_engine
from storage.migrate import alembic_config, upgrade

LEADS = [  # id, email, hubspot_id, salesforce_id
    (1, "ana@acme.io", "101", None),
    (2, "ben@acme.io", None, "00Q000000000001AAA"),
    (3, "cy@acme.io", "103", "003000000000003AAA"),
    (4, "dee@acme.io", None, None),
]
ACCOUNTS = [(1, "acme.io", "9001", "001000000000001AAA"), (2, "initech.com", "9002", None)]


@pytest.mark.parametrize("old_database", ["0003"], indirect=True)
def test_ids_move_to_the_id_tables_and_back(old_database: str) -> None:
    engine = make_engine(old_database)
    try:
        with engine.begin() as conn:
            for account_id, domain, hubspot_id, salesforce_id in ACCOUNTS:
                conn.execute(text("INSERT INTO accounts (id, domain, hubspot_id, salesforce_id, properties, "
                                  "updated_at) VALUES (:id, :domain, :hs, :sf, '{}', :at)"),
                             {"id": account_id, "domain": domain, "hs": hubspot_id, "sf": salesforce_id,
                              "at": "2026-12-01 10:00:00.000000"})
            for lead_id, email, hubspot_id, salesforce_id in LEADS:
                conn.execute(text("INSERT INTO leads (id, email, hubspot_id, salesforce_id, account_id, "
                                  "properties, created_at, updated_at) "
                                  "VALUES (:id, :email, :hs, :sf, 1, '{}', :at, :at)"),
                             {"id": lead_id, "email": email, "hs": hubspot_id, "sf": salesforce_id,
                              "at": "2026-12-01 10:00:00.000000"})

        upgrade(old_database)
        for table in ("leads", "accounts"):
            columns = {c["name"] for c in inspect(engine).get_columns(table)}
            assert not {"hubspot_id", "salesforce_id"} & columns
        with engine.connect() as conn:
            lead_rows = set(conn.execute(text(
                "SELECT lead_id, crm, object_type, object_id FROM lead_crm_ids")))
            account_rows = set(conn.execute(text(
                "SELECT account_id, crm, object_type, object_id FROM account_crm_ids")))
        assert lead_rows == {
            (1, "hubspot", "contact", "101"),
            (2, "salesforce", "lead", "00Q000000000001AAA"),
            (3, "hubspot", "contact", "103"),
            (3, "salesforce", "contact", "003000000000003AAA"),
        }
        # Rebuilding leads and accounts (SQLite batch mode) ran no ON DELETE action: links and rows all stay.
        with engine.connect() as conn:
            assert set(conn.execute(text("SELECT account_id FROM leads")).scalars()) == {1}
        assert account_rows == {(1, "hubspot", "company", "9001"), (2, "hubspot", "company", "9002"),
                                (1, "salesforce", "account", "001000000000001AAA")}

        # A converted Salesforce Lead: lead 2 also stands for its Contact now. The downgrade keeps the first.
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO lead_crm_ids (lead_id, crm, object_type, object_id, created_at) "
                              "VALUES (2, 'salesforce', 'contact', '003000000000009AAA', :at)"),
                         {"at": "2026-12-02 10:00:00.000000"})
        command.downgrade(alembic_config(old_database), "0003")
        assert not {"lead_crm_ids", "account_crm_ids"} & set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            leads = set(conn.execute(text("SELECT id, email, hubspot_id, salesforce_id FROM leads")))
            accounts = set(conn.execute(text("SELECT id, domain, hubspot_id, salesforce_id FROM accounts")))
        assert leads == set(LEADS)
        with engine.connect() as conn:
            assert set(conn.execute(text("SELECT account_id FROM leads")).scalars()) == {1}
        assert accounts == set(ACCOUNTS)

        upgrade(old_database)  # and up again: the round trip loses nothing
        with engine.connect() as conn:
            again = set(conn.execute(text("SELECT lead_id, crm, object_type, object_id FROM lead_crm_ids")))
        assert again == lead_rows
    finally:
        engine.dispose()
