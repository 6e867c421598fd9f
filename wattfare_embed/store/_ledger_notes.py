"""Notes written onto open reservations while their request is still in flight."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, update

from ._runner import TransactionRunner
from .schema import ledger

__all__ = ["LedgerNotes"]

_L = ledger.c
_NOTE_GENERATION = (
    update(ledger)
    .where(_L.id == bindparam("b_id"), _L.state == "reserved", _L.generation_id.is_(None))
    .values(generation_id=bindparam("b_generation_id"))
)


class LedgerNotes(ABC):
    """The generation id of a reservation whose request is still running, so that the sweeper, if
    the process dies, can ask the upstream what it billed instead of charging the whole hold."""

    @abstractmethod
    def _run_handle(self) -> TransactionRunner: ...

    async def note_generations(self, entries: Sequence[tuple[str, str]]) -> None:
        """Record ``(ledger id, generation id)`` pairs on reservations still open, in one transaction."""
        if not entries:
            return
        parameters = [{"b_id": ledger_id, "b_generation_id": generation_id} for ledger_id, generation_id in entries]

        def operation(db: Connection) -> None:
            db.execute(_NOTE_GENERATION, parameters)

        await self._run_handle().run(operation)
