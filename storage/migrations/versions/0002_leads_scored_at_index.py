"""index leads.scored_at for the writeback reconciler

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_leads_scored_at'), 'leads', ['scored_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_leads_scored_at'), table_name='leads')
