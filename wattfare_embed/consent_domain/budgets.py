"""One budget per user across every app: the per-grant upstream keys' limits, kept within it.

Each grant has its own upstream key, limited monthly. With a budget ``B`` for the user, the keys'
limits are kept so that their remaining headroom together never exceeds what is left of the
budget: each key's limit is what it has spent this month (``U_i``, as the upstream reports it)
plus a share of the rest, ``B - ΣU_i``, given out equally but never past what the app's own cap
leaves (``cap_i - U_i``). So ``Σ limit_i ≤ B`` at every moment: limits that go down are lowered
before any goes up, and a key whose spend the upstream cannot report keeps its limit and is
counted as having spent all of it.

The bound: the upstream checks each request's worst case against its key's headroom when it
admits it, so the user's total can pass ``B`` only by requests already in flight when a limit was
reached or lowered: at most, the requests in flight at once across the user's apps, each at most
its hold (an embed's ``max_request_hold_usd``, $1 by default). The lag: shares move as the keys
are re-read (at each consent, each change on the dashboard or by the operator, each view of the
budget page, and every ``budget_sync_seconds``), so until then an app that used up its share is
refused (``budget_exceeded``) while others still hold some; nothing is spent beyond the budget
meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..money import Micros, usd_text
from ..periods import period_of
from . import budget_store
from .config import DomainSettings
from .outbox import NOTIFY
from .records import Grant, GrantState, NewJob
from .storage import DomainStore
from .upstream import UpstreamFailure, UpstreamKeys

__all__ = ["AppShare", "BudgetKeeper", "BudgetView", "allocate"]

logger = logging.getLogger("wattfare_embed.consent_domain")


@dataclass(frozen=True, slots=True)
class AppShare:
    """One connected app, as the budget page shows it."""

    grant: Grant
    spent: Micros | None  # this month, from the upstream key; None when it could not say
    key_limit: Micros  # the key's limit now: what the app can spend this month at most


@dataclass(frozen=True, slots=True)
class BudgetView:
    budget: Micros | None  # None: no budget across apps (each app's cap alone)
    used: Micros
    period: str
    apps: list[AppShare]

    @property
    def left(self) -> Micros | None:
        return None if self.budget is None else max(0, self.budget - self.used)


def allocate(remaining: Micros, rooms: Sequence[Micros]) -> list[Micros]:
    """Shares of ``remaining``, equal where they fit, none more than its ``room``; they sum to at
    most ``remaining`` (what an equal split cannot give out to the micro-dollar stays unallocated)."""
    shares = [0] * len(rooms)
    left = max(0, remaining)
    order = sorted(range(len(rooms)), key=lambda i: rooms[i])
    for taken, index in enumerate(order):
        give = min(max(0, rooms[index]), left // (len(rooms) - taken))
        shares[index] = give
        left -= give
    return shares


class BudgetKeeper:
    def __init__(self, store: DomainStore, upstream: UpstreamKeys, settings: DomainSettings) -> None:
        self._store = store
        self._upstream = upstream
        self._settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self.notify_enabled = False  # set when the domain has a notifier

    def lock(self, user_id: str) -> asyncio.Lock:
        """One user's re-balancing and minting run one at a time in this process."""
        return self._locks.setdefault(user_id, asyncio.Lock())

    async def rebalance(self, user_id: str, *, pending: Grant | None = None) -> tuple[BudgetView, Micros]:
        """Re-read the user's keys and re-limit them; also what a ``pending`` grant's new key may be
        limited to. The caller holds ``lock(user_id)``."""
        budget = await budget_store.budget_of(self._store, user_id)
        grants = [g for g in await self._store.live_grants(user_id=user_id) if g.status == GrantState.ACTIVE]
        grants = [g for g in grants if g.key_hash and (pending is None or g.id != pending.id)]
        reported = await asyncio.gather(*(self._upstream.monthly_usage(g.key_hash or "") for g in grants))
        current = [g.key_limit if g.key_limit is not None else g.monthly_cap for g in grants]
        # A key whose spend is unknown counts as having spent its whole limit, and keeps it.
        spent = [usage if usage is not None else limit for usage, limit in zip(reported, current, strict=True)]
        used = sum(spent)
        now = int(time.time())
        period = period_of(now)
        readings = [(g.id, usage) for g, usage in zip(grants, reported, strict=True) if usage is not None]
        await budget_store.record_usage(self._store, readings, period, now)
        if budget is None:
            # No budget (any more): every key back at its app's own cap.
            caps = [g.monthly_cap for g in grants]
            await self._apply(grants, current, caps)
            apps = [AppShare(g, u, c) for g, u, c in zip(grants, reported, caps, strict=True)]
            return BudgetView(None, used, period, apps), pending.monthly_cap if pending is not None else 0
        rooms = [
            max(0, g.monthly_cap - s) if usage is not None else 0
            for g, s, usage in zip(grants, spent, reported, strict=True)
        ]
        if pending is not None:
            rooms.append(pending.monthly_cap)
        shares = allocate(budget - used, rooms)
        targets = [s + share for s, share in zip(spent, shares, strict=False)]
        await self._apply(grants, current, targets)
        apps = [AppShare(g, u, t) for g, u, t in zip(grants, reported, targets, strict=False)]
        view = BudgetView(budget, used, period, apps)
        await self._fire_thresholds(user_id, view)
        return view, shares[-1] if pending is not None else 0

    async def _apply(self, grants: Sequence[Grant], current: Sequence[Micros], targets: Sequence[Micros]) -> None:
        """Lower first, then raise, so the limits never sum past the budget; a lowering that fails
        stops the raises (they would break that), and the next re-balance tries again."""
        changes = [(g, old, new) for g, old, new in zip(grants, current, targets, strict=False) if new != old]
        for grant, _old, new in sorted(changes, key=lambda change: change[2] - change[1]):
            assert grant.key_hash is not None
            await self._upstream.set_limit(grant.key_hash, new)  # UpstreamFailure stops here
            await budget_store.set_key_limit(self._store, grant.id, new)

    async def has_budget(self, user_id: str) -> bool:
        return await budget_store.budget_of(self._store, user_id) is not None

    async def lower_key(self, grant: Grant, cap: Micros) -> None:
        """Before an app's cap goes down: its key no higher than the new cap (the hard ceiling first)."""
        async with self.lock(grant.user_id):
            fresh = await self._store.get_grant(grant.id)
            current = fresh.key_limit if fresh is not None and fresh.key_limit is not None else grant.monthly_cap
            if grant.key_hash is not None and cap < current:
                await self._upstream.set_limit(grant.key_hash, cap)
                await budget_store.set_key_limit(self._store, grant.id, cap)

    async def set_cap(self, grant: Grant) -> None:
        """After an app's cap changed (or a grant was minted): its key's limit follows, within the budget."""
        async with self.lock(grant.user_id):
            await self.rebalance(grant.user_id)

    async def sync_all(self) -> None:
        """Re-read every user with an active grant: their keys' spend is kept for the monthly report,
        and, for a user with a budget, their keys are re-limited (the periodic pass)."""
        for user_id in await budget_store.budgeted_users(self._store):
            try:
                async with self.lock(user_id):
                    await self.rebalance(user_id)
            except UpstreamFailure as exc:
                logger.warning("keeping %s within their budget failed for now: %s", user_id, exc)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.budget_sync_seconds)
            try:
                await self.sync_all()
            except Exception:
                logger.exception("the budget pass failed; trying again later")

    async def _fire_thresholds(self, user_id: str, view: BudgetView) -> None:
        if not self.notify_enabled or not view.budget:
            return
        email = await self._store.user_email(user_id)
        now = int(time.time())
        for percent in self._settings.budget_alert_thresholds:
            if view.used * 100 < view.budget * percent:
                continue
            notice = {
                "user_id": user_id,
                "email": email,
                "percent": percent,
                "period": view.period,
                "budget_usd": usd_text(view.budget),
                "used_usd": usd_text(view.used),
                "domain": self._settings.name,
            }
            job = NewJob(NOTIFY, "", "notify:" + user_id, json.dumps(notice))
            await budget_store.fire_budget_alert(self._store, user_id, view.period, percent, now, [job])
