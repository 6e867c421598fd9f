"""Sign-in throttling: attempts per client address and failures per account, before argon2 runs.

Every password check is a 64 MiB argon2 hash, so an unthrottled login page is both a
password-guessing oracle and a memory and CPU sink. ``LoginThrottle`` refuses, before any
hash is computed:

- a client address past ``per_address`` attempts in ``address_window_seconds``;
- an account (by normalised email, known or not) past ``per_account`` failed attempts in
  ``account_window_seconds``; a successful sign-in clears its failures.

Sliding windows, kept in this process's memory and bounded in size (the oldest entries
are forgotten first), so several domain processes each apply the limits on their own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]


class _Window:
    """At most ``limit`` events per ``seconds`` for each key, for at most ``max_keys`` keys."""

    def __init__(self, limit: int, seconds: float, max_keys: int) -> None:
        self.limit = limit
        self.seconds = seconds
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may act again (0: now)."""
        events = self._events.get(key)
        if events is None or len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.seconds - now)

    def add(self, key: str, now: float) -> None:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.limit)
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        events.append(now)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


class LoginThrottle:
    def __init__(
        self,
        *,
        per_address: int = 10,
        address_window_seconds: float = 60.0,
        per_account: int = 10,
        account_window_seconds: float = 900.0,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses = _Window(per_address, address_window_seconds, max_tracked)
        self._accounts = _Window(per_account, account_window_seconds, max_tracked)
        self._clock = clock

    def retry_after(self, address: str, account: str) -> int | None:
        """Whole seconds to wait before this attempt may be checked, or ``None`` to check it now."""
        now = self._clock()
        wait = max(self._addresses.wait(address, now), self._accounts.wait(account, now))
        return max(1, math.ceil(wait)) if wait > 0 else None

    def attempted(self, address: str, account: str, *, succeeded: bool) -> None:
        """Count an attempt that was checked (refused ones are not: they cost nothing)."""
        now = self._clock()
        self._addresses.add(address, now)
        if succeeded:
            self._accounts.clear(account)
        else:
            self._accounts.add(account, now)
