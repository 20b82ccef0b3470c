"""crm id tables: the unique key leads with object_id, so a batch lookup is an index search on any statistics

The key was (crm, object_type, object_id). On a young table, before autovacuum has analysed it, PostgreSQL
estimates one row per (crm, object_type) and plans `object_id IN (...)` (and `lead_id IN (...)`) as a filter
over that whole index prefix: every batch lookup read every row of the CRM (measured by bench.e2e on a fresh
database: 9-12 ms a query, growing with the table). With object_id first, `object_id = ANY(...)` is the index's
own condition, and `lead_id IN (...)` queries have nothing to prefer over their own index.

Written 2026-12-05.
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'

TABLES = ("lead_crm_ids", "account_crm_ids")


def _key(columns: list[str]) -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'uq_{table}_record', type_='unique')
            batch_op.create_unique_constraint(f'uq_{table}_record', columns)


def upgrade() -> None:
    _key(['object_id', 'object_type', 'crm'])


def downgrade() -> None:
    _key(['crm', 'object_type', 'object_id'])
