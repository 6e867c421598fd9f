"""WAL checkpoints for a SQLite file, on a thread of their own instead of inside a commit.

SQLite's default (``wal_autocheckpoint=1000``) runs the checkpoint in whichever ``COMMIT`` pushes
the write-ahead log past 1,000 pages, on that connection, which for the store's inline
connection is the event loop: the copy back into the database file and its ``fsync`` then stall
every request in flight for a few milliseconds (measured: COMMIT p99 0.5-0.95 ms with the
checkpoint inside, 0.2-0.24 ms with it on this thread). The store's connections turn the
automatic checkpoint off and this thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` a few times a
second while there were commits: PASSIVE never waits for, nor blocks, readers and writers, and
SQLite releases the GIL while it works. Several processes on one file each run one; a
checkpoint already under way elsewhere only makes this one return early.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["Checkpointer"]

logger = logging.getLogger("wattfare_embed")

INTERVAL_SECONDS = 0.25


class Checkpointer:
    def __init__(self, path: str, interval: float = INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval = interval
        self._commits = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def committed(self) -> None:
        """Called after each commit (a plain counter: a count lost to a race is harmless)."""
        self._commits += 1
        if self._thread is None:
            with self._starting:
                if self._thread is None and not self._stopping.is_set():
                    self._thread = threading.Thread(target=self._run, name="wattfare-sqlite-checkpoint", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            # Never waits on another checkpointer: PASSIVE with a busy peer just does less this time.
            connection.execute("PRAGMA busy_timeout=0")
            seen = 0
            while not self._stopping.wait(self._interval):
                commits = self._commits
                if commits == seen:
                    continue
                seen = commits
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    logger.warning("a WAL checkpoint failed; trying again shortly", exc_info=True)
        finally:
            connection.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
