"""The Teams presets validate, compile and map an incident opened from a channel (normalised from a fixture)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.model import Ticket, TimelineEntry
from connectors.teams.webhooks import read_activity, to_changes
from mappings.engine import apply, compile_mapping, render_back_note, render_note
from mappings.schema import MappingSpec, load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "teams"
T0 = datetime(2026, 3, 2, 20, 0, 1, tzinfo=UTC)


def opened(name: str = "activity_open.json"):
    [change] = to_changes(read_activity((FIXTURES / name).read_bytes()), connection="teams")
    return change.incident


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


@pytest.mark.parametrize("name", ["teams-servicenow", "teams-jsm"])
def test_teams_presets_validate_compile_and_send_comments_back(name: str) -> None:
    mapping = compiled(name)
    assert mapping.spec.source == "teams" and mapping.back.notes == "comments"
    entry = TimelineEntry(id="c:1", at=T0, kind="note", text="rolled back 4411", author="Ben Notes")
    assert render_note(mapping, opened(), entry) == "[Teams] Ben Notes: rolled back 4411"


def test_servicenow_preset_opens_a_ticket_naming_the_channel_and_who_opened_it() -> None:
    result = apply(compiled("teams-servicenow"), opened(), creating=True)
    fields = result.fields
    assert fields["short_description"] == "[Teams] Checkout 5xx above 5% in eu-west-1"
    for line in ("Opened from Microsoft Teams by Ana Ops in channel inc-checkout of team Site Reliability.",
                 "Channel: inc-checkout (team Site Reliability)", "Opened by: Ana Ops",
                 "Link: https://teams.microsoft.com/l/channel/19%3A4e1a0c3b9d8f4a7b8c2d1e0f9a8b7c6d%40thread.tacv2/"):
        assert line in fields["description"]
    assert {k: fields[k] for k in ("impact", "urgency", "state", "category", "contact_type", "assignment_group")} == {
        "impact": "2", "urgency": "2", "state": "1", "category": "software", "contact_type": "chat",
        "assignment_group": "Service Desk"}
    assert result.warnings == []


def test_servicenow_preset_leaves_the_ticket_to_the_desk_after_create() -> None:
    fields = apply(compiled("teams-servicenow"), opened(), creating=False).fields
    assert set(fields) == {"short_description"}


def test_a_channel_without_a_name_falls_back_to_its_id() -> None:
    fields = apply(compiled("teams-servicenow"), opened("activity_legacy_shape.json"), creating=True).fields
    assert "Channel: 19:4e1a0c3b9d8f4a7b8c2d1e0f9a8b7c6d@thread.tacv2\n" in fields["description"]


def test_servicenow_preset_announces_state_priority_and_assignment_in_words() -> None:
    back = compiled("teams-servicenow").back
    assert back.announce == ["state", "priority", "assigned_to", "assignment_group"]
    assert back.labels["state"]["6"] == "Resolved" and back.labels["priority"]["1"] == "1 - Critical"
    ticket = Ticket(connection="servicenow", id="abc", number="INC0010001", url="https://sn/x", fields={},
                    updated_at=T0)
    comment = TimelineEntry(id="j1", at=T0, kind="comment", text="Restarting the pool now", author="jane.doe",
                            public=True)
    assert render_back_note(compiled("teams-servicenow"), ticket, comment) == \
        "INC0010001 jane.doe: Restarting the pool now"


def test_jsm_preset_maps_summary_priority_labels_and_announces_status() -> None:
    mapping = compiled("teams-jsm")
    fields = apply(mapping, opened(), creating=True).fields
    assert fields["summary"] == "[Teams] Checkout 5xx above 5% in eu-west-1"
    assert (fields["priority"], fields["labels"]) == ("Medium", "itsm-bridge,teams")
    assert "Opened by: Ana Ops" in fields["description"]
    assert (mapping.back.state_field, mapping.back.announce) == ("status", ["status", "priority", "assignee"])
