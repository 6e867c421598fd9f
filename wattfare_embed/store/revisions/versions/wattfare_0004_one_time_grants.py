"""One-time grants for apps without accounts, and the request count a consent request asks for.

``wattfare_grants`` holds one row per grant a visitor approved: how many requests it allows and
how many were admitted, its dollar cap with what was charged and what is held, its expiry, and
its funding credential sealed like a connection's. Only a hash of the grant token is stored.
``wattfare_consent_requests.grant_requests`` is set when the round trip asks for a grant.

Revision ID: wattfare_0004
Revises: wattfare_0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wattfare_0004"
down_revision = "wattfare_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wattfare_grants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("authority", sa.String(32), nullable=False),
        sa.Column("requests_allowed", sa.Integer(), nullable=False),
        sa.Column("requests_used", sa.Integer(), nullable=False),
        sa.Column("max_cost", sa.BigInteger(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("credential", sa.Text(), nullable=True),
        sa.Column("authority_grant_id", sa.String(128), nullable=True),
        sa.Column("upstream_url", sa.String(512), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash", name="wattfare_grants_token"),
        sa.CheckConstraint("reserved >= 0", name="wattfare_grants_reserved_nonnegative"),
        sa.CheckConstraint("requests_used >= 0", name="wattfare_grants_used_nonnegative"),
    )
    op.create_index("wattfare_grants_authority_grant", "wattfare_grants", ["authority_grant_id"])
    op.add_column("wattfare_consent_requests", sa.Column("grant_requests", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wattfare_consent_requests") as batch:
        batch.drop_column("grant_requests")
    op.drop_index("wattfare_grants_authority_grant", table_name="wattfare_grants")
    op.drop_table("wattfare_grants")
