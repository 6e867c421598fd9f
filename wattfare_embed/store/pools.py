"""``PoolSizes``: how many PostgreSQL connections one process may hold, and for how long.

A process talks to PostgreSQL through two pools: SQLAlchemy's engine (migrations, status reads,
consent records, webhooks, the sweep) and the asyncpg connections of the per-request fast path (``_pg_pool``)
(``reserve`` and ``settle``, one statement each), and an embed keeps one more connection that
LISTENs for revocations from other processes (``_revocations``). A statement holds a connection for about one
round trip, so a few connections carry hundreds of requests a second; the rest of a large pool
would sit idle against the server's ``max_connections``. SQLite ignores these sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["PoolSizes"]


@dataclass(frozen=True, slots=True)
class PoolSizes:
    """Connections per process: at most ``engine + engine_overflow + fast_path + 1`` (12 by default).

    ```python
    Wattfare(..., pool_sizes=PoolSizes(fast_path=4))     # or SqlStore(url, pool_sizes=...)
    ```

    Idle, a process keeps ``engine`` engine connections, one fast-path connection and the
    listening one open.
    Size them so that every process together stays under the server's ``max_connections``
    (README, "Store").
    """

    # SQLAlchemy engine connections kept open between uses.
    engine: int = 2
    # More engine connections for bursts, each closed as soon as it is returned.
    engine_overflow: int = 3
    # The most asyncpg connections reserve and settle use at once (one is kept open when idle).
    fast_path: int = 6
    # A fast-path connection unused for this long is closed (the one kept open excepted).
    idle_seconds: float = 60.0

    def __post_init__(self) -> None:
        # SQLAlchemy reads pool_size=0 as "no limit", so every size here must be explicit.
        if self.engine < 1 or self.fast_path < 1:
            raise ConfigurationError("PoolSizes: engine and fast_path must be at least 1")
        if self.engine_overflow < 0:
            raise ConfigurationError("PoolSizes: engine_overflow must not be negative")
        if not self.idle_seconds > 0:
            raise ConfigurationError("PoolSizes: idle_seconds must be more than zero")

    @property
    def most(self) -> int:
        """The most connections one process opens, the one listening for revocations included."""
        return self.engine + self.engine_overflow + self.fast_path + 1
