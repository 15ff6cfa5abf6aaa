"""The Rootly presets validate, compile and map a realistic Rootly incident (normalised from a fixture)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.model import TimelineEntry
from connectors.rootly.webhooks import incident_from_rootly
from mappings.engine import apply, compile_mapping, render_note
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "rootly"
T0 = datetime(2026, 3, 2, 19, 58, 5, tzinfo=timezone.utc)


def rootly_incident(name: str = "webhook_incident_created.json", **changes: object):
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))["data"]
    data.update(changes)
    return incident_from_rootly(data, source="rootly", occurred_at=T0)


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


@pytest.mark.parametrize("name", ["rootly-servicenow", "rootly-jsm"])
def test_rootly_presets_validate_and_compile(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    assert spec.source == "rootly" and compile_mapping(name, spec).field_names


def test_servicenow_preset_maps_a_declared_incident() -> None:
    result = apply(compiled("rootly-servicenow"), rootly_incident(), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Checkout Web] Checkout error rate above 5% in eu-west-1"
    for line in ("Rootly incident #482: Checkout error rate above 5% in eu-west-1", "Severity: SEV1 (high)",
                 "Rootly status: started", "Commander: Ana Ops", "Runbook: https://wiki.example.com/checkout-5xx"):
        assert line in fields["description"]
    assert {k: fields[k] for k in ("impact", "urgency", "state", "assignment_group", "cmdb_ci")} == {
        "impact": "1", "urgency": "1", "state": "1", "assignment_group": "Web Storefront", "cmdb_ci": "Checkout Web"}
    assert "close_code" not in fields and result.warnings == []


@pytest.mark.parametrize("name, state, code, notes", [
    ("webhook_incident_mitigated.json", "2", None, None),
    ("webhook_incident_resolved.json", "6", "Solution provided", "Resolved in Rootly: Fixed connection pool size."),
    ("webhook_incident_cancelled.json", "6", "Canceled", "Cancelled in Rootly: False alarm: synthetic test."),
])
def test_servicenow_preset_follows_rootly_states(name: str, state: str, code: str | None, notes: str | None) -> None:
    fields = apply(compiled("rootly-servicenow"), rootly_incident(name), creating=False).fields
    assert fields["state"] == state and fields.get("close_code") == code
    assert (fields.get("close_notes") or "").startswith(notes or "")
    assert "category" not in fields  # desk-owned after create


def test_unknown_severity_falls_back_to_medium() -> None:
    incident = rootly_incident(severity={"data": {"id": "x", "type": "severities",
                                                 "attributes": {"name": "Minor", "severity": "low"}}})
    fields = apply(compiled("rootly-servicenow"), incident, creating=True).fields
    assert (fields["impact"], fields["urgency"]) == ("3", "2")


def test_jsm_preset_maps_severity_status_and_labels() -> None:
    mapping = compiled("rootly-jsm")
    fields = apply(mapping, rootly_incident(), creating=True).fields
    assert (fields["priority"], fields["status"]) == ("High", "To Do")
    assert fields["labels"] == "rootly,region-eu-west-1,platform-k8s"
    assert apply(mapping, rootly_incident("webhook_incident_resolved.json"), creating=False).fields["status"] == "Resolved"
    assert mapping.back.resolve_states == ["Resolved", "Done", "Closed"]
    entry = TimelineEntry(id="ev-1", at=T0, kind="note", text="Rolled back deploy 4411", author="Ana Ops")
    assert render_note(mapping, rootly_incident(), entry) == "[Rootly] Rolled back deploy 4411"


def test_unknown_status_is_an_error_not_a_guess() -> None:
    incident = rootly_incident().with_attributes(status="exploded")
    with pytest.raises(MappingError):
        apply(compiled("rootly-servicenow"), incident, creating=False)
