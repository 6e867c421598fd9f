"""``GET {mount}/metrics``: scraped and parsed as Prometheus would, behind a token."""

from __future__ import annotations

import secrets

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import MINI, Proxied, running_proxy
from wattfare_embed import AppKeys, ConfigurationError
from wattfare_embed.telemetry import Telemetry

TOKEN = secrets.token_urlsafe(24)


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


async def _scrape(proxy: Proxied, token: str = TOKEN) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await proxy.http.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **where: str) -> float:
    return sum(value for labels, value in samples.get(name, []) if all(labels.get(k) == v for k, v in where.items()))


async def test_metrics_are_scraped_with_prometheus_names_and_no_user_label(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    telemetry = Telemetry(prometheus=True, metrics_token=TOKEN, opentelemetry=False)
    async with running_proxy(keys, sqlite_url, telemetry=telemetry) as proxy:
        await proxy.connect(user_id, monthly_usd="0.01")
        assert (await proxy.chat(user_id)).status_code == 200
        response, _raw = await proxy.stream_bytes(user_id)
        assert response.status_code == 200
        refused = await proxy.chat(user_id, max_tokens=10**9, model="anthropic/claude-sonnet-4", messages=[
            {"role": "user", "content": "x" * 200_000}
        ])  # fmt: skip
        assert refused.json()["error"]["code"] == "budget_exceeded"
        rows = await proxy.settled(user_id, 2)
        samples = await _scrape(proxy)
        by_secret_key = await _scrape(proxy, keys.secret_key)  # the secret key opens it too

    assert _total(samples, "wattfare_requests_total", outcome="ok", model=MINI, operation="chat") == 2
    assert _total(samples, "wattfare_requests_total", outcome="budget_exceeded") == 1
    spent = sum(row.cost or 0 for row in rows)
    assert abs(_total(samples, "wattfare_spend_usd_total") - spent / 1_000_000) < 1e-12
    assert _total(samples, "wattfare_tokens_total", type="output") > 0
    assert _total(samples, "wattfare_upstream_duration_seconds_count") == 2
    assert _total(samples, "wattfare_upstream_time_to_first_byte_seconds_count") == 2
    assert _total(samples, "wattfare_holds_open") == 0 and _total(samples, "wattfare_held_usd") == 0
    assert _total(samples, "wattfare_overshoots_total") == 0
    assert _total(by_secret_key, "wattfare_requests_total") == 3
    # Labels are bounded: operation, a priced model, outcome (and the token type). No user, ever.
    labels = {name for series in samples.values() for found, _value in series for name in found}
    assert labels <= {"operation", "model", "outcome", "type", "le"}
    assert user_id not in str(samples)


async def test_metrics_need_the_token_or_the_secret_key(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=Telemetry(prometheus=True, metrics_token=TOKEN)) as proxy:
        for headers in ({}, {"authorization": "Bearer " + "x" * 32}, {"authorization": TOKEN}):
            response = await proxy.http.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "auth"
            assert "wattfare_" not in response.text


async def test_metrics_are_not_served_unless_asked_for(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        response = await proxy.http.get("/metrics", headers={"authorization": f"Bearer {keys.secret_key}"})
        assert response.status_code == 404


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="metrics_token"):
        Telemetry(prometheus=True, metrics_token="short")
