"""rule actions: what an alert rule does on a crossing (issue 16), and one outbox row per action and crossing

`alert_rules.actions` holds the rule's actions as a JSON list of core.actions.Action.to_json(); existing rules
get [{"kind": "slack_channel", "params": {}}], which is what every rule did before (a post to its channel).
`outbox.action_key` is the idempotency key of one action of one crossing (core.actions.action_key), unique, so
the same crossing never queues the same action twice; NULL for field writes and batch rows.

Written 2026-12-05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'

CHANNEL_ONLY = [{"kind": "slack_channel", "params": {}}]


def upgrade() -> None:
    with op.batch_alter_table('alert_rules') as batch:
        batch.add_column(sa.Column('actions', sa.JSON(), nullable=True))
    # Keep today's behaviour for rules that exist: they posted to their channel, and they still do. A typed table
    # construct, so the value is bound as JSON on PostgreSQL (a text parameter into a json column is refused there).
    rules = sa.table('alert_rules', sa.column('actions', sa.JSON()))
    op.execute(rules.update().where(rules.c.actions.is_(None)).values(actions=CHANNEL_ONLY))
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('action_key', sa.String(length=40), nullable=True))
        batch.create_index('ix_outbox_action_key', ['action_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_index('ix_outbox_action_key')
        batch.drop_column('action_key')
    with op.batch_alter_table('alert_rules') as batch:
        batch.drop_column('actions')
