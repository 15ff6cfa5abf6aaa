"""The circuit breaker: the pure state machine on an injected clock, and the per-process board that
persists it, audits and exports every transition, and survives a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlmodel import Session, select

from bridge.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState, CircuitBreaker
from bridge.breakers import Breakers, is_transient_failure
from bridge.config_limits import BreakerConfig
from bridge.errors import AuthError, NotFoundError, PermanentError, TransientError
from bridge.metrics import Metrics
from bridge.ratelimit import RateLimited
from bridge.store import AuditEntry, BreakerRow, Store

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_opens_after_the_threshold_of_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=60)
    assert breaker.failure(T0, "HTTP 503") is None
    assert breaker.failure(T0, "HTTP 503") is None
    assert breaker.success(T0) is None and breaker.state.failures == 0  # not consecutive any more
    assert breaker.failure(T0, "HTTP 503") is None and breaker.failure(T0, "HTTP 502") is None
    moved = breaker.failure(T0, "reset")
    assert moved is not None and (moved.previous, moved.current) == (CLOSED, OPEN)
    assert moved.state.reopens_at == T0 + timedelta(seconds=60) and moved.state.last_error == "reset"
    assert breaker.allow(T0 + timedelta(seconds=59.9)) == (None, None)
    assert breaker.held_for(T0 + timedelta(seconds=50)) == pytest.approx(10.0)


def test_after_the_rest_exactly_one_probe_goes_and_its_success_closes() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=30)
    breaker.failure(T0, "HTTP 500")
    later = T0 + timedelta(seconds=30)
    permit, moved = breaker.allow(later)
    assert permit is not None and permit.probe and moved is not None and moved.current == HALF_OPEN
    assert breaker.allow(later) == (None, None)  # the probe is in flight: nobody else
    moved = breaker.success(later)
    assert moved is not None and (moved.previous, moved.current) == (HALF_OPEN, CLOSED)
    assert breaker.state == BreakerState()
    permit, moved = breaker.allow(later)
    assert permit is not None and not permit.probe and moved is None


def test_a_failed_probe_reopens_for_another_full_rest() -> None:
    breaker = CircuitBreaker(failure_threshold=2, open_seconds=10)
    breaker.failure(T0, "x")
    breaker.failure(T0, "x")
    probe_time = T0 + timedelta(seconds=10)
    breaker.allow(probe_time)
    moved = breaker.failure(probe_time, "still down")
    assert moved is not None and (moved.previous, moved.current) == (HALF_OPEN, OPEN)
    assert breaker.state.reopens_at == probe_time + timedelta(seconds=10) and breaker.state.failures == 3
    assert breaker.allow(probe_time + timedelta(seconds=9)) == (None, None)


def test_a_probe_never_reported_is_replaced_and_a_released_one_at_once() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=10)
    breaker.failure(T0, "x")
    breaker.allow(T0 + timedelta(seconds=10))
    assert breaker.allow(T0 + timedelta(seconds=15))[0] is None
    permit, moved = breaker.allow(T0 + timedelta(seconds=20))  # the first probe's caller vanished
    assert permit is not None and permit.probe and moved is None  # still half-open: no new transition
    breaker.release()
    assert breaker.allow(T0 + timedelta(seconds=20))[0] is not None


def test_a_late_success_does_not_close_an_open_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=10)
    breaker.failure(T0, "x")
    assert breaker.success(T0 + timedelta(seconds=1)) is None and breaker.state.state == OPEN


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0, open_seconds=1)


@pytest.mark.parametrize(("error", "transient"), [
    (TransientError("HTTP 503", status=503), True), (TransientError("HTTP 429", status=429), True),
    (requests.ConnectionError("reset"), True), (requests.Timeout(), True),
    (RateLimited("paced"), False), (PermanentError("HTTP 400"), False), (AuthError("HTTP 401"), False),
    (ValueError("a bug"), False)])
def test_what_counts_as_a_transient_failure(error: BaseException, transient: bool) -> None:
    assert is_transient_failure(error) is transient


def board(store: Store, clock: Clock, metrics: Metrics | None = None) -> Breakers:
    return Breakers(store, configs={"servicenow": BreakerConfig(failure_threshold=2, open_seconds=60)},
                    metrics=metrics or Metrics(), clock=clock)


def test_board_persists_audits_and_exports_every_transition(store: Store) -> None:
    clock, metrics = Clock(), Metrics()
    breakers = board(store, clock, metrics)
    breakers.record("servicenow", TransientError("servicenow: list failed with HTTP 503", status=503))
    with Session(store.engine) as session:
        row = session.get(BreakerRow, "servicenow")
        assert row is not None and (row.state, row.failures) == ("closed", 1)
    breakers.record("servicenow", TransientError("servicenow: list failed with HTTP 502", status=502))
    assert breakers.allow("servicenow") is None
    assert metrics.registry.get_sample_value("itsm_bridge_breaker_state", {"connection": "servicenow"}) == 2
    clock.advance(60)
    permit = breakers.allow("servicenow")
    assert permit is not None and permit.probe
    assert metrics.registry.get_sample_value("itsm_bridge_breaker_state", {"connection": "servicenow"}) == 1
    breakers.record("servicenow", NotFoundError("HTTP 404"))  # an answer: the desk is back
    assert metrics.registry.get_sample_value("itsm_bridge_breaker_state", {"connection": "servicenow"}) == 0
    with Session(store.engine) as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.kind.startswith("breaker."))  # type: ignore[attr-defined]
                               .order_by(AuditEntry.seq)).all()
        row = session.get(BreakerRow, "servicenow")
    assert [entry.kind for entry in entries] == ["breaker.open", "breaker.half-open", "breaker.closed"]
    assert "HTTP 502" in entries[0].data and entries[0].subject == "servicenow"
    assert row is not None and (row.state, row.failures, row.reopens_at) == ("closed", 0, None)


def test_bugs_and_pacing_are_no_verdict_and_release_the_probe(store: Store) -> None:
    clock = Clock()
    breakers = board(store, clock)
    for _ in range(2):
        breakers.record("servicenow", TransientError("HTTP 500", status=500))
    clock.advance(60)
    assert breakers.allow("servicenow") is not None
    breakers.record("servicenow", ValueError("a bug in a mapping"))
    assert breakers.state("servicenow").state == HALF_OPEN
    assert breakers.allow("servicenow") is not None  # the probe was given back
    breakers.record("servicenow", RateLimited("paced"))
    assert breakers.state("servicenow").state == HALF_OPEN


def test_an_open_breaker_survives_a_restart(store: Store) -> None:
    clock = Clock()
    first = board(store, clock)
    for _ in range(2):
        first.record("servicenow", TransientError("HTTP 503", status=503))
    clock.advance(30)
    second = board(store, clock)  # a new process reads what the first wrote
    assert second.allow("servicenow") is None and second.held_for("servicenow") == pytest.approx(30.0)
    clock.advance(30)
    assert second.allow("servicenow") is not None
