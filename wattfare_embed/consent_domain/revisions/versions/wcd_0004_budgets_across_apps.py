"""One budget per user across every app.

``wcd_budgets`` holds the budgets the operator set per user (the default is a setting);
``wcd_grants.key_limit`` the limit last set on each grant's upstream key, its share of the
user's budget; ``wcd_budget_alerts`` the thresholds each user passed each month, keyed so each
notice goes out once; ``wcd_grant_usage`` each grant's spend per month as its key last
reported it (the monthly report); ``wcd_users.role`` marks operators.

Revision ID: wcd_0004
Revises: wcd_0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wcd_0004"
down_revision = "wcd_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wcd_budget_alerts",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("fired_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "period", "percent"),
    )
    op.create_table(
        "wcd_budgets",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("monthly_budget", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "wcd_grant_usage",
        sa.Column("grant_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grant_id", "period"),
    )
    with op.batch_alter_table("wcd_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_limit", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("wcd_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wcd_users", schema=None) as batch_op:
        batch_op.drop_column("role")

    with op.batch_alter_table("wcd_grants", schema=None) as batch_op:
        batch_op.drop_column("key_limit")

    op.drop_table("wcd_grant_usage")
    op.drop_table("wcd_budgets")
    op.drop_table("wcd_budget_alerts")
