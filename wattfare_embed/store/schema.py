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
    literal_column,
    true,
)

__all__ = [
    "alert_firings",
    "alert_outbox",
    "connections",
    "consent_requests",
    "grants",
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
    # The usage's token counts, written just after the charge, off the request's path (NULL: none told).
    Column("tokens_in", BigInteger),
    Column("tokens_out", BigInteger),
)
# Each query of the ledger reads one of these in order and stops at its limit (revision 0006):
# the sweep of expired holds, a page of an app's or a user's rows newest first, and the
# reconciliations still open, oldest first. Indexes a query reads only a subset of hold just
# that subset (revision 0007): every request writes its row and rewrites it once settled, so each
# index a row need not be in is a B-tree page fewer in the write-ahead log at each commit. Their
# queries name the same condition, as a literal, so that the planner may use them.
OPEN_HOLD = ledger.c.state == literal_column("'reserved'")
TO_RECONCILE = ledger.c.reconcile == true()
# Rows that cost (or may cost) money: what a receipt or a report lists. A held request is not
# final yet, and a released one was never charged.
CHARGED = ledger.c.state.in_([literal_column("'settled'"), literal_column("'expired'")])
Index(
    "wattfare_ledger_open",
    ledger.c.state,
    ledger.c.expires_at,
    sqlite_where=OPEN_HOLD,
    postgresql_where=OPEN_HOLD,
)
Index("wattfare_ledger_app", ledger.c.app_id, ledger.c.created_at, ledger.c.id)
Index("wattfare_ledger_user", ledger.c.app_id, ledger.c.app_user_id, ledger.c.created_at, ledger.c.id)
Index(
    "wattfare_ledger_reconcile",
    ledger.c.reconcile,
    ledger.c.created_at,
    sqlite_where=TO_RECONCILE,
    postgresql_where=TO_RECONCILE,
)
# Receipts: one user's charged rows of one month, newest first, paged by (created_at, id).
Index(
    "wattfare_ledger_receipts",
    ledger.c.app_id,
    ledger.c.app_user_id,
    ledger.c.period,
    ledger.c.created_at,
    ledger.c.id,
    sqlite_where=CHARGED,
    postgresql_where=CHARGED,
)
# Monthly reports: one app's charged rows of one month, in the order they are totalled (revision 0007).
Index(
    "wattfare_ledger_month",
    ledger.c.app_id,
    ledger.c.period,
    ledger.c.app_user_id,
    ledger.c.model,
    sqlite_where=CHARGED,
    postgresql_where=CHARGED,
)

# A threshold that fired for a user in a month: the key makes it fire once, whichever process sees it.
alert_firings = Table(
    "wattfare_alert_firings",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("app_user_id", String(255), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("percent", Integer, primary_key=True),
    Column("event_id", String(40), nullable=False),
    Column("spent", BigInteger, nullable=False),
    Column("monthly_cap", BigInteger, nullable=False),
    Column("fired_at", BigInteger, nullable=False),
)

# Deliveries of fired alerts (the app's callback, its webhook), written with the firing and
# retried until done, so none is lost to a crash or a restart.
alert_outbox = Table(
    "wattfare_alert_outbox",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("channel", String(10), nullable=False),  # callback | webhook
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    Column("last_error", String(255)),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("event_id", "channel", name="wattfare_alert_outbox_delivery"),
)
Index("wattfare_alert_outbox_due", alert_outbox.c.app_id, alert_outbox.c.delivered_at, alert_outbox.c.next_attempt_at)

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
    # Set when the visitor is asked for a one-time grant of this many requests (no connection).
    Column("grant_requests", Integer),
)
# One user's open requests are counted and trimmed on each new one; expired ones are swept.
Index("wattfare_consent_requests_user", consent_requests.c.app_id, consent_requests.c.app_user_id)
Index("wattfare_consent_requests_expiry", consent_requests.c.expires_at)

# One-time grants: a visitor of an app without accounts approved a few requests under a dollar cap.
# Only a hash of the token is kept; the ledger rows of its requests name the grant as their
# `connection_id`. `used` counts admitted requests (a request released unsent gives its back).
grants = Table(
    "wattfare_grants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("authority", String(32), nullable=False),
    Column("requests_allowed", Integer, nullable=False),
    Column("requests_used", Integer, nullable=False, default=0),
    Column("max_cost", BigInteger, nullable=False),
    Column("spent", BigInteger, nullable=False, default=0),
    Column("reserved", BigInteger, nullable=False, default=0),
    Column("credential", Text),  # sealed by CredentialBox; NULL once revoked
    Column("authority_grant_id", String(128)),  # the consent domain's id, named by its webhooks
    Column("upstream_url", String(512)),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("token_hash", name="wattfare_grants_token"),
    CheckConstraint("reserved >= 0", name="wattfare_grants_reserved_nonnegative"),
    CheckConstraint("requests_used >= 0", name="wattfare_grants_used_nonnegative"),
)
Index("wattfare_grants_authority_grant", grants.c.authority_grant_id)
# Grants that still keep a sealed funding credential, by when they end: the sweeper forgets the
# credentials of grants long ended (revision 0008), reading only the rows that still have one.
HAS_CREDENTIAL = grants.c.credential.is_not(None)
Index(
    "wattfare_grants_ending",
    grants.c.app_id,
    grants.c.expires_at,
    sqlite_where=HAS_CREDENTIAL,
    postgresql_where=HAS_CREDENTIAL,
)

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
