"""A bound on work anyone can start: past ``limit`` at once, the next request is refused at once.

Refused, not queued: a queue of unauthenticated requests is itself what an attacker wants
to grow. The refusal is a typed 429 with ``Retry-After``, which well-behaved clients (and
the consent domain's outbox) retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import RateLimitedError

__all__ = ["ConcurrencyGate"]


class ConcurrencyGate:
    """``with gate.admit(): …`` runs at most ``limit`` bodies at once (on one event loop)."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.active = 0
        self._what = what

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.active >= self.limit:
            raise RateLimitedError(
                f"too many {self._what} at once (at most {self.limit}); try again in a moment",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
