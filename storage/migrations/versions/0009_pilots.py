"""pilots: a pilot and its control group (issue 17), and each lead's group

`pilots` holds each pilot's settings and lifecycle (running, paused, ended); `lead_groups` the group a lead
was given when it was first scored during a running pilot, once and for good (insert-only, keyed by the
leadbridge lead id, so CRM conversions and merges keep it).

Written 2026-12-05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0009'
down_revision = '0008'


def upgrade() -> None:
    op.create_table('pilots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('unit', sa.String(length=10), nullable=False),
    sa.Column('control_share', sa.Float(), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('effect', sa.Float(), nullable=False),
    sa.Column('started_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('paused_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_pilots_status'), 'pilots', ['status'], unique=False)
    op.create_table('lead_groups',
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('pilot_id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=10), nullable=False),
    sa.Column('cluster', sa.String(length=64), nullable=True),
    sa.Column('assigned_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pilot_id'], ['pilots.id']),
    sa.PrimaryKeyConstraint('lead_id')
    )
    op.create_index(op.f('ix_lead_groups_pilot_id'), 'lead_groups', ['pilot_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_lead_groups_pilot_id'), table_name='lead_groups')
    op.drop_table('lead_groups')
    op.drop_index(op.f('ix_pilots_status'), table_name='pilots')
    op.drop_table('pilots')
