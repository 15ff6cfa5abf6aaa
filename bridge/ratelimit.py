"""Pacing one connection's requests: a token bucket shared by everything that calls that system.

Why here and in this shape:
- Vendors limit per key or per account, not per code path, so polls, outbox deliveries and backfills of
  one connection draw from ONE bucket (`RateLimiter`), owned by the connection's `RetryingSession`
  (``session.limiter``) and taken before every request it sends, retries included. A connector that
  does not send through the session (a vendor SDK with its own HTTP client) calls `throttle(session)`
  before each request and `note_rate_limited(session, seconds)` when the SDK reports a 429.
- Waiting is bounded: a wait longer than `max_wait` (the transport's own retry cap) is not slept but
  raised as `RateLimited`, a `TransientError` the outbox reschedules. The daemon's one worker thread
  never blocks for minutes behind one slow vendor, and no caller holds a database transaction here
  (requests are only ever made outside transactions).
- A 429 slows the whole connection down, not just the request that got it: `pause()` empties the bucket
  and holds every request of the connection until the server's Retry-After has passed.
- `TokenBucket` is the pure arithmetic with the time passed in, so it is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bridge.errors import TransientError


class RateLimited(TransientError):
    """Raised instead of sleeping when the next request of a connection may only go after `max_wait`."""


class TokenBucket:
    """`rate_per_minute` tokens a minute, at most `burst` saved up; one token per request.

    `reserve(now)` takes a token at once (the balance may go below zero) and returns how long the caller
    must wait before sending, so concurrent callers are handed successive slots instead of racing for the
    same one. `pause(seconds, now)` empties the bucket and starts refilling only after `seconds`.
    """

    def __init__(self, rate_per_minute: float, burst: int, *, now: float) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError(f"rate_per_minute must be > 0 and burst >= 1 (got {rate_per_minute!r}, {burst!r})")
        self.rate_per_minute = float(rate_per_minute)
        self.per_second = self.rate_per_minute / 60.0
        self.burst = int(burst)
        self.tokens = float(burst)
        self.updated = now  # time up to which `tokens` is accounted; in the future during a pause

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.per_second)
            self.updated = now

    def wait_for(self, now: float) -> float:
        """Seconds until a request could go, without taking a token."""
        self._refill(now)
        pause = max(0.0, self.updated - now)
        return pause + (max(0.0, 1.0 - self.tokens) / self.per_second)

    def reserve(self, now: float) -> float:
        """Take one token; the seconds the caller must wait before sending (0.0: send now)."""
        wait = self.wait_for(now)
        self.tokens -= 1.0
        return wait

    def refund(self) -> None:
        """Give back a token reserved by a caller that decided not to send after all."""
        self.tokens = min(float(self.burst), self.tokens + 1.0)

    def pause(self, seconds: float, now: float) -> None:
        """The server said "too many": nothing goes for `seconds`, then the bucket refills from empty."""
        self._refill(now)
        self.tokens = min(self.tokens, 0.0)
        self.updated = max(self.updated, now + max(0.0, seconds))


class RateLimiter:
    """A thread-safe `TokenBucket` with a clock and a sleep, for one connection.

    ``RateLimiter(None)`` is unlimited (sessions built outside a `Runtime`, e.g. in unit tests).
    `on_wait(seconds)` is told each wait so the daemon can export time spent waiting as a metric.
    """

    def __init__(self, rate_per_minute: float | None, burst: int = 1, *, connection: str = "",
                 max_wait: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 on_wait: Callable[[float], None] | None = None) -> None:
        self.connection = connection
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._lock = threading.Lock()
        self._bucket = TokenBucket(rate_per_minute, burst, now=clock()) if rate_per_minute else None

    @property
    def rate_per_minute(self) -> float | None:
        return self._bucket.rate_per_minute if self._bucket else None

    @property
    def burst(self) -> int | None:
        return self._bucket.burst if self._bucket else None

    def acquire(self, *, max_wait: float | None = None) -> float:
        """Wait for this connection's next slot; the seconds waited. `RateLimited` past `max_wait`
        (default: the limiter's own)."""
        if self._bucket is None:
            return 0.0
        limit = self.max_wait if max_wait is None else max_wait
        with self._lock:
            wait = self._bucket.reserve(self._clock())
            if wait > limit:
                self._bucket.refund()
        if wait > limit:
            raise RateLimited(f"{self.connection}: paced by the bridge's rate limit "
                              f"({self._bucket.rate_per_minute:g}/min, or the server's Retry-After): "
                              f"next request allowed in {wait:.1f}s", connection=self.connection,
                              retry_after=wait)
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(wait)
            self._sleep(wait)
        return wait

    def backlog(self) -> float:
        """Seconds until a request of this connection could go now (0.0: at once)."""
        if self._bucket is None:
            return 0.0
        with self._lock:
            return self._bucket.wait_for(self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every request of this connection for `seconds` (a 429's Retry-After)."""
        if self._bucket is None or seconds <= 0:
            return
        with self._lock:
            self._bucket.pause(seconds, self._clock())


#: Pause after a 429 that names no wait (PagerDuty documents no Retry-After).
DEFAULT_429_PAUSE = 1.0


def limiter_of(session: object) -> RateLimiter | None:
    """The limiter a session carries (``session.limiter``), if any."""
    limiter = getattr(session, "limiter", None)
    return limiter if isinstance(limiter, RateLimiter) else None


def throttle(session: object) -> float:
    """For connectors whose SDK sends its own requests: take the connection's next slot before each one.

    >>> throttle(self.session)            # doctest: +SKIP
    >>> client.chat_postMessage(...)      # doctest: +SKIP
    """
    limiter = limiter_of(session)
    return limiter.acquire() if limiter is not None else 0.0


def note_rate_limited(session: object, seconds: float | None) -> None:
    """For connectors whose SDK sends its own requests: the server answered 429, rest the connection."""
    limiter = limiter_of(session)
    if limiter is not None:
        limiter.pause(DEFAULT_429_PAUSE if seconds is None else seconds)
