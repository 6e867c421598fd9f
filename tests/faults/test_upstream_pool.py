"""The upstream pool: idle connections dropped before the upstream drops them, and a request reset
unread on a reused connection sent once more on a fresh one, never charged when it never arrived."""

from __future__ import annotations

import asyncio

from tests.proxy.conftest import Proxied, error_of
from wattfare_embed import AppKeys
from wattfare_embed.config import DEFAULT_UPSTREAM_KEEPALIVE_SECONDS
from wattfare_embed.money import micros_from_usd

from .conftest import proxy_through_relay

UPSTREAM_IDLE = 0.4  # the upstream's idle timeout in these tests


async def _two_calls_apart(proxy: Proxied, user: str) -> list[int]:
    statuses = []
    for _ in range(2):
        statuses.append((await proxy.chat(user, max_tokens=20)).status_code)
        await asyncio.sleep(UPSTREAM_IDLE * 2)  # the pooled connection outlives the upstream's patience
    return statuses


def _billed(proxy: Proxied) -> int:
    return sum(micros_from_usd(record.total_cost) for record in proxy.fake.ledger.records)


async def test_a_request_reset_unread_on_a_reused_connection_is_sent_again_and_charged_once(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with proxy_through_relay(keys, sqlite_url, idle_close=UPSTREAM_IDLE, upstream_keepalive_seconds=30) as (
        proxy,
        relay,
    ):
        await proxy.connect(user_id)

        statuses = await _two_calls_apart(proxy, user_id)

        assert statuses == [200, 200]
        assert relay.dropped_requests == 1  # the second call met the dead connection, unread...
        assert proxy.wf.upstream.retried == 1  # ...and went again on a fresh one
        assert len(proxy.upstream_calls()) == 2
        rows = await proxy.settled(user_id, 2)
        assert [(row.state, row.cost_source) for row in rows] == [("settled", "reported")] * 2
        assert sum(row.cost or 0 for row in rows) == _billed(proxy)


async def test_a_keepalive_below_the_upstreams_idle_timeout_never_meets_a_dead_connection(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with proxy_through_relay(
        keys, sqlite_url, idle_close=UPSTREAM_IDLE, upstream_keepalive_seconds=UPSTREAM_IDLE / 4
    ) as (proxy, relay):
        await proxy.connect(user_id)

        statuses = await _two_calls_apart(proxy, user_id)

        assert statuses == [200, 200]
        assert (relay.dropped_requests, proxy.wf.upstream.retried) == (0, 0)
        assert relay.accepted == 2  # the idle connection was dropped by the pool, not reused


async def test_a_request_the_upstream_never_received_is_released_not_charged(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with proxy_through_relay(keys, sqlite_url, idle_close=UPSTREAM_IDLE, upstream_keepalive_seconds=30) as (
        proxy,
        relay,
    ):
        await proxy.connect(user_id)
        assert (await proxy.chat(user_id, max_tokens=20)).status_code == 200
        await asyncio.sleep(UPSTREAM_IDLE * 2)
        relay.stop_listening()  # the pooled connection is dead of idleness, and no new one can be made

        refused = await proxy.chat(user_id, max_tokens=20)

        assert error_of(refused) == (502, "upstream")
        assert relay.dropped_requests == 1
        first, second = await proxy.settled(user_id, 2)
        assert (second.state, second.cost) == ("released", 0)
        assert (await proxy.connection(user_id)).spent == first.cost == _billed(proxy)


def test_the_default_keepalive_is_below_common_upstream_idle_timeouts() -> None:
    assert 0 < DEFAULT_UPSTREAM_KEEPALIVE_SECONDS < 5  # nginx 75 s, load balancers 60 s, Node's servers 5 s
