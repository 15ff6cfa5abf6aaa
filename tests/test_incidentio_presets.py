"""The incident.io presets validate, compile, and map realistic incidents (from the recorded webhooks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.incidentio.webhooks import incident_from_api
from mappings.engine import apply, compile_mapping, render_note
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "incidentio"


def incident(name: str, key: str, *, nested: bool = False):
    payload = json.loads((FIXTURES / name).read_text(encoding="utf-8"))[key]
    return incident_from_api(payload["incident"] if nested else payload, source="incidentio")


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


CREATED = ("webhook_incident_created.json", "public_incident.incident_created_v2")
CLOSED = ("webhook_incident_closed.json", "public_incident.incident_status_updated_v2")


@pytest.mark.parametrize("name", ["incidentio-servicenow", "incidentio-jsm"])
def test_presets_validate_and_leave_notes_off_on_the_way_back(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    assert spec.source == "incidentio" and spec.back.notes == "none" and spec.description
    assert compiled(name).field_names


def test_servicenow_preset_maps_a_triage_incident() -> None:
    result = apply(compiled("incidentio-servicenow"), incident(*CREATED), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Payments API] Error rate above 5% on Payments API"
    for line in ("incident.io INC-2041: Error rate above 5% on Payments API", "Severity: Major", "Status: Triage",
                 "Link: https://app.incident.io/acme/incidents/2041", "Incident lead: (none)",
                 "Card authorisations failing"):
        assert line in fields["description"]
    assert {k: fields[k] for k in ("impact", "urgency", "state", "assignment_group", "cmdb_ci")} == {
        "impact": "2", "urgency": "1", "state": "1", "assignment_group": "Payments", "cmdb_ci": "Payments API"}
    assert "close_code" not in fields and result.warnings == []


def test_servicenow_preset_closes_with_notes() -> None:
    fields = apply(compiled("incidentio-servicenow"), incident(*CLOSED, nested=True), creating=False).fields
    assert (fields["state"], fields["impact"], fields["close_code"]) == ("6", "1", "Solution provided")
    assert fields["close_notes"].startswith("Closed in incident.io (lead: Alice Adams).")
    assert "category" not in fields


def test_jsm_preset_maps_severity_status_and_labels() -> None:
    mapping = compiled("incidentio-jsm")
    created = apply(mapping, incident(*CREATED), creating=True).fields
    assert (created["priority"], created["status"], created["labels"]) == ("High", "To Do", "incident-io,inc-2041")
    closed = apply(mapping, incident(*CLOSED, nested=True), creating=False).fields
    assert (closed["priority"], closed["status"]) == ("Highest", "Resolved") and "labels" not in closed


def test_note_template_renders() -> None:
    from bridge.model import TimelineEntry

    entry = TimelineEntry(id="u1", at=incident(*CREATED).created_at, kind="note", text="Rolling back")
    rendered = render_note(compiled("incidentio-servicenow"), incident(*CREATED), entry)
    assert "[incident.io] Rolling back" in str(rendered)
