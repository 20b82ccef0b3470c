"""pilots: a pilot and its control group (issue 17), each lead's group, and the CRM facts of its leads

`pilots` holds each pilot's settings and lifecycle (running, paused, ended) and when its weekly Slack summary
last went out; `lead_groups` the group a lead was given when it was first scored during a running pilot, once
and for good (insert-only, keyed by the leadbridge lead id, so CRM conversions and merges keep it);
`pilot_facts` what the CRM says happened to each pilot lead (first owner touch, sales acceptance, opportunity,
pipeline, outcome) as tasks/value.py last read it.

Written 2026-12-05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0009'
down_revision = '0008'


def _at(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    """A UTC timestamp column."""
    return sa.Column(name, storage.types.UtcDateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'pilots',
        sa.Column('id', sa.Integer(), nullable=False),
        _text('name', 100), _text('status', 10), _text('unit', 10),
        sa.Column('control_share', sa.Float(), nullable=False), _text('salt', 64),
        sa.Column('threshold', sa.Integer(), nullable=False), sa.Column('horizon', sa.Integer(), nullable=False),
        sa.Column('effect', sa.Float(), nullable=False),
        _at('started_at', nullable=False), _at('paused_at'), _at('ended_at'), _text('created_by', 320),
        _at('summary_at'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_pilots_status'), 'pilots', ['status'], unique=False)
    op.create_table(
        'lead_groups',
        sa.Column('lead_id', sa.Integer(), nullable=False), sa.Column('pilot_id', sa.Integer(), nullable=False),
        _text('group', 10), _text('cluster', 64, nullable=True), _at('assigned_at', nullable=False),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['pilot_id'], ['pilots.id']),
        sa.PrimaryKeyConstraint('lead_id'))
    op.create_index(op.f('ix_lead_groups_pilot_id'), 'lead_groups', ['pilot_id'], unique=False)
    op.create_table(
        'pilot_facts',
        sa.Column('lead_id', sa.Integer(), nullable=False),
        _at('first_touch_at'), _at('sql_at'), _at('opportunity_at'),
        sa.Column('amount', sa.Float(), nullable=False), _at('closed_at'),
        sa.Column('won', sa.Boolean(), nullable=True), _at('read_at', nullable=False),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('lead_id'))
    op.create_index(op.f('ix_pilot_facts_read_at'), 'pilot_facts', ['read_at'], unique=False)


def downgrade() -> None:
    for table, column in (('pilot_facts', 'read_at'), ('lead_groups', 'pilot_id'), ('pilots', 'status')):
        op.drop_index(op.f(f'ix_{table}_{column}'), table_name=table)
        op.drop_table(table)
