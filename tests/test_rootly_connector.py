"""Rootly connector: signatures (with timestamp tolerance), normalisation on fixtures shaped like Rootly's
payloads, and the REST calls it makes (with `responses`): poll pagination, notes, transitions, update."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import AuthError, PermanentError, WebhookError
from bridge.http import build_session
from connectors.rootly.config import SECRET_KEYS, RootlyConnection
from connectors.rootly.connector import RootlyConnector
from connectors.rootly.webhooks import (
    event_entry,
    incident_from_rootly,
    sign,
    signature_header,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rootly"
API = "https://api.rootly.com"
TOKEN = "rootly_S3cr3tT0kenValue"
SECRET = "whsec-rootly-correct-horse"
NOW = datetime(2026, 3, 2, 20, 0, tzinfo=timezone.utc)
T = int(NOW.timestamp())
INCIDENT_ID = "7c1f0a8e-4b2d-4e59-9a51-2f3b9c6d8e10"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict:
    return json.loads(raw(name))


def connector(**overrides: object) -> RootlyConnector:
    settings = {"api_url": API, "api_token": TOKEN, "webhook_secret": SECRET, "page_size": 1, **overrides}
    return RootlyConnector("rootly", settings, session=build_session(attempts=1))


# -- config -------------------------------------------------------------------------------------------
def test_connection_model_wants_secret_references() -> None:
    ok = RootlyConnection(type="rootly", api_token="env:ROOTLY_TOKEN", webhook_secret="file:/run/secret")
    assert ok.signature_tolerance_seconds == 300 and ok.poll_interval == 60
    with pytest.raises(ValueError):
        RootlyConnection(type="rootly", api_token=TOKEN)
    with pytest.raises(ValueError):
        RootlyConnection(type="rootly", api_token="env:X", unknown=1)
    assert SECRET_KEYS == ("api_token", "webhook_secret")


# -- signatures ---------------------------------------------------------------------------------------
BODY = raw("webhook_incident_mitigated.json")


def test_correct_signature_is_accepted_whatever_the_header_case() -> None:
    rootly = connector()
    rootly.verify_webhook(BODY, {"X-Rootly-Signature": signature_header(SECRET, T, BODY)}, now=NOW)
    rootly.verify_webhook(BODY, {"x-rootly-signature": f"t={T}, v1={sign(SECRET, T, BODY)}"}, now=NOW)


def test_signature_covers_timestamp_and_body_without_separator() -> None:
    import hashlib
    import hmac
    expected = hmac.new(SECRET.encode(), f"{T}".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, BODY) == expected


@pytest.mark.parametrize("header, reason", [
    (None, "missing X-Rootly-Signature"),
    ("", "missing X-Rootly-Signature"),
    (f"v1={sign(SECRET, T, BODY)}", "must be t=<unix seconds>,v1=<hex>"),
    (f"t={T}", "must be t=<unix seconds>,v1=<hex>"),
    (f"t={T},v1={sign('wrong-secret', T, BODY)}", "does not match"),
    (f"t={T + 1},v1={sign(SECRET, T, BODY)}", "does not match"),
    (f"t={T - 301},v1={sign(SECRET, T - 301, BODY)}", "301s away"),
    (f"t={T + 900},v1={sign(SECRET, T + 900, BODY)}", "tolerance 300s"),
])
def test_bad_missing_or_stale_signature_is_refused_with_401(header: str | None, reason: str) -> None:
    headers = {} if header is None else {"X-Rootly-Signature": header}
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value)
    assert SECRET not in str(caught.value) and sign(SECRET, T, BODY) not in str(caught.value)


def test_tolerance_is_configurable_and_zero_disables_it() -> None:
    old = T - 3600
    header = {"X-Rootly-Signature": signature_header(SECRET, old, BODY)}
    connector(signature_tolerance_seconds=0).verify_webhook(BODY, header, now=NOW)
    connector(signature_tolerance_seconds=7200).verify_webhook(BODY, header, now=NOW)
    with pytest.raises(WebhookError):
        connector(signature_tolerance_seconds=60).verify_webhook(BODY, header, now=NOW)


def test_tampered_body_and_missing_secret_are_refused() -> None:
    header = {"X-Rootly-Signature": signature_header(SECRET, T, BODY)}
    with pytest.raises(WebhookError):
        connector().verify_webhook(BODY.replace(b'"mitigated"', b'"resolved"', 1), header, now=NOW)
    with pytest.raises(WebhookError) as caught:
        connector(webhook_secret=None).verify_webhook(BODY, header, now=NOW)
    assert "no webhook_secret configured for connection rootly" in str(caught.value)


# -- webhook parsing ----------------------------------------------------------------------------------
EXPECTED = {
    "created": ("triggered", "status", "Declared in Rootly as SEV1 (status started)"),
    "updated": ("acknowledged", "update", "Updated in Rootly (status acknowledged, severity SEV1)"),
    "mitigated": ("acknowledged", "status", "Mitigated in Rootly: Rolled back deploy 4411"),
    "resolved": ("resolved", "status", "Resolved in Rootly: Fixed connection pool size"),
    "cancelled": ("resolved", "status", "Cancelled in Rootly: False alarm: synthetic test"),
}


@pytest.mark.parametrize("event", sorted(EXPECTED))
def test_incident_events_become_an_incident_and_a_timeline_line(event: str) -> None:
    payload = fixture(f"webhook_incident_{event}.json")
    [change] = connector().parse_webhook(raw(f"webhook_incident_{event}.json"), {})
    incident = change.incident
    assert incident is not None
    status, kind, text = EXPECTED[event]
    assert (change.record_id, change.event_id, change.event_type) == (INCIDENT_ID, payload["event"]["id"], f"incident.{event}")
    assert (incident.id, incident.number, incident.status) == (INCIDENT_ID, "482", status)
    assert incident.raw["status"] == payload["data"]["status"]  # Rootly's own state stays reachable
    assert (incident.priority, incident.urgency, incident.service) == ("SEV1", "high", "Checkout Web")
    assert incident.assignees == ("Ana Ops", "Ben Notes")  # commander first
    assert incident.title == "Checkout error rate above 5% in eu-west-1"
    assert incident.description.startswith("Error budget burn")
    assert incident.url.startswith("https://rootly.com/account/incidents/482")
    assert incident.updated_at == change.occurred_at
    assert incident.raw["labels"] == {"region": "eu-west-1", "platform": "k8s"}
    assert incident.raw["groups"][0]["name"] == "Storefront"
    assert (incident.resolved_at is not None) == (status == "resolved")
    [entry] = change.entries
    assert (entry.kind, entry.text) == (kind, text)


def test_other_events_pass_through_without_incident() -> None:
    [change] = connector().parse_webhook(raw("webhook_post_mortem_published.json"), {})
    assert change.incident is None and change.record_id == INCIDENT_ID
    assert change.event_type == "incident_post_mortem.published"


@pytest.mark.parametrize("body, names", [
    (b"not json", "not JSON"),
    (b'{"event": {}}', "'event' and 'data'"),
    (b'{"event": {"id": "e1", "issued_at": "2026-03-02T20:00:00Z"}, "data": {}}', "event.type"),
    (b'{"event": {"type": "incident.created", "issued_at": "2026-03-02T20:00:00Z"}, "data": {}}', "event.id"),
    (b'{"event": {"id": "e1", "type": "incident.created"}, "data": {"id": "i"}}', "event.issued_at"),
    ((b'{"event": {"id": "e1", "type": "incident.created", "issued_at": "2026-03-02T20:00:00Z"},'
      b' "data": {"id": "i1", "status": "exploded"}}'), "unknown Rootly status 'exploded'"),
])
def test_malformed_webhooks_are_refused_with_400_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, {})
    assert caught.value.status == 400 and names in str(caught.value)


def test_rest_resource_normalises_like_the_webhook_shape() -> None:
    rest = incident_from_rootly(fixture("rest_incident.json")["data"], source="rootly")
    [change] = connector().parse_webhook(raw("webhook_incident_created.json"), {})
    assert rest.tracked() == change.incident.tracked()
    entries = [event_entry(e) for e in fixture("rest_events.json")["data"]]
    assert entries[1].text == "Rolling back deploy 4411 now" and entries[1].author == "Ana Ops"


# -- REST calls -------------------------------------------------------------------------------------
def serve_incident_pages(pages: list[dict]) -> list[dict]:
    """Answer ``GET /v1/incidents`` with `pages` by ``page[number]``; the queries asked, in order."""
    seen: list[dict] = []

    def page(request):  # type: ignore[no-untyped-def]
        query = parse_qs(urlsplit(request.url).query)
        seen.append(query)
        return 200, {}, json.dumps(pages[int(query["page[number]"][0]) - 1])

    responses.add_callback(responses.GET, f"{API}/v1/incidents", callback=page)
    return seen


@responses.activate
def test_poll_pages_by_number_filters_on_updated_at_and_reads_notes() -> None:
    pages = [fixture("rest_incidents_page1.json"), fixture("rest_incidents_page2.json")]
    seen = serve_incident_pages(pages)
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}/events", json=fixture("rest_events.json"))
    responses.add(responses.GET, f"{API}/v1/incidents/9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d/events",
                  json={"data": [], "meta": {"next_page": None}})
    result = connector().poll("2026-03-02T19:00:00Z", now=NOW)
    assert [q["page[number]"] for q in seen] == [["1"], ["2"]]
    assert seen[0]["filter[updated_at][gte]"] == ["2026-03-02T18:59:00Z"] and seen[0]["sort"] == ["updated_at"]
    first, second = result.changes
    assert (first.incident.status, second.incident.status, second.incident.priority) == ("acknowledged", "triggered", None)
    assert [e.id for e in first.entries] == ["ev-note-1", "ev-note-2"]  # the automatic trail is skipped
    assert result.cursor == "2026-03-02T20:00:00Z"
    assert first.event_id.startswith(f"poll:{INCIDENT_ID}:")


def test_poll_event_id_changes_when_tracked_attributes_change() -> None:
    from connectors.rootly.connector import _version
    base = incident_from_rootly(fixture("rest_incident.json")["data"], source="rootly")
    assert _version(base, 0) != _version(base.with_attributes(priority="SEV0"), 0) != _version(base, 1)


@responses.activate
def test_requests_are_jsonapi_with_bearer_token_per_request() -> None:
    responses.add(responses.POST, f"{API}/v1/incidents/{INCIDENT_ID}/events", status=201, json={"data": {}})
    session = build_session(attempts=1)
    RootlyConnector("rootly", {"api_url": API, "api_token": TOKEN}, session=session).add_note(INCIDENT_ID, "hi [itsm-bridge:3]")
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert json.loads(request.body) == {"data": {"type": "incident_events",
                                                 "attributes": {"event": "hi [itsm-bridge:3]", "visibility": "internal"}}}
    assert "Authorization" not in session.headers


@responses.activate
def test_has_note_looks_for_the_tag() -> None:
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}/events", json=fixture("rest_events.json"))
    assert connector().has_note(INCIDENT_ID, "[itsm-bridge:7]")
    assert not connector().has_note(INCIDENT_ID, "[itsm-bridge:8]")


def _incident_with(status: str) -> dict:
    data = fixture("rest_incident.json")
    data["data"]["attributes"]["status"] = status
    return data


@pytest.mark.parametrize("current, wanted, path, body", [
    ("started", "acknowledged", "", {"status": "acknowledged"}),
    ("in_triage", "resolved", "/resolve", {"resolution_message": "Resolved from the service desk"}),
    ("mitigated", "resolved", "/resolve", {"resolution_message": "Resolved from the service desk"}),
    ("cancelled", "triggered", "/restart", {}),
])
@responses.activate
def test_transition_uses_the_rootly_action(current: str, wanted: str, path: str, body: dict) -> None:
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}", json=_incident_with(current))
    responses.add(responses.PUT, f"{API}/v1/incidents/{INCIDENT_ID}{path}", json=_incident_with("resolved"))
    connector().transition(INCIDENT_ID, wanted)
    assert json.loads(responses.calls[1].request.body) == {"data": {"type": "incidents", "attributes": body}}


@pytest.mark.parametrize("current, wanted", [("mitigated", "acknowledged"), ("closed", "resolved"),
                                             ("cancelled", "resolved"), ("detected", "triggered")])
@responses.activate
def test_transition_to_the_state_it_is_already_in_succeeds(current: str, wanted: str) -> None:
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}", json=_incident_with(current))
    connector().transition(INCIDENT_ID, wanted)
    assert len(responses.calls) == 1


@responses.activate
def test_update_looks_up_the_severity_and_refuses_unknown_fields() -> None:
    responses.add(responses.GET, f"{API}/v1/severities", json=fixture("rest_severities.json"))
    responses.add(responses.PUT, f"{API}/v1/incidents/{INCIDENT_ID}", json=_incident_with("started"))
    connector().update(INCIDENT_ID, {"priority": "SEV0", "title": "New title"})
    assert json.loads(responses.calls[1].request.body)["data"]["attributes"] == {"severity_id": "sev-0", "title": "New title"}
    with pytest.raises(PermanentError, match="no Rootly severity named 'SEV9'"):
        connector().update(INCIDENT_ID, {"priority": "SEV9"})
    with pytest.raises(PermanentError, match="cannot set 'urgency'"):
        connector().update(INCIDENT_ID, {"urgency": "high"})


@responses.activate
def test_failures_are_typed_and_never_show_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}", status=401, json=fixture("error_unauthorized.json"))
    with pytest.raises(AuthError) as caught:
        connector().get_incident(INCIDENT_ID)
    assert TOKEN not in str(caught.value) and TOKEN not in caplog.text and TOKEN not in repr(connector())
    responses.add(responses.GET, f"{API}/v1/incidents", status=401, json=fixture("error_unauthorized.json"))
    result = connector().check()
    assert not result.ok and "token refused" in result.message and TOKEN not in result.message


# -- custom fields (form field selections) ------------------------------------------------------------
CUSTOM = {"customer-impact": "Partial outage", "affected-regions": ["eu-west-1", "ap-south-1"],
          "change-ticket": "CHG0031337"}
OTHER_ID = "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def test_included_form_field_selections_become_custom_fields_by_slug() -> None:
    document = fixture("rest_incident_custom_fields.json")
    incident = incident_from_rootly(document["data"], source="rootly", included=document["included"])
    assert incident.raw["custom_fields"] == CUSTOM  # select: the option's value; multi_select: a list; text: value
    selections = incident.raw["form_field_selections"]
    assert [s["form_field"]["name"] for s in selections] == ["Customer impact", "Affected regions", "Change ticket"]
    assert {s["incident_id"] for s in selections} == {INCIDENT_ID}  # the other incident's selection stays out
    assert incident.tracked() == incident_from_rootly(fixture("rest_incident.json")["data"], source="rootly").tracked()
    bare = incident_from_rootly(document["data"], source="rootly")  # linkage without included: nothing to read
    assert bare.raw["custom_fields"] == {} and bare.raw["form_field_selections"] == []


def test_selections_link_by_incident_id_without_relationships_and_unanswered_is_none() -> None:
    document = fixture("rest_incident_custom_fields.json")
    del document["data"]["relationships"]
    document["included"][2]["attributes"]["value"] = ""
    document["included"][1]["attributes"]["selected_option_ids"] = []
    incident = incident_from_rootly(document["data"], source="rootly", included=document["included"])
    assert incident.raw["custom_fields"] == {"customer-impact": "Partial outage", "affected-regions": [],
                                             "change-ticket": None}


def test_webhook_carries_form_field_selections_inline() -> None:
    [change] = connector().parse_webhook(raw("webhook_incident_updated.json"), {})
    assert change.incident.raw["custom_fields"] == CUSTOM
    [created] = connector().parse_webhook(raw("webhook_incident_created.json"), {})
    assert created.incident.raw["custom_fields"] == {} and created.incident.raw["form_field_selections"] == []


@responses.activate
def test_get_incident_asks_for_custom_field_selections() -> None:
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}", json=fixture("rest_incident_custom_fields.json"))
    incident = connector().get_incident(INCIDENT_ID)
    assert parse_qs(urlsplit(responses.calls[0].request.url).query)["include"] == ["custom_field_selections"]
    assert incident.raw["custom_fields"] == CUSTOM


@responses.activate
def test_poll_asks_for_custom_field_selections_and_joins_included_across_pages() -> None:
    included = fixture("rest_incident_custom_fields.json")["included"]
    pages = [fixture("rest_incidents_page1.json"), fixture("rest_incidents_page2.json")]
    pages[0]["included"], pages[1]["included"] = included[:3], included[3:]
    seen = serve_incident_pages(pages)
    for record in (INCIDENT_ID, OTHER_ID):
        responses.add(responses.GET, f"{API}/v1/incidents/{record}/events", json={"data": [], "meta": {"next_page": None}})
    first, second = connector().poll("2026-03-02T19:00:00Z", now=NOW).changes
    assert {q["include"][0] for q in seen} == {"custom_field_selections"}
    assert first.incident.raw["custom_fields"] == CUSTOM
    assert second.incident.raw["custom_fields"] == {"customer-impact": "Full outage"}


def test_poll_event_id_changes_when_a_custom_field_changes() -> None:
    from connectors.rootly.connector import _version
    document = fixture("rest_incident_custom_fields.json")
    before = incident_from_rootly(document["data"], source="rootly", included=document["included"])
    document["included"][2]["attributes"]["value"] = "CHG0040000"
    after = incident_from_rootly(document["data"], source="rootly", included=document["included"])
    assert after.tracked() == before.tracked() and _version(before, 0) != _version(after, 0)


@responses.activate
def test_refetch_on_webhook_reads_the_incident_with_its_custom_fields() -> None:
    responses.add(responses.GET, f"{API}/v1/incidents/{INCIDENT_ID}", json=fixture("rest_incident_custom_fields.json"))
    [change] = connector(refetch_on_webhook=True).parse_webhook(raw("webhook_incident_created.json"), {})
    assert parse_qs(urlsplit(responses.calls[0].request.url).query)["include"] == ["custom_field_selections"]
    assert change.incident.raw["custom_fields"] == CUSTOM
    assert change.incident.updated_at == change.occurred_at  # never older than the event
    assert change.entries[0].text == "Declared in Rootly as SEV1 (status started)"
    assert RootlyConnection(type="rootly", api_token="env:X", refetch_on_webhook=True).refetch_on_webhook
