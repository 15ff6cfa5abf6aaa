"""Every connection's circuit breaker in a running bridge: gate, record, persist, report.

The outbox asks `allow()` before attempting an op and the daemon before each poll; both report how the
call went with `record()`. The state machine itself is pure (`bridge.breaker`); this module adds what
makes it operable:
- thread safety (the worker and the scheduler's poll threads share a connection's breaker, and a
  half-open breaker must let exactly one probe through);
- persistence in the store's ``breaker`` table, so `itsm-bridge status` (another process) shows it and
  a restarted daemon resumes an open breaker instead of hammering a desk that is still down;
- for every transition: a log line, an audit entry (``breaker.opened``, ``breaker.half-open``,
  ``breaker.closed``) and the ``itsm_bridge_breaker_state`` gauge.

What counts: a `TransientError` (429, 5xx, reset, timeout, non-JSON maintenance page) or a bare
connection error is a failure. Any other answer from the system (including 4xx errors: the system is up
and answering) is a success. A bug in our own code is neither: it says nothing about the system. The
bridge's own pacing (`RateLimited`) is not a failure of the system either.

Nothing here runs inside a caller's transaction: `allow()` and `record()` are called between calls,
never while a store transaction is open, and persist in their own short transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import requests
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bridge import audit
from bridge.breaker import (
    HALF_OPEN,
    OPEN,
    STATES,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
)
from bridge.config_limits import BreakerConfig
from bridge.errors import ConnectorError, TransientError
from bridge.metrics import Metrics
from bridge.model import format_time
from bridge.ratelimit import RateLimited
from bridge.store import BreakerRow, Store

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)


def is_transient_failure(error: BaseException) -> bool:
    """Whether an error says the system is failing (as opposed to answering, or our own pacing/bug)."""
    if isinstance(error, RateLimited):
        return False
    return isinstance(error, (TransientError, requests.ConnectionError, requests.Timeout))


class Breakers:
    """The breakers of one process, one per connection, created on first use from the store's row."""

    def __init__(self, store: Store, *, configs: Mapping[str, BreakerConfig], metrics: Metrics,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.configs = dict(configs)
        self.metrics = metrics
        self.clock = clock
        self._lock = threading.RLock()
        self._breakers: dict[str, CircuitBreaker] = {}

    # -- the gate ------------------------------------------------------------------------------------
    def allow(self, connection: str) -> Permit | None:
        """Leave to call `connection` now, or None while its breaker is open (or its probe in flight)."""
        with self._lock:
            breaker = self._get(connection)
            permit, moved = breaker.allow(self.clock())
            if moved is not None:
                self._report(connection, moved)
            return permit

    def held_for(self, connection: str) -> float:
        """Seconds until `connection` may be called again (0.0: now)."""
        with self._lock:
            return self._get(connection).held_for(self.clock())

    def state(self, connection: str) -> BreakerState:
        with self._lock:
            return self._get(connection).state

    # -- outcomes ------------------------------------------------------------------------------------
    def record(self, connection: str, error: BaseException | None) -> None:
        """How one gated call went: None for success, else the error it raised."""
        with self._lock:
            breaker = self._get(connection)
            before = breaker.state
            now = self.clock()
            if error is None:
                moved = breaker.success(now)
            elif is_transient_failure(error):
                moved = breaker.failure(now, _describe(error))
            elif isinstance(error, ConnectorError) and not isinstance(error, RateLimited):
                moved = breaker.success(now)  # the system answered (a 4xx is an answer)
            else:
                breaker.release()  # a bug or our own pacing: no verdict on the system
                return
            if moved is not None:
                self._report(connection, moved)
            elif breaker.state != before:
                self._save(connection, breaker.state, None)

    def release(self, connection: str) -> None:
        """A probe was granted but no call was made (the op had been taken or finished elsewhere)."""
        with self._lock:
            self._get(connection).release()

    # -- plumbing ------------------------------------------------------------------------------------
    def _get(self, connection: str) -> CircuitBreaker:
        breaker = self._breakers.get(connection)
        if breaker is None:
            config = self.configs.get(connection) or BreakerConfig()
            breaker = CircuitBreaker(failure_threshold=config.failure_threshold, open_seconds=config.open_seconds,
                                     state=self._load(connection))
            self._breakers[connection] = breaker
            self._export(connection, breaker.state)
        return breaker

    def _load(self, connection: str) -> BreakerState:
        """The state a previous run left (an open breaker stays open across a restart)."""
        try:
            with Session(self.store.engine) as session:
                row = session.get(BreakerRow, connection)
        except SQLAlchemyError:  # no schema yet: nothing was ever persisted
            return BreakerState()
        if row is None or row.state not in STATES:
            return BreakerState()
        return BreakerState(state=row.state, failures=row.failures, opened_at=_aware(row.opened_at),
                            reopens_at=_aware(row.reopens_at), last_error=row.last_error)

    def _report(self, connection: str, moved: Transition) -> None:
        state = moved.state
        level = logging.WARNING if moved.current == OPEN else logging.INFO
        log.log(level, "circuit breaker of %s %s -> %s (%s)%s", connection, moved.previous, moved.current,
                moved.reason, f"; next probe at {format_time(state.reopens_at)}" if moved.current == OPEN else "")
        self.metrics.breaker_transitions.labels(connection, moved.current).inc()
        self._save(connection, state, moved)

    def _save(self, connection: str, state: BreakerState, moved: Transition | None) -> None:
        """Write the row (and, for a transition, the audit entry) in one transaction. A store that is
        briefly unreachable loses only the copy: the breaker in memory still protects the system."""
        self._export(connection, state)
        try:
            with self.store.transaction() as session:
                row = session.get(BreakerRow, connection) or BreakerRow(connection=connection)
                row.state, row.failures, row.last_error = state.state, state.failures, state.last_error
                row.opened_at, row.reopens_at = state.opened_at, state.reopens_at
                row.updated_at = self.clock()
                session.add(row)
                if moved is not None:
                    config = self.configs.get(connection) or BreakerConfig()
                    audit.append(self.store, session, f"breaker.{moved.current}", connection, {
                        "connection": connection, "from": moved.previous, "to": moved.current,
                        "reason": moved.reason, "failures": state.failures,
                        "reopens_at": format_time(state.reopens_at) if moved.current == OPEN else None,
                        "failure_threshold": config.failure_threshold, "open_seconds": config.open_seconds,
                        "last_error": state.last_error if moved.current == OPEN else None,
                    })
        except SQLAlchemyError as exc:
            log.warning("could not persist the circuit breaker of %s: %s", connection, type(exc).__name__)

    def _export(self, connection: str, state: BreakerState) -> None:
        self.metrics.breaker_state.labels(connection).set(STATES.index(state.state))
        self.metrics.breaker_failures.labels(connection).set(state.failures)


def may_call(runtime: Runtime, connection: str) -> Permit | None:
    """The gate before an op or a poll: None while the connection's breaker is open, or while its rate
    limiter is paused (a 429's Retry-After) for longer than the transport would wait. Checked in that
    order of cost: a paused connection does not use up a half-open breaker's single probe."""
    limiter = runtime.limiters.get(connection)
    if limiter is not None and limiter.backlog() > limiter.max_wait:
        return None
    return runtime.breakers.allow(connection)


def held_for(runtime: Runtime, connection: str) -> float:
    """Seconds until `may_call` could let a call to `connection` through (0.0: now)."""
    limiter = runtime.limiters.get(connection)
    backlog = limiter.backlog() if limiter is not None else 0.0
    paused = backlog if limiter is not None and backlog > limiter.max_wait else 0.0
    return max(paused, runtime.breakers.held_for(connection))


def spares_attempt(error: BaseException, *, probe: bool) -> bool:
    """Whether a failed delivery should not count against the op's `sync.max_attempts`: the probe of a
    resting connection failing (the outage, not the op, is at fault), or the bridge's own pacing."""
    return isinstance(error, RateLimited) or (probe and is_transient_failure(error))


def _describe(error: BaseException) -> str:
    text = str(error) if isinstance(error, ConnectorError) else type(error).__name__
    return text[:500]


def _aware(value: datetime | None) -> datetime | None:
    """Stored times are naive UTC on some databases; the clock is aware."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)




def rest_reason(runtime: Runtime, connection: str) -> str:
    """Why `may_call` refused `connection`, in words for `sync --once` and logs."""
    state = runtime.breakers.state(connection)
    wait = held_for(runtime, connection)
    if state.state in (OPEN, HALF_OPEN):
        return (f"circuit breaker {state.state} after {state.failures} transient failure(s), next probe in "
                f"{wait:.1f}s (last error: {state.last_error or '-'})")
    return f"waiting {wait:.1f}s for the rate limit (the server answered 429)"
