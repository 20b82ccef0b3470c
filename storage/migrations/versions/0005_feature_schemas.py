"""feature schemas: versions of the CRM properties an admin mapped to model features

Written 2026-12-04.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0005'
down_revision = '0004'


def upgrade() -> None:
    op.create_table('feature_schemas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version')
    )


def downgrade() -> None:
    op.drop_table('feature_schemas')
