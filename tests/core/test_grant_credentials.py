"""A one-time grant's sealed funding credential is kept while its requests can still be settled
and reconciled, and forgotten by the sweeper after that; the grant itself stays."""

from __future__ import annotations

import secrets
import time

from wattfare_embed import AppKeys, SqlStore
from wattfare_embed.config import DEFAULT_RESERVATION_TTL_SECONDS
from wattfare_embed.metering.reconcile import GIVE_UP_SECONDS
from wattfare_embed.store import NewGrant
from wattfare_embed.testing.waiting import poll

from .conftest import make_embed

USD = 1_000_000


async def _grant(store: SqlStore, app_id: str, expires_at: int) -> str:
    grant_id = "gnt_" + secrets.token_hex(12)
    grant = NewGrant(
        id=grant_id,
        app_id=app_id,
        token_hash=secrets.token_hex(32),
        authority="dev",
        requests_allowed=3,
        max_cost=USD,
        sealed_credential=f"v1.sealed-{grant_id}",
        expires_at=expires_at,
    )
    await store.create_grant(grant, expires_at - 86_400)
    return grant_id


async def test_only_the_apps_grants_ended_before_the_cutoff_lose_their_credential(store: SqlStore) -> None:
    now = int(time.time())
    app_id, other_app = "app" + secrets.token_hex(4), "app" + secrets.token_hex(4)
    ended = await _grant(store, app_id, now - 100)
    just_ended = await _grant(store, app_id, now - 10)
    live = await _grant(store, app_id, now + 100)
    other = await _grant(store, other_app, now - 100)

    assert await store.forget_ended_grant_credentials(app_id, now - 50, now) == 1
    assert await store.forget_ended_grant_credentials(app_id, now - 50, now) == 0  # done once

    records = {grant_id: await store.get_grant(grant_id) for grant_id in (ended, just_ended, live, other)}
    assert {grant_id: record.sealed_credential if record else "gone" for grant_id, record in records.items()} == {
        ended: None,
        just_ended: f"v1.sealed-{just_ended}",
        live: f"v1.sealed-{live}",
        other: f"v1.sealed-{other}",
    }
    kept = records[ended]
    assert kept is not None and (kept.requests_allowed, kept.max_cost, kept.revoked) == (3, USD, False)


async def test_the_sweeper_forgets_a_grants_credential_a_day_after_its_requests_could_end(
    keys: AppKeys, database_url: str, store: SqlStore
) -> None:
    now = int(time.time())
    kept_for = DEFAULT_RESERVATION_TTL_SECONDS + GIVE_UP_SECONDS  # held, then reconciled
    long_ended = await _grant(store, keys.app_id, now - kept_for - 60)
    still_needed = await _grant(store, keys.app_id, now - kept_for + 600)

    async with make_embed(keys, database_url):  # the sweeper's first pass runs at start-up

        async def forgotten() -> bool | None:
            record = await store.get_grant(long_ended)
            return True if record is not None and record.sealed_credential is None else None

        await poll(forgotten, what="the long-ended grant's credential forgotten")

    record = await store.get_grant(still_needed)
    assert record is not None and record.sealed_credential == f"v1.sealed-{still_needed}"
