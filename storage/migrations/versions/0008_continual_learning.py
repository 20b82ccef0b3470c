"""continual learning: live prequential scores per model, online learner snapshots, model events

`prequential_scores` keeps each matured outcome as the champion, the online learner and their blend
predicted it before learning it (the online learner's cursor and the admin's rolling AUC per model);
`online_models` the learner's authenticated snapshots; `model_events` drift checks, ADWIN changes,
retrainings and the online model's promotions, which the admin's drift chart marks.

Written 2026-12-04.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0008'
down_revision = '0007'


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table('prequential_scores',
    sa.Column('id', big_id, autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=20), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('won', sa.Boolean(), nullable=False),
    sa.Column('decision_time', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('labelled_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lead_id', 'model', name='uq_prequential_scores_lead_model')
    )
    op.create_index('ix_prequential_scores_model_labelled', 'prequential_scores', ['model', 'labelled_at'],
                    unique=False)
    op.create_table('online_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('schema_version', sa.String(length=64), nullable=True),
    sa.Column('definition', sa.String(length=100), nullable=True),
    sa.Column('learned', sa.Integer(), nullable=False),
    sa.Column('positives', sa.Integer(), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version')
    )
    op.create_index(op.f('ix_online_models_created_at'), 'online_models', ['created_at'], unique=False)
    op.create_table('model_events',
    sa.Column('id', big_id, autoincrement=True, nullable=False),
    sa.Column('at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_model_events_at'), 'model_events', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_model_events_at'), table_name='model_events')
    op.drop_table('model_events')
    op.drop_index(op.f('ix_online_models_created_at'), table_name='online_models')
    op.drop_table('online_models')
    op.drop_index('ix_prequential_scores_model_labelled', table_name='prequential_scores')
    op.drop_table('prequential_scores')
