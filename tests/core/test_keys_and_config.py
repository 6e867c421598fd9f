"""Keys and configuration: the CLI's pair works, and every bad setup fails at construction, clearly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from wattfare_embed import AppKeys, ConfigurationError, DevConsent, OpenRouterConsent, Wattfare, new_key_pair
from wattfare_embed.cli import main
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import MOUNT, bearer, host_app, local_client, make_embed

SECRET = "a" * 48


def _keys_new(*args: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "wattfare_embed", "keys", "new", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr == ""
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines())
    return lines


def test_keys_new_test_prints_a_pair_the_embed_accepts(sqlite_url: str) -> None:
    pair = _keys_new("--test", "--env")
    secret, publishable = pair["WATTFARE_SECRET_KEY"], pair["WATTFARE_PUBLISHABLE_KEY"]
    assert secret.startswith("sk_test_") and publishable.startswith("pk_test_")
    embed = Wattfare(secret_key=secret, publishable_key=publishable, database_url=sqlite_url)
    assert embed.keys.live is False
    assert publishable == f"pk_test_{embed.keys.app_id}"
    assert isinstance(embed.consent, DevConsent) and embed.consent.auto_approve


def test_keys_new_plain_output_labels_both_keys_and_defaults_to_live() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wattfare_embed", "keys", "new"], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith("secret key (server only): sk_live_")
    assert lines[1].startswith("publishable key (browser): pk_live_")
    secret, publishable = lines[0].rsplit(" ", 1)[1], lines[1].rsplit(" ", 1)[1]
    embed = Wattfare(secret_key=secret, publishable_key=publishable, consent=OpenRouterConsent())
    assert embed.keys.live is True


def test_two_key_pairs_are_different_apps(capsys: pytest.CaptureFixture[str]) -> None:
    pairs = []
    for _ in range(2):
        assert main(["keys", "new", "--test", "--env"]) == 0
        pairs.append(dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines()))
    first, second = pairs
    assert first["WATTFARE_SECRET_KEY"] != second["WATTFARE_SECRET_KEY"]
    assert first["WATTFARE_PUBLISHABLE_KEY"] != second["WATTFARE_PUBLISHABLE_KEY"]


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "wattfare"
    assert script.exists()
    done = subprocess.run([str(script), "keys", "new", "--test"], capture_output=True, text=True, check=True)
    assert "sk_test_" in done.stdout and "pk_test_" in done.stdout


@pytest.mark.parametrize(
    ("secret_key", "publishable_key", "message"),
    [
        (f"xk_test_app1_{SECRET}", "pk_test_app1", "secret key must look like"),
        (f"sk_prod_app1_{SECRET}", "pk_test_app1", "secret key must look like"),
        (f"sk_test_app1_{SECRET}", "xk_test_app1", "publishable key must look like"),
        (f"sk_test_app1_{SECRET}", "pk_test_app-1", "publishable key must look like"),
        (f"sk_test_app1_{SECRET}", f"sk_test_app1_{SECRET}", "publishable key must look like"),
        (f"sk_test_app1_{'a' * 31}", "pk_test_app1", "at least 32 bytes"),
        ("sk_test_app1_", "pk_test_app1", "secret key must look like"),
        (f"sk_test_app1_{SECRET}\n", "pk_test_app1", "secret key must look like"),
        (f"sk_test_app1_{SECRET}", "pk_test_app1\n", "publishable key must look like"),
        (f" sk_test_app1_{SECRET}", "pk_test_app1", "secret key must look like"),
        (f"sk_test_app1_{SECRET}", "pk_test_app2", "belongs to app 'app1' but the publishable key to app 'app2'"),
        (f"sk_test_app1_{SECRET}", "pk_live_app1", "test key but the publishable key a live key"),
        (f"sk_live_app1_{SECRET}", "pk_test_app1", "live key but the publishable key a test key"),
    ],
    ids=[
        "wrong-secret-prefix",
        "unknown-mode",
        "wrong-publishable-prefix",
        "bad-app-id",
        "secret-as-publishable",
        "short-secret",
        "empty-secret",
        "secret-with-trailing-newline",
        "publishable-with-trailing-newline",
        "secret-with-leading-space",
        "two-apps",
        "test-secret-live-publishable",
        "live-secret-test-publishable",
    ],
)
def test_construction_refuses_bad_keys_with_a_clear_message(
    secret_key: str, publishable_key: str, message: str, sqlite_url: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Wattfare(
            secret_key=secret_key,
            publishable_key=publishable_key,
            database_url=sqlite_url,
            consent=OpenRouterConsent(),
        )


def test_a_secret_of_exactly_32_bytes_is_enough(sqlite_url: str) -> None:
    embed = Wattfare(secret_key=f"sk_test_app1_{'b' * 32}", publishable_key="pk_test_app1", database_url=sqlite_url)
    assert embed.keys.app_id == "app1"


def test_live_keys_refuse_the_development_consent_page(sqlite_url: str) -> None:
    live = new_key_pair(live=True)
    with pytest.raises(ConfigurationError, match="DevConsent"):
        Wattfare(
            secret_key=live.secret_key,
            publishable_key=live.publishable_key,
            database_url=sqlite_url,
            consent=DevConsent(),
        )
    with pytest.raises(ConfigurationError, match="DevConsent"):
        make_embed(live, sqlite_url, consent=DevConsent(auto_approve=False))


def test_live_keys_without_a_consent_authority_are_refused(sqlite_url: str) -> None:
    live = new_key_pair(live=True)
    with pytest.raises(ConfigurationError, match="live keys need a real consent authority"):
        Wattfare(secret_key=live.secret_key, publishable_key=live.publishable_key, database_url=sqlite_url)


def test_live_keys_with_openrouter_consent_are_accepted(sqlite_url: str) -> None:
    live = new_key_pair(live=True)
    embed = make_embed(live, sqlite_url, consent=OpenRouterConsent())
    assert embed.keys.live and embed.consent.name == "openrouter"


def test_test_keys_default_to_auto_approving_dev_consent(keys: AppKeys, sqlite_url: str) -> None:
    embed = make_embed(keys, sqlite_url)
    assert isinstance(embed.consent, DevConsent) and embed.consent.auto_approve is True


def test_missing_keys_name_the_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTFARE_SECRET_KEY", raising=False)
    monkeypatch.delenv("WATTFARE_PUBLISHABLE_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="WATTFARE_SECRET_KEY"):
        Wattfare()


def test_the_keys_repr_never_shows_the_secret(keys: AppKeys, sqlite_url: str) -> None:
    embed = make_embed(keys, sqlite_url)
    secret_part = keys.secret_key.rsplit("_", 1)[1]
    assert secret_part not in repr(embed.keys)
    assert secret_part not in repr(keys)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("default_monthly_usd", 0, "default_monthly_usd must be more than zero"),
        ("max_monthly_usd", "-5", "max_monthly_usd must be more than zero"),
        ("default_monthly_usd", "ten", "default_monthly_usd must be an amount"),
        ("default_monthly_usd", 2000, "default_monthly_usd is above max_monthly_usd"),
        ("session_ttl_seconds", 5, "session_ttl_seconds must be at least 30"),
        ("upstream_url", "ftp://example.com", "upstream_url must be an http"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    keys: AppKeys, sqlite_url: str, option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_embed(keys, sqlite_url, **{option: value})


async def test_keys_and_database_url_are_read_from_the_environment(
    keys: AppKeys, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATTFARE_SECRET_KEY", keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", keys.publishable_key)
    monkeypatch.setenv("WATTFARE_DATABASE_URL", database_url)
    embed = Wattfare(resolve_user=lambda request: "env-user")
    assert embed.keys.app_id == keys.app_id
    assert embed.settings.database_url == database_url
    async with serve_in_loop(host_app(embed)) as base_url, local_client(base_url + MOUNT) as client:
        minted = await client.post("/session")
        assert minted.status_code == 200
        status = await client.get("/api/v1/connections", headers=bearer(minted.json()["token"]))
        assert status.json()["appUserId"] == "env-user"
        # The session was minted and checked with the environment's keys, on the environment's database.
        server = await client.get("/api/v1/status", params={"appUserId": "env-user"}, headers=bearer(keys.secret_key))
        assert server.status_code == 200 and server.json()["connected"] is False
    await embed.shutdown()
    assert embed.store.database_url == database_url  # type: ignore[attr-defined]


def test_keyword_arguments_win_over_the_environment(
    keys: AppKeys, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = new_key_pair()
    monkeypatch.setenv("WATTFARE_SECRET_KEY", other.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", other.publishable_key)
    monkeypatch.setenv("WATTFARE_DATABASE_URL", "sqlite+aiosqlite:///elsewhere.db")
    embed = make_embed(keys, sqlite_url)
    assert embed.keys.app_id == keys.app_id
    assert embed.settings.database_url == sqlite_url


def test_a_bad_key_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTFARE_SECRET_KEY", "sk_test_app1_short")
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", "pk_test_app1")
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        Wattfare()


# -- lifecycle ------------------------------------------------------------------------------------


async def test_a_mounted_embed_starts_itself_on_the_first_request(keys: AppKeys, sqlite_url: str) -> None:
    embed = make_embed(keys, sqlite_url)
    async with serve_in_loop(host_app(embed)) as base_url, local_client(base_url + MOUNT) as client:
        # Mounted apps get no lifespan events: nothing is open until a request arrives.
        with pytest.raises(RuntimeError, match="not started"):
            _ = embed.http
        response = await client.get("/api/v1/status", params={"appUserId": "u"}, headers=bearer(keys.secret_key))
        assert response.status_code == 200
        assert not embed.http.closed
    await embed.shutdown()
    with pytest.raises(RuntimeError, match="not started"):
        _ = embed.http


async def test_startup_is_idempotent_and_async_with_manages_it(keys: AppKeys, database_url: str) -> None:
    embed = make_embed(keys, database_url)
    await asyncio.gather(*(embed.startup() for _ in range(5)))
    session = embed.http
    await embed.startup()
    assert embed.http is session
    await embed.shutdown()
    await embed.shutdown()  # twice is fine
    async with embed as entered:
        assert entered is embed
        assert (await embed.status("someone")).connected is False
    with pytest.raises(RuntimeError):
        _ = embed.http


async def test_served_directly_the_lifespan_starts_and_stops_the_embed(keys: AppKeys, sqlite_url: str) -> None:
    embed = make_embed(keys, sqlite_url)
    async with serve_in_loop(embed, lifespan="on") as base_url:
        assert not embed.http.closed  # started by the lifespan, before any request
        async with local_client(base_url) as client:
            response = await client.get("/api/v1/status", params={"appUserId": "u"}, headers=bearer(keys.secret_key))
            assert response.status_code == 200
    with pytest.raises(RuntimeError):
        _ = embed.http
