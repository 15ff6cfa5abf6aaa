"""ServiceNowConnector against recorded Table API answers (`responses`): what goes on the wire, what comes back.

Fixtures in tests/fixtures/servicenow are shaped as api-facts §2 describes the real API: raw string
values, references as ``{link, value}``, ``YYYY-MM-DD HH:MM:SS`` UTC dates, ServiceNow error bodies.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import AuthError, NotFoundError, PermanentError, TransientError
from bridge.http import build_session
from bridge.model import Ticket
from connectors.servicenow.connector import (
    ServiceNowConnector,
    next_offset,
    normalise_journal,
    normalise_ticket,
)

FIXTURES = Path(__file__).parent / "fixtures" / "servicenow"
BASE = "https://acme.service-now.com"
TABLE = f"{BASE}/api/now/table/incident"
JOURNAL = f"{BASE}/api/now/table/sys_journal_field"
INC = "9d385017c611228701d22104cc95c371"
PASSWORD = "s3cret-Pa55w0rd"
NOW = datetime(2025, 3, 14, 10, 0, 0, tzinfo=timezone.utc)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def params(call: Any) -> dict[str, str]:
    query = parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)
    return {key: values[0] for key, values in query.items()}


@pytest.fixture
def connector() -> ServiceNowConnector:
    return ServiceNowConnector("servicenow", {"instance_url": BASE + "/", "username": "itsm.bridge",
                                              "password": PASSWORD}, session=build_session(attempts=1))


# -- pure normalisers --------------------------------------------------------------------------------
def test_record_becomes_ticket_with_references_reduced_and_journal_fields_left_out() -> None:
    ticket = normalise_ticket(fixture("incident.json")["result"], connection="servicenow", instance_url=BASE)
    assert ticket.id == INC and ticket.number == "INC0010001"
    assert ticket.url == f"{BASE}/nav_to.do?uri=incident.do?sys_id={INC}"
    assert ticket.fields["assignment_group"] == "287ebd7da9fe198100f92cc8d1d2154e"
    assert ticket.fields["state"] == "2" and ticket.fields["caller_id"] == ""
    assert "work_notes" not in ticket.fields and "comments" not in ticket.fields
    assert ticket.updated_at == datetime(2025, 3, 14, 9, 17, 45, tzinfo=timezone.utc)
    assert ticket.updated_by == "jane.doe"
    assert all(isinstance(value, str) for value in ticket.fields.values())


def display_all(raw: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
    """One record as ``sysparm_display_value=all`` answers it: ``{display_value, value[, link]}`` per field,
    built from the same record read raw and read with display values (api-facts §2)."""
    def both(name: str) -> dict[str, Any]:
        value = raw[name]["value"] if isinstance(raw[name], dict) else raw[name]
        display = shown[name]["display_value"] if isinstance(shown[name], dict) else shown[name]
        link = {"link": raw[name]["link"]} if isinstance(raw[name], dict) else {}
        return {"display_value": display, "value": value, **link}
    return {name: both(name) for name in raw}


def incident_all() -> dict[str, Any]:
    return display_all(fixture("incident.json")["result"], fixture("incident_display_value.json")["result"])


def test_record_read_with_display_values_keeps_raw_fields_and_the_names_apart() -> None:
    raw = normalise_ticket(fixture("incident.json")["result"], connection="servicenow", instance_url=BASE)
    ticket = normalise_ticket(incident_all(), connection="servicenow", instance_url=BASE)
    assert ticket.fields == raw.fields  # everything the bridge compares stays what a raw read gives
    assert (ticket.id, ticket.updated_at, ticket.updated_by) == (raw.id, raw.updated_at, raw.updated_by)
    assert ticket.display["assignment_group"] == "Payments" and ticket.display["assigned_to"] == "Jane Doe"
    assert (ticket.display["state"], ticket.display["priority"]) == ("In Progress", "2 - High")
    assert "short_description" not in ticket.display and "caller_id" not in ticket.display  # only differences
    assert "work_notes" not in ticket.display and "comments" not in ticket.display  # journals: sys_journal_field
    assert raw.display == {}
    assert Ticket.from_dict(json.loads(json.dumps(ticket.to_dict()))) == ticket  # the inbox and link JSON
    assert "display" not in raw.to_dict()


def test_a_reference_to_no_record_has_no_name() -> None:
    record = {**incident_all(), "assignment_group": {"display_value": "", "value": "Service Desk",
                                                     "link": f"{BASE}/api/now/table/sys_user_group/Service Desk"}}
    ticket = normalise_ticket(record, connection="servicenow", instance_url=BASE)
    assert ticket.fields["assignment_group"] == "Service Desk" and "assignment_group" not in ticket.display


@responses.activate
def test_tickets_are_read_with_display_values_and_lookups_stay_raw(connector: ServiceNowConnector) -> None:
    responses.get(f"{TABLE}/{INC}", json={"result": incident_all()})
    responses.patch(f"{TABLE}/{INC}", json={"result": incident_all()})
    responses.get(TABLE, json={"result": [incident_all()]})
    responses.get(JOURNAL, json=fixture("journal_entries.json"))
    responses.post(TABLE, json=fixture("incident_created.json"), status=201)
    assert connector.get(INC).display["assignment_group"] == "Payments"
    answer = connector.update(INC, {"state": "2"})
    assert answer is not None and answer.display["assignment_group"] == "Payments"
    assert answer.fields["assignment_group"] == "287ebd7da9fe198100f92cc8d1d2154e"
    (change,) = connector.poll("2025-03-14 09:00:00", now=NOW).changes
    assert change.ticket is not None and change.ticket.display["assigned_to"] == "Jane Doe"
    assert change.event_id == f"poll:{INC}:4"
    connector.find("pagerduty:Q0RIJJZL24RC6W")
    connector.create({"short_description": "x"}, correlation_id="pagerduty:Q1")
    shown = [(call.request.method, urlsplit(call.request.url).path.rsplit("/", 1)[-1],
              params(call).get("sysparm_display_value") == "all") for call in responses.calls]
    assert shown == [("GET", INC, True), ("PATCH", INC, True), ("GET", "incident", True),  # get, update, poll
                     ("GET", "sys_journal_field", False), ("GET", "incident", False), ("POST", "incident", False)]


def test_journal_rows_become_timeline_entries_comments_public() -> None:
    note, comment, _ = (normalise_journal(row) for row in fixture("journal_entries.json")["result"])
    assert (note.kind, note.public, note.author) == ("work_note", False, "itsm.bridge")
    assert (comment.kind, comment.public, comment.text) == ("comment", True, "Customers cannot check out since 09:00")
    assert comment.at == datetime(2025, 3, 14, 9, 17, 45, tzinfo=timezone.utc)
    assert comment.id == "c5f0e53fdb0c1010c7f3c3d3ca961991"


def test_next_offset_reads_the_link_header() -> None:
    header = (f'<{TABLE}?sysparm_offset=0&sysparm_limit=2>;rel="first",'
              f'<{TABLE}?sysparm_offset=2&sysparm_limit=2>;rel="next",'
              f'<{TABLE}?sysparm_offset=4&sysparm_limit=2>;rel="last"')
    assert next_offset(header) == 2
    assert next_offset(header.replace('rel="next"', 'rel="prev"')) is None
    assert next_offset(None) is None


# -- writes --------------------------------------------------------------------------------------------
@responses.activate
def test_create_posts_once_with_correlation_and_basic_auth(connector: ServiceNowConnector) -> None:
    responses.post(TABLE, json=fixture("incident_created.json"), status=201)
    ref = connector.create({"short_description": "Checkout latency", "impact": "1"},
                           correlation_id="pagerduty:Q0RIJJZL24RC6W")
    assert (ref.id, ref.number) == (INC, "INC0010001")
    assert ref.url == f"{BASE}/nav_to.do?uri=incident.do?sys_id={INC}"
    (call,) = responses.calls
    assert json.loads(call.request.body) == {"short_description": "Checkout latency", "impact": "1",
                                             "correlation_id": "pagerduty:Q0RIJJZL24RC6W",
                                             "correlation_display": "itsm-bridge"}
    assert call.request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"itsm.bridge:{PASSWORD}".encode()).decode()
    assert call.request.headers["Accept"] == "application/json"
    assert call.request.headers["Content-Type"] == "application/json"
    assert "sysparm_input_display_value" not in params(call)  # values are stored as sent unless configured


@responses.activate
def test_input_display_value_is_sent_on_writes_when_configured() -> None:
    connector = ServiceNowConnector("servicenow", {"instance_url": BASE, "username": "u", "password": PASSWORD,
                                                   "input_display_value": True}, session=build_session(attempts=1))
    responses.post(TABLE, json=fixture("incident_created.json"), status=201)
    responses.patch(f"{TABLE}/{INC}", json=fixture("incident.json"))
    responses.get(f"{TABLE}/{INC}", json=fixture("incident.json"))
    connector.create({"assignment_group": "Payments"}, correlation_id="pagerduty:Q1")
    connector.update(INC, {"assignment_group": "Payments"})
    connector.get(INC)
    assert [params(call).get("sysparm_input_display_value") for call in responses.calls] == ["true", "true", None]


@responses.activate
def test_update_is_a_single_patch_never_get_then_put(connector: ServiceNowConnector) -> None:
    responses.patch(f"{TABLE}/{INC}", json=fixture("incident.json"))
    connector.update(INC, {"state": "2", "work_notes": "Acknowledged [itsm-bridge:7]"})
    (call,) = responses.calls
    assert call.request.method == "PATCH"
    assert json.loads(call.request.body) == {"state": "2", "work_notes": "Acknowledged [itsm-bridge:7]"}


@responses.activate
def test_add_note_patches_work_notes(connector: ServiceNowConnector) -> None:
    responses.patch(f"{TABLE}/{INC}", json=fixture("incident.json"))
    connector.add_note(INC, "Rolled back [itsm-bridge:9]")
    assert json.loads(responses.calls[0].request.body) == {"work_notes": "Rolled back [itsm-bridge:9]"}


def test_update_of_something_that_is_no_sys_id_is_refused_without_a_call(connector: ServiceNowConnector) -> None:
    with pytest.raises(NotFoundError):
        connector.update("../sys_user/abc", {"state": "2"})


# -- reads ---------------------------------------------------------------------------------------------
@responses.activate
def test_find_asks_for_the_oldest_match_and_none_when_empty(connector: ServiceNowConnector) -> None:
    responses.get(TABLE, json=fixture("incident_find.json"))
    responses.get(TABLE, json=fixture("empty.json"))
    ref = connector.find("pagerduty:Q0RIJJZL24RC6W")
    assert ref is not None and ref.id == INC and ref.number == "INC0010001"
    sent = params(responses.calls[0])
    assert sent["sysparm_query"] == "correlation_id=pagerduty:Q0RIJJZL24RC6W^ORDERBYsys_created_on^ORDERBYnumber"
    assert sent["sysparm_limit"] == "1"
    assert connector.find("pagerduty:unknown") is None


def test_ids_with_a_caret_are_refused_instead_of_searched(connector: ServiceNowConnector) -> None:
    with pytest.raises(PermanentError, match="cannot be searched"):
        connector.find("pagerduty:X^ORsys_id!=")
    with pytest.raises(PermanentError):
        connector.create({}, correlation_id="a^b")
    with pytest.raises(PermanentError):
        connector.has_note(INC, "tag^x")


@responses.activate
def test_count_correlated_counts_every_duplicate(connector: ServiceNowConnector) -> None:
    responses.get(TABLE, json={"result": [{"sys_id": INC}, {"sys_id": "46b66a40a9fe198101f243dfbc79033d"}]})
    assert connector.count_correlated("pagerduty:Q0RIJJZL24RC6W") == 2
    assert params(responses.calls[0])["sysparm_query"] == "correlation_id=pagerduty:Q0RIJJZL24RC6W"


@responses.activate
def test_has_note_searches_the_journal_of_the_record(connector: ServiceNowConnector) -> None:
    responses.get(JOURNAL, json={"result": [{"sys_id": "a1f0e53fdb0c1010c7f3c3d3ca961990"}]})
    responses.get(JOURNAL, json=fixture("empty.json"))
    assert connector.has_note(INC, "[itsm-bridge:17]") is True
    assert params(responses.calls[0])["sysparm_query"] == f"element_id={INC}^valueLIKE[itsm-bridge:17]"
    assert connector.has_note(INC, "[itsm-bridge:18]") is False


@responses.activate
def test_get_reads_one_record(connector: ServiceNowConnector) -> None:
    responses.get(f"{TABLE}/{INC}", json=fixture("incident.json"))
    ticket = connector.get(INC)
    assert ticket.fields["priority"] == "2" and ticket.number == "INC0010001"


# -- poll ----------------------------------------------------------------------------------------------
@responses.activate
def test_poll_reads_changed_tickets_and_their_journal_once(connector: ServiceNowConnector) -> None:
    responses.get(TABLE, json=fixture("incidents_changed.json"))
    responses.get(JOURNAL, json=fixture("journal_entries.json"))
    result = connector.poll("2025-03-14 09:00:00", now=NOW)
    assert len(responses.calls) == 2
    assert params(responses.calls[0])["sysparm_query"] == (
        "sys_updated_on>=2025-03-14 09:00:00^correlation_displaySTARTSWITHitsm-bridge^ORDERBYsys_updated_on")
    assert params(responses.calls[1])["sysparm_query"] == (
        "sys_created_on>=2025-03-14 09:00:00^name=incident^elementINwork_notes,comments^ORDERBYsys_created_on")
    first, second = result.changes
    assert first.event_id == f"poll:{INC}:4" and first.event_type == "ticket.updated"
    assert (first.actor, first.via, first.record_id) == ("jane.doe", "poll", INC)
    assert [entry.kind for entry in first.entries] == ["work_note", "comment"]
    assert [entry.text for entry in second.entries] == ["internal: vendor ticket 881"]
    assert second.ticket is not None and second.ticket.fields["state"] == "6"
    assert result.cursor == "2025-03-14 09:20:03"


@responses.activate
def test_poll_without_cursor_looks_back_one_hour_and_keeps_the_cursor_when_quiet(
        connector: ServiceNowConnector) -> None:
    responses.get(TABLE, json=fixture("empty.json"))
    result = connector.poll(None, now=NOW)
    assert len(responses.calls) == 1  # nothing changed: no journal query
    assert params(responses.calls[0])["sysparm_query"].startswith("sys_updated_on>=2025-03-14 09:00:00^")
    assert result.changes == [] and result.cursor == "2025-03-14 09:00:00"


@responses.activate
def test_poll_follows_the_next_link_until_the_last_page() -> None:
    connector = ServiceNowConnector("servicenow", {"instance_url": BASE, "username": "u", "password": PASSWORD,
                                                   "page_size": 1}, session=build_session(attempts=1))
    first, second = fixture("incidents_changed.json")["result"]
    responses.get(TABLE, json={"result": [first]},
                  headers={"Link": f'<{TABLE}?sysparm_offset=1&sysparm_limit=1>;rel="next"'})
    responses.get(TABLE, json={"result": [second]},
                  headers={"Link": f'<{TABLE}?sysparm_offset=0&sysparm_limit=1>;rel="first"'})
    responses.get(JOURNAL, json=fixture("empty.json"))
    result = connector.poll("2025-03-14 09:00:00", now=NOW)
    assert [change.record_id for change in result.changes] == [first["sys_id"], second["sys_id"]]
    assert params(responses.calls[1])["sysparm_offset"] == "1"


def test_poll_refuses_a_cursor_that_is_no_desk_time(connector: ServiceNowConnector) -> None:
    with pytest.raises(PermanentError):
        connector.poll("2025-03-14T09:00:00Z^ORactive=true", now=NOW)


# -- errors --------------------------------------------------------------------------------------------
@responses.activate
def test_errors_are_typed_by_status_and_never_carry_the_password(
        connector: ServiceNowConnector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(f"{TABLE}/{INC}", json=fixture("error_unauthenticated.json"), status=401)
    responses.patch(f"{TABLE}/{INC}", json=fixture("error_not_found.json"), status=404)
    responses.post(TABLE, json=fixture("error_rate_limit.json"), status=429, headers={"Retry-After": "7"})
    with pytest.raises(AuthError) as auth:
        connector.get(INC)
    with pytest.raises(NotFoundError, match="No Record found"):
        connector.update(INC, {"state": "2"})
    with pytest.raises(TransientError) as limited:
        connector.create({}, correlation_id="pagerduty:Q1")
    assert limited.value.retry_after == 7.0 and limited.value.status == 429
    assert "User Not Authenticated" in str(auth.value) and auth.value.connection == "servicenow"
    assert all(PASSWORD not in text for text in (str(auth.value), str(limited.value), caplog.text))


@responses.activate
def test_data_policy_refusal_names_the_missing_fields(connector: ServiceNowConnector) -> None:
    responses.patch(f"{TABLE}/{INC}", json=fixture("error_data_policy.json"), status=403)
    with pytest.raises(PermanentError, match="Resolution code, Resolution notes") as refused:
        connector.update(INC, {"state": "6"})
    assert refused.value.status == 403


@responses.activate
def test_non_json_answer_is_transient(connector: ServiceNowConnector) -> None:
    responses.get(f"{TABLE}/{INC}", body="<html>Your instance is hibernating</html>", status=200)
    with pytest.raises(TransientError, match="not JSON"):
        connector.get(INC)


@responses.activate
def test_check_reports_refused_credentials_without_the_password(connector: ServiceNowConnector) -> None:
    responses.get(TABLE, json=fixture("error_unauthenticated.json"), status=401)
    responses.get(TABLE, json=fixture("incident_find.json"))
    refused = connector.check()
    assert not refused.ok and "itsm.bridge" in refused.message and PASSWORD not in refused.message
    assert params(responses.calls[0])["sysparm_limit"] == "1"
    assert connector.check().ok


def test_instance_url_with_a_path_is_a_config_error() -> None:
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="instance_url"):
        ServiceNowConnector("sn", {"instance_url": "acme.service-now.com/now", "username": "u", "password": "p"},
                            session=build_session())
