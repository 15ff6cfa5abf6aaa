"""The running bridge: webhook server, scheduled polls and the delivery worker, and `sync --once`.

Threads: uvicorn serves webhooks and health; the scheduler polls each connection (on PostgreSQL, only
in the replica that holds poll leadership, see bridge/leader.py); one worker processes
the inbox and delivers the outbox, woken at once by new webhooks. SIGTERM stops intake first, then lets
the worker finish the op in hand; everything not finished is already durable and resumes on restart.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field

from bridge.breakers import may_call, rest_reason
from bridge.deadline_clock import run_deadline_clock
from bridge.engine import process_inbox
from bridge.ingest import poll_connection
from bridge.leader import Leadership
from bridge.outbox import deliver_due, next_due_in
from bridge.runtime import Runtime
from bridge.scheduler import PollScheduler
from bridge.server import create_app
from bridge.status import queue_depths
from connectors.simulator import ServerThread

log = logging.getLogger(__name__)


def poll_intervals(runtime: Runtime) -> dict[str, float]:
    """Connections that take part in a route and can be polled, with their interval in seconds."""
    used = {route.source for route in runtime.routes} | {route.target for route in runtime.routes}
    return {name: float(getattr(runtime.config.connections[name], "poll_interval", 60.0))
            for name in runtime.connectors if name in used}


def safe_poll(runtime: Runtime, connection: str) -> str | None:
    """Poll once; a failure is logged and returned as text, never raised (one bad desk stops nothing).

    A connection whose circuit breaker is open is not polled at all (the text says why and until when);
    the outcome of a poll that does run is told to the breaker.
    """
    permit = may_call(runtime, connection)
    if permit is None:
        log.debug("poll of %s skipped: the connection rests", connection)
        return f"poll of {connection} skipped: {rest_reason(runtime, connection)}"
    try:
        poll_connection(runtime, connection)
    except Exception as exc:
        runtime.breakers.record(connection, exc)
        runtime.metrics.ops_failed.labels(connection, "poll", type(exc).__name__).inc()
        log.warning("poll of %s failed: %s", connection, exc)
        return f"poll of {connection} failed: {exc}"
    runtime.breakers.record(connection, None)
    return None


def work_until_idle(runtime: Runtime, *, max_rounds: int = 1000) -> None:
    """Process the inbox and deliver due ops until neither makes progress."""
    for _ in range(max_rounds):
        processed = process_inbox(runtime)
        stats = deliver_due(runtime)
        if not processed and not stats.delivered and not stats.dead and not stats.retried:
            return


@dataclass
class CycleReport:
    """What `sync --once` did and what is left; `ok` decides the exit code."""

    poll_errors: list[str] = field(default_factory=list)
    inbox_pending: int = 0
    outbox_pending: int = 0
    dead_letters: int = 0

    @property
    def ok(self) -> bool:
        return not (self.poll_errors or self.outbox_pending or self.dead_letters or self.inbox_pending)


def sync_once(runtime: Runtime) -> CycleReport:
    """One poll of every connection, then process and deliver until idle."""
    report = CycleReport()
    for name in poll_intervals(runtime):
        error = safe_poll(runtime, name)
        if error:
            report.poll_errors.append(error)
    work_until_idle(runtime)
    if run_deadline_clock(runtime):
        work_until_idle(runtime)
    depths = queue_depths(runtime.store)
    report.inbox_pending = depths["inbox_pending"]
    report.outbox_pending = depths["outbox_pending"]
    report.dead_letters = depths["dead_letters"]
    return report


class Daemon:
    """Owns the threads of a running bridge. `start()`/`stop()` for embedding, `run()` for the CLI."""

    def __init__(self, runtime: Runtime, *, host: str, port: int, poll: bool = True) -> None:
        self.runtime = runtime
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._server = ServerThread(create_app(runtime, on_ingest=self._wake.set), host=host, port=port)
        self._worker = threading.Thread(target=self._work, name="worker", daemon=True)
        self._scheduler = PollScheduler() if poll else None
        # On PostgreSQL several replicas may run; only the leader polls and runs the deadline clock.
        self._leadership = Leadership(runtime.store.engine, is_sqlite=runtime.store.is_sqlite)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Daemon:
        self._worker.start()
        if self._scheduler is not None:
            for name, seconds in poll_intervals(self.runtime).items():
                self._scheduler.every(seconds, lambda name=name: self._poll(name), name=f"poll:{name}")
            self._scheduler.every(self.runtime.compliance.clock_interval_seconds, self._deadline_clock,
                                  name="compliance:deadline-clock")
            self._scheduler.start()
        self._server.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop intake (server, polls), then let the worker finish what it holds."""
        self._server.stop()
        if self._scheduler is not None:
            self._scheduler.stop()
        self._stopping.set()
        self._wake.set()
        self._worker.join(timeout=60)
        self._leadership.release()

    def run(self) -> None:
        """Start and block until SIGTERM or SIGINT, then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        log.info("itsm-bridge listening on %s", self.url)
        done.wait()
        log.info("stopping: finishing work in hand")
        self.stop()

    def _poll(self, name: str) -> None:
        if not self._leadership.is_leader():
            return  # another replica polls; this one still takes webhooks and delivers
        if safe_poll(self.runtime, name) is None:
            self._wake.set()

    def _deadline_clock(self) -> None:
        if not self._leadership.is_leader():
            return
        try:
            if run_deadline_clock(self.runtime):
                self._wake.set()
        except Exception:  # never let the clock take the daemon down
            log.exception("deadline clock failed")

    def _work(self) -> None:
        with self.runtime.store.background():  # everything the worker records can be derived again
            self._work_until_stopped()

    def _work_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                processed = process_inbox(self.runtime, stopping=self._stopping.is_set)
                stats = deliver_due(self.runtime, stopping=self._stopping.is_set)
                if processed or stats.delivered:
                    continue
                due = next_due_in(self.runtime)
                timeout = 1.0 if due is None else min(max(due, 0.05), 1.0)
            except Exception:  # the store is briefly unreachable: keep going, never die
                log.exception("worker cycle failed; retrying in 1s")
                timeout = 1.0
            self._wake.wait(timeout)
            self._wake.clear()
