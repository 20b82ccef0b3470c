"""bands and outcome definitions: versioned score bands and what counts as converted, per CRM (issue 16)

`band_sets` holds each version of the score bands (quantile or fixed, the named bands top first); the newest row
is in force and none means the default quantile bands. `outcome_definitions` holds each version of one CRM's
conversion rule; the newest row per CRM is in force and none means the rules that held before (so existing
outcomes and models keep their meaning: version 0). Both tables are new; nothing existing changes.

Written 2026-12-05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0012'
down_revision = '0011'


def upgrade() -> None:
    op.create_table(
        'band_sets',
        sa.Column('id', sa.Integer(), nullable=False), sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('mode', sa.String(length=10), nullable=False), sa.Column('bands', sa.JSON(), nullable=False),
        sa.Column('actor', sa.String(length=320), nullable=False),
        sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('version'))
    op.create_table(
        'outcome_definitions',
        sa.Column('id', sa.Integer(), nullable=False), sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('crm', sa.String(length=20), nullable=False), sa.Column('rule', sa.JSON(), nullable=False),
        sa.Column('actor', sa.String(length=320), nullable=False),
        sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('version'))
    op.create_index(op.f('ix_outcome_definitions_crm'), 'outcome_definitions', ['crm'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_outcome_definitions_crm'), table_name='outcome_definitions')
    op.drop_table('outcome_definitions')
    op.drop_table('band_sets')
