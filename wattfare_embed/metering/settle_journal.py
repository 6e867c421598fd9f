"""Settles the store could not take, kept on local disk and applied once it is back.

A request that was answered is paid for, so its final charge must not be lost to a database that
is down (or an SQLite file another process keeps locked past the busy timeout) at the moment it
ends. The charge is written here instead, one small JSON file per ledger row, and applied with
backoff until the store takes it; start-up (and every later pass) applies what a previous run of
the process left. The journal is on local disk, not in the database, because it is needed exactly
when the database cannot be written.

Applying an entry twice charges once: ``Store.settle`` finalises a row only while it is open (or
expired: it then applies the difference to what the sweeper charged), so two processes applying
the same file, or a settle that committed though its reply was lost, change nothing the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.base import FinalCharge, settle_charge

if TYPE_CHECKING:
    from ..store import Settled, Store

__all__ = ["PendingSettle", "SettleJournal", "default_journal_dir"]

logger = logging.getLogger("wattfare_embed")

_FIRST_DELAY, _MOST_DELAY = 0.5, 30.0  # seconds between attempts while the store stays down
_RESCAN_SECONDS = 30.0  # files another process (or an earlier run) left
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


# One final charge as ``Store.settle`` takes it, kept here while the store cannot take it. An entry
# written before token counts were kept loads without them.
PendingSettle = FinalCharge


def default_journal_dir(database_url: str) -> Path | None:
    """Beside an SQLite file (``wattfare.db.settle-journal/``); for a server database, in the working
    directory (``.wattfare-settle-journal/``); none for an in-memory database, which a restart loses anyway."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1] if "///" in database_url else ""
        path = path.split("?", 1)[0]
        if not path or path == ":memory:" or "mode=memory" in database_url:
            return None
        return Path(path + ".settle-journal")
    return Path(".wattfare-settle-journal")


class SettleJournal:
    """Keeps settles that failed, applies them when the store is back (``run``)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._pending: dict[str, PendingSettle] = {}
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def settle(self, store: Store, entry: PendingSettle) -> Settled | None:
        """Settle now; when the store fails, keep it for later. ``None`` when it was kept."""
        try:
            settled = await settle_charge(store, entry)
        except Exception:
            logger.warning("the store could not settle %s now; kept to settle when it is back", entry.ledger_id)
            self.keep(entry)
            return None
        return settled

    def keep(self, entry: PendingSettle) -> None:
        self._pending[entry.ledger_id] = entry
        if self.directory is not None and _SAFE_ID.match(entry.ledger_id):
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                final = self.directory / f"{entry.ledger_id}.json"
                partial = final.with_suffix(f".{os.getpid()}.tmp")
                partial.write_text(json.dumps(asdict(entry)))
                os.replace(partial, final)  # whole or not at all, even if the process dies here
            except OSError:
                logger.exception("the settle journal could not be written; %s is kept in memory", entry.ledger_id)
        self._wake.set()

    def _load(self) -> None:
        """Entries on disk (this process's, a dead one's, an earlier run's) not known yet."""
        if self.directory is None or not self.directory.is_dir():
            return
        for file in self.directory.glob("*.json"):
            if file.stem in self._pending:
                continue
            try:
                entry = PendingSettle(**json.loads(file.read_text()))
            except FileNotFoundError:
                continue  # applied meanwhile by another process
            except (OSError, ValueError, TypeError):
                logger.error("the settle journal file %s cannot be read; left for an operator", file.name)
                continue
            self._pending[entry.ledger_id] = entry

    async def apply(self, store: Store) -> int:
        """Apply every kept settle; stop at the first store failure (it is still down). Returns how many applied."""
        self._load()
        applied = 0
        for entry in list(self._pending.values()):
            await store.settle(
                entry.ledger_id,
                entry.cost,
                entry.cost_source,
                entry.at,
                generation_id=entry.generation_id,
                reconcile=entry.reconcile,
                tokens_in=entry.tokens_in,
                tokens_out=entry.tokens_out,
            )
            self._forget(entry.ledger_id)
            applied += 1
        if applied:
            logger.warning("applied %d settles kept while the store was unavailable", applied)
        return applied

    def _forget(self, ledger_id: str) -> None:
        self._pending.pop(ledger_id, None)
        if self.directory is not None and _SAFE_ID.match(ledger_id):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{ledger_id}.json").unlink()

    async def run(self, store: Store) -> None:
        """Apply kept settles with backoff while the store is down; look for new ones now and then."""
        delay = _FIRST_DELAY
        while True:
            try:
                await self.apply(store)
            except Exception:
                logger.warning("the store is still unavailable; %d settles kept, next try in %gs", self.pending, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MOST_DELAY)
                continue
            delay = _FIRST_DELAY
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _RESCAN_SECONDS)
