"""The tables, as SQLAlchemy Core ``metadata``: what the newest revision in ``revisions/`` builds.

Every table is prefixed ``wattfare_`` so it never collides with the host's. Money columns hold
integer micro-dollars; times are unix seconds. A change here needs a revision
(``python -m wattfare_embed.store.revisions "what changed"``); a test fails until the migrated
database and these tables agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "connections",
    "consent_requests",
    "ledger",
    "metadata",
    "schema_version",
    "webhook_events",
]

metadata = MetaData()

connections = Table(
    "wattfare_connections",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("app_user_id", String(255), nullable=False),
    Column("status", String(20), nullable=False),  # active | revoked | funding_invalid
    Column("authority", String(32), nullable=False),
    Column("monthly_cap", BigInteger, nullable=False),
    Column("period", String(7), nullable=False),
    Column("spent", BigInteger, nullable=False, default=0),
    Column("reserved", BigInteger, nullable=False, default=0),
    Column("credential", Text),  # sealed by CredentialBox; NULL once revoked
    Column("grant_id", String(128)),
    Column("upstream_url", String(512)),
    Column("hard_limit", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("app_id", "app_user_id", name="wattfare_connections_user"),
    CheckConstraint("reserved >= 0", name="wattfare_connections_reserved_nonnegative"),
    CheckConstraint("monthly_cap >= 0", name="wattfare_connections_cap_nonnegative"),
)
Index("wattfare_connections_grant", connections.c.grant_id)

# One row per metered request, written with its reservation and finalised exactly once.
ledger = Table(
    "wattfare_ledger",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("connection_id", String(40), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("app_user_id", String(255), nullable=False),
    Column("kind", String(20), nullable=False),  # chat | embeddings
    Column("model", String(255), nullable=False),
    # reserved → settled | released; expired when swept after a crash (a late settle still applies)
    Column("state", String(12), nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("cost", BigInteger),
    Column("cost_source", String(12)),  # reported | estimated | none
    Column("generation_id", String(128)),
    Column("reconcile", Boolean, nullable=False, default=False),
    Column("period", String(7), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("settled_at", BigInteger),
)
# Each query of the ledger reads one of these in order and stops at its limit (revision 0007):
# the sweep of expired holds, a page of an app's or a user's rows newest first, and the
# reconciliations still open, oldest first.
Index("wattfare_ledger_open", ledger.c.state, ledger.c.expires_at)
Index("wattfare_ledger_app", ledger.c.app_id, ledger.c.created_at, ledger.c.id)
Index("wattfare_ledger_user", ledger.c.app_id, ledger.c.app_user_id, ledger.c.created_at, ledger.c.id)
Index("wattfare_ledger_reconcile", ledger.c.reconcile, ledger.c.created_at)

consent_requests = Table(
    "wattfare_consent_requests",
    metadata,
    Column("state", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("app_user_id", String(255), nullable=False),
    Column("authority", String(32), nullable=False),
    Column("verifier", String(128), nullable=False),
    Column("requested_cap", BigInteger, nullable=False),
    Column("return_to", String(2048), nullable=False),
    Column("mode", String(10), nullable=False),  # popup | redirect
    Column("redirect_uri", String(2048), nullable=False),
    Column("browser_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger),
)
# One user's open requests are counted and trimmed on each new one; expired ones are swept.
Index("wattfare_consent_requests_user", consent_requests.c.app_id, consent_requests.c.app_user_id)
Index("wattfare_consent_requests_expiry", consent_requests.c.expires_at)

# Applied webhook event ids, per app: apps sharing a database each apply their own domain's events.
webhook_events = Table(
    "wattfare_webhook_events",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("received_at", BigInteger, nullable=False),
)

# 0.1.0's version row, now always 2 (revision wattfare_0002) so that 0.1.0 refuses to start on a
# migrated database; revisions are recorded in wattfare_alembic_version.
schema_version = Table(
    "wattfare_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", BigInteger, nullable=False),
)
