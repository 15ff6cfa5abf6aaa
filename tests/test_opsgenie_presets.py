"""The Opsgenie presets validate, compile, and map a realistic alert (as the webhook normaliser builds it)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.model import Incident, Ticket, TimelineEntry
from connectors.opsgenie.webhooks import parse_payload
from mappings.engine import apply, compile_mapping, render_back_note, render_note
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "opsgenie"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def alert(**changes: object) -> Incident:
    """The incident of a real-shaped Acknowledge webhook, with some attributes replaced."""
    [change] = parse_payload((FIXTURES / "webhook_acknowledge.json").read_bytes(), connection="opsgenie",
                             web_url="https://acme.app.opsgenie.com")
    assert change.incident is not None
    return change.incident.with_attributes(**changes)


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


@pytest.mark.parametrize("name", ["opsgenie-servicenow", "opsgenie-jsm"])
def test_presets_validate_and_compile(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    assert spec.source == "opsgenie" and spec.description and compiled(name).field_names
    assert spec.back.reopen is False and spec.back.reopen_states == []  # Opsgenie cannot reopen an alert


def test_servicenow_preset_maps_an_acknowledged_alert() -> None:
    result = apply(compiled("opsgenie-servicenow"), alert(), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Payments API] Error rate above 5% on Payments API"
    for line in ("Opsgenie alert #1791: Error rate above 5% on Payments API", "Entity: Payments API",
                 "Link: https://acme.app.opsgenie.com/alert/detail/70413a06-38d6-4c85-92b8-5ebc900d42e2/details",
                 "Priority: P2", "Tags: payments, prod", "Runbook: https://wiki.example.com/payments-5xx"):
        assert line in fields["description"]
    assert {k: fields[k] for k in ("impact", "urgency", "state", "assignment_group", "cmdb_ci", "caller_id")} == {
        "impact": "1", "urgency": "2", "state": "2", "assignment_group": "Payments", "cmdb_ci": "Payments API",
        "caller_id": "itsm.bridge"}
    assert "close_code" not in fields and result.warnings == []


@pytest.mark.parametrize(("priority", "impact", "urgency"), [("P1", "1", "1"), ("P3", "2", "2"), ("P5", "3", "3")])
def test_servicenow_preset_impact_and_urgency_from_priority(priority: str, impact: str, urgency: str) -> None:
    fields = apply(compiled("opsgenie-servicenow"), alert(priority=priority), creating=False).fields
    assert (fields["impact"], fields["urgency"]) == (impact, urgency)


def test_servicenow_preset_closed_alert_and_unknown_status() -> None:
    mapping = compiled("opsgenie-servicenow")
    fields = apply(mapping, alert(status="resolved", resolved_at=T0), creating=False).fields
    assert (fields["state"], fields["close_code"]) == ("6", "Solution provided")
    assert fields["close_notes"].startswith("Alert closed in Opsgenie (owner alice@example.com).")
    no_entity = apply(mapping, alert(service=None), creating=True).fields
    assert no_entity["short_description"].startswith("[Opsgenie] ") and no_entity["assignment_group"] == "Service Desk"
    with pytest.raises(MappingError) as caught:
        apply(mapping, alert(status="snoozed"), creating=False)
    assert (caught.value.field, caught.value.value) == ("state", "snoozed")


def test_jsm_preset_maps_priority_status_and_labels() -> None:
    mapping = compiled("opsgenie-jsm")
    fields = apply(mapping, alert(), creating=True).fields
    assert (fields["priority"], fields["status"]) == ("High", "In Progress")
    assert fields["labels"] == "opsgenie,payments,prod"
    assert fields["summary"] == "[Payments API] Error rate above 5% on Payments API"
    assert "labels" not in apply(mapping, alert(), creating=False).fields


def test_notes_and_back_rules() -> None:
    entry = TimelineEntry(id="n1", at=T0, kind="note", text="Rolled back", author="bob@example.com")
    for name in ("opsgenie-servicenow", "opsgenie-jsm"):
        mapping = compiled(name)
        assert render_note(mapping, alert(), entry) == "[Opsgenie] Rolled back"
        ticket = Ticket(connection="desk", id="1", number="INC0012345", url="https://x", fields={}, updated_at=T0)
        comment = TimelineEntry(id="c1", at=T0, kind="comment", text="Customer confirms recovery", author="Jane")
        assert render_back_note(mapping, ticket, comment) == "INC0012345 Jane (comment): Customer confirms recovery"
    assert compiled("opsgenie-jsm").spec.back.fields["priority"].map["Highest"] == "P1"
