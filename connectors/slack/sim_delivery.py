"""How the Slack simulator calls the app's Request URL: signed, events asynchronously with Slack's retries,
slash commands and interactions synchronously (the user waits for the answer).

Slack's Events API behaviour reproduced (api.slack.com/apis/events-api#retries): an event not answered
2xx within 3 seconds (``http_timeout``), answered non-2xx (``http_error``) or unreachable
(``connection_failed``) is sent again up to 3 times, each retry carrying ``X-Slack-Retry-Num: <n>`` and
``X-Slack-Retry-Reason``; an answer with ``X-Slack-No-Retry: 1`` stops the retries. Slack waits about
nothing, one minute and five minutes; `retry_delays` scales that down for tests. Events are independent
(no ordering between them), as with Slack. Every request is signed ``v0`` with the signing secret.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from connectors.slack.webhooks import sign

log = logging.getLogger(__name__)

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
MAX_RETRIES = 3


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    event_id: str = field(compare=False)
    body: bytes = field(compare=False)
    retry: int = field(compare=False, default=0)
    reason: str = field(compare=False, default="")


@dataclass
class Attempt:
    """One POST of an event, for tests: which retry it was, and what came back."""

    event_id: str
    retry: int
    reason: str
    outcome: str


class SlackSender:
    """Signs requests to the Request URL; delivers events from a background thread."""

    def __init__(self, *, secret: Callable[[], str], clock: Callable[[], float] = time.time,
                 retry_delays: tuple[float, ...] = (0.0, 1.0, 5.0), timeout: float = 3.0) -> None:
        self.secret, self.clock, self.timeout = secret, clock, timeout
        self.retry_delays = retry_delays
        self.url: str | None = None
        self.stats = {"queued": 0, "delivered": 0, "retried": 0, "dropped": 0}
        self.attempts: list[Attempt] = []
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._busy = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    # -- signing and synchronous calls ----------------------------------------------------------------
    def headers(self, body: bytes, content_type: str) -> dict[str, str]:
        stamp = str(int(self.clock()))
        return {"Content-Type": content_type, "User-Agent": USER_AGENT, "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": sign(self.secret(), stamp, body)}

    def post_now(self, body: bytes, content_type: str) -> requests.Response:
        """One signed POST to the Request URL, waiting for the answer (slash commands, interactions)."""
        if not self.url:
            raise RuntimeError("no Request URL set (set_request_url first)")
        return self._http.post(self.url, data=body, headers=self.headers(body, content_type), timeout=self.timeout)

    # -- events ---------------------------------------------------------------------------------------
    def enqueue(self, envelope: dict[str, Any]) -> None:
        """Queue one event_callback; ignored while no Request URL is set (no subscription, no events)."""
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            heapq.heappush(self._heap, _Pending(time.monotonic(), next(self._seq), envelope["event_id"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def set_url(self, url: str | None) -> None:
        with self._cond:
            self.url = url
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued event was delivered or dropped; False if `timeout` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._busy, timeout=timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="slack-sim-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._http.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    wait = self._heap[0].due - time.monotonic() if self._heap and self.url else None
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(timeout=wait)
                if self._stopping:
                    return
                pending, url = heapq.heappop(self._heap), self.url
                self._busy += 1
            outcome, stop = self._attempt(pending, url)  # type: ignore[arg-type]
            with self._cond:
                self._busy -= 1
                self.attempts.append(Attempt(pending.event_id, pending.retry, pending.reason, outcome))
                if outcome == "ok":
                    self.stats["delivered"] += 1
                elif stop or pending.retry >= MAX_RETRIES:
                    self.stats["dropped"] += 1
                    log.warning("simulator dropped Slack event %s after %d retries: %s", pending.event_id,
                                pending.retry, outcome)
                else:
                    self.stats["retried"] += 1
                    delay = self.retry_delays[min(pending.retry, len(self.retry_delays) - 1)]
                    heapq.heappush(self._heap, _Pending(time.monotonic() + delay, next(self._seq), pending.event_id,
                                                        pending.body, pending.retry + 1, outcome))
                self._cond.notify_all()

    def _attempt(self, pending: _Pending, url: str) -> tuple[str, bool]:
        """POST once: ("ok", _) on 2xx, else (the retry reason, whether the app asked for no retry)."""
        headers = self.headers(pending.body, "application/json")
        if pending.retry:
            headers.update({"X-Slack-Retry-Num": str(pending.retry), "X-Slack-Retry-Reason": pending.reason})
        try:
            response = self._http.post(url, data=pending.body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            return "http_timeout", False
        except requests.RequestException:
            return "connection_failed", False
        if 200 <= response.status_code < 300:
            return "ok", False
        return "http_error", response.headers.get("X-Slack-No-Retry") == "1"
