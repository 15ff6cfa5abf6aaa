"""The one HTTP transport every connector uses: timeouts, retries in seconds, typed errors, redaction.

Retry lives here and in the outbox, nowhere else: `RetryingSession.send` retries 429, 5xx and
connection failures with exponential backoff and jitter, honouring ``Retry-After`` (seconds or an HTTP
date) up to a cap. A write that may already have been carried out (a POST or PATCH whose answer was a
5xx, a reset or a read timeout) is not repeated in place: the outbox's retry first looks for what it
may have written (a ticket by correlation id, a note by its marker), so it is never done twice. When the budget is spent the last response is returned and `raise_for_status`
turns it into a typed error, which the outbox then retries on its own (longer) schedule. Connectors
never sleep and never match on error text. Every attempt first takes a token from the connection's
rate limiter (`bridge.ratelimit`), so no connector can forget the vendor's limit.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.exceptions import NewConnectionError

from bridge.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.ratelimit import DEFAULT_429_PAUSE, RateLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Requests the bridge sends that create or append (a ticket, a note): repeated blindly, they do it twice.
NOT_REPEATABLE = frozenset({"POST", "PATCH"})
DEFAULT_TIMEOUT = (5.0, 30.0)
#: Inside `RetryingSession.prompt()`: the longest a request may wait for the rate limit (seconds).
PROMPT_WAIT = 0.05

_SECRET_PARAMS = re.compile(r"(?i)((?:token|password|secret|api_key|key|sig)=)[^&\s]+")


def redact_url(url: str) -> str:
    """The URL with credentials in the query string or userinfo masked, safe for logs and errors."""
    url = re.sub(r"//[^/@\s]+:[^/@\s]+@", "//***:***@", url)
    return _SECRET_PARAMS.sub(r"\1***", url)


def retry_after_seconds(response: requests.Response, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta seconds or HTTP date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class _WaitRetryAfter:
    """tenacity wait: the server's Retry-After when it gave one (capped), else exponential jitter."""

    def __init__(self, *, initial: float, maximum: float) -> None:
        self.maximum = maximum
        self.fallback = wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None:
            # A response's header, or a typed error's (`retrying_whole`): the hint the server gave.
            hinted = getattr(outcome.exception(), "retry_after", None) if outcome.failed \
                else retry_after_seconds(outcome.result())
            if hinted is not None:
                return min(hinted, self.maximum)
        return self.fallback(state)


def pause_after_429(response: requests.Response) -> float:
    """How long a 429 asks the whole connection to rest: ``Retry-After`` (seconds or HTTP date), else a
    delta-seconds ``RateLimit-Reset`` (PagerDuty's ``ratelimit-reset``), else `DEFAULT_429_PAUSE`."""
    hinted = retry_after_seconds(response)
    if hinted is not None:
        return hinted
    reset = (response.headers.get("RateLimit-Reset") or "").strip()
    if reset.isdigit() and int(reset) <= 3600:  # a delta; larger numbers are epoch times
        return float(reset)
    return DEFAULT_429_PAUSE


class RetryingSession(requests.Session):
    """A `requests.Session` whose every request is retried on 429, 5xx and connection errors.

    `on_retry(response_or_exception)` is called before each retry so the daemon can count retries in
    its metrics without the connectors knowing. `limiter` paces every request sent, retries included
    (the connection's rate limit, `bridge.ratelimit`); a 429 pauses it for the whole connection.
    """

    def __init__(self, *, attempts: int = 4, initial_wait: float = 0.2, max_wait: float = 10.0,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 on_retry: Callable[[object], None] | None = None,
                 limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.attempts = attempts
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.timeout = timeout
        self.on_retry = on_retry
        self.limiter = limiter or RateLimiter(None)
        self._last = threading.local()

    @contextmanager
    def prompt(self) -> Iterator[None]:
        """For a write that must follow the read it depends on at once (read-before-write guards).

        Inside, each request is tried once and never waits for the rate limit (beyond `PROMPT_WAIT`): a
        desk agent acting during a wait would be overwritten by a write decided on the earlier read. A
        request that cannot go at once fails (TransientError / RateLimited), and the outbox retries read
        and write together.
        """
        self._last.prompt = True
        try:
            yield
        finally:
            self._last.prompt = False

    def take_unretried(self) -> bool:
        """Whether this thread's last failure was one the transport would have retried but left to the
        caller (a request inside `prompt()`, or a write that may have been carried out), and forget it.
        The outbox then retries the whole op at once, reading or searching first, as the transport
        would have retried the request."""
        unretried = getattr(self._last, "unretried", False)
        self._last.unretried = False
        return unretried

    def retrying_whole(self, perform: Callable[[int], T]) -> T:
        """Run `perform(try_number)`; when it fails with a failure this session left to its caller (see
        `take_unretried`), run the whole of it again, with the tries and backoff a request gets. `perform`
        is told which try it is, so a later one first looks for what an earlier one may have written."""
        self.take_unretried()  # forget a failure of an earlier call on this thread
        tries = itertools.count(1)
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=_WaitRetryAfter(initial=self.initial_wait, maximum=self.max_wait),
            retry=retry_if_exception(lambda exc: isinstance(exc, TransientError) and self.take_unretried()
                                     and (exc.retry_after or 0.0) <= self.max_wait),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(lambda: perform(next(tries)))

    @property
    def last_status(self) -> int | None:
        """HTTP status of the last response this thread received (for the audit trail)."""
        return getattr(self._last, "status", None)

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        prompt = getattr(self._last, "prompt", False)
        if prompt:
            try:
                response = self._send_paced(request, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                self._last.unretried = True
                raise
            if response.status_code in RETRY_STATUSES:
                self._last.unretried = True
            self._last.status = response.status_code
            return response
        repeatable = request.method not in NOT_REPEATABLE
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=_WaitRetryAfter(initial=self.initial_wait, maximum=self.max_wait),
            retry=(retry_if_exception(lambda exc: isinstance(exc, (requests.ConnectionError, requests.Timeout))
                                      and (repeatable or never_sent(exc)))
                   | retry_if_result(lambda response: response.status_code in RETRY_STATUSES
                                     and (repeatable or response.status_code == 429))),
            before_sleep=self._before_sleep,
            retry_error_callback=self._give_up,
            reraise=True,
        )
        try:
            response = retrying(self._send_paced, request, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if not (repeatable or never_sent(exc)):
                self._last.unretried = True
            raise
        if not repeatable and response.status_code in RETRY_STATUSES - {429}:
            self._last.unretried = True
        self._last.status = response.status_code
        return response

    def _send_paced(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        """One attempt: wait for the connection's rate limit, send, and let a 429 slow the connection."""
        self.limiter.acquire(max_wait=PROMPT_WAIT if getattr(self._last, "prompt", False) else None)
        response = super().send(request, **kwargs)  # type: ignore[arg-type]
        if response.status_code == 429:
            self.limiter.pause(pause_after_429(response))
        return response

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        what: object = outcome.exception() if outcome and outcome.failed else outcome.result() if outcome else None
        if self.on_retry is not None:
            self.on_retry(what)
        log.debug("retrying after %s (attempt %d)", _describe(what), state.attempt_number)

    @staticmethod
    def _give_up(state: RetryCallState) -> requests.Response:
        """After the last attempt return the final response (or raise its exception) to the caller."""
        outcome = state.outcome
        assert outcome is not None
        if outcome.failed:
            raise outcome.exception()  # type: ignore[misc]
        return outcome.result()


def never_sent(exc: BaseException) -> bool:
    """Whether a failed request surely never reached the server (no connection was made), so sending it
    again cannot create or append anything twice. A reset or a read timeout after sending may come after
    the server acted; a 429 is a refusal, so it is retried in place whatever the method."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


def _describe(what: object) -> str:
    if isinstance(what, requests.Response):
        return f"HTTP {what.status_code} from {redact_url(what.url or '')}"
    return type(what).__name__


def build_session(*, attempts: int = 4, initial_wait: float = 0.2, max_wait: float = 10.0,
                  timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                  on_retry: Callable[[object], None] | None = None,
                  limiter: RateLimiter | None = None) -> RetryingSession:
    """A session with the bridge's retry policy and (when given) the connection's rate limiter;
    connectors add their own auth and headers to it."""
    return RetryingSession(attempts=attempts, initial_wait=initial_wait, max_wait=max_wait,
                           timeout=timeout, on_retry=on_retry, limiter=limiter)


def raise_for_status(response: requests.Response, *, connection: str, what: str) -> None:
    """Turn an unsuccessful response into the typed error the outbox acts on.

    The message names the connection, the operation and the status, with the server's own error text
    (never the request headers, which hold credentials).
    """
    status = response.status_code
    if status < 400:
        return
    detail = _error_detail(response)
    message = f"{connection}: {what} failed with HTTP {status}" + (f": {detail}" if detail else "")
    kwargs = {"connection": connection, "status": status}
    if status in RETRY_STATUSES:
        raise TransientError(message, retry_after=retry_after_seconds(response), **kwargs)
    if status in (401, 403):
        raise AuthError(message, **kwargs)
    if status == 404:
        raise NotFoundError(message, **kwargs)
    if status == 409:
        raise ConflictError(message, **kwargs)
    raise PermanentError(message, **kwargs)


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get(key)) for key in ("message", "detail") if error.get(key)]
        parts += [str(item) for item in error.get("errors") or []]
        return "; ".join(parts)[:500]
    if isinstance(error, str):
        return error[:500]
    return str(body)[:200]


def call(session: requests.Session, method: str, url: str, *, connection: str, what: str,
         **kwargs: object) -> requests.Response:
    """Make one request through `session`, mapping transport failures and bad statuses to typed errors."""
    try:
        response = session.request(method, url, **kwargs)  # type: ignore[arg-type]
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"{connection}: {what} failed: {type(exc).__name__} on {redact_url(url)}",
                             connection=connection) from exc
    raise_for_status(response, connection=connection, what=what)
    return response
