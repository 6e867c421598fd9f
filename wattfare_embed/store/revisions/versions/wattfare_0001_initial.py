"""The tables of wattfare_embed 0.1.0, exactly as its ``create_all`` made them.

A database 0.1.0 created is stamped at this revision instead of running it.

Revision ID: wattfare_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wattfare_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wattfare_connections",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("app_user_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("authority", sa.String(32), nullable=False),
        sa.Column("monthly_cap", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("credential", sa.Text(), nullable=True),
        sa.Column("grant_id", sa.String(128), nullable=True),
        sa.Column("upstream_url", sa.String(512), nullable=True),
        sa.Column("hard_limit", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "app_user_id", name="wattfare_connections_user"),
        sa.CheckConstraint("reserved >= 0", name="wattfare_connections_reserved_nonnegative"),
        sa.CheckConstraint("monthly_cap >= 0", name="wattfare_connections_cap_nonnegative"),
    )
    op.create_index("wattfare_connections_grant", "wattfare_connections", ["grant_id"])

    op.create_table(
        "wattfare_ledger",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("app_user_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        sa.Column("cost_source", sa.String(12), nullable=True),
        sa.Column("generation_id", sa.String(128), nullable=True),
        sa.Column("reconcile", sa.Boolean(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("wattfare_ledger_reconcile", "wattfare_ledger", ["reconcile"])
    op.create_index("wattfare_ledger_open", "wattfare_ledger", ["state", "expires_at"])
    op.create_index("wattfare_ledger_user", "wattfare_ledger", ["app_id", "app_user_id", "created_at"])

    op.create_table(
        "wattfare_consent_requests",
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("app_user_id", sa.String(255), nullable=False),
        sa.Column("authority", sa.String(32), nullable=False),
        sa.Column("verifier", sa.String(128), nullable=False),
        sa.Column("requested_cap", sa.BigInteger(), nullable=False),
        sa.Column("return_to", sa.String(2048), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("state"),
    )

    op.create_table(
        "wattfare_webhook_events",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )

    # 0.1.0's own version row (create_all, then one row of version 1).
    schema_version = op.create_table(
        "wattfare_schema_version",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.bulk_insert(schema_version, [{"version": 1, "applied_at": 0}])


def downgrade() -> None:
    op.drop_table("wattfare_schema_version")
    op.drop_table("wattfare_webhook_events")
    op.drop_table("wattfare_consent_requests")
    op.drop_index("wattfare_ledger_user", table_name="wattfare_ledger")
    op.drop_index("wattfare_ledger_open", table_name="wattfare_ledger")
    op.drop_index("wattfare_ledger_reconcile", table_name="wattfare_ledger")
    op.drop_table("wattfare_ledger")
    op.drop_index("wattfare_connections_grant", table_name="wattfare_connections")
    op.drop_table("wattfare_connections")
