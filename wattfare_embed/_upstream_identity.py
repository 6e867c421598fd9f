"""What a connection's upstream calls carry, opened once per connection and kept for a short while.

Every metered call needs the connection's funding credential (AES-GCM sealed at rest), the
user's pseudonym (an HMAC of their id) and the headers built from them. They are the same for
every call of a connection, so they are worked out on its first call and kept, keyed on the
exact sealed credential the store returned with this call's reservation: a connection that
reconnects with a new key seals a new one, which misses and is opened afresh.

An opened credential is a secret in memory, so it is kept no longer than it must be: it is
dropped when its connection ends here (revoke, disconnect, funding_invalid, or a revoke the
proxy's watch finds), and ``ttl_seconds`` after it was opened, whatever its calls: ``expire()``,
which that watch calls every couple of seconds, forgets it even when no call comes. A call that
read its connection before the drop still opens the credential for itself (the upstream refuses a
dead key on its own), but what was dropped is not kept again for ``ttl_seconds``: without that, a
call reserved just before ``funding_invalid`` would put the dead credential back for a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .store import ConnectionRecord

__all__ = ["UpstreamIdentities", "UpstreamIdentity"]

DEFAULT_TTL_SECONDS = 60.0
DEFAULT_CAPACITY = 4096  # connections with calls in the last minute; beyond it the oldest is opened again


@dataclass(frozen=True, slots=True)
class UpstreamIdentity:
    """One connection's upstream credential, as the call's headers, and its user's pseudonym."""

    pseudonym: str  # what the upstream is told the end user is (``user``), never the app's id
    headers: dict[str, str] = field(repr=False)  # read-only: shared by every call of the connection


@dataclass(slots=True)
class _Entry:
    sealed: str
    owner: tuple[str, str]
    identity: UpstreamIdentity
    expires_at: float


class UpstreamIdentities:
    """Each connection's ``UpstreamIdentity``, opened on its first call and kept ``ttl_seconds``."""

    def __init__(
        self,
        open_credential: Callable[[ConnectionRecord], str | None],
        user_key: bytes,
        headers_for: Callable[[str], dict[str, str]],
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self._open = open_credential
        self._user_key = user_key
        self._headers_for = headers_for
        self._ttl = ttl_seconds
        self._capacity = capacity
        # Insertion order is expiry order: every entry lives ``ttl_seconds`` from when it was opened.
        self._entries: dict[str, _Entry] = {}
        # Connections dropped in the last ``ttl_seconds``: (the sealed credential dropped, None when
        # none was kept; until when), in expiry order too.
        self._dropped: dict[str, tuple[str | None, float]] = {}

    def of(self, record: ConnectionRecord) -> UpstreamIdentity | None:
        """The identity a call on ``record`` carries; ``None`` when its credential cannot be read."""
        now = time.monotonic()
        entry = self._entries.get(record.id)
        if (
            entry is not None
            and entry.expires_at > now
            and entry.sealed == record.sealed_credential
            and entry.owner == (record.app_id, record.app_user_id)
        ):
            return entry.identity
        self._entries.pop(record.id, None)
        credential = self._open(record)
        if not credential or record.sealed_credential is None:
            return None
        pseudonym = hmac.new(self._user_key, record.app_user_id.encode(), hashlib.sha256).hexdigest()[:32]
        identity = UpstreamIdentity(pseudonym, self._headers_for(credential))
        self.expire(now)
        dropped = self._dropped.get(record.id)
        if dropped is not None and dropped[0] in (None, record.sealed_credential):
            return identity  # read before its connection ended here: this call's alone, never kept
        while len(self._entries) >= self._capacity:
            del self._entries[next(iter(self._entries))]
        self._entries[record.id] = _Entry(
            record.sealed_credential, (record.app_id, record.app_user_id), identity, now + self._ttl
        )
        return identity

    def drop(self, connection_id: str) -> None:
        """Forget a connection's credential (it was revoked, or the upstream refused it), and keep
        it from being kept again for ``ttl_seconds`` by calls that read the connection before."""
        entry = self._entries.pop(connection_id, None)
        self._dropped.pop(connection_id, None)
        self._dropped[connection_id] = (entry.sealed if entry else None, time.monotonic() + self._ttl)

    def expire(self, now: float | None = None) -> None:
        """Forget every credential opened more than ``ttl_seconds`` ago."""
        now = time.monotonic() if now is None else now
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest].expires_at > now:
                break
            del self._entries[oldest]
        while self._dropped:
            oldest = next(iter(self._dropped))
            if self._dropped[oldest][1] > now:
                break
            del self._dropped[oldest]

    def __len__(self) -> int:
        return len(self._entries)
