"""Opsgenie connector: webhook token, webhook and REST normalisation (on fixtures shaped like the real
payloads), and the REST calls it makes (with `responses`): poll pagination, notes, transitions, priority."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import ValidationError

from bridge.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    TransientError,
    WebhookError,
)
from bridge.http import build_session
from connectors.opsgenie.config import SECRET_KEYS, OpsgenieConnection
from connectors.opsgenie.connector import (
    CHANGED_KEY,
    OpsgenieConnector,
    incident_from_rest,
    note_entry,
)
from connectors.opsgenie.webhooks import (
    INCIDENT_KEYS,
    REREAD_ACTIONS,
    missing_keys,
    note_id,
)
from mappings.engine import apply, compile_mapping
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "opsgenie"
API = "https://api.opsgenie.com"
KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"
SECRET = "og-shared-correct-horse"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
ALERT = "70413a06-38d6-4c85-92b8-5ebc900d42e2"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def connector(**overrides: object) -> OpsgenieConnector:
    settings = {"api_url": API, "api_key": KEY, "webhook_secret": SECRET, "user": "itsm-bridge",
                "web_url": "https://acme.app.opsgenie.com", "catch_up_hours": 24, **overrides}
    return OpsgenieConnector("opsgenie", settings, session=build_session(attempts=1))


# -- config ---------------------------------------------------------------------------------------------
def test_connection_schema_wants_secret_references() -> None:
    ok = OpsgenieConnection.model_validate({"type": "opsgenie", "api_key": "env:OPSGENIE_API_KEY",
                                            "webhook_secret": "file:/run/secrets/og"})
    assert ok.api_url == "https://api.opsgenie.com" and ok.poll_interval == 60
    assert SECRET_KEYS == ("api_key", "webhook_secret")
    for bad, reason in (({"api_key": KEY}, "secret reference"),
                        ({"api_key": "env:K", "webhook_secret": SECRET}, "secret reference"),
                        ({"api_key": "env:K", "typo": 1}, "Extra inputs are not permitted")):
        with pytest.raises(ValidationError) as caught:
            OpsgenieConnection.model_validate({"type": "opsgenie", **bad})
        assert reason in str(caught.value)


# -- webhook token --------------------------------------------------------------------------------------
BODY = raw("webhook_acknowledge.json")


def test_right_token_is_accepted_whatever_the_header_case() -> None:
    connector().verify_webhook(BODY, {"X-Itsm-Bridge-Token": SECRET}, now=NOW)
    connector().verify_webhook(BODY, {"x-itsm-bridge-token": SECRET}, now=NOW)


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing X-Itsm-Bridge-Token"),
    ({"X-Itsm-Bridge-Token": ""}, "missing X-Itsm-Bridge-Token"),
    ({"X-Itsm-Bridge-Token": "og-shared-correct-horsE"}, "does not match"),
    ({"X-Itsm-Bridge-Token": SECRET + " "}, "does not match"),
    ({"Authorization": f"Basic {SECRET}"}, "missing X-Itsm-Bridge-Token"),
])
def test_wrong_or_missing_token_is_refused_with_401(headers: dict, reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value)
    assert SECRET not in str(caught.value)


def test_connection_without_secret_refuses_every_webhook() -> None:
    with pytest.raises(WebhookError) as caught:
        connector(webhook_secret=None).verify_webhook(BODY, {"X-Itsm-Bridge-Token": "anything"}, now=NOW)
    assert caught.value.status == 401 and "no webhook_secret configured for connection opsgenie" in str(caught.value)


# -- webhook parsing ------------------------------------------------------------------------------------
STATUS_EVENTS = {
    "create": ("triggered", "Alert created in Opsgenie on Payments API by System"),
    "acknowledge": ("acknowledged", "Acknowledged by alice@example.com in Opsgenie"),
    "unacknowledge": ("triggered", "Unacknowledged by alice@example.com in Opsgenie; triggered again"),
    "close": ("resolved", "Closed by dave@example.com in Opsgenie"),
}


@pytest.mark.parametrize("event", sorted(STATUS_EVENTS))
def test_status_actions_become_an_incident_and_a_timeline_line(event: str) -> None:
    payload = fixture(f"webhook_{event}.json")
    alert = payload["alert"]
    assert missing_keys(alert) == []
    with responses.RequestsMock() as mocked:  # the payload has every field: no re-read
        [change] = connector().parse_webhook(raw(f"webhook_{event}.json"), {})
        assert not mocked.calls
    incident = change.incident
    assert incident is not None
    assert (change.record_id, change.event_type) == (ALERT, f"alert.{payload['action']}")
    assert change.event_id == f"{ALERT}:{payload['action']}:{alert['updatedAt']}"
    assert (incident.id, incident.number, incident.status) == (ALERT, "1791", STATUS_EVENTS[event][0])
    assert (incident.title, incident.priority, incident.service) == (alert["message"], "P2", "Payments API")
    assert incident.assignees == ((alert["owner"],) if alert["owner"] else ())
    assert incident.url == f"https://acme.app.opsgenie.com/alert/detail/{ALERT}/details"
    assert incident.created_at == datetime(2026, 3, 2, 9, 58, 22, tzinfo=timezone.utc)
    assert incident.updated_at == change.occurred_at == datetime.fromtimestamp(alert["updatedAt"] / 1e9, timezone.utc)
    assert incident.raw == alert and incident.raw["tags"] == ["payments", "prod"]
    assert incident.description == "" and incident.urgency is None
    assert (incident.resolved_at is not None) == (event == "close")
    [entry] = change.entries
    assert (entry.kind, entry.text) == ("status", STATUS_EVENTS[event][1])


def test_escalate_carries_a_line_but_no_incident_and_reads_nothing() -> None:
    with responses.RequestsMock() as mocked:  # any request would fail the test
        [change] = connector().parse_webhook(raw("webhook_escalate.json"), {})
        assert not mocked.calls
    assert change.incident is None and change.record_id == ALERT
    [entry] = change.entries
    assert (entry.kind, entry.text) == ("assignment", "Escalated to the next level by System in Opsgenie")


def test_note_action_carries_the_note_with_the_id_the_rest_api_gives_it() -> None:
    [change] = connector().parse_webhook(raw("webhook_addnote.json"), {})
    assert change.incident is None and change.record_id == ALERT
    [note] = change.entries
    assert (note.kind, note.author) == ("note", "bob@example.com")
    assert note.text == "Rolled back deploy 2026.03.02-1; error rate recovering."
    assert note.id == note_entry(ALERT, fixture("rest_notes.json")["data"][0]).id == \
        note_id(ALERT, "bob@example.com", note.text)


def test_redelivery_has_the_same_event_id_and_unsynced_actions_pass_through_bare() -> None:
    first = connector().parse_webhook(BODY, {})[0]
    assert first.event_id == connector().parse_webhook(BODY, {})[0].event_id
    base = fixture("webhook_addtags.json")
    for action in ("AddTeam", "AddRecipient", "AddResponder", "Delete", "TestAction"):
        body = json.dumps({**base, "action": action}).encode()
        with responses.RequestsMock() as mocked:  # unsynced: acknowledged without reading the alert
            [other] = connector().parse_webhook(body, {})
            assert not mocked.calls
        assert (other.event_type, other.incident, other.entries, other.record_id) == (f"alert.{action}", None, (), ALERT)
        assert other.event_id == f"{ALERT}:{action}:{base['alert']['updatedAt']}"


# -- field actions: the webhook has no status, so the alert is re-read ------------------------------------
UPDATED = fixture("webhook_updatepriority.json")["alert"]["updatedAt"]
WEBHOOK_AT = datetime.fromtimestamp(UPDATED / 1e9, timezone.utc)


def rest_alert(**changes: object) -> dict:
    """`rest_alert.json` (acknowledged, P2, read at 10:00:22.512, before the webhook) with `changes`."""
    return {**fixture("rest_alert.json"), "data": {**fixture("rest_alert.json")["data"], **changes}}


def test_update_priority_yields_the_incident_with_the_new_priority() -> None:
    with responses.RequestsMock() as mocked:
        get = mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest_alert(priority="P1", updatedAt="2026-03-02T10:02:00.117Z"))
        [change] = connector().parse_webhook(raw("webhook_updatepriority.json"), {})
    assert _query(get.calls[0]) == {"identifierType": ["id"]}
    assert get.calls[0].request.headers["Authorization"] == f"GenieKey {KEY}"
    incident = change.incident
    assert incident is not None and (change.record_id, change.event_type) == (ALERT, "alert.UpdatePriority")
    assert change.event_id == f"{ALERT}:UpdatePriority:{UPDATED}"
    assert (incident.id, incident.priority, incident.status) == (ALERT, "P1", "acknowledged")
    assert (incident.title, incident.service, incident.assignees) == (
        "Error rate above 5% on Payments API", "Payments API", ("alice@example.com",))
    assert change.occurred_at == WEBHOOK_AT and incident.updated_at == datetime(2026, 3, 2, 10, 2, 0, 117000,
                                                                                tzinfo=timezone.utc)
    assert change.actor == "daed1180-0ce8-438b-8f8e-57e1a5920a2d" and change.via == "webhook"
    [entry] = change.entries
    assert (entry.id, entry.kind, entry.author) == (f"{change.event_id}:priority", "priority", "alice@example.com")
    assert entry.text == "Priority changed from P2 to P1 by alice@example.com in Opsgenie" and entry.at == WEBHOOK_AT


def test_a_read_that_lags_the_webhook_keeps_the_changed_field_from_the_webhook() -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest_alert())  # still P2: the change is not applied yet
        [change] = connector().parse_webhook(raw("webhook_updatepriority.json"), {})
    assert (change.incident.priority, change.incident.status) == ("P1", "acknowledged")
    assert change.incident.updated_at == change.occurred_at == WEBHOOK_AT
    assert change.incident.raw["priority"] == "P1" and change.incident.raw["id"] == ALERT


def test_a_read_newer_than_the_webhook_gives_the_newer_state_at_its_time() -> None:
    later = rest_alert(priority="P3", status="closed", updatedAt="2026-03-02T10:05:00.000Z",
                       report={"closeTime": 398000, "closedBy": "dave@example.com"})
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", json=later)
        [change] = connector().parse_webhook(raw("webhook_updatepriority.json"), {})
    assert (change.incident.priority, change.incident.status) == ("P3", "resolved")
    assert change.occurred_at == change.incident.updated_at == datetime(2026, 3, 2, 10, 5, tzinfo=timezone.utc)
    assert change.event_id == f"{ALERT}:UpdatePriority:{UPDATED}"  # the id stays the webhook's
    assert change.entries[0].at == WEBHOOK_AT


@pytest.mark.parametrize("status, error", [(503, "busy"), (404, "Alert does not exist"), (401, "Could not authenticate")])
def test_a_failed_re_read_still_acknowledges_the_webhook_with_its_line(status: int, error: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", status=status, json={"message": error, "took": 0, "requestId": "r"})
        [change] = connector().parse_webhook(raw("webhook_updatepriority.json"), {})
    assert change.incident is None and change.event_id == f"{ALERT}:UpdatePriority:{UPDATED}"
    assert [e.kind for e in change.entries] == ["priority"]
    assert "could not re-read alert" in caplog.text and KEY not in caplog.text


FIELD_ACTIONS = {  # action: (the payload's alert changes, the REST alert's changes, what the line says)
    "UpdateMessage": ({"message": "Error rate above 10%"}, {"message": "Error rate above 10%"},
                      "Message changed to 'Error rate above 10%' by alice@example.com in Opsgenie"),
    "UpdateDescription": ({"description": "New runbook"}, {"description": "New runbook"},
                          "Description updated by alice@example.com in Opsgenie"),
    "AddTags": ({"tags": ["payments", "prod", "customer-facing"], "addedTags": "customer-facing"},
                {"tags": ["payments", "prod", "customer-facing"]},
                "Tags added: customer-facing by alice@example.com in Opsgenie"),
    "RemoveTags": ({"tags": ["payments"], "removedTags": "prod"}, {"tags": ["payments"]},
                   "Tags removed: prod by alice@example.com in Opsgenie"),
    "AssignOwnership": ({"owner": "carol@example.com"}, {"owner": "carol@example.com"},
                        "Ownership assigned to carol@example.com by alice@example.com in Opsgenie"),
    "TakeOwnership": ({"owner": "alice@example.com"}, {"owner": "alice@example.com"},
                      "Ownership taken by alice@example.com in Opsgenie"),
}


def test_every_re_read_action_names_the_key_it_changes() -> None:
    assert set(CHANGED_KEY) == set(REREAD_ACTIONS) == set(FIELD_ACTIONS) | {"UpdatePriority"}


@pytest.mark.parametrize("action", sorted(FIELD_ACTIONS))
@pytest.mark.parametrize("lagging", [False, True], ids=["read-current", "read-lags"])
def test_field_actions_yield_the_incident_the_alert_shows(action: str, lagging: bool) -> None:
    payload_changes, rest_changes, text = FIELD_ACTIONS[action]
    base = fixture("webhook_updatepriority.json")
    alert = {k: v for k, v in base["alert"].items() if k != "oldPriority"}
    body = json.dumps({**base, "action": action, "alert": {**alert, "priority": "P2", **payload_changes}}).encode()
    rest = rest_alert() if lagging else rest_alert(updatedAt="2026-03-02T10:02:00.117Z", **rest_changes)
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest)
        [change] = connector().parse_webhook(body, {})
    incident = change.incident
    assert incident is not None and change.event_id == f"{ALERT}:{action}:{UPDATED}"
    assert (incident.status, incident.priority) == ("acknowledged", "P2")
    key = CHANGED_KEY[action]
    assert incident.raw[key] == rest_changes[key]
    assert incident.title == incident.raw["message"] and incident.assignees == (incident.raw["owner"],)
    [entry] = change.entries
    assert (entry.kind, entry.text) == (REREAD_ACTIONS[action], text)
    assert entry.id == f"{change.event_id}:{entry.kind}"


def test_field_action_event_ids_are_unique_per_action_and_stable_per_delivery() -> None:
    base = fixture("webhook_updatepriority.json")
    ids = set()
    for action in [*REREAD_ACTIONS, "Escalate", "AddNote", "AddTeam"]:
        body = json.dumps({**base, "action": action, "alert": {**base["alert"], "note": "x"}}).encode()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
            mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest_alert())
            first, again = connector().parse_webhook(body, {})[0], connector().parse_webhook(body, {})[0]
        assert first.event_id == again.event_id and first.incident == again.incident
        ids.add(first.event_id)
    assert len(ids) == len(REREAD_ACTIONS) + 3


@pytest.mark.parametrize("body, names", [
    (b"{not json", "not JSON"),
    (b"[]", "must be a JSON object"),
    (json.dumps({"alert": {}}).encode(), "payload.action"),
    (json.dumps({"action": "Create", "alert": "x"}).encode(), "payload.alert must be an object"),
    (json.dumps({"action": "Create", "alert": {"alertId": 7}}).encode(), "alert.alertId"),
    (json.dumps({**fixture("webhook_create.json"), "alert": {**fixture("webhook_create.json")["alert"],
                                                             "updatedAt": "soon"}}).encode(),
     "alert.updatedAt must be an epoch number, got 'soon'"),
    (json.dumps({**fixture("webhook_addnote.json"), "alert": {**fixture("webhook_addnote.json")["alert"],
                                                              "note": None}}).encode(), "alert.note"),
])
def test_malformed_webhooks_are_refused_with_400_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, {})
    assert caught.value.status == 400 and names in str(caught.value)


# -- status webhooks without the fields the incident is built from ---------------------------------------
DOCUMENTED = "webhook_acknowledge_documented.json"  # shaped like Opsgenie's sample: no priority, owner, description


def desk_fields(incident: object) -> dict[str, str]:
    """What the opsgenie-servicenow preset writes to the ticket for `incident` (an update)."""
    mapping = compile_mapping("opsgenie-servicenow", MappingSpec.model_validate(load_preset("opsgenie-servicenow")))
    return dict(apply(mapping, incident, creating=False).fields)


def test_documented_acknowledge_payload_lacks_priority_owner_and_description() -> None:
    assert missing_keys(fixture(DOCUMENTED)["alert"]) == ["priority", "owner", "description"]
    assert set(INCIDENT_KEYS) <= set(fixture("webhook_acknowledge.json")["alert"])


@pytest.mark.parametrize("priority, impact, urgency", [("P2", "1", "2"), ("P1", "1", "1"), ("P5", "3", "3")])
def test_acknowledge_without_priority_keeps_the_alerts_priority_from_a_re_read(priority: str, impact: str,
                                                                               urgency: str) -> None:
    with responses.RequestsMock() as mocked:
        get = mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest_alert(priority=priority))
        [change] = connector().parse_webhook(raw(DOCUMENTED), {})
    assert len(get.calls) == 1 and _query(get.calls[0]) == {"identifierType": ["id"]}
    incident = change.incident
    assert incident is not None
    assert change.event_id == f"{ALERT}:Acknowledge:{fixture(DOCUMENTED)['alert']['updatedAt']}"
    assert (incident.status, incident.priority) == ("acknowledged", priority)
    assert incident.assignees == ("alice@example.com",)
    assert incident.raw["description"].startswith("Error budget burn")
    fields = desk_fields(incident)
    assert (fields["impact"], fields["urgency"], fields["state"]) == (impact, urgency, "2")
    assert f"Priority: {priority}" in fields["description"] and "Runbook:" in fields["description"]
    [entry] = change.entries
    assert (entry.kind, entry.text) == ("status", "Acknowledged by alice@example.com in Opsgenie")


def test_the_re_read_incident_writes_the_desk_as_the_complete_payload_does() -> None:
    [complete] = connector().parse_webhook(raw("webhook_acknowledge.json"), {})  # carries P2, owner, description
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest_alert())  # the same alert, P2
        [documented] = connector().parse_webhook(raw(DOCUMENTED), {})
    assert desk_fields(documented.incident) == desk_fields(complete.incident)
    assert documented.incident.tracked() == complete.incident.tracked()


@pytest.mark.parametrize("change", [
    {"priority": None}, {"owner": None}, {"description": None}, {"priority": 3}, {"priority": "high"},
], ids=["no-priority", "no-owner", "no-description", "create-sample-priority-3", "bad-priority"])
def test_any_missing_incident_field_is_re_read(change: dict) -> None:
    base = fixture("webhook_acknowledge.json")
    alert = {k: v for k, v in {**base["alert"], **change}.items() if v is not None}
    with responses.RequestsMock() as mocked:
        get = mocked.get(f"{API}/v2/alerts/{ALERT}", json=rest_alert(priority="P1"))
        [parsed] = connector().parse_webhook(json.dumps({**base, "alert": alert}).encode(), {})
    assert len(get.calls) == 1 and parsed.incident.priority == "P1"


def test_a_status_read_that_lags_the_webhook_keeps_the_webhooks_status_and_fields() -> None:
    before = rest_alert(acknowledged=False, owner="", report={}, message="old message",
                        updatedAt="2026-03-02T09:58:22.000Z")  # the Acknowledge is not applied yet
    payload = fixture(DOCUMENTED)
    payload["alert"]["message"] = "Error rate above 5% on Payments API"
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", json=before)
        [change] = connector().parse_webhook(json.dumps(payload).encode(), {})
    incident = change.incident
    assert (incident.status, incident.priority, incident.title) == (
        "acknowledged", "P2", "Error rate above 5% on Payments API")
    assert incident.updated_at == change.occurred_at == datetime.fromtimestamp(
        payload["alert"]["updatedAt"] / 1e9, timezone.utc)
    close = {**payload, "action": "Close"}
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", json=before)
        [closed] = connector().parse_webhook(json.dumps(close).encode(), {})
    assert (closed.incident.status, closed.incident.resolved_at) == ("resolved", closed.occurred_at)


@pytest.mark.parametrize("status", [503, 404, 401])
def test_a_failed_status_re_read_sends_the_line_and_no_incident_with_a_default_priority(
        status: int, caplog: pytest.LogCaptureFixture) -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/v2/alerts/{ALERT}", status=status, json={"message": "x", "took": 0, "requestId": "r"})
        [change] = connector().parse_webhook(raw(DOCUMENTED), {})
    assert change.incident is None and [e.kind for e in change.entries] == ["status"]
    assert "could not re-read alert" in caplog.text and KEY not in caplog.text


# -- REST normalisation ---------------------------------------------------------------------------------
def test_rest_alert_normalises_like_the_webhook_shape() -> None:
    rest = incident_from_rest(fixture("rest_alert.json")["data"], source="opsgenie",
                              web_url="https://acme.app.opsgenie.com")
    [change] = connector().parse_webhook(BODY, {})
    for name in ("id", "number", "title", "status", "priority", "service", "assignees", "urgency", "url",
                 "description", "escalation_level"):
        assert getattr(rest, name) == getattr(change.incident, name), name
    assert rest.updated_at == datetime(2026, 3, 2, 10, 0, 22, 512000, tzinfo=timezone.utc)


def test_rest_closed_alert_is_resolved_at_created_plus_close_time() -> None:
    closed = incident_from_rest(fixture("rest_alerts_page1.json")["data"][1], source="og")
    assert (closed.status, closed.priority, closed.service) == ("resolved", "P3", None)  # list items: no entity
    assert closed.resolved_at == datetime(2026, 3, 2, 11, 42, 31, 204000, tzinfo=timezone.utc)
    assert incident_from_rest(fixture("rest_alerts_page2.json")["data"][0], source="og").status == "triggered"


# -- REST calls -----------------------------------------------------------------------------------------
def _query(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def _page_matcher(offset: str) -> list:
    return [responses.matchers.query_param_matcher({"offset": offset}, strict_match=False)]


EMPTY = {"data": [], "paging": {}, "took": 0, "requestId": "x"}
ENTITIES = {"a3f9c2d1-6b7e-4e0a-9d3c-2f1e0b9a8c77": "Search", "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f": "Checkout Web"}


def _full(listed: dict, **changes: object) -> dict:
    """``GET /v2/alerts/{id}`` for a list item: what the list leaves out (entity, description...)."""
    return {"data": {**listed, "entity": ENTITIES[listed["id"]], "description": f"About {listed['message']}",
                     "details": {}, "actions": [], **changes}, "took": 0, "requestId": "x"}


@responses.activate
def test_poll_pages_by_updated_at_and_reads_each_alert_and_its_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.opsgenie.connector.PAGE_LIMIT", 2)
    page1, page2 = fixture("rest_alerts_page1.json"), fixture("rest_alerts_page2.json")
    responses.get(f"{API}/v2/alerts", json=page1, match=_page_matcher("0"))
    responses.get(f"{API}/v2/alerts", json=page2, match=_page_matcher("2"))
    responses.get(f"{API}/v2/alerts/{ALERT}", json=fixture("rest_alert.json"))
    responses.get(f"{API}/v2/alerts/{ALERT}/notes", json=fixture("rest_notes.json"))
    for listed in (page1["data"][1], page2["data"][0]):
        responses.get(f"{API}/v2/alerts/{listed['id']}", json=_full(listed))
        responses.get(f"{API}/v2/alerts/{listed['id']}/notes", json=EMPTY)

    result = connector().poll("2026-03-02T10:00:05Z", now=NOW)

    listing = _query(responses.calls[0])
    assert listing["query"] == ["updatedAt>=1772445600000"]  # cursor minus the 5 s overlap, epoch ms
    assert (listing["sort"], listing["order"], listing["limit"]) == (["updatedAt"], ["asc"], ["2"])
    reads = [c.request.url.split("?")[0] for c in responses.calls if "/notes" not in c.request.url]
    assert reads.count(f"{API}/v2/alerts/{ALERT}") == 1 and len(reads) == 2 + 3  # two pages, one GET per alert
    assert [c.incident.status for c in result.changes] == ["acknowledged", "resolved", "triggered"]
    assert [c.incident.service for c in result.changes] == ["Payments API", "Search", "Checkout Web"]
    first = result.changes[0]
    assert first.incident.raw["description"] == fixture("rest_alert.json")["data"]["description"]
    assert first.event_id.startswith(f"poll:{ALERT}:2026-03-02T10:00:22.512Z:")
    assert (first.via, first.event_type) == ("poll", "alert.polled")
    assert [e.author for e in first.entries] == ["bob@example.com", "itsm-bridge"]
    assert result.cursor == "2026-03-02T11:50:00Z"
    again = connector().poll("2026-03-02T10:00:05Z", now=NOW)
    assert [c.event_id for c in again.changes] == [c.event_id for c in result.changes]


@responses.activate
def test_a_polled_alert_writes_the_desk_as_its_webhook_does() -> None:
    """List items have no entity nor description: an incident built from one would blank the ticket's
    group, configuration item and alert text until the next webhook put them back."""
    listed = fixture("rest_alerts_page1.json")["data"][0]
    assert not {"entity", "description", "details"} & set(listed)
    responses.get(f"{API}/v2/alerts", json={"data": [listed], "paging": {}})
    responses.get(f"{API}/v2/alerts/{ALERT}", json=fixture("rest_alert.json"))
    responses.get(f"{API}/v2/alerts/{ALERT}/notes", json=EMPTY)
    [polled] = connector().poll("2026-03-02T10:00:05Z", now=NOW).changes
    [hooked] = connector().parse_webhook(raw("webhook_acknowledge.json"), {})
    assert desk_fields(polled.incident) == desk_fields(hooked.incident)
    assert polled.incident.tracked() == hooked.incident.tracked()
    listed_only = desk_fields(incident_from_rest(listed, source="opsgenie", web_url="https://acme.app.opsgenie.com"))
    assert listed_only["assignment_group"] == "Service Desk" and "Runbook" not in listed_only["description"]


@responses.activate
def test_poll_cursor_is_the_listings_and_a_deleted_alert_is_skipped() -> None:
    page = fixture("rest_alerts_page1.json")
    responses.get(f"{API}/v2/alerts", json={"data": page["data"], "paging": {}})
    responses.get(f"{API}/v2/alerts/{ALERT}", status=404, json=fixture("error_not_found.json"))
    closed = page["data"][1]
    responses.get(f"{API}/v2/alerts/{closed['id']}", json=_full(closed, updatedAt="2026-03-02T12:30:00.000Z"))
    responses.get(f"{API}/v2/alerts/{closed['id']}/notes", json=EMPTY)
    result = connector().poll("2026-03-02T10:00:05Z", now=NOW)
    assert [c.record_id for c in result.changes] == [closed["id"]]
    assert result.changes[0].occurred_at == datetime(2026, 3, 2, 12, 30, tzinfo=timezone.utc)  # as read
    assert result.cursor == "2026-03-02T11:42:31.204000Z"  # as listed: later changes elsewhere are not skipped


@responses.activate
def test_poll_event_id_changes_when_a_tracked_attribute_changes() -> None:
    alert = fixture("rest_alerts_page2.json")["data"][0]
    responses.get(f"{API}/v2/alerts/{alert['id']}/notes", json=EMPTY)
    responses.get(f"{API}/v2/alerts", json={"data": [alert], "paging": {}})
    responses.get(f"{API}/v2/alerts/{alert['id']}", json=_full(alert))
    first = connector().poll(None, now=NOW).changes[0].event_id
    responses.replace(responses.GET, f"{API}/v2/alerts/{alert['id']}", json=_full(alert, priority="P2"))
    assert connector().poll(None, now=NOW).changes[0].event_id != first
    assert _query(responses.calls[0])["query"] == ["updatedAt>=1772366400000"]  # now - catch_up_hours


@responses.activate
def test_writes_carry_the_genie_key_per_request_and_the_integration_user() -> None:
    responses.get(f"{API}/v2/alerts/{ALERT}", json=fixture("rest_alert.json"))
    note = responses.post(f"{API}/v2/alerts/{ALERT}/notes", status=202, json=fixture("accepted.json"))
    og = connector()
    assert og.get_incident(ALERT).priority == "P2"
    og.add_note(ALERT, "Ticket INC0010023 opened [itsm-bridge:17]")
    request = note.calls[0].request
    assert request.headers["Authorization"] == f"GenieKey {KEY}" and _query(note.calls[0]) == {"identifierType": ["id"]}
    assert json.loads(request.body) == {"user": "itsm-bridge", "source": "itsm-bridge",
                                        "note": "Ticket INC0010023 opened [itsm-bridge:17]"}
    assert "Authorization" not in og.session.headers


@responses.activate
def test_has_note_looks_for_the_tag() -> None:
    responses.get(f"{API}/v2/alerts/{ALERT}/notes", json=fixture("rest_notes.json"))
    assert connector().has_note(ALERT, "[itsm-bridge:17]")
    assert not connector().has_note(ALERT, "[itsm-bridge:18]")
    assert _query(responses.calls[0])["order"] == ["asc"]


@pytest.mark.parametrize("wanted, action", [("resolved", "close"), ("triggered", "unacknowledge")])
@responses.activate
def test_transition_posts_the_action(wanted: str, action: str) -> None:
    responses.get(f"{API}/v2/alerts/{ALERT}", json=fixture("rest_alert.json"))
    post = responses.post(f"{API}/v2/alerts/{ALERT}/{action}", status=202, json=fixture("accepted.json"))
    connector().transition(ALERT, wanted)
    assert json.loads(post.calls[0].request.body) == {"user": "itsm-bridge", "source": "itsm-bridge"}


@responses.activate
def test_transition_to_the_state_it_is_already_in_succeeds_without_a_write() -> None:
    responses.get(f"{API}/v2/alerts/{ALERT}", json=fixture("rest_alert.json"))
    connector().transition(ALERT, "acknowledged")
    assert len(responses.calls) == 1


@pytest.mark.parametrize("wanted", ["acknowledged", "triggered"])
@responses.activate
def test_a_closed_alert_cannot_be_reopened(wanted: str) -> None:
    closed = fixture("rest_alerts_page1.json")["data"][1]
    responses.get(f"{API}/v2/alerts/{closed['id']}", json={"data": closed})
    with pytest.raises(PermanentError) as caught:
        connector().transition(closed["id"], wanted)
    assert "cannot reopen a closed alert" in str(caught.value)


@responses.activate
def test_update_sets_priority_and_refuses_what_opsgenie_has_not() -> None:
    put = responses.put(f"{API}/v2/alerts/{ALERT}/priority", status=202, json=fixture("accepted.json"))
    connector().update(ALERT, {"priority": "P1"})
    assert json.loads(put.calls[0].request.body) == {"priority": "P1"}
    for fields in ({"priority": "High"}, {"urgency": "high"}):
        with pytest.raises(PermanentError):
            connector().update(ALERT, fields)
    assert len(responses.calls) == 1


@responses.activate
def test_failures_are_typed_and_never_show_the_key() -> None:
    responses.get(f"{API}/v2/alerts/nope", status=404, json=fixture("error_not_found.json"))
    responses.get(f"{API}/v2/alerts/{ALERT}", status=401, json=fixture("error_unauthorized.json"))
    responses.post(f"{API}/v2/alerts/{ALERT}/notes", status=503, json={"message": "busy", "took": 0, "requestId": "r"})
    with pytest.raises(NotFoundError):
        connector().get_incident("nope")
    with pytest.raises(AuthError) as auth:
        connector().get_incident(ALERT)
    with pytest.raises(TransientError) as busy:
        connector().add_note(ALERT, "x")
    for error in (auth.value, busy.value):
        assert KEY not in str(error) and error.connection == "opsgenie"
    assert KEY not in repr(connector()) and SECRET not in repr(connector())


@responses.activate
def test_check_reports_a_refused_key_without_showing_it() -> None:
    responses.get(f"{API}/v2/alerts", json={"data": [], "paging": {}, "took": 0, "requestId": "r"})
    assert connector().check().ok
    responses.replace(responses.GET, f"{API}/v2/alerts", status=401, json=fixture("error_unauthorized.json"))
    result = connector().check()
    assert not result.ok and "API key refused" in result.message and KEY not in result.message
