"""The `wattfare` command: migrate, a user's status, the usage ledger, and clean configuration errors.

Most cases call ``main()`` in-process (fast); one runs the real entry point in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from wattfare_embed import AppKeys, SqlStore, new_key_pair
from wattfare_embed.cli import main
from wattfare_embed.store import NewConnection, Reservation, ReservationRequest, migrations


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("WATTFARE_", "OPENROUTER_")):
            monkeypatch.delenv(name)


def _use_keys(monkeypatch: pytest.MonkeyPatch, keys: AppKeys, database_url: str | None = None) -> None:
    monkeypatch.setenv("WATTFARE_SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", keys.publishable_key)
    if database_url:
        monkeypatch.setenv("WATTFARE_DATABASE_URL", database_url)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _record_usage(database_url: str, keys: AppKeys, user: str) -> str:
    store = SqlStore(database_url)
    await store.open()
    try:
        now = int(time.time())
        await store.save_connection(NewConnection(keys.app_id, user, "dev", 10_000_000, "v1.x"), now)
        held = await store.reserve(ReservationRequest(keys.app_id, user, 2_500_000, 1, "chat", "acme/model-x"), now)
        assert isinstance(held, Reservation)
        await store.settle(held.ledger_id, 1_234_567, "reported", now)
        return held.ledger_id
    finally:
        await store.close()


def test_migrate_creates_the_tables_and_is_idempotent(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    code, out, _ = _run(capsys, "migrate", "--database-url", f"sqlite+aiosqlite:///{path}")
    assert code == 0
    assert out.strip() == f"wattfare tables created in sqlite+aiosqlite:///{path} (revision {migrations.head})"
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"wattfare_connections", "wattfare_ledger", "wattfare_consent_requests"} <= tables
    code, out, _ = _run(capsys, "migrate", "--database-url", f"sqlite+aiosqlite:///{path}")
    assert code == 0
    assert out.strip() == f"wattfare tables are up to date in sqlite+aiosqlite:///{path} (revision {migrations.head})"


def test_migrate_reads_the_database_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("WATTFARE_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    code, out, _ = _run(capsys, "migrate")
    assert code == 0 and str(path) in out
    assert path.exists()


def test_migrate_never_prints_a_database_password(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # The test server trusts local connections, so a password is accepted and ignored.
        database_url = url.set(password="s3cret-pw").render_as_string(hide_password=False)
    code, out, err = _run(capsys, "migrate", "--database-url", database_url)
    assert code == 0, err
    assert "wattfare tables" in out and migrations.head in out
    assert "s3cret-pw" not in out + err


def test_status_prints_a_users_connection(
    capsys: pytest.CaptureFixture[str], database_url: str, keys: AppKeys, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_record_usage(database_url, keys, user_id))
    _use_keys(monkeypatch, keys, database_url)
    code, out, err = _run(capsys, "status", user_id)
    assert code == 0, err
    status = json.loads(out)
    assert status["appUserId"] == user_id and status["connected"] is True
    assert (status["monthlyUsd"], status["spentUsd"], status["remainingUsd"]) == (10, 1.234567, 8.765433)
    assert keys.secret_key not in out + err


def test_status_of_an_unknown_user_is_not_connected(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, keys: AppKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_keys(monkeypatch, keys)
    code, out, _ = _run(capsys, "status", "nobody", "--database-url", sqlite_url)
    assert code == 0
    assert json.loads(out)["status"] == "not_connected"


def test_usage_lists_metered_requests(
    capsys: pytest.CaptureFixture[str], database_url: str, keys: AppKeys, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_id = asyncio.run(_record_usage(database_url, keys, user_id))
    _use_keys(monkeypatch, keys, database_url)
    code, out, _ = _run(capsys, "usage")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["request", "user", "model", "state", "cost", "USD", "source"]
    assert [row.split() for row in rows] == [[ledger_id, user_id, "acme/model-x", "settled", "1.234567", "reported"]]
    code, out, _ = _run(capsys, "usage", "--user", "someone-else", "--limit", "5")
    assert code == 0 and len(out.splitlines()) == 1


def test_status_and_usage_work_with_live_keys(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = new_key_pair(live=True)
    asyncio.run(_record_usage(sqlite_url, live, user_id))
    _use_keys(monkeypatch, live, sqlite_url)
    code, out, err = _run(capsys, "status", user_id)
    assert code == 0, err
    assert json.loads(out)["connected"] is True
    code, out, err = _run(capsys, "usage")
    assert code == 0, err
    assert user_id in out


def test_bad_or_missing_keys_are_a_clear_error(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _run(capsys, "status", "someone", "--database-url", sqlite_url)
    assert code == 2 and out == ""
    assert err.startswith("wattfare: ") and "WATTFARE_SECRET_KEY" in err
    monkeypatch.setenv("WATTFARE_SECRET_KEY", "sk_test_app_short")
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", "pk_test_app")
    code, _, err = _run(capsys, "usage", "--database-url", sqlite_url)
    assert code == 2 and "at least 32 bytes" in err


def test_the_entry_point_runs_in_a_subprocess(sqlite_url: str, keys: AppKeys) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("WATTFARE_")}
    env.update(WATTFARE_SECRET_KEY=keys.secret_key, WATTFARE_PUBLISHABLE_KEY=keys.publishable_key)
    done = subprocess.run(
        [sys.executable, "-m", "wattfare_embed", "status", "someone", "--database-url", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["appUserId"] == "someone"
    missing = subprocess.run(
        [sys.executable, "-m", "wattfare_embed", "usage", "--database-url", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={name: value for name, value in env.items() if not name.startswith("WATTFARE_")},
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "usage: wattfare" in capsys.readouterr().err
    with pytest.raises(SystemExit) as helped:
        main(["--help"])
    assert helped.value.code == 0
    out = capsys.readouterr().out
    for command in ("keys", "migrate", "status", "usage"):
        assert command in out
