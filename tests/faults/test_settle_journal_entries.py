"""The settle journal's files: an entry keeps the request's token counts through a restart, and
an entry written before it kept them still applies (its row simply has none)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wattfare_embed import AppKeys, SqlStore
from wattfare_embed.metering.settle_journal import PendingSettle, SettleJournal
from wattfare_embed.periods import period_of
from wattfare_embed.store import NewConnection, Reservation, ReservationRequest


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SqlStore]:
    opened = SqlStore(sqlite_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _held(store: SqlStore, app_id: str, user: str, now: int) -> str:
    connection = NewConnection(
        app_id=app_id, app_user_id=user, authority="dev", monthly_cap=1_000_000, sealed_credential="v1.x"
    )
    await store.save_connection(connection, now)
    held = await store.reserve(ReservationRequest(app_id, user, 100_000, 1, "chat", "m"), now)
    assert isinstance(held, Reservation)
    return held.ledger_id


async def test_a_journaled_settle_keeps_its_token_counts_across_a_restart(
    store: SqlStore, keys: AppKeys, user_id: str, tmp_path: Path
) -> None:
    now = int(time.time())
    ledger_id = await _held(store, keys.app_id, user_id, now)
    SettleJournal(tmp_path).keep(PendingSettle(ledger_id, 40_000, "reported", now, "gen-1", False, 321, 54))

    assert await SettleJournal(tmp_path).apply(store) == 1  # a new process reads it from disk

    [receipt] = await store.receipts(keys.app_id, user_id, period_of(now), before=None, limit=10)
    assert (receipt.id, receipt.cost, receipt.tokens_in, receipt.tokens_out) == (ledger_id, 40_000, 321, 54)
    assert not list(tmp_path.glob("*.json"))


async def test_an_entry_written_without_token_counts_still_applies(
    store: SqlStore, keys: AppKeys, user_id: str, tmp_path: Path
) -> None:
    now = int(time.time())
    ledger_id = await _held(store, keys.app_id, user_id, now)
    old = {"ledger_id": ledger_id, "cost": 40_000, "cost_source": "reported", "at": now}
    old |= {"generation_id": "gen-1", "reconcile": False}
    (tmp_path / f"{ledger_id}.json").write_text(json.dumps(old))

    assert await SettleJournal(tmp_path).apply(store) == 1

    [receipt] = await store.receipts(keys.app_id, user_id, period_of(now), before=None, limit=10)
    assert (receipt.cost, receipt.tokens_in, receipt.tokens_out) == (40_000, None, None)
    record = await store.get_connection(keys.app_id, user_id, now)
    assert record is not None and (record.spent, record.reserved) == (40_000, 0)
