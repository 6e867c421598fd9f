"""Generation ids of requests in flight, written onto their reservations off the hot path.

A process killed mid-stream leaves its reservations open; the sweeper finishes them after the
reservation TTL. With the generation id on the row it charges what the upstream billed (asked of
``GET /generation`` by the reconciler) instead of the whole hold. Writing the id costs no request
anything: requests only register their meter here, and once a second the ids learned meanwhile
are written in one transaction, for requests still open then (most end before, and their settle
records the id itself).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Store
    from .meter import ResponseMeter

__all__ = ["NOTE_EVERY_SECONDS", "GenerationNotes"]

logger = logging.getLogger("wattfare_embed")

NOTE_EVERY_SECONDS = 1.0


class GenerationNotes:
    """Ledger ids of open requests and the meters that learn their generation id."""

    def __init__(self) -> None:
        self._open: dict[str, ResponseMeter] = {}
        self._written: set[str] = set()

    def watch(self, ledger_id: str, meter: ResponseMeter) -> None:
        self._open[ledger_id] = meter

    def forget(self, ledger_id: str) -> None:
        self._open.pop(ledger_id, None)
        self._written.discard(ledger_id)

    async def write(self, store: Store) -> int:
        """Write the ids learned since the last call; returns how many. A store error keeps them for the next."""
        due = [
            (ledger_id, meter.generation_id)
            for ledger_id, meter in list(self._open.items())
            if meter.generation_id is not None and ledger_id not in self._written
        ]
        note = getattr(store, "note_generations", None)  # a store of the app's own may not keep them
        if not due or note is None:
            return 0
        await note(due)
        self._written.update(ledger_id for ledger_id, _ in due if ledger_id in self._open)
        return len(due)

    async def write_forever(self, store: Store) -> None:
        while True:
            await asyncio.sleep(NOTE_EVERY_SECONDS)
            try:
                await self.write(store)
            except Exception:
                logger.warning("noting generation ids on open reservations failed; trying again", exc_info=True)
