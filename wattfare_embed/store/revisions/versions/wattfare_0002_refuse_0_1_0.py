"""Mark the database as migrated, so wattfare_embed 0.1.0 refuses to start on it.

0.1.0 kept its schema version in ``wattfare_schema_version`` and stops at start-up with "newer
than this library" when it finds more than 1 there. Revisions are recorded in
``wattfare_alembic_version`` now; the old table stays only to hold this 2, so an old process
(a rollback, a straggling worker) never runs on tables it does not know.

Revision ID: wattfare_0002
Revises: wattfare_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "wattfare_0002"
down_revision = "wattfare_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM wattfare_schema_version")
    op.execute("INSERT INTO wattfare_schema_version (version, applied_at) VALUES (2, 0)")


def downgrade() -> None:
    op.execute("DELETE FROM wattfare_schema_version")
    op.execute("INSERT INTO wattfare_schema_version (version, applied_at) VALUES (1, 0)")
