"""The simulator's webhook v3 sender: signed, one event per POST, in order, retried like PagerDuty.

PagerDuty retries on timeout, connection failure, 5xx and 429, and drops an event on any other 4xx.
Deliveries here are strictly sequential (a failing event holds back the ones behind it), which is the
per-incident ordering PagerDuty promises, made global. ``X-Webhook-Id`` stays the same across retries.

Tests and the demo synchronise on `wait_idle`, which waits on a condition variable signalled whenever
an event is delivered or dropped; nothing here sleeps in a polling loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from connectors.pagerduty.webhooks import signature_header

log = logging.getLogger(__name__)

USER_AGENT = "PagerDuty-Webhook/V3.0"


@dataclass
class Delivery:
    webhook_id: str
    event_type: str
    body: bytes


class WebhookSender:
    """A background thread POSTing queued events to `url`, signed with every secret in `secrets()`.

    `backoff` doubles per failed attempt up to `max_backoff`; `max_attempts` None means retry until the
    sender stops (PagerDuty keeps trying for 48 hours). `stats` counts delivered, retried, dropped.
    """

    def __init__(self, *, secrets: Callable[[], list[str]], subscription_id: str,
                 new_id: Callable[[], str], url: str | None = None, backoff: float = 0.2,
                 max_backoff: float = 2.0, max_attempts: int | None = None, timeout: float = 5.0) -> None:
        self.url = url
        self.secrets = secrets
        self.subscription_id = subscription_id
        self.new_id = new_id
        self.backoff, self.max_backoff, self.max_attempts, self.timeout = backoff, max_backoff, max_attempts, timeout
        self.stats = {"queued": 0, "delivered": 0, "retried": 0, "dropped": 0}
        self.dropped: list[tuple[str, str]] = []  # (webhook id, reason)
        self._queue: deque[Delivery] = deque()
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    # -- producer side --------------------------------------------------------------------------------
    def enqueue(self, envelope: dict[str, Any]) -> None:
        """Queue one event for delivery; ignored while no URL is set (no subscription, no webhooks)."""
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            self._queue.append(Delivery(self.new_id(), envelope["event"]["event_type"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def set_url(self, url: str | None) -> None:
        with self._cond:
            self.url = url
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued event was delivered or dropped; False if `timeout` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pagerduty-sim-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._http.close()

    # -- the delivery loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self._queue and self.url))
                if self._stopping:
                    return
                delivery, url = self._queue[0], self.url
                self._busy = True
            outcome = self._deliver(delivery, url)  # type: ignore[arg-type]
            with self._cond:
                self._queue.popleft()
                self._busy = False
                if outcome is None:
                    self.stats["delivered"] += 1
                else:
                    self.stats["dropped"] += 1
                    self.dropped.append((delivery.webhook_id, outcome))
                    log.warning("simulator dropped webhook %s (%s): %s", delivery.webhook_id,
                                delivery.event_type, outcome)
                self._cond.notify_all()

    def _deliver(self, delivery: Delivery, url: str) -> str | None:
        """POST until accepted (None) or dropped (the reason). Waits between attempts on the condition,
        so `stop` interrupts a backoff at once."""
        wait, attempt = self.backoff, 0
        while True:
            attempt += 1
            reason = self._attempt(delivery, url)
            if reason is None:
                return None
            if not reason.startswith("retry:"):
                return reason
            if self.max_attempts is not None and attempt >= self.max_attempts:
                return f"gave up after {attempt} attempts ({reason[6:]})"
            with self._cond:
                self.stats["retried"] += 1
                if self._cond.wait_for(lambda: self._stopping, timeout=wait):
                    return "simulator stopped"
                url = self.url or url
            wait = min(wait * 2, self.max_backoff)

    def _attempt(self, delivery: Delivery, url: str) -> str | None:
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "X-PagerDuty-Signature": signature_header(self.secrets(), delivery.body),
            "X-Webhook-Id": delivery.webhook_id, "X-Webhook-Subscription": self.subscription_id,
        }
        try:
            response = self._http.post(url, data=delivery.body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"retry:{type(exc).__name__}"
        status = response.status_code
        if 200 <= status < 300:
            return None
        if status == 429 or status >= 500:
            return f"retry:HTTP {status}"
        return f"HTTP {status}"
