"""The Grafana OnCall presets validate, compile and map realistic alert groups (normalised from fixtures),
and map a webhook and a poll of the same alert group to the same fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.model import TimelineEntry
from connectors.grafana_oncall.webhooks import incident_from_alert_group, parse_payload
from mappings.engine import apply, compile_mapping, render_note
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "grafana_oncall"
T0 = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)


def oncall_incident(name: str = "webhook_alert_group_created.json", **group_changes: object):
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    body["alert_group"].update(group_changes)
    [change] = parse_payload(json.dumps(body).encode(), connection="grafana_oncall", received_at=T0)
    return change.incident


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


@pytest.mark.parametrize("name", ["grafana_oncall-servicenow", "grafana_oncall-jsm"])
def test_grafana_oncall_presets_validate_and_compile(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    assert spec.source == "grafana_oncall" and compile_mapping(name, spec).field_names


def test_servicenow_preset_maps_a_new_alert_group() -> None:
    result = apply(compiled("grafana_oncall-servicenow"), oncall_incident(), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Checkout Web] Checkout error rate above 5% in eu-west-1"
    for line in ("Grafana OnCall alert group IZ3F1T4XW8P2K: Checkout error rate above 5% in eu-west-1",
                 "Integration: Checkout Web", "Severity: critical", "region=eu-west-1",
                 "Error budget burn: 14x over 5 minutes.",
                 "Link: https://acme.grafana.net/a/grafana-oncall-app/alert-groups/IZ3F1T4XW8P2K"):
        assert line in fields["description"]
    assert {k: fields[k] for k in ("impact", "urgency", "state", "assignment_group", "cmdb_ci")} == {
        "impact": "1", "urgency": "1", "state": "1", "assignment_group": "Web Storefront", "cmdb_ci": "Checkout Web"}
    assert "close_code" not in fields and result.warnings == []


@pytest.mark.parametrize("name, state, closed", [
    ("webhook_acknowledge.json", "2", False), ("webhook_silence.json", "2", False),
    ("webhook_unacknowledge.json", "1", False), ("webhook_resolve.json", "6", True),
])
def test_servicenow_preset_follows_oncall_states(name: str, state: str, closed: bool) -> None:
    fields = apply(compiled("grafana_oncall-servicenow"), oncall_incident(name), creating=False).fields
    assert fields["state"] == state and ("close_code" in fields) == closed
    assert "description" not in fields and "category" not in fields  # desk-owned after create
    if closed:
        assert fields["close_notes"].startswith("Alert group resolved in Grafana OnCall (acknowledged by alice).")


def test_a_webhook_and_a_poll_of_the_same_alert_group_map_to_the_same_fields() -> None:
    """Fields the bridge keeps in step must not flip between the two shapes (labels list vs dict, first vs
    latest alert payload), or every poll would rewrite the ticket."""
    rest = json.loads((FIXTURES / "rest_alert_group.json").read_text(encoding="utf-8"))
    polled = incident_from_alert_group(rest, source="grafana_oncall", service="Checkout Web", acknowledged_by="alice",
                                       payload=rest["last_alert"]["payload"])
    hooked = oncall_incident("webhook_acknowledge.json")
    for preset in ("grafana_oncall-servicenow", "grafana_oncall-jsm"):
        mapping = compiled(preset)
        assert apply(mapping, polled, creating=False).fields == apply(mapping, hooked, creating=False).fields


def test_without_a_severity_label_the_fields_fall_back_to_medium() -> None:
    incident = oncall_incident(labels={}).with_attributes(priority=None)
    fields = apply(compiled("grafana_oncall-servicenow"), incident, creating=True).fields
    assert (fields["impact"], fields["urgency"]) == ("2", "2")
    assert apply(compiled("grafana_oncall-jsm"), incident, creating=True).fields["priority"] == "Medium"


def test_jsm_preset_maps_severity_status_and_labels() -> None:
    mapping = compiled("grafana_oncall-jsm")
    fields = apply(mapping, oncall_incident(), creating=True).fields
    assert (fields["priority"], fields["status"]) == ("Highest", "To Do")
    assert fields["labels"] == "grafana-oncall,severity-critical,region-eu-west-1,team-storefront"
    assert apply(mapping, oncall_incident("webhook_resolve.json"), creating=False).fields["status"] == "Resolved"
    assert mapping.back.resolve_states == ["Resolved", "Done", "Closed"] and mapping.back.reopen
    assert not mapping.back.fields  # OnCall's API sets no priority: nothing to send back
    entry = TimelineEntry(id="M4BTQUS3PRHYQ", at=T0, kind="note", text="Rolled back deploy 4411", author="bob")
    assert render_note(mapping, oncall_incident(), entry) == "[Grafana OnCall] Rolled back deploy 4411"


def test_servicenow_back_rules_resolve_acknowledge_and_reopen() -> None:
    back = compiled("grafana_oncall-servicenow").back
    assert (back.resolve_states, back.acknowledge_states, back.reopen_states, back.reopen, back.notes) == \
        (["6", "7"], ["2"], ["1", "2"], True, "comments")


def test_unknown_status_is_an_error_not_a_guess() -> None:
    incident = oncall_incident().with_attributes(status="exploded")
    with pytest.raises(MappingError):
        apply(compiled("grafana_oncall-servicenow"), incident, creating=False)
