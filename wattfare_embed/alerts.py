"""Threshold alerts: tell the app (and, by webhook, whoever it names) when a user's spend passes
50 %, 80 %, 100 % of their cap, once per threshold, user and month.

Nothing here runs on a request's path. The proxy hands each settled request to ``settled`` (a
set insert; its token counts are already in its final ledger row); a background task, once per
user with new spend, reads the user's counter and fires the thresholds it passed. A firing is a row
keyed by ``(app, user, month, percent)``: among several workers, and across restarts, the first
to insert it fires it, the others meet the key. Its deliveries (the in-process callbacks, the
webhook) go into an outbox in the same transaction and are retried until they succeed, from
whichever process leases them, so a crash or a restart loses none. A callback or receiver may
be called again for an event whose delivery was cut short; the event ``id`` tells repeats apart.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from .consent._protocol import SIGNATURE_HEADER, parse_wire_usd, sign_webhook, verify_webhook, wire_usd
from .crypto import derive_key
from .errors import ConfigurationError, InvalidRequestError
from .money import Micros
from .store import AlertDelivery, AlertFiring, ConnectionState, SpendAfterCharge

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = [
    "ALERT_EVENT_TYPE",
    "DEFAULT_THRESHOLDS",
    "Alerts",
    "BudgetAlert",
    "alert_signing_key",
    "verify_alert",
]

logger = logging.getLogger("wattfare_embed")

ALERT_EVENT_TYPE = "budget.threshold"
DEFAULT_THRESHOLDS = (50, 80, 100)
CALLBACK, WEBHOOK = "callback", "webhook"
LEASE_SECONDS = 60  # a delivery in hand is someone else's to retry only after this
MAX_BACKOFF_SECONDS = 3600
WEBHOOK_TIMEOUT_SECONDS = 10.0
# Settles are gathered this long before one pass: one read per user for many requests under load.
BATCH_SECONDS = 0.05

AlertCallback = Callable[["BudgetAlert"], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A user's spend passed ``percent`` % of their monthly cap in ``period``."""

    id: str
    app_id: str
    app_user_id: str
    percent: int
    period: str
    spent: Micros
    monthly_cap: Micros
    created: int

    def to_json(self) -> dict[str, Any]:
        """The webhook body: ``{"id", "type": "budget.threshold", "created", "data": {…}}``."""
        return {
            "id": self.id,
            "type": ALERT_EVENT_TYPE,
            "created": self.created,
            "data": {
                "app_id": self.app_id,
                "app_user_id": self.app_user_id,
                "percent": self.percent,
                "period": self.period,
                "spent_usd": wire_usd(self.spent) if self.spent else "0",
                "monthly_usd": wire_usd(self.monthly_cap),
            },
        }

    @classmethod
    def from_json(cls, payload: Any) -> BudgetAlert:
        try:
            data = payload["data"]
            spent = data["spent_usd"]
            return cls(
                id=str(payload["id"]),
                app_id=str(data["app_id"]),
                app_user_id=str(data["app_user_id"]),
                percent=int(data["percent"]),
                period=str(data["period"]),
                spent=0 if spent == "0" else parse_wire_usd(spent),
                monthly_cap=parse_wire_usd(data["monthly_usd"]),
                created=int(payload["created"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"not a budget alert: {exc}") from exc


def alert_signing_key(secret_key: str) -> bytes:
    """The key alert webhooks are signed with: derived from the app's secret key for this purpose
    alone, so a receiver that keeps it can check alerts but mint nothing else."""
    return derive_key(secret_key, b"wattfare alert webhooks v1")


def verify_alert(secret_key: str, signature: str | None, body: bytes, *, now: int | None = None) -> BudgetAlert:
    """Check an alert webhook's ``Wattfare-Signature`` header (as ``POST {mount}/webhooks`` checks a
    consent domain's) and read its body; ``InvalidRequestError`` when either is wrong."""
    try:
        verify_webhook(alert_signing_key(secret_key), signature, body, int(time.time()) if now is None else now)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidRequestError("the alert body is not JSON") from exc
    return BudgetAlert.from_json(payload)


def _thresholds(values: Sequence[int]) -> tuple[int, ...]:
    chosen = tuple(sorted(set(values)))
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000 for v in chosen):
        raise ConfigurationError("alert_thresholds are whole percentages of the cap, from 1 to 1000")
    return chosen


class Alerts:
    """The embed's alerts: ``wf.on_alert(callback)``; thresholds and the webhook URL are set on
    ``Wattfare(alert_thresholds=…, alert_webhook_url=…)``."""

    def __init__(
        self,
        embed: Wattfare,
        thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
        webhook_url: str | None = None,
        *,
        retry_seconds: float = 30.0,
    ) -> None:
        if webhook_url is not None and not webhook_url.startswith(("https://", "http://")):
            raise ConfigurationError("alert_webhook_url must be an http(s) URL")
        self._embed = embed
        self.thresholds = _thresholds(thresholds)
        self.webhook_url = webhook_url
        self.retry_seconds = retry_seconds
        self._callbacks: list[AlertCallback] = []
        self._signing_key = alert_signing_key(embed.keys.secret_key)
        self._users: set[str] = set()
        self._wake = asyncio.Event()
        # One flush at a time: a flush returns only once what was queued before it is done.
        self._flushing = asyncio.Lock()
        # Users whose every threshold fired this period: nothing to read for them until it ends.
        self._done: dict[str, str] = {}

    def on_alert(self, callback: AlertCallback) -> None:
        """Call ``callback(alert)`` (sync or async) for each threshold a user passes."""
        self._callbacks.append(callback)

    # -- fed from the proxy, off the request's path -------------------------------------------

    def settled(self, user: str, cost: Micros, spend: SpendAfterCharge | None = None) -> None:
        """A request's final row was written: if it cost anything, its user has new spend to check.

        ``spend`` is the user's counter as this very charge left it, when the settle returned it:
        a charge that left it below every threshold (or inactive, or uncapped) has nothing to fire,
        so it is not checked. That is exact: spend only fires alerts from a settle, and any settle
        that takes it past a threshold reports that spend itself."""
        if cost <= 0 or not self.thresholds:
            return
        if spend is not None and not self._may_fire(user, spend):
            return
        self._users.add(user)
        self._wake.set()

    def _may_fire(self, user: str, spend: SpendAfterCharge) -> bool:
        if spend.status != ConnectionState.ACTIVE.value or spend.monthly_cap <= 0:
            return False
        if self._done.get(user) == spend.period:
            return False
        return spend.spent * 100 >= spend.monthly_cap * self.thresholds[0]

    async def start(self) -> None:
        self._embed.run_in_background(self._work)
        self._embed.run_in_background(self._poll_outbox)

    async def stop(self) -> None:
        """Check what is still queued (shutdown); deliveries left wait in the outbox."""
        try:
            await asyncio.wait_for(self.flush(), 10)
        except Exception:
            logger.warning("checking queued spend at shutdown failed", exc_info=True)

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(BATCH_SECONDS)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("checking spend for alerts failed; trying again")
                await asyncio.sleep(1)
                self._wake.set()

    async def flush(self) -> None:
        """Check the users with new spend, deliver what fired."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        users, self._users = self._users, set()
        fired = False
        for user in users:
            try:
                fired |= await self.check(user)
            except Exception:
                self._users.add(user)
                raise
        if fired:
            await self.deliver_due()

    async def check(self, user: str) -> bool:
        """Fire the thresholds the user's spend passed this period and had not fired; True if any."""
        now = int(time.time())
        store, app_id = self._embed.store, self._embed.keys.app_id
        record = await store.get_connection(app_id, user, now)
        if record is None or record.status is not ConnectionState.ACTIVE or record.monthly_cap <= 0:
            return False
        if self._done.get(user) == record.period:
            return False
        passed = [p for p in self.thresholds if record.spent * 100 >= record.monthly_cap * p]
        if not passed:
            return False
        already = await store.fired_percents(app_id, user, record.period)
        fired = False
        for percent in passed:
            if percent in already:
                continue
            alert = BudgetAlert(
                id="alr_" + secrets.token_hex(12),
                app_id=app_id,
                app_user_id=user,
                percent=percent,
                period=record.period,
                spent=record.spent,
                monthly_cap=record.monthly_cap,
                created=now,
            )
            body = json.dumps(alert.to_json(), separators=(",", ":"))
            channels = self._channels()
            firing = AlertFiring(alert.id, app_id, user, record.period, percent, record.spent, record.monthly_cap, now)
            fired |= await store.fire_alert(firing, [(channel, body) for channel in channels], now)
        if len(passed) == len(self.thresholds):
            self._done[user] = record.period
        return fired

    # -- the outbox -----------------------------------------------------------------------------

    def _channels(self) -> list[str]:
        return ([CALLBACK] if self._callbacks else []) + ([WEBHOOK] if self.webhook_url else [])

    async def _poll_outbox(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:
                logger.warning("delivering alerts failed; trying again", exc_info=True)
            await asyncio.sleep(self.retry_seconds)

    async def deliver_due(self) -> int:
        """Deliver every due delivery this process can lease; returns how many succeeded."""
        store, now = self._embed.store, int(time.time())
        # Only what this process can deliver: one without callbacks (a CLI, say) leaves theirs alone.
        claimed = await store.claim_alert_deliveries(
            self._embed.keys.app_id, self._channels(), now, lease_seconds=LEASE_SECONDS
        )
        done = 0
        for delivery in claimed:
            try:
                await self._deliver(delivery)
            except Exception as exc:
                backoff = min(self.retry_seconds * 2 ** (delivery.attempts - 1), MAX_BACKOFF_SECONDS)
                reason = f"{type(exc).__name__}: {exc}"
                logger.warning("alert %s (%s) not delivered: %s", delivery.event_id, delivery.channel, reason)
                await store.alert_delivery_failed(delivery.id, int(time.time() + backoff), reason)
                continue
            await store.alert_delivered(delivery.id, int(time.time()))
            done += 1
        return done

    async def _deliver(self, delivery: AlertDelivery) -> None:
        if delivery.channel == CALLBACK:
            alert = BudgetAlert.from_json(json.loads(delivery.payload))
            for callback in self._callbacks:
                result = callback(alert)
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, WEBHOOK_TIMEOUT_SECONDS)
            return
        assert self.webhook_url is not None  # claimed only when one is configured
        body = delivery.payload.encode()
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign_webhook(self._signing_key, int(time.time()), body),
        }
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
        async with self._embed.http.post(self.webhook_url, data=body, headers=headers, timeout=timeout) as response:
            if response.status >= 300:
                raise _Refused(f"the receiver answered {response.status}")


class _Refused(Exception):
    """The webhook receiver did not take the alert."""
