"""Webhook event ids per app; consent requests indexed by user and by expiry.

Event ids were one namespace for the whole database, so two apps sharing it (each with its own
consent domain numbering events alike) refused each other's events as replays. The table is
rebuilt keyed by ``(app_id, id)``. The table never said which app an id came from, so an id
recorded before is kept for every app that has a connection here: no applied event can be
applied again after the upgrade, and only for those old ids does another app still meet the
old collision (its own event of the same id refused as a replay, as before this revision). A
database with events but no connection keeps them under the app id ``""``, which no app has.

The consent-request indexes serve the new bound on open requests per user (counted and trimmed
on each new one) and the sweep of expired ones.

Revision ID: wattfare_0003
Revises: wattfare_0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "wattfare_0003"
down_revision = "wattfare_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wattfare_webhook_events_v2",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "id", name="wattfare_webhook_events_v2_pkey"),
    )
    op.execute(
        "INSERT INTO wattfare_webhook_events_v2 (app_id, id, received_at) "
        "SELECT COALESCE(apps.app_id, ''), events.id, events.received_at FROM wattfare_webhook_events events "
        "LEFT JOIN (SELECT DISTINCT app_id FROM wattfare_connections) apps ON 1 = 1"
    )
    op.drop_table("wattfare_webhook_events")
    op.rename_table("wattfare_webhook_events_v2", "wattfare_webhook_events")
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE wattfare_webhook_events RENAME CONSTRAINT wattfare_webhook_events_v2_pkey "
            "TO wattfare_webhook_events_pkey"
        )

    op.create_index("wattfare_consent_requests_user", "wattfare_consent_requests", ["app_id", "app_user_id"])
    op.create_index("wattfare_consent_requests_expiry", "wattfare_consent_requests", ["expires_at"])


def downgrade() -> None:
    op.drop_index("wattfare_consent_requests_expiry", table_name="wattfare_consent_requests")
    op.drop_index("wattfare_consent_requests_user", table_name="wattfare_consent_requests")

    op.create_table(
        "wattfare_webhook_events_v1",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="wattfare_webhook_events_v1_pkey"),
    )
    op.execute(
        "INSERT INTO wattfare_webhook_events_v1 (id, received_at) "
        "SELECT id, MIN(received_at) FROM wattfare_webhook_events GROUP BY id"
    )
    op.drop_table("wattfare_webhook_events")
    op.rename_table("wattfare_webhook_events_v1", "wattfare_webhook_events")
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE wattfare_webhook_events RENAME CONSTRAINT wattfare_webhook_events_v1_pkey "
            "TO wattfare_webhook_events_pkey"
        )
