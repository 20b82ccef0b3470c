"""score movement: a lead's previous score, trend, time of the last change and what changed (issue 16)

`leads` gains the movement the CRM shows beside the score (previous_score, score_trend, score_changed_at,
score_change_reason), all empty until a lead's next score; `score_history` gains previous_score (the score a
lead held before each row), so the score held at the start of a trend window is one row away. Existing rows
keep their data; their previous_score stays empty (the trend then counts from that row's own score).

Written 2026-12-05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0011'
down_revision = '0010'


def upgrade() -> None:
    with op.batch_alter_table('leads') as batch_op:
        batch_op.add_column(sa.Column('previous_score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('score_trend', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('score_changed_at', storage.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('score_change_reason', sa.String(length=255), nullable=True))
    # The trend sweep looks for leads whose last change has left the window.
    op.create_index(op.f('ix_leads_score_changed_at'), 'leads', ['score_changed_at'], unique=False)
    with op.batch_alter_table('score_history') as batch_op:
        batch_op.add_column(sa.Column('previous_score', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('score_history') as batch_op:
        batch_op.drop_column('previous_score')
    op.drop_index(op.f('ix_leads_score_changed_at'), table_name='leads')
    with op.batch_alter_table('leads') as batch_op:
        batch_op.drop_column('score_change_reason')
        batch_op.drop_column('score_changed_at')
        batch_op.drop_column('score_trend')
        batch_op.drop_column('previous_score')
