"""Which replica runs the scheduled polls: one at a time, taken over within seconds when it dies.

Several `itsm-bridge run` processes may share one PostgreSQL database. Webhook ingest, inbox processing and
outbox delivery are safe in all of them at once (rows are claimed with ``FOR UPDATE SKIP LOCKED``), but
polls would only repeat each other's requests against the tools' rate limits. So polls (and the deadline
clock) run on the *leader*: the replica holding a session-level PostgreSQL advisory lock on a connection
of its own. When the leader dies its connection closes, the server releases the lock, and the next
replica to ask (every `retry_seconds`) becomes leader. SQLite is single-process: always the leader.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

#: The advisory lock key (any bigint; this one spells "itsmpoll" in ASCII).
LEADER_LOCK_KEY = 0x6974736D706F6C6C


class Leadership:
    """Ask `is_leader()` before each scheduled poll; it is cheap (a cached answer between retries)."""

    def __init__(self, engine: Engine, *, is_sqlite: bool, retry_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._single = is_sqlite
        self._retry = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._checked_at = float("-inf")
        self._leader = is_sqlite

    def is_leader(self) -> bool:
        if self._single:
            return True
        with self._lock:
            if self._clock() - self._checked_at < self._retry:
                return self._leader
            self._checked_at = self._clock()
            was = self._leader
            self._leader = self._still_leader() if self._leader else self._try_lead()
            if self._leader != was:
                log.info("this replica %s the poll leader", "is now" if self._leader else "is no longer")
            return self._leader

    def release(self) -> None:
        """Give up leadership (on a clean stop) so another replica takes over at once."""
        with self._lock:
            self._close()
            self._leader = self._single

    def _try_lead(self) -> bool:
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            taken = self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                             {"key": LEADER_LOCK_KEY}).scalar()
            self._connection.commit()  # the lock is session-level: it outlives this transaction
            return bool(taken)
        except Exception as exc:  # the database is away: not leader now, ask again later
            log.warning("could not ask for poll leadership: %s", type(exc).__name__)
            self._close()
            return False

    def _still_leader(self) -> bool:
        """The lock lives as long as our connection: check the connection still answers."""
        try:
            assert self._connection is not None
            self._connection.execute(text("SELECT 1")).scalar()
            self._connection.commit()
            return True
        except Exception as exc:
            log.warning("lost the poll leader connection: %s", type(exc).__name__)
            self._close()
            return False

    def _close(self) -> None:
        """Really close the connection (not back to the pool, where a session lock would live on)."""
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:  # already broken: the server released the lock with the session
                pass
            self._connection = None
