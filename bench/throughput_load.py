"""The load of bench/throughput.py: incident lifecycles as signed PagerDuty v3 webhooks, and "the limit".

Lifecycles are played on the PagerDuty simulator's control API (trigger, acknowledge, note, priority,
resolve), so every body is the simulator's own v3 envelope, shaped like tests/fixtures/pagerduty/
webhook_*.json, and the simulator's state is the state the events describe (a catch-up poll afterwards
finds nothing new). The envelopes are caught instead of delivered, signed with the connection's secret and
sent by a few concurrent senders; all events of one incident go through one sender, in order, as
PagerDuty delivers them. Incidents are played in waves, so lifecycles overlap as on a busy day.

The limit is the same desk writes the bridge made (its creates and PATCHes, same bodies, same order)
sent by a bare `requests` loop with one worker, the bridge's delivery concurrency.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from connectors.pagerduty.simulator import PagerDutySimulator
from connectors.pagerduty.webhooks import signature_header

#: Incidents whose lifecycles are interleaved: the triggers of a wave, then its acknowledgements, ...
WAVE = 50
KINDS = ("incident.triggered", "incident.acknowledged", "incident.annotated", "incident.priority_updated",
         "incident.resolved")
SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
RESPONDERS = ("alice", "bob", "carol", "dave")
NOTES = ("Rolled back the last deploy; error rate recovering.", "Failover to the secondary region started.",
         "Customer impact confirmed by support; status page updated.", "Root cause: connection pool exhausted.")


@dataclass
class Event:
    incident: int
    webhook_id: str
    kind: str
    body: bytes


@dataclass
class SendResult:
    """Per event, in send order per sender: (webhook id, start perf_counter, latency seconds, status)."""

    rows: list[tuple[str, float, float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def play_lifecycles(sim: PagerDutySimulator, incidents: int, *, seed: int = 11) -> list[Event]:
    """Play `incidents` lifecycles on the simulator and return their five v3 events each, in wave order."""
    rng = random.Random(seed)
    caught: list[dict[str, Any]] = []
    account = sim.account
    emit, account.emit = account.emit, caught.append  # type: ignore[method-assign]
    events: list[Event] = []
    try:
        for start in range(0, incidents, WAVE):
            wave = range(start, min(start + WAVE, incidents))
            ids: dict[int, str] = {}
            for number in wave:
                ids[number] = sim.trigger(SERVICES[number % len(SERVICES)], f"Error rate above 5% on {number}",
                                          urgency="high" if rng.random() < 0.6 else "low",
                                          user=RESPONDERS[number % len(RESPONDERS)])
            events += _drain(caught, wave)
            for step in range(1, len(KINDS)):
                for number in wave:
                    _step(sim, step, ids[number], RESPONDERS[number % len(RESPONDERS)], rng)
                events += _drain(caught, wave)
    finally:
        account.emit = emit  # type: ignore[method-assign]
    return events


def _step(sim: PagerDutySimulator, step: int, incident: str, user: str, rng: random.Random) -> None:
    """Lifecycle step 1..4 of one incident: acknowledge, note, set a priority, resolve."""
    if step == 1:
        sim.acknowledge(incident, user)
    elif step == 2:
        sim.add_note(incident, rng.choice(NOTES), user)
    elif step == 3:
        sim.set_priority(incident, rng.choice(("P1", "P2", "P3")), user)
    else:
        sim.resolve(incident, user)


def _drain(caught: list[dict[str, Any]], wave: range) -> list[Event]:
    if len(caught) != len(wave):
        raise RuntimeError(f"expected one event per incident of the wave, got {len(caught)} for {len(wave)}")
    out = [Event(number, str(uuid.uuid4()), envelope["event"]["event_type"],
                 json.dumps(envelope, separators=(",", ":")).encode("utf-8"))
           for number, envelope in zip(wave, caught, strict=True)]
    caught.clear()
    return out


def send_all(events: list[Event], *, url: str, secret: str, senders: int) -> SendResult:
    """POST every event, `senders` threads each with its own session; incident n goes through n % senders."""
    result = SendResult()
    lock = threading.Lock()
    lanes: list[list[Event]] = [[] for _ in range(senders)]
    for event in events:
        lanes[event.incident % senders].append(event)

    def run(lane: list[Event]) -> None:
        rows, errors = [], []
        with requests.Session() as http:
            for event in lane:
                headers = {"Content-Type": "application/json", "User-Agent": "PagerDuty-Webhook/V3.0",
                           "X-PagerDuty-Signature": signature_header([secret], event.body),
                           "X-Webhook-Id": event.webhook_id, "X-Webhook-Subscription": "PSUBBENCH"}
                started = time.perf_counter()
                try:
                    status = http.post(url, data=event.body, headers=headers, timeout=60).status_code
                except requests.RequestException as exc:
                    errors.append(f"{event.webhook_id}: {type(exc).__name__}")
                    continue
                rows.append((event.webhook_id, started, time.perf_counter() - started, status))
                if not 200 <= status < 300:
                    errors.append(f"{event.webhook_id}: HTTP {status}")
        with lock:
            result.rows.extend(rows)
            result.errors.extend(errors)

    threads = [threading.Thread(target=run, args=(lane,), name=f"sender-{n}") for n, lane in enumerate(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def replay_limit(base_url: str, auth: tuple[str, str], writes: list[tuple[float, str, str, bytes]],
                 tickets: dict[str, str]) -> float:
    """Send the bridge's desk writes again with one bare session; seconds taken.

    `tickets` maps correlation id -> sys_id of the bridge's tickets: each replayed create answers a new
    sys_id, and the later PATCHes of the bridge's ticket go to the replayed one.
    """
    renamed: dict[str, str] = {}
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    started = time.perf_counter()
    with requests.Session() as http:
        http.auth = auth
        for _at, method, path, body in writes:
            if method == "POST":
                answer = http.post(base_url + path, data=body, headers=headers, timeout=60)
                answer.raise_for_status()
                renamed[tickets[json.loads(body)["correlation_id"]]] = answer.json()["result"]["sys_id"]
                continue
            head, _, query = path.partition("?")
            prefix, _, sys_id = head.rpartition("/")
            answer = http.patch(f"{base_url}{prefix}/{renamed.get(sys_id, sys_id)}" + (f"?{query}" if query else ""),
                                data=body, headers=headers, timeout=60)
            answer.raise_for_status()
    return time.perf_counter() - started
