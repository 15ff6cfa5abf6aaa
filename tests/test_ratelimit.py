"""The per-connection rate limit: token bucket arithmetic on an injected clock, the limiter's bounded
waits, and the transport pacing every attempt and resting the whole connection after a 429."""

from __future__ import annotations

import pytest
import requests
import responses

from bridge.config_limits import (
    DEFAULT_RATE_PER_MINUTE,
    FALLBACK_RATE_PER_MINUTE,
    limits_of,
)
from bridge.http import build_session, call, pause_after_429
from bridge.ratelimit import (
    RateLimited,
    RateLimiter,
    TokenBucket,
    note_rate_limited,
    throttle,
)

URL = "https://desk.example.com/api/now/table/incident"


class FakeClock:
    """Monotonic seconds that move only when someone sleeps (so waits cost no real time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of events falling in any window of `window` seconds (starting at an event)."""
    return max(sum(1 for t in times if start <= t < start + window + 1e-9) for start in times)


def test_burst_goes_at_once_then_one_token_per_interval() -> None:
    bucket = TokenBucket(60, 3, now=0.0)  # one a second, three saved up
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(1.0)  # successive slots for callers arriving together
    assert bucket.reserve(0.0) == pytest.approx(2.0)


def test_idle_time_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket(60, 3, now=0.0)
    for _ in range(3):
        bucket.reserve(0.0)
    assert bucket.wait_for(3600.0) == 0.0
    assert [bucket.reserve(3600.0) for _ in range(4)][-1] == pytest.approx(1.0)  # 3 saved, not 3600


def test_pause_holds_everything_then_refills_from_empty() -> None:
    bucket = TokenBucket(600, 5, now=0.0)  # ten a second
    bucket.pause(7.0, 0.0)
    assert bucket.wait_for(0.0) == pytest.approx(7.1)
    assert bucket.wait_for(6.0) == pytest.approx(1.1)
    assert bucket.reserve(7.1) == pytest.approx(0.0)
    assert bucket.reserve(7.1) == pytest.approx(0.1)  # the burst was spent by the pause, not restored


def test_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate_per_minute"):
        TokenBucket(0, 1, now=0.0)


def test_limiter_keeps_any_window_at_or_below_burst_plus_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, 5, clock=clock, sleep=clock.sleep)  # 100 a second, burst 5
    sent = []
    for _ in range(200):
        limiter.acquire()
        sent.append(clock())
    for window in (0.01, 0.1, 0.5, 1.0):
        assert most_in_any_window(sent, window) <= 5 + 100 * window
    # ...and it is not slower than it must be: 195 requests beyond the burst need 1.95 s, no more.
    assert clock() - 1000.0 == pytest.approx((200 - 5) / 100)


def test_a_wait_longer_than_max_wait_is_raised_not_slept_and_the_token_given_back() -> None:
    clock = FakeClock()
    waits: list[float] = []
    limiter = RateLimiter(60, 1, connection="servicenow", max_wait=2.0, clock=clock, sleep=clock.sleep,
                          on_wait=waits.append)
    limiter.acquire()
    limiter.pause(30.0)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire()
    assert caught.value.retry_after == pytest.approx(31.0)
    assert "servicenow" in str(caught.value) and clock.slept == []
    assert limiter.backlog() == pytest.approx(31.0)  # the refused caller did not take a slot
    clock.now += 30.0
    assert limiter.acquire() == pytest.approx(1.0) and waits == [pytest.approx(1.0)]


def test_unlimited_limiter_never_waits() -> None:
    limiter = RateLimiter(None)
    assert [limiter.acquire() for _ in range(1000)] == [0.0] * 1000
    assert limiter.backlog() == 0.0 and limiter.rate_per_minute is None


@responses.activate
def test_transport_paces_every_attempt_and_a_429_rests_the_whole_connection() -> None:
    responses.add(responses.GET, URL, status=429, headers={"Retry-After": "7"}, json={"error": {"message": "slow"}})
    responses.add(responses.GET, URL, status=200, json={"result": []})
    responses.add(responses.GET, URL + "/other", status=200, json={"result": []})
    clock = FakeClock()
    limiter = RateLimiter(600, 10, clock=clock, sleep=clock.sleep)
    session = build_session(initial_wait=0.001, max_wait=0.001, limiter=limiter)  # tenacity's own wait ~0
    assert session.limiter is limiter
    call(session, "GET", URL, connection="servicenow", what="list incidents")
    # The retry after the 429 waited out Retry-After on the limiter (tenacity is capped at 1 ms here).
    assert sum(clock.slept) == pytest.approx(7.1, abs=0.01)
    clock.slept.clear()
    call(session, "GET", URL + "/other", connection="servicenow", what="list other")
    assert sum(clock.slept) == pytest.approx(0.1, abs=0.01)  # the bucket refills from empty after a pause


def test_pause_after_429_reads_retry_after_then_a_delta_reset_then_a_default() -> None:
    response = requests.Response()
    response.status_code = 429
    assert pause_after_429(response) == 1.0
    response.headers["ratelimit-reset"] = "12"
    assert pause_after_429(response) == 12.0
    response.headers["RateLimit-Reset"] = "1767225600"  # an epoch time, not a delta
    assert pause_after_429(response) == 1.0
    response.headers["Retry-After"] = "3"
    assert pause_after_429(response) == 3.0


def test_sdk_connectors_use_the_same_limiter_through_the_helpers() -> None:
    clock = FakeClock()
    session = build_session(limiter=RateLimiter(60, 1, clock=clock, sleep=clock.sleep))
    throttle(session)
    note_rate_limited(session, 5.0)
    throttle(session)
    assert clock.slept == [pytest.approx(6.0)]
    assert throttle(requests.Session()) == 0.0  # a plain session has no limiter: nothing to wait for


def test_every_connection_type_has_a_documented_default() -> None:
    assert DEFAULT_RATE_PER_MINUTE["pagerduty"] == 960 and DEFAULT_RATE_PER_MINUTE["incidentio"] == 1200
    assert DEFAULT_RATE_PER_MINUTE["rootly"] == 3000

    class ThirdParty:
        type = "acme"

    rate, burst, breaker = limits_of(ThirdParty())
    assert rate == FALLBACK_RATE_PER_MINUTE and burst == 15 and breaker.failure_threshold == 5
