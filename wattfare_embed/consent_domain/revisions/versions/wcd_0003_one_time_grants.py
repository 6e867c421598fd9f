"""One-time grants: a code and a grant may be for a number of requests with an expiry.

``wcd_codes.grant_requests`` and ``wcd_grants.grant_requests`` hold the request count a visitor
approved for an app without accounts; ``wcd_grants.expires_at`` when the grant ends. Both are
NULL for a monthly connection, which every existing row is.

Revision ID: wcd_0003
Revises: wcd_0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wcd_0003"
down_revision = "wcd_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wcd_codes", sa.Column("grant_requests", sa.Integer(), nullable=True))
    op.add_column("wcd_grants", sa.Column("grant_requests", sa.Integer(), nullable=True))
    op.add_column("wcd_grants", sa.Column("expires_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wcd_grants") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("grant_requests")
    with op.batch_alter_table("wcd_codes") as batch:
        batch.drop_column("grant_requests")
