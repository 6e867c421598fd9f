"""Sign-in sessions kept server-side, so signing out (or a password change) ends them.

Until now a session was only a signed cookie, valid for its whole lifetime wherever it was
copied to. ``wcd_sessions`` holds one row per sign-in, by the SHA-256 of the random id the
cookie carries; ending a session deletes its row. Cookies issued before this revision name no
row, so their holders sign in once more.

Revision ID: wcd_0002
Revises: wcd_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wcd_0002"
down_revision = "wcd_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wcd_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("wcd_sessions_user", "wcd_sessions", ["user_id"], unique=False)
    op.create_index("wcd_sessions_expiry", "wcd_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("wcd_sessions_expiry", table_name="wcd_sessions")
    op.drop_index("wcd_sessions_user", table_name="wcd_sessions")
    op.drop_table("wcd_sessions")
