"""Threshold alerts: each fires once per user and month, to the app's callback and its signed webhook,
from an outbox that survives restarts, whichever of several workers sees the crossing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wattfare_embed import AppKeys, BudgetAlert, ConfigurationError, InvalidRequestError, Wattfare, verify_alert
from wattfare_embed.alerts import alert_signing_key
from wattfare_embed.consent._protocol import sign_webhook
from wattfare_embed.testing.live_server import free_port, serve_in_loop
from wattfare_embed.testing.waiting import poll

from .conftest import Proxied, running_proxy

SONNET = "anthropic/claude-sonnet-4"
THRESHOLDS = (25, 50, 75)
CAP = "0.002"  # 2 000 µ$: a 20-token Sonnet reply (about 330 µ$) moves it by a sixth


async def spend_past(proxied: Proxied, user: str, percent: int) -> None:
    """Make metered calls until the user has spent ``percent`` % of the cap."""
    proxied.fake.reply_text = " ".join(f"w{i}" for i in range(30))
    for _ in range(30):
        record = await proxied.connection(user)
        if record.spent * 100 >= record.monthly_cap * percent:
            return
        response = await proxied.chat(user, model=SONNET, max_tokens=20)
        assert response.status_code == 200, response.text
    raise AssertionError(f"{user} never passed {percent} %")


async def settle_alerts(*embeds: Wattfare) -> None:
    """Let each embed finish what its background task is doing: queued checks, due deliveries."""
    for embed in embeds:
        await embed.alerts.flush()
        await embed.alerts.deliver_due()


def collect(embed: Wattfare) -> list[BudgetAlert]:
    got: list[BudgetAlert] = []
    embed.on_alert(got.append)
    return got


async def test_each_threshold_fires_once_to_the_callback_in_order(keys: AppKeys, database_url: str) -> None:
    async with running_proxy(keys, database_url, alert_thresholds=THRESHOLDS) as proxy:
        got = collect(proxy.wf)
        await proxy.connect("ann", CAP)
        await proxy.connect("bob", CAP)
        await spend_past(proxy, "ann", 80)
        await poll(lambda: _done(got, 3), what="three alerts")
        await spend_past(proxy, "ann", 95)  # further spend past every threshold fires nothing more
        await settle_alerts(proxy.wf)

        assert [alert.percent for alert in got] == [25, 50, 75]
        assert len({alert.id for alert in got}) == 3
        record = await proxy.connection("ann")
        for alert in got:
            assert alert.app_user_id == "ann" and alert.app_id == keys.app_id
            assert alert.period == record.period and alert.monthly_cap == record.monthly_cap
            assert alert.spent * 100 >= alert.monthly_cap * alert.percent  # it had passed it
        assert await proxy.wf.store.pending_alert_deliveries(keys.app_id) == 0


async def _done(got: list[BudgetAlert], count: int) -> bool | None:
    return True if len(got) >= count else None


async def test_a_user_below_every_threshold_gets_no_alert(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url, alert_thresholds=THRESHOLDS) as proxy:
        got = collect(proxy.wf)
        await proxy.connect("ann", "1")
        assert (await proxy.chat("ann", model=SONNET, max_tokens=20)).status_code == 200
        await settle_alerts(proxy.wf)
        assert got == []
        assert (await proxy.connection("ann")).spent > 0


async def test_a_charge_the_settle_saw_below_every_threshold_reads_nothing_more(
    keys: AppKeys, database_url: str
) -> None:
    async with running_proxy(keys, database_url, alert_thresholds=THRESHOLDS) as proxy:
        got = collect(proxy.wf)
        checked: list[str] = []
        real_check = proxy.wf.alerts.check

        async def check(user: str) -> bool:
            checked.append(user)
            return await real_check(user)

        proxy.wf.alerts.check = check  # type: ignore[method-assign]
        await proxy.connect("ann", "1")
        await proxy.connect("bob", CAP)
        for _ in range(3):
            assert (await proxy.chat("ann", model=SONNET, max_tokens=20)).status_code == 200
        await settle_alerts(proxy.wf)
        assert checked == [] and got == []  # the settle returned ann's spend: far below 25 %
        await spend_past(proxy, "bob", 30)
        await settle_alerts(proxy.wf)
        assert set(checked) == {"bob"} and [alert.percent for alert in got] == [25]


@dataclass
class Receiver:
    """An app's alert endpoint: answers 500 to the first ``failures`` deliveries, then keeps them."""

    secret_key: str
    failures: int = 0
    attempts: int = 0
    alerts: list[BudgetAlert] = field(default_factory=list)

    async def take(self, request: Request) -> Response:
        self.attempts += 1
        body = await request.body()
        alert = verify_alert(self.secret_key, request.headers.get("wattfare-signature"), body)
        if self.attempts <= self.failures:
            return Response(status_code=500)
        self.alerts.append(alert)
        return Response(status_code=204)


@asynccontextmanager
async def receiving(receiver: Receiver, port: int) -> AsyncIterator[str]:
    async with serve_in_loop(Starlette(routes=[Route("/alerts", receiver.take, methods=["POST"])]), port=port) as url:
        yield url + "/alerts"


async def test_webhooks_are_signed_retried_and_survive_a_restart(keys: AppKeys, database_url: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/alerts"
    options = {"alert_thresholds": THRESHOLDS, "alert_webhook_url": url, "alert_retry_seconds": 0.2}
    async with running_proxy(keys, database_url, **options) as first:
        await first.connect("ann", CAP)
        # Nobody listens yet: the 25 % alert waits in the outbox when this process stops.
        await spend_past(first, "ann", 30)
        await settle_alerts(first.wf)
        assert await first.wf.store.pending_alert_deliveries(keys.app_id) == 1
        fake = first.fake

    receiver = Receiver(keys.secret_key, failures=1)
    async with receiving(receiver, port), running_proxy(keys, database_url, fake=fake, **options) as second:
        await second.wf.startup()
        await spend_past(second, "ann", 55)
        await poll(lambda: _done(receiver.alerts, 2), what="both alerts at the receiver", timeout=30)
        await settle_alerts(second.wf)

        assert sorted(alert.percent for alert in receiver.alerts) == [25, 50]
        assert receiver.attempts == 3  # one refused, then each delivered once

        async def outbox_empty() -> bool | None:
            # The receiver has the alert a moment before the outbox marks it delivered.
            return await second.wf.store.pending_alert_deliveries(keys.app_id) == 0 or None

        await poll(outbox_empty, what="every delivery marked done", timeout=10)


async def test_several_workers_and_a_restart_fire_each_threshold_once(keys: AppKeys, database_url: str) -> None:
    options = {"alert_thresholds": THRESHOLDS}
    async with running_proxy(keys, database_url, **options) as one:
        await one.connect("ann", CAP)
        got = collect(one.wf)
        async with running_proxy(keys, database_url, fake=one.fake, **options) as two:
            got_two = collect(two.wf)
            await two.wf.startup()
            one.fake.reply_text = " ".join(f"w{i}" for i in range(30))
            # Two workers serve the same user at once (about 60 % of the cap in all), and both
            # check the crossing at the same moment too.
            calls = [worker.chat("ann", model=SONNET, max_tokens=20) for worker in (one, two, one, two)]
            assert all(response.status_code == 200 for response in await asyncio.gather(*calls))
            await asyncio.gather(one.wf.alerts.check("ann"), two.wf.alerts.check("ann"))
            await settle_alerts(one.wf, two.wf)
            await settle_alerts(one.wf, two.wf)
            record = await one.connection("ann")
            assert 50 * record.monthly_cap <= 100 * record.spent < 75 * record.monthly_cap
        before_restart = sorted(alert.percent for alert in [*got, *got_two])
        assert before_restart == [25, 50]

    # A new process on the same database: what fired stays fired, the next threshold fires once.
    async with running_proxy(keys, database_url, fake=one.fake, **options) as three:
        got_three = collect(three.wf)
        await three.wf.startup()
        three.users["ann"] = one.users["ann"]
        await three.wf.alerts.check("ann")
        await spend_past(three, "ann", 80)
        await settle_alerts(three.wf)
        assert sorted(alert.percent for alert in got_three) == [75]


@pytest.mark.parametrize("thresholds", [(0,), (50, 1001), (True,)])
def test_thresholds_are_whole_percentages(keys: AppKeys, sqlite_url: str, thresholds: tuple[int, ...]) -> None:
    with pytest.raises(ConfigurationError, match="alert_thresholds"):
        Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=sqlite_url,
            alert_thresholds=thresholds,
        )


def test_a_forged_or_stale_alert_is_refused(keys: AppKeys) -> None:
    alert = BudgetAlert("alr_1", keys.app_id, "ann", 50, "2026-12", 1000, 2000, int(time.time()))
    body = json.dumps(alert.to_json()).encode()
    now = int(time.time())
    good = sign_webhook(alert_signing_key(keys.secret_key), now, body)
    assert verify_alert(keys.secret_key, good, body) == alert
    with pytest.raises(InvalidRequestError):
        verify_alert(keys.secret_key, good, body.replace(b"50", b"80"))
    with pytest.raises(InvalidRequestError):
        verify_alert(keys.secret_key, sign_webhook(alert_signing_key(keys.secret_key), now - 600, body), body)
    with pytest.raises(InvalidRequestError):
        verify_alert(keys.secret_key, None, body)
