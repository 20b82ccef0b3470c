"""measurements: the pipeline's figures per 30 s (hours once downsampled) for the overview's charts

Beat records one row per 30 s: events received and processed, CRM writes accepted, the backlogs, and the
latencies webhook -> processed and score -> CRM acknowledgement as counts per fixed bucket (so rows merge into
hour rows and percentiles are estimated again from the sum). Events processed in a period are found through a
new index on inbox.processed_at (without it each 30 s would read every row of the inbox), and the overview's grade
mix of a day a week ago through one on score_history.created_at.

Written 2026-12-04.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0007'
down_revision = '0006'


def upgrade() -> None:
    op.create_table('measurements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('seconds', sa.Integer(), nullable=False),
    sa.Column('started_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('received', sa.Integer(), nullable=False),
    sa.Column('processed', sa.Integer(), nullable=False),
    sa.Column('written', sa.Integer(), nullable=False),
    sa.Column('backlog', sa.Integer(), nullable=True),
    sa.Column('write_backlog', sa.Integer(), nullable=True),
    sa.Column('ingest_latency', sa.JSON(), nullable=False),
    sa.Column('write_latency', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('seconds', 'started_at', name='uq_measurements_period')
    )
    op.create_index(op.f('ix_inbox_processed_at'), 'inbox', ['processed_at'], unique=False)
    op.create_index(op.f('ix_score_history_created_at'), 'score_history', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_score_history_created_at'), table_name='score_history')
    op.drop_index(op.f('ix_inbox_processed_at'), table_name='inbox')
    op.drop_table('measurements')
