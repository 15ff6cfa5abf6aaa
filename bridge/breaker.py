"""The circuit breaker of one connection, as pure logic: states, counts and times, no I/O.

Why a breaker at all: when a desk is down, every op would otherwise burn its attempts against it and be
dead-lettered after `sync.max_attempts`, and every poll would add load to a system that is struggling.
With the breaker, after `failure_threshold` consecutive transient failures (5xx, 429, resets, timeouts)
the connection is left alone for `open_seconds`; then ONE call is let through (half-open). If it works
the breaker closes and the queue drains by itself; if it fails the connection rests again.

    closed --(threshold consecutive failures)--> open --(open_seconds)--> half-open
    half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open

Time is always passed in, so the state machine is tested with a fake clock and no sleeps. The store,
the audit trail, logs and metrics are the caller's business (`bridge.breakers`), driven by the
`Transition`s returned here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
STATES = (CLOSED, HALF_OPEN, OPEN)


@dataclass(frozen=True)
class BreakerState:
    """What is remembered (and persisted) of a breaker."""

    state: str = CLOSED
    failures: int = 0                    # consecutive transient failures
    opened_at: datetime | None = None    # when it last opened
    reopens_at: datetime | None = None   # when the next probe may go (open), or the probe's deadline
    probe_at: datetime | None = None     # when the probe in flight was let through (half-open)
    last_error: str | None = None


@dataclass(frozen=True)
class Transition:
    """A change of state, to be logged, audited, exported and persisted."""

    previous: str
    current: str
    state: BreakerState
    reason: str


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; `probe` is True for the single call a half-open breaker lets through."""

    probe: bool = False


class CircuitBreaker:
    """One connection's breaker. Not thread-safe by itself: `bridge.breakers` serialises calls."""

    def __init__(self, *, failure_threshold: int, open_seconds: float, state: BreakerState | None = None) -> None:
        if failure_threshold < 1 or open_seconds <= 0:
            raise ValueError(f"failure_threshold must be >= 1 and open_seconds > 0 "
                             f"(got {failure_threshold!r}, {open_seconds!r})")
        self.failure_threshold = failure_threshold
        self.open_for = timedelta(seconds=open_seconds)
        self.state = state or BreakerState()

    def allow(self, now: datetime) -> tuple[Permit | None, Transition | None]:
        """May a call go now? An open breaker whose rest is over turns half-open and grants the probe.

        A half-open breaker grants no second call while its probe is in flight; a probe that never
        reported back (its caller crashed or gave the op to another replica) is replaced after
        `open_seconds`.
        """
        current = self.state
        if current.state == CLOSED:
            return Permit(), None
        if current.state == OPEN and current.reopens_at is not None and now < current.reopens_at:
            return None, None
        if current.state == HALF_OPEN and current.probe_at is not None and now < current.probe_at + self.open_for:
            return None, None
        moved = self._move(HALF_OPEN, replace(current, state=HALF_OPEN, probe_at=now),
                           "rest over: one probe let through")
        return Permit(probe=True), moved if current.state != HALF_OPEN else None

    def held_for(self, now: datetime) -> float:
        """Seconds until `allow` could grant a call (0.0 if it could now)."""
        current = self.state
        if current.state == OPEN and current.reopens_at is not None:
            return max(0.0, (current.reopens_at - now).total_seconds())
        if current.state == HALF_OPEN and current.probe_at is not None:
            return max(0.0, (current.probe_at + self.open_for - now).total_seconds())
        return 0.0

    def success(self, now: datetime) -> Transition | None:
        """A call got an answer from the system (any answer but a transient failure)."""
        current = self.state
        if current.state == HALF_OPEN:
            return self._move(CLOSED, BreakerState(), "probe succeeded")
        if current.state == CLOSED and current.failures:
            self.state = BreakerState()
        # An open breaker ignores a late success of a call let through before it opened: only a probe
        # after the rest closes it, so one lucky answer from a flapping system does not reset it.
        return None

    def failure(self, now: datetime, error: str) -> Transition | None:
        """A call failed transiently (5xx, 429, reset, timeout)."""
        current = self.state
        failures = current.failures + 1
        if current.state == HALF_OPEN:
            return self._open(now, failures, error, "probe failed")
        if current.state == CLOSED and failures >= self.failure_threshold:
            return self._open(now, failures, error, f"{failures} consecutive transient failures")
        self.state = replace(current, failures=failures, last_error=error)
        return None

    def release(self) -> None:
        """The probe granted was not made after all (the op was gone): let the next caller probe."""
        if self.state.state == HALF_OPEN:
            self.state = replace(self.state, probe_at=None)

    def _open(self, now: datetime, failures: int, error: str, reason: str) -> Transition:
        opened = BreakerState(state=OPEN, failures=failures, opened_at=now, reopens_at=now + self.open_for,
                              last_error=error)
        return self._move(OPEN, opened, reason)

    def _move(self, target: str, state: BreakerState, reason: str) -> Transition:
        previous = self.state.state
        self.state = state
        return Transition(previous=previous, current=target, state=state, reason=reason)
