"""The Rootly presets validate, compile and map a realistic Rootly incident (normalised from a fixture)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.model import TimelineEntry
from connectors.rootly.webhooks import incident_from_rootly
from mappings.engine import apply, compile_mapping, explain, render_note
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


# -- custom fields, as the presets' commented example shows ----------------------------------------------
def example_route_fields(name: str) -> dict:
    """The ``[routes.fields.*]`` example written in the preset's comments, parsed as the TOML it shows."""
    import tomllib
    text = (Path(__file__).parent.parent / "mappings" / "presets" / f"{name}.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if "Example, in your route" in line) + 1
    example = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        example.append(line[4:])
    return tomllib.loads("\n".join(example))["routes"]["fields"]


def with_example(name: str):
    data = dict(load_preset(name))
    data["fields"] = {**data["fields"], **example_route_fields(name)}
    return compile_mapping(name, MappingSpec.model_validate(data))


def webhook_incident(name: str):
    """What `mappings preview` maps: the incident the connector parses out of a webhook body."""
    from bridge.http import build_session
    from connectors.rootly.connector import RootlyConnector
    connector = RootlyConnector("rootly", {"api_token": "env:X"}, session=build_session(attempts=1))
    [change] = connector.parse_webhook((FIXTURES / name).read_bytes(), {})
    return change.incident


def test_servicenow_example_maps_custom_fields_to_desk_fields() -> None:
    mapping = with_example("rootly-servicenow")
    rows = {row.field: row for row in explain(mapping, webhook_incident("webhook_incident_updated.json"))}
    assert rows["impact"].value == "2"
    assert rows["impact"].rule == "map incident.raw.custom_fields.customer-impact='Partial outage' -> '2'"
    assert rows["u_affected_regions"].value == "eu-west-1, ap-south-1"
    assert apply(mapping, webhook_incident("webhook_incident_updated.json"), creating=False).fields["impact"] == "2"
    unanswered = apply(mapping, webhook_incident("webhook_incident_created.json"), creating=True).fields
    assert (unanswered["impact"], unanswered["u_affected_regions"]) == ("2", "")  # default; empty
    older = rootly_incident()  # stored before custom fields were read: the path is simply missing
    older = older.with_attributes(raw={k: v for k, v in older.raw.items() if k != "custom_fields"})
    assert apply(mapping, older, creating=True).fields["impact"] == "2"


def test_jsm_example_maps_a_custom_field_to_a_jira_custom_field() -> None:
    fields = apply(with_example("rootly-jsm"), webhook_incident("webhook_incident_updated.json"), creating=True).fields
    assert fields["customfield_10050"] == "Outage"
    assert apply(with_example("rootly-jsm"), webhook_incident("webhook_incident_created.json"),
                 creating=True).fields["customfield_10050"] == "None"
