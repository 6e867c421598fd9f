"""An index of the grants that still keep a sealed funding credential, by when they end.

A one-time grant's credential is needed while its requests can still be settled and reconciled,
and not after: the sweeper forgets it a while after the grant ends (``Wattfare``'s sweep). This
index holds only the grants that still have one, so that pass reads just those, oldest first.

Revision ID: wattfare_0008
Revises: wattfare_0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wattfare_0008"
down_revision = "wattfare_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("credential IS NOT NULL")
    op.create_index(
        "wattfare_grants_ending",
        "wattfare_grants",
        ["app_id", "expires_at"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("wattfare_grants_ending", table_name="wattfare_grants")
