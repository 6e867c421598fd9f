"""``wattfare usage --month YYYY-MM --format csv|json``: per user and model, FOCUS columns, exact to the
micro-dollar, and a closed month's report adds up to its ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, select

from wattfare_embed import AppKeys, SqlStore
from wattfare_embed.cli import main
from wattfare_embed.periods import period_bounds, period_of
from wattfare_embed.reports import FOCUS_COLUMNS
from wattfare_embed.store import NewConnection, Reservation, ReservationRequest
from wattfare_embed.store.schema import ledger

from .conftest import running_proxy, tokens_written

MICROS = Decimal(1_000_000)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("WATTFARE_", "OPENROUTER_")):
            monkeypatch.delenv(name)


def _last_month() -> tuple[str, int]:
    """The month before this one, and a moment in its middle."""
    start, _ = period_bounds(period_of(time.time()))
    middle = (start - timedelta(days=15)).replace(tzinfo=UTC)
    return period_of(middle.timestamp()), int(middle.timestamp())


async def _charge(store: SqlStore, app_id: str, user: str, model: str, cost: int, source: str, now: int) -> str:
    held = await store.reserve(ReservationRequest(app_id, user, cost + 1000, 1, "chat", model), now)
    assert isinstance(held, Reservation), held
    assert await store.settle(held.ledger_id, cost, source, now, reconcile=source == "estimated", generation_id="g")
    return held.ledger_id


async def _ledger_sums(store: SqlStore, app_id: str, month: str) -> dict[tuple[str, str], int]:
    def operation(db: Connection) -> dict[tuple[str, str], int]:
        sums: dict[tuple[str, str], int] = defaultdict(int)
        rows = db.execute(
            select(ledger.c.app_user_id, ledger.c.model, ledger.c.cost, ledger.c.state).where(
                ledger.c.app_id == app_id, ledger.c.period == month
            )
        ).all()
        for row in rows:
            if row.state in ("settled", "expired"):
                sums[(row.app_user_id, row.model)] += row.cost
        return dict(sums)

    return await store._run_handle().run(operation)


async def _report(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    # The command runs its own event loop, so on a thread of its own here.
    code = await asyncio.to_thread(main, ["usage", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    if "json" in args:
        rows: list[dict[str, Any]] = json.loads(out)
        return rows
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames or ()) == FOCUS_COLUMNS
    return list(reader)


async def test_a_closed_months_report_equals_its_ledger_to_the_micro_dollar(
    keys: AppKeys, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    month, moment = _last_month()
    store = SqlStore(database_url)
    await store.open()
    try:
        for user in ("ann", "bob"):
            await store.save_connection(NewConnection(keys.app_id, user, "dev", 50_000_000, "v1.x"), moment)
        # Odd amounts, a reconciled estimate, an orphan the sweeper charged, a released request.
        await _charge(store, keys.app_id, "ann", "openai/gpt-4o-mini", 1_234_567, "reported", moment)
        await _charge(store, keys.app_id, "ann", "openai/gpt-4o-mini", 1, "reported", moment + 1)
        estimated = await _charge(store, keys.app_id, "ann", "anthropic/claude-sonnet-4", 333_333, "estimated", moment)
        assert await store.reconcile(estimated, 333_337, moment + 60)
        await _charge(store, keys.app_id, "bob", "openai/gpt-4o-mini", 7_000_001, "estimated", moment)
        orphan = await store.reserve(ReservationRequest(keys.app_id, "bob", 12_345, 1, "chat", "x/y", 10), moment)
        assert isinstance(orphan, Reservation)
        assert await store.sweep_expired(moment + 100, app_id=keys.app_id) == 1  # other tests' holds aside
        released = await store.reserve(ReservationRequest(keys.app_id, "bob", 99, 1, "chat", "x/y"), moment)
        assert isinstance(released, Reservation)
        await store.settle(released.ledger_id, 0, "none", moment)
        expected = await _ledger_sums(store, keys.app_id, month)
    finally:
        await store.close()

    monkeypatch.setenv("WATTFARE_SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", keys.publishable_key)
    csv_rows = await _report(capsys, "--database-url", database_url, "--month", month, "--format", "csv")
    json_rows = await _report(capsys, "--database-url", database_url, "--month", month, "--format", "json")
    assert csv_rows == json_rows  # the same strings either way

    got = {(row["SubAccountId"], row["ResourceId"]): int(row["x_BilledCostMicros"]) for row in csv_rows}
    assert got == expected
    assert expected[("ann", "anthropic/claude-sonnet-4")] == 333_337  # the upstream's figure, not the estimate
    assert expected[("bob", "x/y")] == 12_345  # the swept orphan, charged its hold
    start, end = (moment.isoformat().replace("+00:00", "Z") for moment in period_bounds(month))
    for row in csv_rows:
        assert set(row) == set(FOCUS_COLUMNS)
        micros = int(row["x_BilledCostMicros"])
        assert Decimal(row["BilledCost"]) * MICROS == micros  # exact decimal string, no float anywhere
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        assert "e" not in row["BilledCost"].lower()
        assert (row["ChargePeriodStart"], row["ChargePeriodEnd"]) == (start, end)
        assert (row["BillingPeriodStart"], row["BillingPeriodEnd"]) == (start, end)
        assert row["BillingCurrency"] == "USD" and row["ChargeCategory"] == "Usage"
        assert row["BillingAccountId"] == row["x_AppId"] == keys.app_id
    by_key = {(row["SubAccountId"], row["ResourceId"]): row for row in csv_rows}
    assert by_key[("ann", "openai/gpt-4o-mini")]["x_Requests"] == "2"
    assert by_key[("ann", "openai/gpt-4o-mini")]["BilledCost"] == "1.234568"
    assert by_key[("bob", "openai/gpt-4o-mini")]["x_EstimatedCost"] == "7.000001"
    assert by_key[("ann", "anthropic/claude-sonnet-4")]["x_EstimatedCost"] == "0"

    # One user's rows only, and another month has none of these.
    only_bob = await _report(
        capsys, "--database-url", database_url, "--month", month, "--format", "json", "--user", "bob"
    )
    assert {row["SubAccountId"] for row in only_bob} == {"bob"}
    earlier = datetime.fromisoformat(start.replace("Z", "+00:00")) - timedelta(days=1)
    assert await _report(capsys, "--database-url", database_url, "--month", period_of(earlier.timestamp())) == []


async def test_this_months_report_counts_the_tokens_and_spend_of_real_requests(
    keys: AppKeys, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        await proxy.connect("ann")
        for model in ("openai/gpt-4o-mini", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4"):
            assert (await proxy.chat("ann", model=model, max_tokens=20)).status_code == 200
        receipts = await tokens_written(proxy, "ann", 3)
        spent = (await proxy.connection("ann")).spent

    monkeypatch.setenv("WATTFARE_SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", keys.publishable_key)
    rows = await _report(capsys, "--database-url", sqlite_url, "--month", period_of(time.time()), "--format", "json")
    assert sum(int(row["x_BilledCostMicros"]) for row in rows) == spent
    assert sum(Decimal(row["BilledCost"]) for row in rows) * MICROS == spent
    tokens_in = sum(receipt["tokensIn"] for receipt in receipts)
    tokens_out = sum(receipt["tokensOut"] for receipt in receipts)
    assert sum(int(row["x_TokensIn"]) for row in rows) == tokens_in
    assert sum(int(row["ConsumedQuantity"]) for row in rows) == tokens_in + tokens_out
    assert {row["ResourceId"]: row["x_Requests"] for row in rows} == {
        "openai/gpt-4o-mini": "2",
        "anthropic/claude-sonnet-4": "1",
    }
    assert {row["PublisherName"] for row in rows} == {"openai", "anthropic"}


async def test_a_csv_report_never_hands_a_spreadsheet_a_formula(
    keys: AppKeys, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    month, moment = _last_month()
    hostile = '=HYPERLINK("http://evil.example","x")'
    store = SqlStore(sqlite_url)
    await store.open()
    try:
        await store.save_connection(NewConnection(keys.app_id, hostile, "dev", 50_000_000, "v1.x"), moment)
        await _charge(store, keys.app_id, hostile, "@evil/model", 1_500_000, "reported", moment)
    finally:
        await store.close()

    monkeypatch.setenv("WATTFARE_SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", keys.publishable_key)
    [row] = await _report(capsys, "--database-url", sqlite_url, "--month", month, "--format", "csv")
    assert row["SubAccountId"] == "'" + hostile and row["ResourceId"] == "'@evil/model"
    assert row["BilledCost"] == "1.5"  # numbers are left as they are
    [as_json] = await _report(capsys, "--database-url", sqlite_url, "--month", month, "--format", "json")
    assert as_json["SubAccountId"] == hostile  # JSON is data, not a sheet: unchanged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "--month"),
        (["--month", "November"], "--month"),
        (["--format", "csv"], "--month"),
    ],
)
def test_bad_report_options_exit_2_with_a_message(
    keys: AppKeys,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("WATTFARE_SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", keys.publishable_key)
    assert main(["usage", "--database-url", sqlite_url, *args]) == 2
    assert message in capsys.readouterr().err
