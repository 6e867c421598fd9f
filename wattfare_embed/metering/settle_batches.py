"""Settles written after the answer: grouped into one store transaction, and awaited by this
process's own reads of spend.

A request's final charge is known before its answer goes out, so the answer goes first and the
settle right after. Settles pending at the same moment share one transaction (``Store.settle_many``:
one commit, one WAL write for the group): the first starts a flush at the next turn of the event
loop, the ones that come meanwhile join it, and those that come while it is being written form
the next group, flushed as soon as it ends. Each keeps its own result. A group the store fails
as a whole goes to the settle journal entry by entry, as a single failing settle does.

Between the answer and the settle the charge is in neither the ledger nor the counter, so
``Unsettled`` lists those settles by user: ``Wattfare.status``, the usage listing and a grant's
status wait for the ones of the user they read (with a deadline) and so see every charge this
process has already answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..store.base import settle_charge

if TYPE_CHECKING:
    from ..store import FinalCharge, Settled, Store
    from .settle_journal import SettleJournal

__all__ = ["READ_WAIT_SECONDS", "SettleBatches", "Unsettled"]

logger = logging.getLogger("wattfare_embed")

# The longest a read waits for the settles it should see. A settle ends, written or journaled, within
# the store's own deadlines: on an SQLite file another process keeps locked that is SQLite's 5 s busy
# timeout, after what the writer thread already had queued (another 5 s for a journaled release
# retried first). Past it the read goes ahead without it: a store that slow fails its reads as well.
READ_WAIT_SECONDS = 15.0


# A settle waiting for its group: the user whose counter it charges, the charge, its own result.
_Pending = tuple[str, "FinalCharge", "asyncio.Future[Settled | None]"]


class SettleBatches:
    """Group commit of settles: ``settle`` joins the group being formed and returns its own result,
    ``None`` when the store could not take it and it was kept in the journal."""

    def __init__(self, store: Callable[[], Store], journal: SettleJournal) -> None:
        self._store = store
        self._journal = journal
        self._forming: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def settle(self, charge: FinalCharge, user: str) -> Settled | None:
        """``charge``, for ``user`` (whose counter it changes)."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Settled | None] = loop.create_future()
        self._forming.append((user, charge, result))
        if self._flusher is None:
            # Its first step runs at the next turn of the loop: what is pending by then goes with it.
            self._flusher = loop.create_task(self._flush_while_pending())
        return await result

    async def _flush_while_pending(self) -> None:
        try:
            while self._forming:
                # By user: groups written at once by two processes then lock the users' counters in
                # the same order, so they cannot deadlock on PostgreSQL.
                group, self._forming = sorted(self._forming, key=_by_user), []
                await self._flush(group)
        finally:
            self._flusher = None
            # Cancelled (the loop shutting down): what was still waiting is journaled, never dropped.
            left, self._forming = self._forming, []
            _journal_all(self._journal, left)

    async def _flush(self, group: list[_Pending]) -> None:
        store = self._store()
        settle_many = getattr(store, "settle_many", None)  # a store matching the protocol may lack it
        if len(group) > 1 and settle_many is not None:
            try:
                results = await settle_many([charge for _user, charge, _result in group])
            except Exception:
                # Nothing of a failed group committed. One entry the store refuses must not hold
                # up the others: they are tried one by one (below).
                logger.warning("%d settles failed as one group; settling them one by one", len(group))
            except BaseException:
                _journal_all(self._journal, group)  # cancelled mid-write, outcome unknown: applied at most once
                raise
            else:
                for (_user, _charge, result), settled in zip(group, results, strict=True):
                    _resolve(result, settled)
                return
        await self._flush_one_by_one(store, group)

    async def _flush_one_by_one(self, store: Store, group: list[_Pending]) -> None:
        """Each settle in its own transaction; one that fails is kept in the journal. After two
        failures in a row with none written the store itself is taken to be down, and the rest are
        kept without trying them (each try could wait out a whole connect or busy timeout)."""
        written = failed_in_a_row = 0
        for index, (_user, charge, result) in enumerate(group):
            try:
                settled = await settle_charge(store, charge)
            except Exception:
                logger.warning("the store could not settle %s now; kept to settle when it is back", charge.ledger_id)
                failed_in_a_row += 1
                if written == 0 and failed_in_a_row == _DOWN_AFTER:
                    _journal_all(self._journal, group[index:])
                    return
                _journal_all(self._journal, [group[index]])
                continue
            except BaseException:
                _journal_all(self._journal, group[index:])  # cancelled: kept, applied at most once
                raise
            written, failed_in_a_row = written + 1, 0
            _resolve(result, settled)


_DOWN_AFTER = 2  # failures in a row, with none written, that say the store is down


def _by_user(pending: _Pending) -> str:
    return pending[0]


def _journal_all(journal: SettleJournal, group: list[_Pending]) -> None:
    """Keep each charge of ``group`` in the journal (applied once the store is back, at most once)."""
    for _user, charge, result in group:
        journal.keep(charge)
        _resolve(result, None)


def _resolve(result: asyncio.Future[Settled | None], settled: Settled | None) -> None:
    if not result.done():
        result.set_result(settled)


class Unsettled:
    """Settles this process owes for answers already sent, by user (or grant id)."""

    def __init__(self) -> None:
        self._owed: dict[str, set[asyncio.Future[None]]] = {}

    def owe(self, user: str) -> asyncio.Future[None]:
        """Before the answer goes out: from now on reads of ``user`` wait until ``paid``."""
        owed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owed.setdefault(user, set()).add(owed)
        return owed

    def paid(self, user: str, owed: asyncio.Future[None]) -> None:
        """The settle is written (or journaled)."""
        if not owed.done():
            owed.set_result(None)
        waiting = self._owed.get(user)
        if waiting is not None:
            waiting.discard(owed)
            if not waiting:
                del self._owed[user]

    async def caught_up(self, user: str | None = None, *, timeout: float = READ_WAIT_SECONDS) -> bool:
        """Wait, at most ``timeout`` seconds, for the settles ``user`` (every user: ``None``) is owed
        right now, not for those of answers sent meanwhile, so a busy user cannot hold a read
        forever. Whether there were any."""
        if user is None:
            owed = [future for futures in self._owed.values() for future in futures]
        else:
            owed = list(self._owed.get(user, ()))
        if not owed:
            return False
        await asyncio.wait(owed, timeout=timeout)
        return True
