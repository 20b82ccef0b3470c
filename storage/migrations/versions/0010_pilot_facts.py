"""pilot facts: what the CRM says happened to each pilot lead, and when the last weekly summary went out

`pilot_facts` keeps, per lead in a pilot, its owner's first touch, sales acceptance, first opportunity, the pipeline
it created and its outcome, as the CRM's activity and history last showed them (tasks/value.py reads them);
`pilots.summary_at` is when the weekly Slack summary was last sent.

Written 2026-12-05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0010'
down_revision = '0009'


def upgrade() -> None:
    op.create_table('pilot_facts',
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('first_touch_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('sql_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('opportunity_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('closed_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('won', sa.Boolean(), nullable=True),
    sa.Column('read_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id')
    )
    op.create_index(op.f('ix_pilot_facts_read_at'), 'pilot_facts', ['read_at'], unique=False)
    with op.batch_alter_table('pilots') as batch:
        batch.add_column(sa.Column('summary_at', storage.types.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pilots') as batch:
        batch.drop_column('summary_at')
    op.drop_index(op.f('ix_pilot_facts_read_at'), table_name='pilot_facts')
    op.drop_table('pilot_facts')
