"""Receipts and threshold alerts.

The ledger gains each request's token counts (NULL on rows written before, and where the
upstream told none) and two indexes: one user's rows of a month, newest first (the receipts
endpoint), and one app's rows of a month (the monthly report). Alerts get a table of
firings, keyed so each threshold fires once per user and month whichever process sees it
cross, and an outbox of their deliveries, retried until done.

Revision ID: wattfare_0005
Revises: wattfare_0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wattfare_0005"
down_revision = "wattfare_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wattfare_alert_firings",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("app_user_id", sa.String(length=255), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("monthly_cap", sa.BigInteger(), nullable=False),
        sa.Column("fired_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "app_user_id", "period", "percent"),
    )
    op.create_table(
        "wattfare_alert_outbox",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "channel", name="wattfare_alert_outbox_delivery"),
    )
    with op.batch_alter_table("wattfare_alert_outbox", schema=None) as batch_op:
        batch_op.create_index("wattfare_alert_outbox_due", ["app_id", "delivered_at", "next_attempt_at"], unique=False)

    with op.batch_alter_table("wattfare_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokens_in", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tokens_out", sa.BigInteger(), nullable=True))
        batch_op.create_index("wattfare_ledger_month", ["app_id", "period"], unique=False)
        batch_op.create_index(
            "wattfare_ledger_receipts", ["app_id", "app_user_id", "period", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("wattfare_ledger", schema=None) as batch_op:
        batch_op.drop_index("wattfare_ledger_receipts")
        batch_op.drop_index("wattfare_ledger_month")
        batch_op.drop_column("tokens_out")
        batch_op.drop_column("tokens_in")

    with op.batch_alter_table("wattfare_alert_outbox", schema=None) as batch_op:
        batch_op.drop_index("wattfare_alert_outbox_due")

    op.drop_table("wattfare_alert_outbox")
    op.drop_table("wattfare_alert_firings")
