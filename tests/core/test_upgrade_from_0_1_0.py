"""A database that 0.1.0 made, with data in every table, is adopted and upgraded without losing a row.

The 0.1.0 tables come from ``schema_0_1_0/`` (the DDL that release's ``create_all`` emitted), never
from today's models, and the rows are written with plain SQL, as that release left them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.core.databases import differences, fresh_database, on, schema_of
from wattfare_embed.consent_domain.records import NewJob
from wattfare_embed.consent_domain.revisions import migrations as domain_migrations
from wattfare_embed.consent_domain.storage import DomainStore
from wattfare_embed.store import GrantChange, Reservation, ReservationRequest, SqlStore
from wattfare_embed.store import migrations as embed_migrations

SCHEMAS = Path(__file__).parent / "schema_0_1_0"
NOW = int(time.time())

EMBED_ROWS = f"""
INSERT INTO wattfare_connections (id, app_id, app_user_id, status, authority, monthly_cap, period, spent, reserved,
    credential, grant_id, upstream_url, hard_limit, created_at, updated_at)
VALUES ('con_alice', 'app1', 'alice', 'active', 'hosted', 10000000, '{time.strftime("%Y-%m", time.gmtime(NOW))}',
    1234567, 250000, 'v1.sealed-alice', 'grt_1', 'https://consent.example.com/api/v1', 20000000, 1700000000, {NOW});
INSERT INTO wattfare_connections (id, app_id, app_user_id, status, authority, monthly_cap, period, spent, reserved,
    credential, grant_id, upstream_url, hard_limit, created_at, updated_at)
VALUES ('con_bob', 'app1', 'bob', 'revoked', 'openrouter', 5000000, '2025-01', 5000000, 0,
    NULL, NULL, NULL, NULL, 1700000001, 1700000002);
INSERT INTO wattfare_ledger (id, connection_id, app_id, app_user_id, kind, model, state, reserved, cost, cost_source,
    generation_id, reconcile, period, created_at, expires_at, settled_at)
VALUES ('req_open', 'con_alice', 'app1', 'alice', 'chat', 'anthropic/claude-sonnet-4', 'reserved', 250000,
    NULL, NULL, NULL, FALSE, '2025-03', {NOW}, {NOW + 3600}, NULL);
INSERT INTO wattfare_ledger (id, connection_id, app_id, app_user_id, kind, model, state, reserved, cost, cost_source,
    generation_id, reconcile, period, created_at, expires_at, settled_at)
VALUES ('req_done', 'con_alice', 'app1', 'alice', 'embeddings', 'openai/text-embedding-3-small', 'settled', 9000,
    1234567, 'estimated', 'gen-123', TRUE, '2025-03', 1700000100, 1700003700, 1700000105);
INSERT INTO wattfare_ledger (id, connection_id, app_id, app_user_id, kind, model, state, reserved, cost, cost_source,
    generation_id, reconcile, period, created_at, expires_at, settled_at)
VALUES ('req_swept', 'con_bob', 'app1', 'bob', 'chat', 'openai/gpt-4o-mini', 'expired', 5000000,
    5000000, 'estimated', NULL, FALSE, '2025-01', 1700000200, 1700003800, 1700007400);
INSERT INTO wattfare_consent_requests (state, app_id, app_user_id, authority, verifier, requested_cap, return_to, mode,
    redirect_uri, browser_hash, created_at, expires_at, used_at)
VALUES ('st_open', 'app1', 'carol', 'hosted', 'verifier-1', 7000000, '/settings?tab=ai', 'popup',
    'https://app.example.com/wattfare/callback', 'bh1', {NOW}, {NOW + 600}, NULL);
INSERT INTO wattfare_consent_requests (state, app_id, app_user_id, authority, verifier, requested_cap, return_to, mode,
    redirect_uri, browser_hash, created_at, expires_at, used_at)
VALUES ('st_used', 'app1', 'alice', 'dev', 'verifier-2', 10000000, '/', 'redirect',
    'https://app.example.com/wattfare/callback', 'bh2', 1700000000, 1700000600, 1700000030);
INSERT INTO wattfare_webhook_events (id, received_at) VALUES ('evt_1', 1700000300);
INSERT INTO wattfare_webhook_events (id, received_at) VALUES ('evt_2', 1700000400);
INSERT INTO wattfare_schema_version (version, applied_at) VALUES (1, 0);
"""

DOMAIN_ROWS = """
INSERT INTO wcd_apps (id, name, publishable_key, secret_hash, signing_key, redirect_uris, webhook_url, created_at)
VALUES ('app1', 'Acme Chat', 'pk_live_app1', 'ab12', 'cd34', '["https://app.example.com/wattfare/callback"]',
    'https://app.example.com/wattfare/webhooks', 1700000000);
INSERT INTO wcd_users (id, email, password_hash, created_at)
VALUES ('usr_1', 'alice@example.com', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 1700000000);
INSERT INTO wcd_codes (code_hash, app_id, user_id, redirect_uri, code_challenge, monthly_cap, created_at, expires_at,
    used_at, grant_id)
VALUES ('c0de', 'app1', 'usr_1', 'https://app.example.com/wattfare/callback', 'chal', 10000000, 1700000000,
    1700000600, 1700000010, 'grt_1');
INSERT INTO wcd_grants (id, app_id, user_id, status, monthly_cap, key_hash, created_at, updated_at, revoked_at,
    revoked_reason)
VALUES ('grt_1', 'app1', 'usr_1', 'active', 10000000, 'keyhash1', 1700000010, 1700000010, NULL, NULL);
INSERT INTO wcd_grants (id, app_id, user_id, status, monthly_cap, key_hash, created_at, updated_at, revoked_at,
    revoked_reason)
VALUES ('grt_0', 'app1', 'usr_1', 'revoked', 5000000, NULL, 1600000000, 1600000100, 1600000100, 'replaced');
INSERT INTO wcd_outbox (kind, app_id, ordering_key, payload, state, attempts, next_attempt_ms, locked_until_ms,
    last_error, created_at, finished_at)
VALUES ('webhook', 'app1', 'grant:grt_0', '{"type": "grant.revoked"}', 'done', 1, 1600000100000, NULL, NULL,
    1600000100, 1600000101);
INSERT INTO wcd_outbox (kind, app_id, ordering_key, payload, state, attempts, next_attempt_ms, locked_until_ms,
    last_error, created_at, finished_at)
VALUES ('delete_key', 'app1', 'key:keyhash0', '{"hash": "keyhash0"}', 'pending', 3, 1700000500000, 1700000400000,
    'upstream 503', 1600000100, NULL);
INSERT INTO wcd_settings (name, value) VALUES ('session_secret', 'kept-secret');
"""


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


async def _build_0_1_0(url: str) -> None:
    """The two sets of tables as 0.1.0 created them, and rows in each."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    script = "\n".join((SCHEMAS / f"{name}.{dialect}.sql").read_text() for name in ("embed", "consent_domain"))
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in _statements(script) + _statements(EMBED_ROWS) + _statements(DOMAIN_ROWS):
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _all_rows(db: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ours the database has (revisions after 0.1.0 add tables)."""
    present = set(inspect(db).get_table_names())
    tables = [
        name for name in (*embed_migrations.metadata.tables, *domain_migrations.metadata.tables) if name in present
    ]
    return {table: [tuple(row) for row in db.execute(text(f"SELECT * FROM {table} ORDER BY 1"))] for table in tables}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path, "upgrade") as url:
        await _build_0_1_0(url)
        yield url


async def test_a_0_1_0_database_is_adopted_and_upgraded_without_losing_a_row(old_database: str) -> None:
    before = await on(old_database, _all_rows)
    assert all(before.values()), "every 0.1.0 table holds rows before the upgrade"
    assert await on(old_database, embed_migrations.current) is None

    store, domain = SqlStore(old_database), DomainStore(old_database)
    await store.open()
    await domain.open()
    try:
        after = await on(old_database, _all_rows)
        assert after.pop("wattfare_schema_version") == [(2, 0)]  # 0.1.0 now refuses this database
        before.pop("wattfare_schema_version")
        # Event ids are per app now: each old one is kept for the app holding connections here.
        assert after.pop("wattfare_webhook_events") == [("app1", *row) for row in before.pop("wattfare_webhook_events")]
        # Ledger rows gain token counts and users a role, unknown (NULL) for what was there before.
        assert after.pop("wattfare_ledger") == [(*row, None, None) for row in before.pop("wattfare_ledger")]
        assert after.pop("wcd_users") == [(*row, None) for row in before.pop("wcd_users")]
        added = {table: after.pop(table) for table in set(after) - set(before)}
        empty = ("wcd_sessions", "wcd_budgets", "wcd_budget_alerts", "wcd_grant_usage")
        empty += ("wattfare_grants", "wattfare_alert_firings", "wattfare_alert_outbox")
        assert added == {key: [] for key in empty}, "tables added since 0.1.0 start empty"
        # Columns added since (one-time grants; the limit last set on a grant's key) are empty on every
        # old row: none was a one-time grant, and no limit had been set by a budget.
        for table, added_columns in (("wattfare_consent_requests", 1), ("wcd_codes", 1), ("wcd_grants", 3)):
            rows = after.pop(table)
            assert all(set(row[-added_columns:]) == {None} for row in rows), table
            after[table] = [row[:-added_columns] for row in rows]
        assert after == before

        def state(db: Connection) -> tuple[Any, ...]:
            return (
                embed_migrations.current(db),
                domain_migrations.current(db),
                differences(embed_migrations, db),
                differences(domain_migrations, db),
            )

        assert await on(old_database, state) == (embed_migrations.head, domain_migrations.head, [], [])

        # The old rows work with this release's code.
        alice = await store.get_connection("app1", "alice", NOW)
        assert alice is not None
        assert (alice.spent, alice.reserved, alice.sealed_credential) == (1234567, 250000, "v1.sealed-alice")
        held = await store.reserve(ReservationRequest("app1", "alice", 100_000, 1, "chat", "m"), NOW)
        assert isinstance(held, Reservation) and held.amount == 100_000
        assert await store.settle("req_open", 200_000, "reported", NOW)
        entries = {entry.id: entry for entry in await store.ledger("app1", limit=10)}
        assert {"req_open", "req_done", "req_swept", held.ledger_id} == set(entries)
        assert (entries["req_done"].cost, entries["req_done"].generation_id) == (1234567, "gen-123")
        replayed = GrantChange("app1", "evt_1", "grt_1", revoke=True, monthly_cap=None, max_cap=10**9)
        assert (await store.apply_grant_change(replayed, NOW)).duplicate, "an applied event stays applied"

        app = await domain.get_app("app1")
        assert app is not None and app.redirect_uris == ("https://app.example.com/wattfare/callback",)
        assert await domain.find_user("alice@example.com") == ("usr_1", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA")
        assert await domain.setting("session_secret", "new") == "kept-secret"
        await domain.queue([NewJob(kind="webhook", app_id="app1", ordering_key="grant:grt_1", payload="{}")])
        ids = await on(
            old_database, lambda db: db.execute(text("SELECT id FROM wcd_outbox ORDER BY id")).scalars().all()
        )
        assert len(ids) == 3 and ids[-1] > max(ids[:-1])  # the outbox's id sequence carried over
    finally:
        await store.close()
        await domain.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_the_first_revisions_build_exactly_the_0_1_0_schema(kind: str, tmp_path: Path) -> None:
    async with (
        fresh_database(kind, tmp_path, "made_by_0_1_0") as old,
        fresh_database(kind, tmp_path, "made_by_revisions") as new,
    ):
        engine = create_async_engine(old)
        try:
            async with engine.begin() as connection:
                for name in ("embed", "consent_domain"):
                    dialect = "sqlite" if kind == "sqlite" else "postgresql"
                    for statement in _statements((SCHEMAS / f"{name}.{dialect}.sql").read_text()):
                        await connection.exec_driver_sql(statement)
        finally:
            await engine.dispose()
        for migrations in (embed_migrations, domain_migrations):
            await on(new, lambda db, m=migrations: m.upgrade(db, m.first_revision))
            made_by_revision = await on(new, lambda db, m=migrations: schema_of(m, db))
            assert made_by_revision == await on(old, lambda db, m=migrations: schema_of(m, db))
            assert set(made_by_revision) <= set(migrations.metadata.tables), "0.1.0's tables are all still ours"


async def _start_up(url: str) -> None:
    store = SqlStore(url)
    await store.open()
    await store.close()


async def test_start_ups_after_the_upgrade_change_nothing(old_database: str) -> None:
    await _start_up(old_database)
    upgraded = await on(old_database, _all_rows)
    await _start_up(old_database)
    await _start_up(old_database)
    assert await on(old_database, _all_rows) == upgraded
