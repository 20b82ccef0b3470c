"""dead letters: work a pipeline stage set aside after repeated failures

Written 2026-12-03.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0003'
down_revision = '0002'


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('crm', sa.String(length=20), nullable=True),
    sa.Column('inbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('lead_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('resolved_by', sa.String(length=320), nullable=True),
    sa.ForeignKeyConstraint(['inbox_id'], ['inbox.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_dead_letters_inbox_id'), 'dead_letters', ['inbox_id'], unique=False)
    op.create_index(op.f('ix_dead_letters_lead_id'), 'dead_letters', ['lead_id'], unique=False)
    op.create_index('ix_dead_letters_status_stage', 'dead_letters', ['status', 'stage'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_dead_letters_status_stage', table_name='dead_letters')
    op.drop_index(op.f('ix_dead_letters_lead_id'), table_name='dead_letters')
    op.drop_index(op.f('ix_dead_letters_inbox_id'), table_name='dead_letters')
    op.drop_table('dead_letters')
