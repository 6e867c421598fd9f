"""Ledger indexes that hold only the rows their queries read.

Every metered request inserts its ledger row and rewrites it once settled, and each index the
row is in is one more B-tree page written into the write-ahead log at those commits. The
sweep reads only open holds, the reconciler only rows still to reconcile, receipts and the
monthly report only charged rows; their indexes now hold just those rows. The columns are
unchanged, so each query still reads its index in order, but for the monthly report's, which
gains the columns it groups by: a month's rows are now totalled in index order, with no sort.

Revision ID: wattfare_0007
Revises: wattfare_0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wattfare_0007"
down_revision = "wattfare_0006"
branch_labels = None
depends_on = None

_BEFORE = {
    "wattfare_ledger_open": ["state", "expires_at"],
    "wattfare_ledger_reconcile": ["reconcile", "created_at"],
    "wattfare_ledger_receipts": ["app_id", "app_user_id", "period", "created_at", "id"],
    "wattfare_ledger_month": ["app_id", "period"],
}
_AFTER = {**_BEFORE, "wattfare_ledger_month": ["app_id", "period", "app_user_id", "model"]}


def _conditions() -> dict[str, str]:
    # Spelled as each database's planner sees the queries' own conditions (SQLite has no boolean).
    true = "1" if op.get_bind().dialect.name == "sqlite" else "true"
    charged = "state IN ('settled', 'expired')"
    return {
        "wattfare_ledger_open": "state = 'reserved'",
        "wattfare_ledger_reconcile": f"reconcile = {true}",
        "wattfare_ledger_receipts": charged,
        "wattfare_ledger_month": charged,
    }


def upgrade() -> None:
    for name, condition in _conditions().items():
        op.drop_index(name, table_name="wattfare_ledger")
        where = sa.text(condition)
        op.create_index(name, "wattfare_ledger", _AFTER[name], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, columns in _BEFORE.items():
        op.drop_index(name, table_name="wattfare_ledger")
        op.create_index(name, "wattfare_ledger", columns)
