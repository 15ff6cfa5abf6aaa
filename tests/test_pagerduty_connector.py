"""PagerDuty connector: webhook signatures, webhook and REST normalisation (on recorded fixtures), and the
REST calls it makes (with `responses`): poll pagination, notes, transitions and their idempotency."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import AuthError, PermanentError, TransientError, WebhookError
from bridge.http import build_session
from connectors.pagerduty.connector import PagerDutyConnector, incident_from_rest, note_entry
from connectors.pagerduty.webhooks import sign

FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty"
API = "https://api.pagerduty.com"
TOKEN = "u+S3cr3tT0kenValue"
SECRET = "whsec-correct-horse-battery"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def connector(**overrides: object) -> PagerDutyConnector:
    settings = {"api_url": API, "token": TOKEN, "webhook_secret": SECRET, "from_email": "bridge@example.com",
                "catch_up_hours": 24, **overrides}
    return PagerDutyConnector("pagerduty", settings, session=build_session(attempts=1))


# -- signatures ---------------------------------------------------------------------------------------
BODY = raw("webhook_incident_acknowledged.json")


def test_correct_signature_is_accepted_whatever_the_header_case() -> None:
    pd = connector()
    pd.verify_webhook(BODY, {"X-PagerDuty-Signature": f"v1={sign(SECRET, BODY)}"}, now=NOW)
    pd.verify_webhook(BODY, {"x-pagerduty-signature": f"v1={sign(SECRET, BODY)}"}, now=NOW)


def test_rotation_accepts_any_matching_entry() -> None:
    header = f"v1={sign('old-secret', BODY)}, v1={sign(SECRET, BODY)}"
    connector().verify_webhook(BODY, {"X-PagerDuty-Signature": header}, now=NOW)


@pytest.mark.parametrize("header, reason", [
    (None, "missing X-PagerDuty-Signature"),
    ("", "missing X-PagerDuty-Signature"),
    ("sha256=abc", "no v1= signature"),
    (f"v1={sign('wrong-secret', BODY)}", "does not match"),
    (f"v1={sign('old', BODY)},v1={sign('older', BODY)}", "2 signature(s) checked"),
])
def test_bad_or_missing_signature_is_refused_with_401(header: str | None, reason: str) -> None:
    headers = {} if header is None else {"X-PagerDuty-Signature": header}
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401
    assert reason in str(caught.value)
    assert SECRET not in str(caught.value) and sign(SECRET, BODY) not in str(caught.value)


def test_tampered_body_is_refused() -> None:
    header = {"X-PagerDuty-Signature": f"v1={sign(SECRET, BODY)}"}
    tampered = BODY.replace(b'"acknowledged"', b'"resolved"', 1)
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(tampered, header, now=NOW)
    assert caught.value.status == 401


def test_connection_without_secret_refuses_every_webhook() -> None:
    with pytest.raises(WebhookError) as caught:
        connector(webhook_secret=None).verify_webhook(BODY, {"X-PagerDuty-Signature": "v1=00"}, now=NOW)
    assert caught.value.status == 401
    assert "no webhook_secret configured for connection pagerduty" in str(caught.value)


# -- webhook parsing ----------------------------------------------------------------------------------
EXPECTED_LINES = {
    "triggered": ("status", "Triggered in PagerDuty on Payments API by Payments API"),
    "acknowledged": ("status", "Acknowledged by Alice Adams in PagerDuty"),
    "unacknowledged": ("status", "Acknowledgement timed out in PagerDuty; triggered again"),
    "reassigned": ("assignment", "Reassigned to Bob Brown by Alice Adams in PagerDuty"),
    "escalated": ("assignment", "Escalated to Carol Chen by Bob Brown in PagerDuty"),
    "priority_updated": ("priority", "Priority set to P1 by Carol Chen in PagerDuty"),
    "delegated": ("assignment", "Delegated to escalation policy Checkout on-call by Carol Chen in PagerDuty"),
    "service_updated": ("service", "Moved to service Checkout Web by Carol Chen in PagerDuty"),
    "resolved": ("status", "Resolved by Dave Diaz in PagerDuty"),
    "reopened": ("status", "Reopened by Dave Diaz in PagerDuty"),
}


@pytest.mark.parametrize("event", sorted(EXPECTED_LINES))
def test_incident_events_become_an_incident_and_a_timeline_line(event: str) -> None:
    payload = fixture(f"webhook_incident_{event}.json")["event"]
    [change] = connector().parse_webhook(raw(f"webhook_incident_{event}.json"), {})
    incident = change.incident
    assert incident is not None
    data = payload["data"]
    assert (change.record_id, change.event_id, change.event_type) == ("PGR0VU2", payload["id"], f"incident.{event}")
    assert (incident.id, incident.number, incident.status) == ("PGR0VU2", "2", data["status"])
    assert incident.title == "Error rate above 5% on Payments API"
    assert incident.service == data["service"]["summary"]
    assert incident.priority == (data["priority"] or {}).get("summary")
    assert incident.assignees == tuple(a["summary"] for a in data["assignees"])
    assert incident.url == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert incident.updated_at == change.occurred_at == datetime.fromisoformat(payload["occurred_at"])
    assert incident.raw == data
    [entry] = change.entries
    assert (entry.kind, entry.text) == EXPECTED_LINES[event]
    assert entry.author == (payload["agent"] or {}).get("summary")
    assert change.actor == (payload["agent"] or {}).get("id")


def test_resolved_incident_has_no_assignees_and_a_resolution_time() -> None:
    [change] = connector().parse_webhook(raw("webhook_incident_resolved.json"), {})
    assert change.incident.assignees == ()
    assert change.incident.resolved_at == change.occurred_at


def test_webhook_id_header_is_the_event_id_so_redeliveries_deduplicate() -> None:
    body = raw("webhook_incident_acknowledged.json")
    first = connector().parse_webhook(body, {"X-Webhook-Id": "d1f2a3b4"})[0]
    again = connector().parse_webhook(body, {"x-webhook-id": "d1f2a3b4"})[0]
    assert first.event_id == again.event_id == "d1f2a3b4"
    assert first.entries[0].id == again.entries[0].id


def test_note_event_carries_the_note_for_its_incident() -> None:
    [change] = connector().parse_webhook(raw("webhook_incident_annotated.json"), {})
    assert change.incident is None and change.record_id == "PGR0VU2"
    [note] = change.entries
    assert (note.id, note.kind, note.author) == ("P2LA89X", "note", "Alice Adams")
    assert note.text == "Rolled back deploy 2026.03.02-1; error rate recovering."


@pytest.mark.parametrize("name, record", [("webhook_service_updated.json", "PF9KMXH"),
                                          ("webhook_incident_responder_added.json", "PGR0VU2")])
def test_other_events_pass_through_without_incident_for_the_audit(name: str, record: str) -> None:
    [change] = connector().parse_webhook(raw(name), {})
    assert change.incident is None and change.entries == () and change.record_id == record
    assert change.event_type == fixture(name)["event"]["event_type"]


@pytest.mark.parametrize("body, names", [
    (b"{not json", "not JSON"),
    (b'{"messages": []}', "no 'event' object"),
    (json.dumps({"event": {**fixture("webhook_incident_triggered.json")["event"], "id": ""}}).encode(), "event.id"),
    (json.dumps({"event": {**fixture("webhook_incident_triggered.json")["event"],
                           "occurred_at": "yesterday"}}).encode(),
     "event.occurred_at must be an ISO 8601 time, got 'yesterday'"),
    (json.dumps({"event": {**fixture("webhook_incident_triggered.json")["event"],
                           "data": {"id": 42, "status": "triggered"}}}).encode(), "event.data.id"),
    (json.dumps({"event": {**fixture("webhook_incident_annotated.json")["event"], "data": {"id": "P1"}}}).encode(),
     "event.data.incident"),
])
def test_malformed_webhooks_are_refused_with_400_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, {})
    assert caught.value.status == 400
    assert names in str(caught.value)


def test_long_bad_values_are_truncated_in_the_message() -> None:
    event = {**fixture("webhook_incident_triggered.json")["event"], "occurred_at": "x" * 5000}
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(json.dumps({"event": event}).encode(), {})
    assert len(str(caught.value)) < 200


# -- REST normalisation -------------------------------------------------------------------------------
def test_rest_incident_normalises_like_the_webhook_shape() -> None:
    incident = incident_from_rest(fixture("rest_incident.json")["incident"], source="pagerduty")
    [change] = connector().parse_webhook(raw("webhook_incident_priority_updated.json"), {})
    webhook = change.incident
    for name in ("id", "number", "title", "status", "priority", "service", "assignees", "urgency", "url",
                 "description", "escalation_level"):
        assert getattr(incident, name) == getattr(webhook, name), name
    assert incident.updated_at == datetime(2026, 3, 2, 9, 58, 22, tzinfo=timezone.utc)


def test_rest_resolved_incident_and_notes() -> None:
    resolved = incident_from_rest(fixture("rest_incidents_page2.json")["incidents"][0], source="pd")
    assert (resolved.status, resolved.assignees, resolved.priority) == ("resolved", (), "P3")
    assert resolved.resolved_at == datetime(2026, 3, 2, 11, 42, 31, tzinfo=timezone.utc)
    note = note_entry(fixture("rest_notes.json")["notes"][0])
    assert (note.id, note.kind, note.author) == ("P2LA89X", "note", "Alice Adams")


# -- REST calls ---------------------------------------------------------------------------------------
def _query(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


@responses.activate
def test_poll_pages_through_the_window_and_reads_notes_of_updated_incidents() -> None:
    responses.get(f"{API}/incidents", json=fixture("rest_incidents_page1.json"),
                  match=[responses.matchers.query_param_matcher({"offset": "0"}, strict_match=False)])
    responses.get(f"{API}/incidents", json=fixture("rest_incidents_page2.json"),
                  match=[responses.matchers.query_param_matcher({"offset": "2"}, strict_match=False)])
    notes = responses.get(f"{API}/incidents/PGR0VU2/notes", json=fixture("rest_notes.json"))
    others = [responses.get(f"{API}/incidents/{i}/notes", json={"notes": []}) for i in ("PT4KHLK", "PXCT22H")]

    result = connector().poll("2026-03-02T10:00:00Z", now=NOW)

    listing = _query(responses.calls[0])
    assert listing["statuses[]"] == ["triggered", "acknowledged", "resolved"]
    assert listing["since"] == ["2026-03-01T12:00:00Z"] and listing["until"] == ["2026-03-02T12:00:00Z"]
    assert listing["limit"] == ["100"]
    assert [c.incident.id for c in result.changes] == ["PGR0VU2", "PT4KHLK", "PXCT22H"]
    first = result.changes[0]
    assert first.event_id.startswith("poll:PGR0VU2:2026-03-02T09:58:22Z:")
    assert (first.via, first.event_type) == ("poll", "incident.polled")
    assert first.entries == ()  # updated before the cursor: its notes were seen last time
    assert notes.call_count == 0 and [o.call_count for o in others] == [1, 1]
    assert result.cursor == "2026-03-02T12:00:00Z"


@responses.activate
def test_first_poll_reads_all_notes_and_stops_before_the_offset_limit() -> None:
    page = {**fixture("rest_incidents_page1.json"), "limit": 100, "more": True}
    responses.get(f"{API}/incidents", json=page)
    responses.get(f"{API}/incidents/PGR0VU2/notes", json=fixture("rest_notes.json"))
    responses.get(f"{API}/incidents/PT4KHLK/notes", json={"notes": []})

    result = connector().poll(None, now=NOW)

    offsets = [_query(c)["offset"][0] for c in responses.calls if urlsplit(c.request.url).path == "/incidents"]
    assert offsets == [str(n) for n in range(0, 10_000, 100)]  # 9900 + 100 is the last allowed page
    assert [e.id for e in result.changes[0].entries] == ["P2LA89X", "PQ7ZN3B"]


@responses.activate
def test_requests_carry_credentials_per_request_and_from_only_on_writes() -> None:
    responses.get(f"{API}/incidents/PGR0VU2", json=fixture("rest_incident.json"))
    responses.post(f"{API}/incidents/PGR0VU2/notes", json=fixture("rest_note_created.json"))
    pd = connector()
    assert pd.get_incident("PGR0VU2").priority == "P1"
    pd.add_note("PGR0VU2", "Ticket INC0010023 opened [itsm-bridge:17]")
    read, write = responses.calls[0].request, responses.calls[1].request
    assert read.headers["Authorization"] == f"Token token={TOKEN}"
    assert read.headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    assert "From" not in read.headers and write.headers["From"] == "bridge@example.com"
    assert json.loads(write.body) == {"note": {"content": "Ticket INC0010023 opened [itsm-bridge:17]"}}
    assert "Authorization" not in pd.session.headers


@responses.activate
def test_has_note_looks_for_the_tag() -> None:
    responses.get(f"{API}/incidents/PGR0VU2/notes", json=fixture("rest_notes.json"))
    assert connector().has_note("PGR0VU2", "[itsm-bridge:17]")
    assert not connector().has_note("PGR0VU2", "[itsm-bridge:18]")


@responses.activate
def test_transition_puts_the_status_as_the_integration_user() -> None:
    put = responses.put(f"{API}/incidents/PGR0VU2", json=fixture("rest_incident.json"))
    connector().transition("PGR0VU2", "resolved")
    assert json.loads(put.calls[0].request.body) == {"incident": {"type": "incident_reference", "status": "resolved"}}
    assert put.calls[0].request.headers["From"] == "bridge@example.com"


@pytest.mark.parametrize("status, error", [("resolved", "error_already_resolved.json"),
                                           ("acknowledged", "error_already_acknowledged.json")])
@responses.activate
def test_transition_to_the_state_it_is_already_in_succeeds(status: str, error: str) -> None:
    responses.put(f"{API}/incidents/PGR0VU2", status=400, json=fixture(error))
    connector().transition("PGR0VU2", status)


@pytest.mark.parametrize("status, error", [("acknowledged", "error_already_resolved.json"),
                                           ("triggered", "error_invalid_input.json"),
                                           ("resolved", "error_from_missing.json")])
@responses.activate
def test_other_refusals_are_permanent_errors(status: str, error: str) -> None:
    responses.put(f"{API}/incidents/PGR0VU2", status=400, json=fixture(error))
    with pytest.raises(PermanentError) as caught:
        connector().transition("PGR0VU2", status)
    assert fixture(error)["error"]["message"] in str(caught.value)


@responses.activate
def test_failures_are_typed_and_never_show_the_token() -> None:
    responses.get(f"{API}/incidents/P1", status=401, json={"error": {"message": "Authentication failed", "code": 2006}})
    responses.put(f"{API}/incidents/P1", status=503, json={"error": {"message": "busy", "code": 2000}})
    with pytest.raises(AuthError) as auth:
        connector().get_incident("P1")
    with pytest.raises(TransientError) as busy:
        connector().transition("P1", "acknowledged")
    for error in (auth.value, busy.value):
        assert TOKEN not in str(error) and error.connection == "pagerduty"
    assert TOKEN not in repr(connector())


@responses.activate
def test_check_reports_whether_the_from_user_exists() -> None:
    responses.get(f"{API}/users", json=fixture("rest_users.json"))
    result = connector().check()
    assert result.ok and "ITSM Bridge <bridge@example.com>" in result.message
    assert _query(responses.calls[0]) == {"query": ["bridge@example.com"]}
    missing = connector(from_email="ghost@example.com").check()
    assert not missing.ok and "ghost@example.com" in missing.message


@responses.activate
def test_check_reports_a_refused_token() -> None:
    responses.get(f"{API}/users", status=401, json={"error": {"message": "Authentication failed", "code": 2006}})
    result = connector().check()
    assert not result.ok and "token refused" in result.message and TOKEN not in result.message
