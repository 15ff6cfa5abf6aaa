"""Squadcast connector, the transport and the poll (with `responses`): the refresh-token exchange and its
cache, renewal before expiry and once on 401, typed failures that never show a token, and the windowed
export poll across teams with its cursor."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import AuthError, NotFoundError, PermanentError, TransientError
from connectors.squadcast.records import incident_from_export
from tests.test_squadcast_connector import (
    ACCESS,
    API,
    AUTH,
    INCIDENT_ID,
    NOW,
    REFRESH,
    TEAM,
    connector,
    fixture,
    raw,
    token_endpoint,
)


# -- the token exchange ---------------------------------------------------------------------------------
@responses.activate
def test_the_access_token_is_fetched_once_cached_and_sent_as_bearer() -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", json=fixture("rest_incident.json"))
    squadcast = connector()
    for _ in range(3):
        squadcast._incident(INCIDENT_ID)
    auth, *calls = responses.calls
    assert auth.request.headers["X-Refresh-Token"] == REFRESH and len(calls) == 3
    assert {call.request.headers["Authorization"] for call in calls} == {f"Bearer {ACCESS}"}
    assert "Authorization" not in squadcast.session.headers and "X-Refresh-Token" not in calls[0].request.headers


@responses.activate
def test_the_token_is_renewed_before_it_expires_and_once_on_401() -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", json=fixture("rest_incident.json"))
    squadcast = connector()
    squadcast._incident(INCIDENT_ID)
    squadcast.clock = lambda: 1772564400.0 - 30  # within the renewal margin of expires_at
    squadcast._incident(INCIDENT_ID)
    assert [c.request.url.startswith(AUTH) for c in responses.calls] == [True, False, True, False]
    squadcast.clock = lambda: 1772400000.0
    responses.replace(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", status=401, json=fixture("error_unauthorized.json"))
    with pytest.raises(AuthError):
        squadcast._incident(INCIDENT_ID)
    assert [c.request.url.startswith(AUTH) for c in responses.calls[4:]] == [False, True, False]  # renewed once, no loop


@responses.activate
def test_a_401_answered_by_a_fresh_token_succeeds() -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", status=401, json=fixture("error_unauthorized.json"))
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", json=fixture("rest_incident.json"))
    assert connector()._incident(INCIDENT_ID)["status"] == "acknowledged"


@responses.activate
def test_failures_are_typed_and_never_show_the_tokens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.add(responses.GET, f"{AUTH}/oauth/access-token", status=401, json=fixture("error_unauthorized.json"))
    with pytest.raises(AuthError) as caught:
        connector().add_note(INCIDENT_ID, "x")
    result = connector().check()
    assert not result.ok and "refresh token refused" in result.message
    for text in (str(caught.value), caplog.text, repr(connector()), result.message):
        assert REFRESH not in text and ACCESS not in text


@pytest.mark.parametrize("status, error", [(429, TransientError), (503, TransientError), (404, NotFoundError), (400, PermanentError)])
@responses.activate
def test_http_failures_become_typed_errors(status: int, error: type) -> None:
    token_endpoint()
    headers = {"Retry-After": "7"} if status == 429 else {}
    responses.add(responses.POST, f"{API}/v3/incidents/{INCIDENT_ID}/warroom", status=status, headers=headers,
                  json={"meta": {"status": status, "error_message": "nope"}})
    with pytest.raises(error) as caught:
        connector().add_note(INCIDENT_ID, "hello")
    assert caught.value.status == status and "nope" in str(caught.value)
    assert caught.value.retry_after == (7 if status == 429 else None)


# -- the poll ---------------------------------------------------------------------------------------------
@responses.activate
def test_poll_reads_every_team_in_export_windows_and_keeps_what_changed() -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/teams", json=fixture("rest_teams.json"))
    seen: list[dict] = []

    def export(request):  # type: ignore[no-untyped-def]
        query = parse_qs(urlsplit(request.url).query)
        seen.append(query)
        window = "rest_export_window1.json" if query["start_time"] == ["2026-02-28T20:30:00.000Z"] else "rest_export_window2.json"
        return 200, {}, raw(window) if query["owner_id"] == [TEAM] else b'{"incidents": []}'

    responses.add_callback(responses.GET, f"{API}/v3/incidents/export", callback=export)
    for incident in (INCIDENT_ID, "6650f9d4e99808a1b2c3d777"):
        responses.add(responses.GET, f"{API}/v3/incidents/{incident}/warroom",
                      json=fixture("rest_warroom.json") if incident == INCIDENT_ID else {"data": []})
    result = connector(catch_up_hours=48, export_window_hours=24).poll("2026-03-02T19:00:00Z", now=NOW)
    assert [(q["owner_id"][0][-4:], q["start_time"][0], q["end_time"][0]) for q in seen] == [
        ("3a1f", "2026-02-28T20:30:00.000Z", "2026-03-01T20:30:00.000Z"), ("3a1f", "2026-03-01T20:30:00.000Z", "2026-03-02T20:30:00.000Z"),
        ("3b2f", "2026-02-28T20:30:00.000Z", "2026-03-01T20:30:00.000Z"), ("3b2f", "2026-03-01T20:30:00.000Z", "2026-03-02T20:30:00.000Z")]
    assert all(q["type"] == ["json"] for q in seen)
    opened, acked = result.changes  # the resolved one of yesterday is behind the cursor; oldest first
    assert (opened.incident.title, opened.incident.status, opened.incident.priority) == ("Login failures on Identity", "triggered", None)
    assert (acked.record_id, acked.incident.status, acked.via, acked.event_type) == (INCIDENT_ID, "acknowledged", "poll", "incident.polled")
    assert [e.id for e in acked.entries] == ["633e81aa488a9b8c053e04f2", "633e806c488a9b8c053e04e1"]  # resolution reason left out
    assert acked.event_id.startswith(f"poll:{INCIDENT_ID}:2026-03-02T19:59:01.339000Z:")
    assert result.cursor == "2026-03-02T19:59:01.339000Z"


@responses.activate
def test_a_configured_team_is_polled_without_listing_teams_and_open_incidents_are_always_reread() -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/export", body=raw("rest_export_window2.json"))
    responses.add(responses.GET, f"{API}/v3/incidents/6650f9d4e99808a1b2c3d777/warroom", json={"data": []})
    squadcast = connector(team_id=TEAM, catch_up_hours=24)
    first = squadcast.poll("2026-03-02T20:20:00Z", now=NOW)
    again = squadcast.poll(first.cursor, now=NOW)
    assert [c.record_id for c in first.changes] == ["6650f9d4e99808a1b2c3d777"]  # older than the cursor, but open
    assert again.changes[0].event_id == first.changes[0].event_id  # unchanged: the inbox drops it
    assert not any("/v3/teams" in c.request.url for c in responses.calls)
    assert first.cursor == "2026-03-02T20:20:00Z"


def test_poll_event_id_changes_when_tracked_attributes_change() -> None:
    from connectors.squadcast.connector import _version
    base = incident_from_export(fixture("rest_export_window1.json")["incidents"][0], source="squadcast")
    assert _version(base, 0) != _version(base.with_attributes(priority="P2"), 0) != _version(base, 1)
