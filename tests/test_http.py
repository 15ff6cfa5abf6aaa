"""The transport: retries 429/5xx honouring Retry-After, then hands back typed errors."""

from __future__ import annotations

import pytest
import requests
import responses

from bridge.errors import AuthError, NotFoundError, PermanentError, TransientError
from bridge.http import build_session, call, redact_url, retry_after_seconds

URL = "https://desk.example.com/api/now/table/incident"


@responses.activate
def test_retries_429_then_succeeds_and_counts_retries() -> None:
    responses.add(responses.GET, URL, status=429, headers={"Retry-After": "0"}, json={"error": {"message": "Rate limit exceeded"}})
    responses.add(responses.GET, URL, status=503, json={"error": {"message": "busy"}})
    responses.add(responses.GET, URL, status=200, json={"result": []})
    retries: list[object] = []
    session = build_session(initial_wait=0.001, max_wait=0.01, on_retry=retries.append)
    response = call(session, "GET", URL, connection="servicenow", what="list incidents")
    assert response.json() == {"result": []}
    assert len(retries) == 2
    assert session.last_status == 200


@responses.activate
def test_gives_up_after_budget_with_a_transient_error_naming_the_call() -> None:
    for _ in range(3):
        responses.add(responses.GET, URL, status=502, json={"error": {"message": "bad gateway"}})
    session = build_session(attempts=3, initial_wait=0.001, max_wait=0.01)
    with pytest.raises(TransientError) as caught:
        call(session, "GET", URL, connection="servicenow", what="list incidents")
    assert "servicenow: list incidents failed with HTTP 502: bad gateway" in str(caught.value)
    assert len(responses.calls) == 3


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (404, NotFoundError), (400, PermanentError)])
@responses.activate
def test_client_errors_are_not_retried_and_are_typed(status: int, error: type[Exception]) -> None:
    responses.add(responses.POST, URL, status=status, json={"error": {"message": "nope", "detail": "why"}})
    with pytest.raises(error) as caught:
        call(build_session(), "POST", URL, connection="servicenow", what="create incident", json={})
    assert len(responses.calls) == 1
    assert "nope; why" in str(caught.value)


@pytest.mark.parametrize("method", [responses.POST, responses.PATCH])
@responses.activate
def test_a_write_that_may_have_been_carried_out_is_not_repeated_in_place(method: str) -> None:
    # A 5xx or a reset after sending may come after the desk created the ticket or appended the note:
    # the outbox's retry looks for it first, so the transport must not send it again blindly.
    responses.add(method, URL, status=502, json={"error": {"message": "bad gateway"}})
    responses.add(method, URL, status=200, json={"result": {}})
    with pytest.raises(TransientError):
        call(build_session(initial_wait=0.001), method, URL, connection="sn", what="create incident", json={})
    responses.replace(method, URL, body=requests.ConnectionError("connection reset by peer"))
    with pytest.raises(TransientError):
        call(build_session(initial_wait=0.001), method, URL, connection="sn", what="create incident", json={})
    assert len(responses.calls) == 2


@responses.activate
def test_a_write_refused_with_429_is_repeated_in_place() -> None:
    responses.add(responses.POST, URL, status=429, headers={"Retry-After": "0"}, json={"error": {"message": "slow"}})
    responses.add(responses.POST, URL, status=201, json={"result": {"sys_id": "a"}})
    response = call(build_session(initial_wait=0.001), "POST", URL, connection="sn", what="create", json={})
    assert response.status_code == 201 and len(responses.calls) == 2


def test_a_write_that_never_left_is_repeated_in_place() -> None:
    # Nothing listens on the port: no connection, so nothing can have been written; retried, then given up.
    retries: list[object] = []
    session = build_session(attempts=3, initial_wait=0.001, max_wait=0.01, on_retry=retries.append)
    with pytest.raises(TransientError):
        call(session, "POST", "http://127.0.0.1:9/api/now/table/incident", connection="sn", what="create", json={})
    assert len(retries) == 2


@responses.activate
def test_connection_failure_becomes_transient() -> None:
    responses.add(responses.GET, URL, body=requests.ConnectionError("reset by peer"))
    responses.add(responses.GET, URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(TransientError):
        call(build_session(attempts=2, initial_wait=0.001), "GET", URL, connection="sn", what="get")


def test_retry_after_reads_seconds_and_http_dates() -> None:
    response = requests.Response()
    response.headers["Retry-After"] = "7"
    assert retry_after_seconds(response) == 7
    response.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds(response) == 0
    response.headers["Retry-After"] = "soon"
    assert retry_after_seconds(response) is None


def test_redaction_masks_credentials() -> None:
    assert redact_url("https://u:pw@x.example.com/a?token=abc&x=1") == "https://***:***@x.example.com/a?token=***&x=1"


@responses.activate
def test_a_prompt_write_is_tried_once_and_never_waits_for_the_rate_limit() -> None:
    from bridge.ratelimit import RateLimited, RateLimiter

    responses.add(responses.PATCH, URL, status=503, json={"error": {"message": "busy"}})
    slept: list[float] = []
    limiter = RateLimiter(60, burst=1, connection="servicenow", clock=lambda: 0.0, sleep=slept.append)
    session = build_session(attempts=4, initial_wait=0.001, max_wait=0.01, limiter=limiter)
    with session.prompt(), pytest.raises(TransientError):
        call(session, "PATCH", URL, connection="servicenow", what="update ticket")
    assert len(responses.calls) == 1  # not retried inside: the outbox retries the read and the write
    with session.prompt(), pytest.raises(RateLimited):  # the bucket is empty: a second would wait 1 s
        call(session, "PATCH", URL, connection="servicenow", what="update ticket")
    assert slept == [] and len(responses.calls) == 1
