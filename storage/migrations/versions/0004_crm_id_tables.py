"""CRM id tables: a lead's and an account's CRM records as rows keyed by (crm, object type, object id)

The hubspot_id / salesforce_id columns held one id per CRM; a lead may stand for several records (a converted
Salesforce Lead and its Contact, merged HubSpot contacts). Existing ids are copied, then the columns go.

Written 2026-12-03.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0004'
down_revision = '0003'  # no branch labels or dependencies: Alembic's defaults

# Salesforce ids name their object in the first three characters: 003 Contact, else (00Q) Lead.
SALESFORCE_PERSON_TYPE = "CASE WHEN substr(salesforce_id, 1, 3) = '003' THEN 'contact' ELSE 'lead' END"


def upgrade() -> None:
    for table, owner in (('lead_crm_ids', 'leads'), ('account_crm_ids', 'accounts')):
        key = f'{owner[:-1]}_id'
        op.create_table(table,
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column(key, sa.Integer(), nullable=False),
        sa.Column('crm', sa.String(length=20), nullable=False),
        sa.Column('object_type', sa.String(length=20), nullable=False),
        sa.Column('object_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint([key], [f'{owner}.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('crm', 'object_type', 'object_id', name=f'uq_{table}_record')
        )
        op.create_index(op.f(f'ix_{table}_{key}'), table, [key], unique=False)
    op.execute("INSERT INTO lead_crm_ids (lead_id, crm, object_type, object_id, created_at) "
               "SELECT id, 'hubspot', 'contact', hubspot_id, created_at FROM leads "
               "WHERE hubspot_id IS NOT NULL")
    op.execute("INSERT INTO lead_crm_ids (lead_id, crm, object_type, object_id, created_at) "
               f"SELECT id, 'salesforce', {SALESFORCE_PERSON_TYPE}, salesforce_id, created_at FROM leads "
               "WHERE salesforce_id IS NOT NULL")
    op.execute("INSERT INTO account_crm_ids (account_id, crm, object_type, object_id, created_at) "
               "SELECT id, 'hubspot', 'company', hubspot_id, updated_at FROM accounts "
               "WHERE hubspot_id IS NOT NULL")
    op.execute("INSERT INTO account_crm_ids (account_id, crm, object_type, object_id, created_at) "
               "SELECT id, 'salesforce', 'account', salesforce_id, updated_at FROM accounts "
               "WHERE salesforce_id IS NOT NULL")
    for owner in ('leads', 'accounts'):
        with op.batch_alter_table(owner, schema=None) as batch_op:
            batch_op.drop_column('salesforce_id')
            batch_op.drop_column('hubspot_id')


def downgrade() -> None:
    for table, owner in (('lead_crm_ids', 'leads'), ('account_crm_ids', 'accounts')):
        key = f'{owner[:-1]}_id'
        with op.batch_alter_table(owner, schema=None) as batch_op:
            batch_op.add_column(sa.Column('hubspot_id', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column('salesforce_id', sa.String(length=32), nullable=True))
        # A column holds one id per CRM: the first row of each lead (account) and CRM.
        for crm in ('hubspot', 'salesforce'):
            op.execute(f"UPDATE {owner} SET {crm}_id = (SELECT object_id FROM {table} WHERE {table}.{key} = "
                       f"{owner}.id AND {table}.crm = '{crm}' ORDER BY {table}.id LIMIT 1)")
        with op.batch_alter_table(owner, schema=None) as batch_op:
            batch_op.create_unique_constraint(f'{owner}_hubspot_id_key', ['hubspot_id'])
            batch_op.create_unique_constraint(f'{owner}_salesforce_id_key', ['salesforce_id'])
        op.drop_index(op.f(f'ix_{table}_{key}'), table_name=table)
        op.drop_table(table)
