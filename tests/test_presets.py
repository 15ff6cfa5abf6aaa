"""The built-in presets: they load, validate, compile, and map realistic PagerDuty incidents."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from bridge.errors import MappingError
from bridge.model import Incident, Ticket, TimelineEntry
from mappings.engine import apply, compile_mapping, explain, render_back_note, render_note
from mappings.schema import MappingSpec, list_presets, load_preset, merge

T0 = datetime(2025, 3, 14, 9, 2, 15, tzinfo=timezone.utc)
PRESET = "pagerduty-servicenow"

#: The `data` of a PagerDuty v3 `incident.triggered` webhook (see research/api-facts.md §1), as `raw`.
WEBHOOK_DATA: dict[str, Any] = {
    "id": "Q2L9XK3VJ4C0ZP", "type": "incident", "self": "https://api.pagerduty.com/incidents/Q2L9XK3VJ4C0ZP",
    "html_url": "https://acme.pagerduty.com/incidents/Q2L9XK3VJ4C0ZP", "number": 4711, "status": "triggered",
    "incident_key": "checkout-5xx-eu-west-1", "created_at": "2025-03-14T09:02:15Z",
    "title": "Checkout error rate above 5% in eu-west-1", "incident_type": {"name": "incident_default"},
    "service": {"id": "PSVC123", "type": "service_reference", "summary": "Checkout Web"},
    "assignees": [{"id": "PUSR1", "type": "user_reference", "summary": "Ana Ops"}],
    "escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference", "summary": "Web Storefront on-call"},
    "teams": [{"id": "PTEAM1", "type": "team_reference", "summary": "Storefront"}],
    "priority": {"id": "PPRI2", "type": "priority_reference", "summary": "P2"}, "urgency": "high",
    "conference_bridge": {"conference_number": None, "conference_url": "https://meet.example.com/war-room"},
    "resolve_reason": None,
}


def pagerduty_incident(**changes: Any) -> Incident:
    values: dict[str, Any] = dict(
        source="pagerduty", id=WEBHOOK_DATA["id"], title=WEBHOOK_DATA["title"], status="triggered",
        created_at=T0, updated_at=T0, number="4711", urgency="high", priority="P2", service="Checkout Web",
        assignees=("Ana Ops",), escalation_level=1, url=WEBHOOK_DATA["html_url"], raw=WEBHOOK_DATA,
        description="Error budget burn: 14x over 5 minutes.\nRunbook: https://wiki.example.com/checkout-5xx",
    )
    values.update(changes)
    return Incident(**values)


@pytest.fixture(scope="module")
def preset_mapping():
    return compile_mapping("pagerduty-to-servicenow", MappingSpec.model_validate(load_preset(PRESET)))


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_validates_and_compiles(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    compiled = compile_mapping(name, spec)
    assert compiled.field_names and spec.description


def test_preset_maps_a_triggered_incident_on_create(preset_mapping) -> None:
    result = apply(preset_mapping, pagerduty_incident(), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Checkout Web] Checkout error rate above 5% in eu-west-1"
    description = fields["description"]
    for line in ("PagerDuty incident #4711: Checkout error rate above 5% in eu-west-1",
                 "Link: https://acme.pagerduty.com/incidents/Q2L9XK3VJ4C0ZP", "Service: Checkout Web",
                 "Urgency: high", "Priority: P2", "Runbook: https://wiki.example.com/checkout-5xx",
                 "Synced by itsm-bridge; do not edit fields owned by the source"):
        assert line in description
    assert {k: fields[k] for k in ("impact", "urgency", "state", "assignment_group", "category", "caller_id",
                                   "cmdb_ci")} == {
        "impact": "1", "urgency": "1", "state": "1", "assignment_group": "Web Storefront",
        "category": "software", "caller_id": "itsm.bridge", "cmdb_ci": "Checkout Web"}
    assert "close_code" not in fields and "close_notes" not in fields
    assert result.warnings == []


def test_preset_update_leaves_desk_owned_fields_alone(preset_mapping) -> None:
    fields = apply(preset_mapping, pagerduty_incident(status="acknowledged"), creating=False).fields
    assert fields["state"] == "2"
    assert "category" not in fields and "caller_id" not in fields


def test_preset_resolved_incident_carries_close_fields(preset_mapping) -> None:
    subject = pagerduty_incident(status="resolved", assignees=("Ana Ops", "Bo Byte"), resolved_at=T0)
    fields = apply(preset_mapping, subject, creating=False).fields
    assert fields["state"] == "6"
    assert fields["close_code"] == "Solution provided"
    assert fields["close_notes"] == ("Resolved in PagerDuty by Ana Ops, Bo Byte. "
                                     "https://acme.pagerduty.com/incidents/Q2L9XK3VJ4C0ZP")
    # PagerDuty empties assignments on resolve: the note still reads well
    unassigned = apply(preset_mapping, subject.with_attributes(assignees=()), creating=False).fields
    assert unassigned["close_notes"] == "Resolved in PagerDuty. https://acme.pagerduty.com/incidents/Q2L9XK3VJ4C0ZP"


@pytest.mark.parametrize(("priority", "urgency", "expected"), [
    ("P1", "high", "1"), ("P2", "high", "1"), ("P3", "high", "2"), ("P4", "low", "3"), ("P5", "low", "3"),
    (None, "high", "2"), ("SEV-1", "high", "2"),
])
def test_preset_urgency_from_priority(preset_mapping, priority: str | None, urgency: str, expected: str) -> None:
    fields = apply(preset_mapping, pagerduty_incident(priority=priority, urgency=urgency), creating=True).fields
    assert fields["urgency"] == expected


@pytest.mark.parametrize(("service", "group"), [
    ("Payments API", "Payments"), ("Search", "Search Platform"), ("Identity", "Identity & Access"),
    ("Data Platform", "Data Platform"), ("Batch Jobs", "Service Desk"), (None, "Service Desk"),
])
def test_preset_assignment_group_by_service(preset_mapping, service: str | None, group: str) -> None:
    fields = apply(preset_mapping, pagerduty_incident(service=service), creating=True).fields
    assert fields["assignment_group"] == group
    if service is None:
        assert fields["short_description"].startswith("[PagerDuty] ")
        assert "Service: (none)" in fields["description"]


def test_preset_truncates_long_titles_with_a_warning(preset_mapping) -> None:
    result = apply(preset_mapping, pagerduty_incident(title="Disk full " * 40), creating=True)
    assert len(result.fields["short_description"]) == 160
    assert result.fields["short_description"].endswith("…")
    assert any("short_description" in warning for warning in result.warnings)


def test_preset_refuses_an_unknown_status(preset_mapping) -> None:
    with pytest.raises(MappingError) as info:
        apply(preset_mapping, pagerduty_incident(status="snoozed"), creating=False)
    assert (info.value.route, info.value.field, info.value.value) == ("pagerduty-to-servicenow", "state", "snoozed")


def test_preset_notes_and_back_rules(preset_mapping) -> None:
    entry = TimelineEntry(id="N1", at=T0, kind="note", text="Rolled back release 2025.03.14-1", author="Ana Ops")
    assert render_note(preset_mapping, pagerduty_incident(), entry) == "[PagerDuty] Rolled back release 2025.03.14-1"
    assert preset_mapping.spec.notes.field == "work_notes"
    back = preset_mapping.back
    assert (back.resolve_states, back.acknowledge_states, back.reopen_states) == (["6", "7"], ["2"], ["1", "2"])
    assert back.reopen is True and back.notes == "comments"
    ticket = Ticket(connection="servicenow", id="9d3c", number="INC0012345", url="https://acme.service-now.com/x",
                    fields={"state": "2"}, updated_at=T0, updated_by="jane.agent")
    comment = TimelineEntry(id="J1", at=T0, kind="comment", text="Customer confirms recovery", author="Jane Agent")
    assert render_back_note(preset_mapping, ticket, comment) == \
        "INC0012345 Jane Agent (comment): Customer confirms recovery"


def test_preset_explain_reads_like_the_toml(preset_mapping) -> None:
    rows = {row.field: row for row in explain(preset_mapping, pagerduty_incident(priority=None), creating=True)}
    assert rows["impact"].rule == "map incident.urgency='high' -> '1'"
    assert rows["urgency"].rule == "default (incident.priority=None not in map)"
    assert rows["close_code"].rule == "skipped: when false"
    assert rows["caller_id"].rule == "value" and rows["caller_id"].owner == "target"


def test_route_overrides_merge_into_the_preset() -> None:
    overrides = {
        "fields": {"assignment_group": {"template": "{{ incident.raw.escalation_policy.summary }}"},
                   "u_pd_team": {"from": "incident.raw.teams.0.summary", "owner": "target"}},
        "back": {"notes": "both", "reopen": False},
        "notes": {},
        "match": {"service": ["Checkout Web"]},
    }
    spec = MappingSpec.model_validate(merge(load_preset(PRESET), overrides))
    compiled = compile_mapping("custom", spec)
    fields = apply(compiled, pagerduty_incident(), creating=True).fields
    assert fields["assignment_group"] == "Web Storefront on-call"
    assert fields["u_pd_team"] == "Storefront"
    assert fields["state"] == "1"  # the rest of the preset still applies
    assert compiled.back.notes == "both" and compiled.back.reopen is False
    assert compiled.back.resolve_states == ["6", "7"]
    assert compiled.field_names[-1] == "u_pd_team"


def test_route_override_typo_is_reported_precisely() -> None:
    from pydantic import ValidationError

    overrides = {"fields": {"impact": {"from": "incident.urgency", "mapp": {"high": "1"}}}}
    with pytest.raises(ValidationError) as info:
        MappingSpec.model_validate(merge(load_preset(PRESET), overrides))
    (error,) = info.value.errors()
    assert error["loc"] == ("fields", "impact", "mapp") and error["type"] == "extra_forbidden"
