"""Squadcast connector: the shared-secret header, normalisation of every v2 lifecycle event on fixtures
shaped like Squadcast's payloads, and the way back (with `responses`): transitions, priority, escalation,
notes and check. The token exchange, typed failures and the poll are in test_squadcast_api.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import (
    PermanentError,
    WebhookError,
)
from bridge.http import build_session
from connectors.squadcast import webhooks
from connectors.squadcast.config import SECRET_KEYS, SquadcastConnection
from connectors.squadcast.connector import SquadcastConnector, auth_url_for
from connectors.squadcast.records import incident_from_export, incident_from_rest

FIXTURES = Path(__file__).parent / "fixtures" / "squadcast"
API, AUTH = "https://api.squadcast.com", "https://auth.squadcast.com"
REFRESH = "0d2a1a9a454dS3cr3tRefreshToken"
SECRET = "squadcast-hook-correct-horse"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3NzI1NjQ0MDB9.c2lt"
INCIDENT_ID = "6650f1c2e99808a1b2c3d4e5"
TEAM = "6196371cda7b4ab764b13a1f"
NOW = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict:
    return json.loads(raw(name))


def connector(**overrides: object) -> SquadcastConnector:
    settings = {"api_url": API, "refresh_token": REFRESH, "webhook_secret": SECRET, **overrides}
    squadcast = SquadcastConnector("squadcast", settings, session=build_session(attempts=1))
    squadcast.clock = lambda: 1772400000.0  # well before the fixture token's expires_at
    return squadcast


def token_endpoint() -> None:
    responses.add(responses.GET, f"{AUTH}/oauth/access-token", json=fixture("rest_access_token.json"))


# -- config -------------------------------------------------------------------------------------------
def test_connection_model_wants_secret_references_and_checks_its_options() -> None:
    ok = SquadcastConnection(type="squadcast", refresh_token="env:SQUADCAST_REFRESH_TOKEN", webhook_secret="file:/run/s")
    assert (ok.api_url, ok.webhook_header, ok.poll_interval, ok.catch_up_hours) == (API, "X-Itsm-Bridge-Token", 60, 168)
    assert SECRET_KEYS == ("refresh_token", "webhook_secret")
    for bad in ({"refresh_token": REFRESH}, {"refresh_token": "env:X", "unknown": 1},
                {"refresh_token": "env:X", "escalate_to": "team:1"}, {"refresh_token": "env:X", "webhook_header": "X Token"}):
        with pytest.raises(ValueError):
            SquadcastConnection(type="squadcast", **bad)
    assert SquadcastConnection(type="squadcast", refresh_token="env:X", escalate_to="squad:61a4").escalate_to == "squad:61a4"


@pytest.mark.parametrize("api, auth", [("https://api.squadcast.com", AUTH), ("https://api.eu.squadcast.com/", "https://auth.eu.squadcast.com"),
                                       ("http://127.0.0.1:8123", "http://127.0.0.1:8123")])
def test_the_token_host_follows_the_api_host(api: str, auth: str) -> None:
    assert auth_url_for(api) == auth


# -- the shared-secret header -------------------------------------------------------------------------
BODY = raw("webhook_incident_acknowledged.json")


def test_the_right_token_is_accepted_whatever_the_header_case() -> None:
    squadcast = connector()
    squadcast.verify_webhook(BODY, {"X-Itsm-Bridge-Token": SECRET}, now=NOW)
    squadcast.verify_webhook(BODY, {"x-itsm-bridge-token": SECRET}, now=NOW)
    connector(webhook_header="X-Squadcast-Token").verify_webhook(BODY, {"X-SQUADCAST-TOKEN": SECRET}, now=NOW)


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing X-Itsm-Bridge-Token"), ({"X-Itsm-Bridge-Token": ""}, "missing X-Itsm-Bridge-Token"),
    ({"X-Itsm-Bridge-Token": "wrong"}, "does not match"), ({"X-Itsm-Bridge-Token": SECRET + " "}, "does not match"),
    ({"X-Itsm-Bridge-Token": SECRET[:-1]}, "does not match"), ({"X-Other": SECRET}, "missing"),
])
def test_a_missing_or_wrong_token_is_refused_with_401_without_echoing_it(headers: dict, reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value) and SECRET not in str(caught.value)


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b
    monkeypatch.setattr(webhooks.hmac, "compare_digest", compare)
    with pytest.raises(WebhookError):
        connector().verify_webhook(BODY, {"X-Itsm-Bridge-Token": "guess"}, now=NOW)
    assert compared == [(b"guess", SECRET.encode())]


def test_without_a_configured_secret_every_webhook_is_refused() -> None:
    with pytest.raises(WebhookError) as caught:
        connector(webhook_secret=None).verify_webhook(BODY, {"X-Itsm-Bridge-Token": SECRET}, now=NOW)
    assert caught.value.status == 401 and "no webhook_secret configured for connection squadcast" in str(caught.value)


# -- webhook parsing ----------------------------------------------------------------------------------
EXPECTED = {
    "triggered": ("triggered", "Storefront on-call", "status", "Triggered in Squadcast on Checkout Web (assigned to Storefront on-call)"),
    "reassigned": ("triggered", "Checkout Squad", "assignment", "Reassigned to Checkout Squad in Squadcast"),
    "acknowledged": ("acknowledged", "Ana Ops", "status", "Acknowledged by Ana Ops in Squadcast"),
    "resolved": ("resolved", "Ana Ops", "status", "Resolved by Ana Ops in Squadcast"),
}


@pytest.mark.parametrize("event", sorted(EXPECTED))
def test_incident_events_become_an_incident_and_a_timeline_line(event: str) -> None:
    payload = fixture(f"webhook_incident_{event}.json")
    [change] = connector().parse_webhook(raw(f"webhook_incident_{event}.json"), {})
    status, assignee, kind, text = EXPECTED[event]
    incident = change.incident
    assert (change.record_id, change.event_id, change.event_type) == (INCIDENT_ID, payload["event"]["id"], f"incident.{event}")
    assert change.occurred_at == datetime(2026, 3, 2, *{"triggered": (19, 58, 5, 945695), "reassigned": (19, 58, 40, 857754),
                                                         "acknowledged": (19, 59, 1, 388057), "resolved": (20, 10, 35, 998872)}[event],
                                          tzinfo=UTC)
    assert (incident.id, incident.status, incident.assignees, incident.updated_at) == (INCIDENT_ID, status, (assignee,), change.occurred_at)
    assert (incident.title, incident.priority, incident.service) == ("Checkout error rate above 5% in eu-west-1", "P1", "Checkout Web")
    assert incident.description.startswith("Error budget burn") and incident.url.endswith(f"/incident/{INCIDENT_ID}")
    assert incident.created_at == datetime(2026, 3, 2, 19, 58, 5, 370000, tzinfo=UTC)
    assert incident.raw["tags"]["region"]["value"] == "eu-west-1"  # Squadcast's own fields stay reachable
    assert incident.raw["alert_source"]["short_name"] == "squadcastui" and incident.raw["owner"]["name"] == "Storefront"
    assert (incident.resolved_at == datetime(2026, 3, 2, 20, 10, 35, 945000, tzinfo=UTC)) == (status == "resolved")
    [entry] = change.entries
    assert (entry.id, entry.kind, entry.text) == (f"{payload['event']['id']}:{kind}", kind, text)


def test_a_note_event_carries_the_note_and_the_incident() -> None:
    [change] = connector().parse_webhook(raw("webhook_incident_notes_created.json"), {})
    [note] = change.entries
    assert (change.record_id, change.event_type, change.actor) == (INCIDENT_ID, "incident.incident_notes_created", "61963608090a650008fff152")
    assert (note.id, note.kind, note.text, note.author) == ("633e806c488a9b8c053e04e1", "note", "Rolled back deploy 4411", "Ana Ops")
    assert change.incident.status == "acknowledged"


def test_other_events_refresh_the_incident_or_pass_through() -> None:
    [change] = connector().parse_webhook(raw("webhook_communication_channel_created.json"), {})
    assert change.incident.status == "acknowledged" and change.entries == () and change.record_id == INCIDENT_ID
    body = fixture("webhook_communication_channel_created.json")
    body["event"] |= {"type": "statuspage.updated", "resource": "statuspage"}
    body["data"] = {"resource_data": {"id": "sp-1"}, "resource_type": "statuspage"}
    [passed] = connector().parse_webhook(json.dumps(body).encode(), {})
    assert (passed.incident, passed.record_id, passed.event_type) == (None, "sp-1", "statuspage.updated")


def test_suppressed_is_resolved_and_a_missing_priority_is_none() -> None:
    body = fixture("webhook_incident_triggered.json")
    body["data"]["resource_data"] |= {"status": "suppressed", "priority": "UNSET"}
    [change] = connector().parse_webhook(json.dumps(body).encode(), {})
    assert (change.incident.status, change.incident.raw["status"], change.incident.priority) == ("resolved", "suppressed", None)


def _with(path: str, value: object) -> bytes:
    body = fixture("webhook_incident_acknowledged.json")
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[key]
    node[last] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize("body, names", [
    (b"not json", "not JSON"), (b"[1]", "JSON object"),
    (raw("webhook_v1_incident_triggered.json"), "version must be 'v2'"),
    (b'{"version": "v2", "event": {}}', "'event' and 'data'"),
    (_with("data.resource_data", None), "data.resource_data must be an object"),
    (_with("event.type", 7), "event.type must be a non-empty string"),
    (_with("event.id", ""), "event.id must be a non-empty string"),
    (_with("event.timestamp", "yesterday"), "event.timestamp must be an RFC 3339 time, got 'yesterday'"),
    (_with("data.resource_data.id", None), "data.resource_data.id must be a non-empty string"),
    (_with("data.resource_data.status", "exploded"), "unknown Squadcast status 'exploded'"),
    (_with("data.resource_data.created_at", 12), "data.resource_data.created_at must be an RFC 3339 time, got 12"),
])
def test_malformed_webhooks_are_refused_with_400_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, {})
    assert caught.value.status == 400 and names in str(caught.value)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                       max_leaves=10)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(path=st.sampled_from(["event", "data", "data.resource_data", "data.resource_data.timeline", "data.resource_data.service",
                             "data.resource_data.assigned_to", "data.resource_data.message", "data.incident", "event.timestamp"]),
       value=JSONISH)
def test_any_shape_is_parsed_or_refused_with_400_never_crashes(path: str, value: object) -> None:
    for name in ("webhook_incident_resolved.json", "webhook_incident_notes_created.json"):
        body = fixture(name)
        *parents, last = path.split(".")
        node = body
        for key in parents:
            node = node[key] if isinstance(node, dict) and isinstance(node.get(key), dict) else {}
        node[last] = value
        try:
            connector().parse_webhook(json.dumps(body).encode(), {})
        except WebhookError as exc:
            assert exc.status == 400


def test_a_malformed_note_names_its_field() -> None:
    body = fixture("webhook_incident_notes_created.json")
    body["data"]["resource_data"]["message"] = {"message": 3}
    with pytest.raises(WebhookError, match="data.resource_data.message.message must be a string"):
        connector().parse_webhook(json.dumps(body).encode(), {})


def test_export_and_webhook_shapes_normalise_alike() -> None:
    [change] = connector().parse_webhook(raw("webhook_incident_acknowledged.json"), {})
    exported = incident_from_export(fixture("rest_export_window1.json")["incidents"][0], source="squadcast")
    assert exported.tracked() == change.incident.tracked()
    assert exported.updated_at == datetime(2026, 3, 2, 19, 59, 1, 339000, tzinfo=UTC)  # its latest log line
    rest = incident_from_rest(fixture("rest_incident.json")["data"], source="squadcast",
                              services={"62f0fdde613c98528db9f8bc": "Checkout Web"})
    assert (rest.number, rest.status, rest.service, rest.priority) == ("482", "acknowledged", "Checkout Web", "P1")


# -- the way back -------------------------------------------------------------------------------------
def _incident_with(status: str) -> dict:
    data = fixture("rest_incident.json")
    data["data"]["status"] = status
    return data


@pytest.mark.parametrize("current, wanted, action, body", [
    ("triggered", "acknowledged", "acknowledge", None),
    ("triggered", "resolved", "resolve", {"resolution_reason": {"message": "Resolved from the service desk"}}),
    ("acknowledged", "resolved", "resolve", {"resolution_reason": {"message": "Resolved from the service desk"}}),
])
@responses.activate
def test_transition_uses_the_squadcast_action(current: str, wanted: str, action: str, body: dict | None) -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", json=_incident_with(current))
    responses.add(responses.POST, f"{API}/v3/incidents/{INCIDENT_ID}/{action}", json={"data": "ok"})
    connector().transition(INCIDENT_ID, wanted)
    request = responses.calls[-1].request
    assert request.url.endswith(f"/{action}") and (json.loads(request.body) if request.body else None) == body


@pytest.mark.parametrize("current, wanted", [("acknowledged", "acknowledged"), ("resolved", "resolved"),
                                             ("suppressed", "resolved"), ("triggered", "triggered")])
@responses.activate
def test_transition_to_the_state_it_is_already_in_only_reads(current: str, wanted: str) -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", json=_incident_with(current))
    connector().transition(INCIDENT_ID, wanted)
    assert [c.request.method for c in responses.calls] == ["GET", "GET"]  # the token, then the incident


@pytest.mark.parametrize("current, wanted", [("resolved", "triggered"), ("acknowledged", "triggered"), ("resolved", "acknowledged")])
@responses.activate
def test_reopen_and_unacknowledge_are_refused_for_good(current: str, wanted: str) -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}", json=_incident_with(current))
    with pytest.raises(PermanentError, match="can neither reopen nor unacknowledge"):
        connector().transition(INCIDENT_ID, wanted)
    with pytest.raises(PermanentError, match="unknown status 'bogus'"):
        connector().transition(INCIDENT_ID, "bogus")


@responses.activate
def test_update_sets_the_priority_and_refuses_the_rest() -> None:
    token_endpoint()
    responses.add(responses.PATCH, f"{API}/v3/incidents/{INCIDENT_ID}/priority", json={"data": {"priority": "P2"}})
    connector().update(INCIDENT_ID, {"priority": "P2"})
    assert json.loads(responses.calls[-1].request.body) == {"priority": "P2"}
    with pytest.raises(PermanentError, match="priorities are P1..P5, not 'SEV1'"):
        connector().update(INCIDENT_ID, {"priority": "SEV1"})
    with pytest.raises(PermanentError, match="cannot set 'title'"):
        connector().update(INCIDENT_ID, {"title": "New title"})
    assert len(responses.calls) == 2


@responses.activate
def test_escalate_reassigns_to_the_configured_target() -> None:
    token_endpoint()
    responses.add(responses.POST, f"{API}/v3/incidents/{INCIDENT_ID}/reassign", json={"data": {}})
    connector(escalate_to="escalationpolicy:629e23f5eb4041a20a43b11c").escalate(INCIDENT_ID)
    assert json.loads(responses.calls[-1].request.body) == {"reassign_to": {"id": "629e23f5eb4041a20a43b11c", "type": "escalationpolicy"}}
    with pytest.raises(PermanentError, match="set escalate_to"):
        connector().escalate(INCIDENT_ID)


@responses.activate
def test_notes_are_warroom_messages() -> None:
    token_endpoint()
    responses.add(responses.POST, f"{API}/v3/incidents/{INCIDENT_ID}/warroom", status=201, json={"data": {}})
    responses.add(responses.GET, f"{API}/v3/incidents/{INCIDENT_ID}/warroom", json=fixture("rest_warroom.json"))
    squadcast = connector()
    squadcast.add_note(INCIDENT_ID, "INC0010042 [itsm-bridge:8]")
    assert json.loads(responses.calls[1].request.body) == {"message": "INC0010042 [itsm-bridge:8]", "attachments": []}
    assert squadcast.has_note(INCIDENT_ID, "[itsm-bridge:7]") and not squadcast.has_note(INCIDENT_ID, "[itsm-bridge:8]")
    assert [(e.author, e.text) for e in squadcast.list_notes(INCIDENT_ID)][1] == ("Ana Ops", "Rolled back deploy 4411")


@responses.activate
def test_check_finds_the_configured_team() -> None:
    token_endpoint()
    responses.add(responses.GET, f"{API}/v3/teams", json=fixture("rest_teams.json"))
    assert connector(team_id=TEAM).check().ok
    missing = connector(team_id="nope").check()
    assert not missing.ok and "team_id nope is not among the 2 team(s)" in missing.message
