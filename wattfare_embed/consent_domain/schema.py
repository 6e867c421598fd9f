"""The reference consent domain's tables, prefixed ``wcd_`` (SQLAlchemy Core, SQLite or PostgreSQL).

Money columns hold integer micro-dollars; times are unix seconds, except the
outbox's scheduling columns, which are milliseconds so retries can be sub-second in tests.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

__all__ = [
    "apps",
    "budget_alerts",
    "budgets",
    "codes",
    "grant_usage",
    "grants",
    "metadata",
    "outbox",
    "sessions",
    "settings",
    "users",
]

metadata = MetaData()

# A registered app. The domain keeps a hash of the secret key (for client authentication)
# and the webhook signing key derived from it, never the secret key itself.
apps = Table(
    "wcd_apps",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("publishable_key", String(100), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("signing_key", String(64), nullable=False),
    Column("redirect_uris", Text, nullable=False),  # a JSON list of exact URIs
    Column("webhook_url", String(2048), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The built-in email-and-password users (a deployment's own login needs none).
users = Table(
    "wcd_users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("role", String(20)),  # NULL: a user; "operator": may set everyone's budgets on /operator
)

# Built-in sign-ins, by the SHA-256 of the random id the session cookie carries: a session lasts
# until it expires or is ended here (signing out, a password change, the operator's command), so a
# copied cookie stops working the moment its session ends.
sessions = Table(
    "wcd_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
Index("wcd_sessions_user", sessions.c.user_id)
Index("wcd_sessions_expiry", sessions.c.expires_at)

# Authorization codes, by the SHA-256 of the code: single use, 10 minutes, PKCE S256.
codes = Table(
    "wcd_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("monthly_cap", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger),
    Column("grant_id", String(40)),  # the grant minted from it, revoked if the code is replayed
    Column("grant_requests", Integer),  # set when the visitor approved a one-time grant of this many requests
)

# One grant per approved consent, each with its own upstream key (by the upstream's key hash).
grants = Table(
    "wcd_grants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("status", String(12), nullable=False),  # pending | active | revoked
    Column("monthly_cap", BigInteger, nullable=False),
    Column("key_hash", String(128)),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Column("revoked_reason", String(20)),  # user | app | replaced | code_replayed
    # A one-time grant: this many requests under `monthly_cap` in total (its key never resets),
    # until `expires_at`. NULL for a monthly connection.
    Column("grant_requests", Integer),
    Column("expires_at", BigInteger),
    # The limit last set on the grant's upstream key: its share of the user's budget (or its cap).
    Column("key_limit", BigInteger),
)
Index("wcd_grants_user", grants.c.user_id, grants.c.status)
Index("wcd_grants_app_user", grants.c.app_id, grants.c.user_id, grants.c.status)

# Work that must survive a restart: webhooks to apps, and upstream keys still to delete.
outbox = Table(
    "wcd_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # webhook | delete_key
    Column("app_id", String(64), nullable=False),
    Column("ordering_key", String(140), nullable=False),  # jobs with one key run strictly in order
    Column("payload", Text, nullable=False),
    Column("state", String(10), nullable=False),  # pending | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("locked_until_ms", BigInteger),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
)
Index("wcd_outbox_due", outbox.c.state, outbox.c.next_attempt_ms)
Index("wcd_outbox_order", outbox.c.ordering_key, outbox.c.state)

settings = Table(
    "wcd_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# A user's monthly budget across every app (the operator's default, in wcd_settings, otherwise).
budgets = Table(
    "wcd_budgets",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("monthly_budget", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# A budget threshold a user passed in a month: the key makes its notice go out once.
budget_alerts = Table(
    "wcd_budget_alerts",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("percent", Integer, primary_key=True),
    Column("fired_at", BigInteger, nullable=False),
)

# Each grant's spend per month as its upstream key last reported it (at each budget pass): the
# domain's monthly report reads these, so a closed month keeps its figures after the key resets.
grant_usage = Table(
    "wcd_grant_usage",
    metadata,
    Column("grant_id", String(40), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("spent", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
