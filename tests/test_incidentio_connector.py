"""incident.io connector: Svix signatures, normalisation of recorded payloads, and its REST calls
(with `responses`): poll pagination and notes, private re-reads, transitions, severity, refused notes."""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import PermanentError, TransientError, WebhookError
from bridge.http import build_session
from connectors.incidentio.config import SECRET_KEYS, IncidentioConnection
from connectors.incidentio.connector import IncidentioConnector, update_entry
from connectors.incidentio.webhooks import incident_from_api, sign, signed_headers

FIXTURES = Path(__file__).parent / "fixtures" / "incidentio"
API = "https://api.incident.io"
KEY = "inc_S3cr3tApiKeyValue0123456789"
SECRET = "whsec_" + base64.b64encode(b"correct-horse-battery-staple-32b").decode()
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
STAMP = int(NOW.timestamp())
WRONG = "whsec_" + base64.b64encode(b"wrong").decode()
INC = "01HR5J8Q0W2E4R6T8Y0U2I4O6P"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def connector(**overrides: object) -> IncidentioConnector:
    settings = {"api_url": API, "api_key": KEY, "webhook_secret": SECRET, "catch_up_hours": 24, **overrides}
    return IncidentioConnector("incidentio", settings, session=build_session(attempts=1))


# -- config ---------------------------------------------------------------------------------------------
def test_connection_model_wants_secret_references() -> None:
    ok = IncidentioConnection(type="incidentio", api_key="env:INCIDENTIO_API_KEY", webhook_secret="file:/run/whsec")
    assert ok.poll_interval == 60 and ok.resolve_category == "closed" and SECRET_KEYS == ("api_key", "webhook_secret")
    with pytest.raises(ValueError, match="secret reference"):
        IncidentioConnection(type="incidentio", api_key=KEY)
    with pytest.raises(ValueError):
        IncidentioConnection(type="incidentio", api_key="env:K", tokn="x")


# -- signatures -----------------------------------------------------------------------------------------
BODY = raw("webhook_incident_status_updated.json")


def test_correct_signature_is_accepted_whatever_the_header_case() -> None:
    headers = signed_headers([SECRET], "msg_2x1", STAMP, BODY)
    connector().verify_webhook(BODY, headers, now=NOW)
    connector().verify_webhook(BODY, {k.title(): v for k, v in headers.items()}, now=NOW + timedelta(minutes=4))


def test_rotation_accepts_any_v1_entry() -> None:
    headers = signed_headers(["whsec_" + base64.b64encode(b"old-secret").decode(), SECRET], "msg_2x1", STAMP, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    connector().verify_webhook(BODY, headers, now=NOW)


def _headers(**changes: str | None) -> dict[str, str]:
    headers = signed_headers([SECRET], "msg_2x1", STAMP, BODY)
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    return headers


@pytest.mark.parametrize("headers, reason", [
    (_headers(webhook_signature=None), "missing webhook-signature"),
    (_headers(webhook_id=None, webhook_timestamp=None), "missing webhook-id, webhook-timestamp"),
    (_headers(webhook_signature="v2,abc"), "no v1 signature"),
    (_headers(webhook_signature=sign(WRONG, "msg_2x1", STAMP, BODY)), "does not match"),
    (_headers(webhook_id="msg_other"), "does not match"),
    (_headers(webhook_timestamp=str(STAMP - 301)), "more than 5 minutes"),
    (_headers(webhook_timestamp=str(STAMP + 400)), "more than 5 minutes"),
    (_headers(webhook_timestamp="yesterday"), "not Unix seconds"),
])
def test_bad_missing_or_stale_signatures_are_refused_with_401(headers: dict, reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value)
    expected = sign(SECRET, "msg_2x1", STAMP, BODY)[3:]
    assert SECRET not in str(caught.value) and expected not in str(caught.value)


def test_tampered_body_and_missing_secret_are_refused() -> None:
    headers = _headers()
    with pytest.raises(WebhookError, match="does not match"):
        connector().verify_webhook(BODY.replace(b"Investigating", b"Closed", 1), headers, now=NOW)
    with pytest.raises(WebhookError, match="no webhook_secret configured for connection incidentio"):
        connector(webhook_secret=None).verify_webhook(BODY, headers, now=NOW)


# -- webhook parsing ------------------------------------------------------------------------------------
def test_created_event_is_a_triggered_incident() -> None:
    [change] = connector().parse_webhook(raw("webhook_incident_created.json"), {"webhook-id": "msg_1"})
    incident = change.incident
    assert (change.event_id, change.event_type, change.record_id) == (
        "msg_1", "public_incident.incident_created_v2", INC)
    assert (incident.status, incident.number, incident.priority, incident.service) == (
        "triggered", "INC-2041", "Major", "Payments API")
    assert incident.title == "Error rate above 5% on Payments API" and incident.assignees == ()
    assert incident.description.startswith("Card authorisations failing")
    assert incident.url == "https://app.incident.io/acme/incidents/2041"
    assert incident.raw["custom_field_entries"][1]["values"][0]["value_option"]["value"] == "Partial outage"
    [entry] = change.entries
    assert entry.kind == "status"
    assert entry.text == "Declared in incident.io as INC-2041 (Major): Error rate above 5% on Payments API"


def test_status_update_is_acknowledged_with_lead_and_message() -> None:
    [change] = connector().parse_webhook(BODY, {"webhook-id": "msg_2"})
    assert change.incident.status == "acknowledged" and change.incident.assignees == ("Alice Adams",)
    assert change.entries[0].text == ("Status changed from Triage to Investigating in incident.io: "
                                      "Rolling back deploy 2026.03.02-1.")
    assert change.occurred_at == datetime(2026, 3, 2, 9, 44, 52, 500000, tzinfo=timezone.utc)


def test_updated_and_closed_events() -> None:
    [updated] = connector().parse_webhook(raw("webhook_incident_updated.json"), {"webhook-id": "msg_3"})
    assert updated.incident.priority == "Critical" and updated.entries[0].kind == "update"
    [closed] = connector().parse_webhook(raw("webhook_incident_closed.json"), {"webhook-id": "msg_4"})
    assert closed.incident.status == "resolved"
    assert closed.incident.resolved_at == datetime(2026, 3, 2, 11, 2, 40, tzinfo=timezone.utc)


@pytest.mark.parametrize("category, status", [("triage", "triggered"), ("live", "acknowledged"),
                                              ("paused", "acknowledged"), ("learning", "resolved"),
                                              ("closed", "resolved"), ("declined", "resolved"),
                                              ("merged", "resolved"), ("canceled", "resolved")])
def test_every_status_category_maps(category: str, status: str) -> None:
    data = fixture("rest_incident.json")["incident"]
    data["incident_status"]["category"] = category
    assert incident_from_api(data, source="io").status == status


@responses.activate
def test_private_incident_events_are_re_read() -> None:
    read = responses.get(f"{API}/v2/incidents/01HR5J8Q0W2E4R6T8Y0U2I4PRV", json=fixture("rest_private_incident.json"))
    [change] = connector().parse_webhook(raw("webhook_private_incident_created.json"), {"webhook-id": "msg_5"})
    assert read.call_count == 1 and read.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"
    assert (change.incident.title, change.incident.status) == ("Suspected credential leak", "acknowledged")
    assert change.incident.service is None


@responses.activate
def test_a_failed_re_read_is_transient_so_incident_io_retries() -> None:
    responses.get(f"{API}/v2/incidents/01HR5J8Q0W2E4R6T8Y0U2I4PRV", status=503, json={"type": "internal_error"})
    with pytest.raises(TransientError):
        connector().parse_webhook(raw("webhook_private_incident_created.json"), {})


def test_other_events_pass_through_for_the_audit() -> None:
    [change] = connector().parse_webhook(raw("webhook_follow_up_created.json"),
                                         {"webhook-id": "msg_6", "webhook-timestamp": str(STAMP)})
    assert change.incident is None and change.record_id == INC and change.occurred_at == NOW


@pytest.mark.parametrize("body, names", [
    (b"{nope", "not JSON"), (b'{"foo": 1}', "no event_type"),
    (b'{"event_type": "public_incident.incident_created_v2"}', "no 'public_incident.incident_created_v2' object"),
    (json.dumps({"event_type": "public_incident.incident_status_updated_v2",
                 "public_incident.incident_status_updated_v2": {"incident": None}}).encode(), ".incident must be"),
    (json.dumps({"event_type": "public_incident.incident_created_v2", "public_incident.incident_created_v2": {
        **fixture("rest_incident.json")["incident"], "incident_status": {"category": "weird"}}}).encode(),
     "category must be one of"),
])
def test_malformed_webhooks_are_400_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, {})
    assert caught.value.status == 400 and names in str(caught.value)


# -- REST -----------------------------------------------------------------------------------------------
@responses.activate
def test_poll_follows_the_after_cursor_and_reads_notes() -> None:
    second = responses.get(f"{API}/v2/incidents", json=fixture("rest_incidents_page2.json"),
                           match=[responses.matchers.query_param_matcher({"after": "01HR5J8Q0W2E4R6T8Y0U2I4PRV"},
                                                                         strict_match=False)])
    listing = responses.get(f"{API}/v2/incidents", json=fixture("rest_incidents_page1.json"),
                            match=[responses.matchers.query_param_matcher({"page_size": "100"}, strict_match=False)])
    responses.get(f"{API}/v2/incident_updates", json=fixture("rest_incident_updates.json"),
                  match=[responses.matchers.query_param_matcher({"incident_id": INC}, strict_match=False)])
    responses.get(f"{API}/v2/incident_updates", json={"incident_updates": [], "pagination_meta": {"page_size": 250}})
    result = connector().poll("2026-03-02T10:00:00Z", now=NOW)
    queries = [parse_qs(urlsplit(c.request.url).query) for c in responses.calls if c.request.url.split("?")[0].endswith("/incidents")]
    assert queries[0]["updated_at[gte]"] == ["2026-03-02T09:59:00Z"] and "after" not in queries[0]
    assert queries[1]["after"] == ["01HR5J8Q0W2E4R6T8Y0U2I4PRV"]
    assert listing.call_count == 1 and second.call_count == 1
    ids = [c.record_id for c in result.changes]
    assert len(ids) == 3 and ids[0] == INC and result.cursor == "2026-03-02T12:00:00Z"
    first = result.changes[0]
    assert [e.id for e in first.entries] == ["01HR5JB0000000000000000U01", "01HR5JB0000000000000000U02"]
    assert first.entries[0].text == "Rolling back deploy 2026.03.02-1. (status: Investigating)"
    assert first.event_id.startswith(f"poll:{INC}:2026-03-02T09:50:13.000001Z:")
    assert result.changes[2].incident.status == "resolved"  # declined


def test_update_entry_names_api_key_authors() -> None:
    update = fixture("rest_incident_updates.json")["incident_updates"][2]
    assert update_entry({**update, "message": "Created by alert"}).author == "Alertmanager"


@responses.activate
def test_transition_moves_to_the_first_status_of_the_category() -> None:
    responses.get(f"{API}/v2/incidents/{INC}", json={"incident": fixture("webhook_incident_created.json")[
        "public_incident.incident_created_v2"]})
    responses.get(f"{API}/v1/incident_statuses", json=fixture("rest_statuses.json"))
    edit = responses.post(f"{API}/v2/incidents/{INC}/actions/edit", json=fixture("rest_incident.json"))
    io = connector()
    io.transition(INC, "acknowledged")
    io.transition(INC, "resolved")
    bodies = [json.loads(c.request.body) for c in edit.calls]
    assert bodies == [{"incident": {"incident_status_id": "01FCNDV6P870EA6S7TK1DSYD02"}, "notify_incident_channel": False},
                      {"incident": {"incident_status_id": "01FCNDV6P870EA6S7TK1DSYD06"}, "notify_incident_channel": False}]
    assert edit.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in io.session.headers


@pytest.mark.parametrize("status", ["acknowledged", "triggered"])
@responses.activate
def test_transition_to_where_it_already_is_succeeds_without_a_write(status: str) -> None:
    responses.get(f"{API}/v2/incidents/{INC}", json=fixture("rest_incident.json"))  # live
    connector().transition(INC, status)
    assert len(responses.calls) == 1


@responses.activate
def test_reopen_goes_back_to_live_and_resolve_to_learning_when_configured() -> None:
    closed = fixture("webhook_incident_closed.json")["public_incident.incident_status_updated_v2"]["incident"]
    responses.get(f"{API}/v2/incidents/{INC}", json={"incident": closed})
    responses.get(f"{API}/v1/incident_statuses", json=fixture("rest_statuses.json"))
    edit = responses.post(f"{API}/v2/incidents/{INC}/actions/edit", json=fixture("rest_incident.json"))
    connector(resolve_category="learning").transition(INC, "triggered")
    assert json.loads(edit.calls[0].request.body)["incident"] == {"incident_status_id": "01FCNDV6P870EA6S7TK1DSYD02"}


@responses.activate
def test_update_sets_severity_by_name_and_refuses_unknown_ones() -> None:
    responses.get(f"{API}/v1/severities", json=fixture("rest_severities.json"))
    edit = responses.post(f"{API}/v2/incidents/{INC}/actions/edit", json=fixture("rest_incident.json"))
    io = connector(notify_incident_channel=True)
    io.update(INC, {"priority": "Critical", "title": "Payments down"})
    assert json.loads(edit.calls[0].request.body) == {
        "incident": {"severity_id": "01FH5TZRWMNAFB0DZ23FD1TV03", "name": "Payments down"},
        "notify_incident_channel": True}
    with pytest.raises(PermanentError, match="no incident.io severity named 'P1' .*Critical, Major, Minor"):
        io.update(INC, {"priority": "P1"})
    with pytest.raises(PermanentError, match="cannot set 'urgency'"):
        io.update(INC, {"urgency": "high"})


def test_notes_cannot_be_written() -> None:
    with pytest.raises(PermanentError, match="no API to write incident updates"):
        connector().add_note(INC, "Ticket INC0010023 opened [itsm-bridge:17]")
    assert connector().has_note(INC, "[itsm-bridge:17]") is False


@responses.activate
def test_errors_are_typed_and_never_show_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(f"{API}/v2/incidents/{INC}", status=422, json=fixture("error_validation.json"))
    responses.get(f"{API}/v1/incident_statuses", status=401, json=fixture("error_unauthenticated.json"))
    with pytest.raises(PermanentError) as caught:
        connector().get_incident(INC)
    assert caught.value.status == 422 and KEY not in str(caught.value)
    result = connector().check()
    assert not result.ok and "API key refused" in result.message and KEY not in result.message
    assert KEY not in caplog.text and KEY not in repr(connector())


@responses.activate
def test_check_reports_statuses() -> None:
    responses.get(f"{API}/v1/incident_statuses", json=fixture("rest_statuses.json"))
    assert connector().check().ok
    responses.get(f"{API}/v1/incident_statuses", json={"incident_statuses": fixture("rest_statuses.json")[
        "incident_statuses"][:3]})
    missing = connector(resolve_category="learning").check()
    assert not missing.ok and "no status in category learning" in missing.message
