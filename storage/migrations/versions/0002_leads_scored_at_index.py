"""index leads.scored_at for the writeback reconciler

Written 2026-11-23.
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'


def upgrade() -> None:
    op.create_index(op.f('ix_leads_scored_at'), 'leads', ['scored_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_leads_scored_at'), table_name='leads')
