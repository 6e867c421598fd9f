"""Ledger indexes that serve the ledger's queries in index order, so none of them sorts or scans.

``SqlStore.ledger(app_id)`` (newest first, across all of an app's users) had only the per-user
index, whose prefix found the app's rows but left every one of them to sort before the first
100 came out: a million-row ledger meant a million-row sort per page. It now reads
``(app_id, created_at, id)`` backwards and stops at the page; the per-user index gains ``id`` so
its ties (many requests in one second) come out in index order too. Reconciliations still open
are read oldest first from ``(reconcile, created_at)`` instead of all of them being sorted.

Revision ID: wattfare_0006
Revises: wattfare_0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "wattfare_0006"
down_revision = "wattfare_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("wattfare_ledger_app", "wattfare_ledger", ["app_id", "created_at", "id"])
    op.drop_index("wattfare_ledger_user", table_name="wattfare_ledger")
    op.create_index("wattfare_ledger_user", "wattfare_ledger", ["app_id", "app_user_id", "created_at", "id"])
    op.drop_index("wattfare_ledger_reconcile", table_name="wattfare_ledger")
    op.create_index("wattfare_ledger_reconcile", "wattfare_ledger", ["reconcile", "created_at"])


def downgrade() -> None:
    op.drop_index("wattfare_ledger_reconcile", table_name="wattfare_ledger")
    op.create_index("wattfare_ledger_reconcile", "wattfare_ledger", ["reconcile"])
    op.drop_index("wattfare_ledger_user", table_name="wattfare_ledger")
    op.create_index("wattfare_ledger_user", "wattfare_ledger", ["app_id", "app_user_id", "created_at"])
    op.drop_index("wattfare_ledger_app", table_name="wattfare_ledger")
