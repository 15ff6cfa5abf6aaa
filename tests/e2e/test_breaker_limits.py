"""Rate limits and circuit breakers against the simulators over real HTTP.

- A desk that answers only 5xx opens the ServiceNow connection's breaker: its ops wait without using up
  their attempts and nothing is dead-lettered, however long the outage; when the desk recovers, the
  next probe closes the breaker and every op lands exactly once, with nobody replaying anything.
- `itsm-bridge status` (its own runtime, as a separate process would have) shows each connection's
  queue, breaker and rate limit; `sync --once` in a new process honours the breaker the last one left.
- The limiter keeps what the desk sees within the configured rate, counted by the desk itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
from click.testing import CliRunner
from fastapi import Request, Response
from sqlmodel import Session, select

from bridge.cli import main
from bridge.daemon import Daemon
from bridge.http import build_session
from bridge.ratelimit import RateLimiter
from bridge.store import AuditEntry, DeadLetter, OutboxOp
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.simulator import ServiceNowSimulator
from tests.conftest import wait_until
from tests.e2e.conftest import PASSWORD, USER, World
from tests.test_ratelimit import FakeClock

pytestmark = pytest.mark.e2e


def set_servicenow_limits(world: World, text: str, *, pagerduty_default: bool = False) -> None:
    """Replace the last key of [connections.servicenow] (the tests' rate_limit_per_minute) with `text`;
    `pagerduty_default` drops the tests' PagerDuty rate too, leaving PagerDuty its documented default."""
    head, servicenow = world.config_path.read_text().split("[connections.servicenow]")
    assert servicenow.count("rate_limit_per_minute = 6000\n") == 1
    if pagerduty_default:
        head = head.replace("rate_limit_per_minute = 6000\n", "")
    world.config_path.write_text(head + "[connections.servicenow]" +
                                 servicenow.replace("rate_limit_per_minute = 6000\n", text))


def test_breaker_holds_ops_through_an_outage_and_delivery_resumes_by_itself(world: World) -> None:
    set_servicenow_limits(world, "rate_limit_per_minute = 6000\n"
                                 "[connections.servicenow.breaker]\nfailure_threshold = 3\nopen_seconds = 0.3\n")
    world.sn.faults.configure(server_error_rate=1.0)
    runtime = world.runtime()
    daemon = Daemon(runtime, host="127.0.0.1", port=world.port).start()
    world.pd.set_webhook_url(f"{daemon.url}/webhooks/pagerduty")
    try:
        incidents = [world.pd.trigger("Search", f"Outage {n}", user="alice") for n in range(3)]
        # Open, probe, fail, open again... three times over, while the ops wait.
        wait_until(lambda: runtime.store.count(AuditEntry, kind="breaker.open") >= 3, timeout=60,
                   message="the breaker to open and re-open after failed probes")
        assert runtime.store.count(DeadLetter) == 0
        with Session(runtime.store.engine) as session:
            waiting = session.exec(select(OutboxOp).where(OutboxOp.status == "pending")).all()
        assert len(waiting) >= 3  # the three creates, at least
        # Only attempts made while the breaker was closed count: probes of a down desk do not.
        assert max(op.attempts for op in waiting) <= 3
        assert world.sn.records() == []

        world.sn.faults.configure(server_error_rate=0.0)
        wait_until(lambda: all(len(world.tickets(incident)) == 1 for incident in incidents)
                   and runtime.store.count(OutboxOp, status="pending") == 0, timeout=60,
                   message="delivery to resume after the desk recovered")
        assert runtime.breakers.state("servicenow").state == "closed"
        assert runtime.store.count(DeadLetter) == 0
        assert all(len(world.tickets(incident)) == 1 for incident in incidents)  # exactly once
        kinds = [entry.kind for entry in _audit(runtime.store.engine) if entry.kind.startswith("breaker.")]
        assert kinds[:2] == ["breaker.open", "breaker.half-open"] and kinds[-1] == "breaker.closed"
        metrics = runtime.metrics.registry
        assert metrics.get_sample_value("itsm_bridge_breaker_state", {"connection": "servicenow"}) == 0
        assert metrics.get_sample_value("itsm_bridge_breaker_transitions_total",
                                        {"connection": "servicenow", "state": "open"}) >= 3
    finally:
        daemon.stop()
        runtime.store.dispose()


def test_status_and_a_new_sync_honour_the_breaker_another_process_left(world: World) -> None:
    set_servicenow_limits(world, "rate_limit_per_minute = 1200\n"
                                 "[connections.servicenow.breaker]\nfailure_threshold = 2\nopen_seconds = 3600\n",
                          pagerduty_default=True)
    world.pd.trigger("Identity", "Desk down", user="alice")
    world.sn.faults.configure(server_error_rate=1.0)
    config = ["--config", str(world.config_path)]
    first = CliRunner().invoke(main, ["sync", "--once", *config, "--json"])
    assert first.exit_code == 1, first.output
    calls_before = sum(world.sn.faults.injected.values())

    second = CliRunner().invoke(main, ["sync", "--once", *config, "--json"])
    report = json.loads(second.output)
    assert second.exit_code == 1 and report["outbox_pending"] == 1 and report["dead_letters"] == 0
    assert any("poll of servicenow skipped: circuit breaker open" in error for error in report["poll_errors"])
    assert sum(world.sn.faults.injected.values()) == calls_before  # the resting desk was not called at all

    status = CliRunner().invoke(main, ["status", *config, "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    assert data["outbox_pending"] == 1 and data["dead_letters"] == 0 and data["retrying"]  # the old keys
    desk, source = data["connections"]["servicenow"], data["connections"]["pagerduty"]
    assert desk["breaker"]["state"] == "open" and desk["breaker"]["failures"] == 2
    assert desk["breaker"]["reopens_at"] and "HTTP 5" in desk["breaker"]["last_error"]
    assert desk["outbox_pending"] == 1 and desk["oldest_pending_age_seconds"] >= 0 and desk["dead_letters"] == 0
    assert desk["rate_limit_per_minute"] == 1200 and desk["rate_limit_burst"] == 60
    assert source["breaker"]["state"] == "closed" and source["rate_limit_per_minute"] == 960
    assert source["outbox_pending"] == 0

    table = CliRunner().invoke(main, ["status", *config])
    assert "circuit breaker of servicenow is open" in table.output
    assert "connections" in table.output and "1200" in table.output


def _audit(engine: object) -> list[AuditEntry]:
    with Session(engine) as session:  # type: ignore[arg-type]
        return list(session.exec(select(AuditEntry).order_by(AuditEntry.seq)).all())


def _desk_counting(clock: Callable[[], float]) -> tuple[ServiceNowSimulator, list[float]]:
    """A simulated desk that notes the time (on `clock`) at which each API request reaches it."""
    desk = ServiceNowSimulator(users={USER: PASSWORD})
    seen: list[float] = []

    @desk.app.middleware("http")
    async def note(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.startswith("/api/now/"):
            seen.append(clock())
        return await call_next(request)

    return desk.start(), seen


def test_the_desk_never_sees_more_than_burst_plus_rate() -> None:
    clock = FakeClock()  # moves only when the limiter sleeps: exact counts, no real waiting
    desk, seen = _desk_counting(clock)
    try:
        session = build_session(limiter=RateLimiter(6000, 5, clock=clock, sleep=clock.sleep))
        connector = ServiceNowConnector("servicenow", {"instance_url": desk.url, "username": USER,
                                                       "password": PASSWORD}, session=session)
        start = clock()
        for number in range(60):
            connector.find(f"pagerduty:P{number}")
    finally:
        desk.stop()
    assert len(seen) == 60
    for count, at in enumerate(seen, start=1):  # by any moment, at most the burst plus the rate since
        assert count <= 5 + 100 * (at - start) + 1e-6
    assert seen[-1] - start == pytest.approx((60 - 5) / 100)  # and no slower than that


def test_threads_sharing_a_connection_share_its_limit() -> None:
    desk, seen = _desk_counting(time.monotonic)
    started = time.monotonic()  # the bucket starts full no earlier than this
    session = build_session(limiter=RateLimiter(600, 2))  # ten a second: 12 requests need a second
    session.auth = (USER, PASSWORD)

    def worker() -> None:
        for _ in range(4):
            session.get(f"{desk.url}/api/now/table/incident", params={"sysparm_limit": "1"}, timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        desk.stop()
    assert len(seen) == 12
    # A request reaches the desk no earlier than its slot, so by any arrival the desk has seen at most
    # the burst plus the rate times the time since the bucket started (one bucket per thread would not
    # hold, nor would no pacing: twelve loopback requests take far less than a second).
    for count, at in enumerate(sorted(seen), start=1):
        assert count <= 2 + 10 * (at - started) + 1
