"""What happens to a grant: minted with its own capped upstream key, re-capped, revoked.

The upstream key is the hard ceiling, so it changes first: a cap is PATCHed
upstream before the grant row and its webhook change, and a revoked grant's key
is deleted through the outbox (tried at once, retried until it is gone).
"""

from __future__ import annotations

import logging
import time

from ..consent._protocol import GRANT_REVOKED, GRANT_UPDATED, wire_usd
from ..money import Micros
from .budget_store import set_key_limit
from .budgets import BudgetKeeper
from .config import DomainSettings
from .outbox import DELETE_KEY, Outbox, delete_key_job, webhook_job
from .records import App, Grant, NewJob
from .storage import DomainStore
from .upstream import UpstreamFailure, UpstreamKeys

__all__ = ["GRANT_REVOKED", "GRANT_UPDATED", "GrantLifecycle", "GrantRevokedMeanwhile"]

logger = logging.getLogger("wattfare_embed.consent_domain")


class GrantRevokedMeanwhile(Exception):
    """The grant was revoked (its code replayed) while its key was being minted."""


class GrantLifecycle:
    def __init__(self, store: DomainStore, upstream: UpstreamKeys, outbox: Outbox, settings: DomainSettings) -> None:
        self._store = store
        self._upstream = upstream
        self._outbox = outbox
        self._settings = settings
        self.budgets: BudgetKeeper | None = None  # set by the domain: keys kept within users' budgets

    async def mint(
        self, app: App, user_id: str, cap: Micros, code_hash: str, *, grant_requests: int | None = None
    ) -> tuple[Grant, str]:
        """A new active grant with its own key limited to ``cap`` a month: ``(grant, key secret)``.

        Under a budget across apps the key is limited to its share of what is left of the budget
        instead (the user's other keys lowered first to make room), never more than ``cap``.
        The user's older grants to the same app are revoked: one app, one cap per user. A one-time
        grant (``grant_requests``) has a key limited to ``cap`` in all, never reset, and expires;
        it replaces nothing, and nothing replaces it. Under a budget it takes its share like any
        other key (its spend read as this month's, so across a month's turn it is limited early,
        never late).
        """
        if self.budgets is None:
            return await self._mint(app, user_id, cap, code_hash, grant_requests)
        async with self.budgets.lock(user_id):
            minted = await self._mint(app, user_id, cap, code_hash, grant_requests)
        try:
            await self.budgets.set_cap(minted[0])  # what replaced grants held is shared out again
        except UpstreamFailure:
            logger.warning("sharing the budget out after a consent failed; the next pass retries")
        return minted

    async def _mint(
        self, app: App, user_id: str, cap: Micros, code_hash: str, grant_requests: int | None
    ) -> tuple[Grant, str]:
        now = int(time.time())
        one_time = grant_requests is not None
        expires_at = now + self._settings.grant_ttl_seconds if one_time else None
        grant = await self._store.start_grant(
            code_hash, app.id, user_id, cap, now, grant_requests=grant_requests, expires_at=expires_at
        )
        try:
            limit = cap if self.budgets is None else (await self.budgets.rebalance(user_id, pending=grant))[1]
            name = f"wattfare: {app.name} ({grant.id})"
            key_hash, secret = await self._upstream.create(name, limit, monthly=not one_time)
        except UpstreamFailure:
            await self._store.revoke_grant(grant.id, now, "mint_failed", lambda _: ())
            raise
        if not await self._store.activate_grant(grant.id, key_hash, int(time.time())):
            await self._store.queue([NewJob(DELETE_KEY, app.id, "key:" + key_hash, key_hash)])
            await self.flush()
            raise GrantRevokedMeanwhile(grant.id)
        await set_key_limit(self._store, grant.id, limit)
        for older in await self._store.live_grants(user_id=user_id, app_id=app.id):
            if older.id != grant.id and not one_time and not older.one_time:
                await self.revoke(older, reason="replaced", notify=True)
        active = await self._store.get_grant(grant.id)
        assert active is not None
        return active, secret

    async def change_cap(self, grant: Grant, cap: Micros) -> Grant | None:
        """Re-limit the upstream key, then the grant, and tell the app; ``None`` if no longer active."""
        if grant.key_hash is None:
            return None
        job = webhook_job(grant, GRANT_UPDATED, {"monthly_usd": wire_usd(cap), "hard_limit_usd": wire_usd(cap)})
        if self.budgets is not None and await self.budgets.has_budget(grant.user_id):
            # The key is lowered before the cap (the hard ceiling first); a higher cap shares more of
            # the budget out to it once recorded (if the upstream fails then, the next pass does it).
            await self.budgets.lower_key(grant, cap)
            changed = await self._store.set_cap(grant.id, cap, int(time.time()), [job])
            self._outbox.wake()
            if changed is not None:
                try:
                    await self.budgets.set_cap(changed)
                except UpstreamFailure:
                    logger.warning("sharing the budget out after a cap change failed; the next pass retries")
            return changed
        await self._upstream.set_limit(grant.key_hash, cap)
        await set_key_limit(self._store, grant.id, cap)
        changed = await self._store.set_cap(grant.id, cap, int(time.time()), [job])
        self._outbox.wake()
        return changed

    async def revoke(self, grant: Grant, *, reason: str, notify: bool) -> bool:
        """Revoke once: delete the upstream key (now, and until it is gone) and, if asked, tell the app.

        A grant replaced by a new consent is announced after a short delay, so the app
        has stored the grant that replaces it before it hears the old one is gone.
        """
        delay = self._settings.replaced_notice_delay_seconds if reason == "replaced" else 0.0

        def jobs_for(revoked: Grant) -> list[NewJob]:
            jobs = [delete_key_job(revoked)] if revoked.key_hash else []
            if notify and revoked.key_hash:
                jobs.append(webhook_job(revoked, GRANT_REVOKED, {"reason": reason}, delay))
            return jobs

        revoked = await self._store.revoke_grant(grant.id, int(time.time()), reason, jobs_for)
        if revoked is None:
            return False
        await self.flush()
        return True

    async def flush(self) -> None:
        """Run what is due right away (the key deletion above), leaving retries to the worker."""
        try:
            await self._outbox.deliver_due()
        except Exception:
            logger.exception("delivering the outbox inline failed; the worker will retry")
        self._outbox.wake()
