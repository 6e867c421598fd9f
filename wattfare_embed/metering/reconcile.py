"""After the response: estimated charges replaced by the upstream's own figure, orphans swept.

A stream the client abandoned, that the proxy cut, or that the upstream dropped
carries no usage, so its charge is an estimate until the upstream's generation
record (``GET /generation?id=``) says what it billed. That record appears some
time after the generation ends and answers 404 until then, so it is asked for
with backoff, and again by the periodic sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from ..store import ConnectionRecord
from ..store._grants import GRANT_LEDGER_PREFIX, connection_view
from .output import charged_cost

if TYPE_CHECKING:
    from ..app import Wattfare

__all__ = ["GIVE_UP_SECONDS", "Reconciler"]

logger = logging.getLogger("wattfare_embed")

_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
GIVE_UP_SECONDS = 86400  # a ledger row this old keeps its estimate for good
# A row whose connection lost its credential (revoked) can only be reconciled by the task that
# still holds it; once that task's schedule has run out, the sweep stops asking.
_WITHOUT_CREDENTIAL_SECONDS = 600


class Reconciler:
    """Applies the upstream's figure to estimated ledger rows, exactly once each."""

    def __init__(self, embed: Wattfare, credential: Callable[[ConnectionRecord], str | None]) -> None:
        self._embed = embed
        self._credential = credential

    def later(self, ledger_id: str, generation_id: str, connection: ConnectionRecord) -> None:
        """Ask the upstream in the background, backing off while the record is not there yet."""
        credential = self._credential(connection)
        base = connection.upstream_url or self._embed.settings.upstream_url
        settled_at = time.time()

        async def retrying() -> None:
            for delay in _DELAYS:
                await asyncio.sleep(delay)
                if await self.once(ledger_id, generation_id, credential, base, settled_at):
                    return

        self._embed.run_in_background(retrying)

    async def once(
        self, ledger_id: str, generation_id: str, credential: str | None, base: str, settled_at: float | None = None
    ) -> bool:
        """Ask the upstream what a generation cost; apply it. True when settled for good.
        ``settled_at`` (unix seconds) is when the estimate was charged, for the lag metric."""
        if not credential:
            return False
        try:
            async with self._embed.http.get(
                f"{base}/generation", params={"id": generation_id}, headers={"authorization": f"Bearer {credential}"}
            ) as response:
                if response.status != 200:
                    return False  # 404: the record is not there yet
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        record = answer.get("data") if isinstance(answer, dict) else None
        # BYOK: OpenRouter's fee plus what the provider billed the user's own key.
        total = charged_cost(record, "total_cost") if isinstance(record, dict) else None
        if total is None:
            return False
        applied = await self._embed.store.reconcile(ledger_id, total, int(time.time()))
        if applied and settled_at is not None:
            self._embed.recorder.reconciled(max(0.0, time.time() - settled_at))
        return True

    async def _funding_of(self, ledger_id: str, app_user_id: str, now: int) -> ConnectionRecord | None:
        """What paid for a ledger row: the user's connection, or the one-time grant its id names."""
        store = self._embed.store
        if ledger_id.startswith(GRANT_LEDGER_PREFIX):
            grant = await store.get_grant(app_user_id)  # a grant's rows go as the grant's id
            return connection_view(grant, "") if grant is not None else None
        return await store.get_connection(self._embed.keys.app_id, app_user_id, now)

    async def sweep(self) -> None:
        """Settle reservations orphaned by a dead process; retry reconciliations still open."""
        store, now, app_id = self._embed.store, int(time.time()), self._embed.keys.app_id
        # Only this app's rows: apps sharing a database each sweep and reconcile their own.
        swept = await store.sweep_expired(now, app_id=app_id)
        if swept:
            logger.warning("settled %d reservations left open by a process that stopped", swept)
        for entry in await store.pending_reconciliations(100, app_id=app_id):
            if now - entry.created_at > GIVE_UP_SECONDS or not entry.generation_id:
                await store.give_up_reconciliation(entry.id)
                continue
            record = await self._funding_of(entry.id, entry.app_user_id, now)
            credential = self._credential(record) if record is not None else None
            if record is None or credential is None:
                # Oldest first, a page at a time: rows nobody can ask about would block the rest.
                if now - entry.created_at > _WITHOUT_CREDENTIAL_SECONDS:
                    await store.give_up_reconciliation(entry.id)
                continue
            base = record.upstream_url or self._embed.settings.upstream_url
            await self.once(entry.id, entry.generation_id, credential, base, entry.settled_at)
