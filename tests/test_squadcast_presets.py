"""The Squadcast presets validate, compile, and map a realistic incident (as the webhook normaliser builds it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.model import Incident, Ticket, TimelineEntry
from connectors.squadcast.webhooks import parse_event
from mappings.engine import apply, compile_mapping, render_back_note, render_note
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "squadcast"
T0 = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)


def squadcast_incident(name: str = "webhook_incident_acknowledged.json", **resource: object) -> Incident:
    """The incident of a real-shaped webhook, with some of Squadcast's own fields replaced."""
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    body["data"]["resource_data"].update(resource)
    [change] = parse_event(json.dumps(body).encode(), connection="squadcast")
    assert change.incident is not None
    return change.incident


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


@pytest.mark.parametrize("name", ["squadcast-servicenow", "squadcast-jsm"])
def test_presets_validate_and_compile(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    assert spec.source == "squadcast" and spec.description and compiled(name).field_names
    assert spec.back.reopen is False and spec.back.reopen_states == []  # the Squadcast API cannot reopen


def test_servicenow_preset_maps_an_acknowledged_incident() -> None:
    result = apply(compiled("squadcast-servicenow"), squadcast_incident(), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Checkout Web] Checkout error rate above 5% in eu-west-1"
    for line in ("Squadcast incident: Checkout error rate above 5% in eu-west-1", "Service: Checkout Web",
                 "Link: https://app.squadcast.com/incident/6650f1c2e99808a1b2c3d4e5", "Priority: P1",
                 "Squadcast status: acknowledged", "Assigned to: Ana Ops", "Team: Storefront",
                 "Tags: environment=production, region=eu-west-1", "Runbook: https://wiki.example.com/checkout-5xx"):
        assert line in fields["description"]
    assert {k: fields[k] for k in ("impact", "urgency", "state", "assignment_group", "cmdb_ci", "caller_id")} == {
        "impact": "1", "urgency": "1", "state": "2", "assignment_group": "Web Storefront", "cmdb_ci": "Checkout Web",
        "caller_id": "itsm.bridge"}
    assert "close_code" not in fields and result.warnings == []


@pytest.mark.parametrize(("priority", "impact", "urgency"), [("P1", "1", "1"), ("P3", "2", "2"), ("P5", "3", "3"),
                                                             ("", "2", "2")])
def test_servicenow_preset_impact_and_urgency_from_priority(priority: str, impact: str, urgency: str) -> None:
    fields = apply(compiled("squadcast-servicenow"), squadcast_incident(priority=priority), creating=False).fields
    assert (fields["impact"], fields["urgency"]) == (impact, urgency)


@pytest.mark.parametrize("name, status, state, notes", [
    ("webhook_incident_triggered.json", "triggered", "1", None),
    ("webhook_incident_resolved.json", "resolved", "6", "Resolved in Squadcast (Ana Ops). https://app.squadcast.com/incident/"),
    ("webhook_incident_resolved.json", "suppressed", "6", "Suppressed in Squadcast (Ana Ops)."),
])
def test_servicenow_preset_follows_squadcast_states(name: str, status: str, state: str, notes: str | None) -> None:
    fields = apply(compiled("squadcast-servicenow"), squadcast_incident(name, status=status), creating=False).fields
    assert fields["state"] == state and fields.get("close_code") == ("Solution provided" if notes else None)
    assert (fields.get("close_notes") or "").startswith(notes or "")
    assert "category" not in fields  # desk-owned after create


def test_unknown_status_is_an_error_not_a_guess() -> None:
    incident = squadcast_incident().with_attributes(status="exploded")
    with pytest.raises(MappingError):
        apply(compiled("squadcast-servicenow"), incident, creating=False)


def test_jsm_preset_maps_priority_status_tags_and_the_way_back() -> None:
    mapping = compiled("squadcast-jsm")
    fields = apply(mapping, squadcast_incident(), creating=True).fields
    assert (fields["priority"], fields["status"], fields["summary"]) == (
        "Highest", "In Progress", "[Checkout Web] Checkout error rate above 5% in eu-west-1")
    assert fields["labels"] == "squadcast,environment-production,region-eu-west-1"
    resolved = apply(mapping, squadcast_incident("webhook_incident_resolved.json"), creating=False).fields
    assert resolved["status"] == "Resolved"
    assert apply(mapping, squadcast_incident(priority=None), creating=False).fields["priority"] == "Medium"
    assert mapping.back.resolve_states == ["Resolved", "Done", "Closed"]
    assert mapping.back.fields["priority"].map["Highest"] == "P1"


def test_notes_are_prefixed_and_desk_comments_flow_back() -> None:
    mapping = compiled("squadcast-servicenow")
    entry = TimelineEntry(id="n-1", at=T0, kind="note", text="Rolled back deploy 4411", author="Ana Ops")
    assert render_note(mapping, squadcast_incident(), entry) == "[Squadcast] Rolled back deploy 4411"
    ticket = Ticket(connection="servicenow", id="sys1", number="INC0010042", url="https://x", fields={"state": "2"},
                    updated_at=T0)
    comment = TimelineEntry(id="c-1", at=T0, kind="comment", text="Customer confirms it works", author="jane.doe")
    assert render_back_note(mapping, ticket, comment) == "INC0010042 jane.doe (comment): Customer confirms it works"
    assert (mapping.back.resolve_states, mapping.back.acknowledge_states, mapping.back.notes) == (["6", "7"], ["2"], "comments")
