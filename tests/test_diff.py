"""Planning (pure): what a change means for the other side, and what it must never do."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.diff import observed_fields, plan_create, plan_desk_change, plan_source_update
from bridge.model import Incident, Ticket, TimelineEntry
from mappings.engine import compile_mapping
from mappings.schema import MappingSpec, load_preset

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def mapping():  # type: ignore[no-untyped-def]
    return compile_mapping("pd-sn", MappingSpec.model_validate(load_preset("pagerduty-servicenow")))


def incident(**changes: object) -> Incident:
    base = Incident(source="pagerduty", id="PABC123", number="42", title="Checkout errors", status="triggered",
                    created_at=T0, updated_at=T0, urgency="high", priority="P2", service="Payments API",
                    assignees=("Alice Adams",), url="https://acme.pagerduty.com/incidents/PABC123")
    return base.with_attributes(**changes)


def entry(text: str, *, id: str = "n1", kind: str = "note", author: str | None = "Alice Adams") -> TimelineEntry:
    return TimelineEntry(id=id, at=T0, kind=kind, text=text, author=author)


def ticket(**fields: str) -> Ticket:
    return Ticket(connection="servicenow", id="sys1", number="INC0010001", url="https://x/INC0010001",
                  fields=fields, updated_at=T0, updated_by="jane.doe")


def test_create_carries_every_mapped_field_and_the_first_timeline_line(mapping) -> None:  # type: ignore[no-untyped-def]
    plan = plan_create(mapping, incident(), (entry("Triggered by Alice", kind="status"),))
    (op,) = plan.ops
    assert op.op == "create" and op.side == "target"
    assert op.payload["fields"]["state"] == "1" and op.payload["fields"]["impact"] == "1"
    assert op.payload["fields"]["caller_id"]  # owner=target fields are set on create
    assert "Triggered by Alice" in op.payload["note"]


def test_update_sends_only_fields_whose_mapped_value_changed(mapping) -> None:  # type: ignore[no-untyped-def]
    plan = plan_source_update(mapping, before=incident(), after=incident(status="acknowledged"),
                              entries=(entry("Acknowledged by Alice", id="e2", kind="status"),),
                              seen_entries=[])
    (op,) = plan.ops
    assert op.payload["fields"] == {"state": "2"}
    assert "Acknowledged by Alice" in op.payload["note"]


def test_desk_edit_of_a_field_the_source_did_not_touch_is_not_clobbered(mapping) -> None:  # type: ignore[no-untyped-def]
    # The desk changed assignment_group by hand; PagerDuty then only changes priority: only what the
    # priority maps to is sent, so the desk's own assignment stays.
    plan = plan_source_update(mapping, before=incident(), after=incident(priority="P3"), entries=(),
                              seen_entries=[])
    (op,) = plan.ops
    assert "assignment_group" not in op.payload["fields"]
    assert op.payload["fields"]["urgency"] == "2"
    assert set(op.payload["fields"]) == {"urgency", "description"}  # the description shows the priority


def test_nothing_new_plans_nothing_and_bridge_notes_are_echoes(mapping) -> None:  # type: ignore[no-untyped-def]
    plan = plan_source_update(mapping, before=incident(), after=incident(),
                              entries=(entry("ServiceNow ticket INC1 [itsm-bridge:7]", id="n9"),),
                              seen_entries=[])
    assert plan.ops == [] and plan.decision == "echo" and plan.echoes == 1
    again = plan_source_update(mapping, before=incident(), after=incident(), entries=(entry("x", id="n1"),),
                               seen_entries=["n1"])
    assert again.ops == [] and again.decision == "no-change"


def test_a_field_is_resent_even_if_the_desk_showed_it_while_ops_were_queued(mapping) -> None:  # type: ignore[no-untyped-def]
    # Acknowledged (state 2, still queued) then reassigned (PagerDuty sets it back to triggered):
    # the second change must send state 1 even though the desk still showed 1 when last read.
    plan = plan_source_update(mapping, before=incident(status="acknowledged"), after=incident(status="triggered"),
                              entries=(), seen_entries=[])
    assert plan.ops[0].payload["fields"] == {"state": "1"}


def test_owner_target_fields_are_never_updated(mapping) -> None:  # type: ignore[no-untyped-def]
    plan = plan_source_update(mapping, before=incident(), after=incident(title="New title"), entries=(),
                              seen_entries=[])
    assert "caller_id" not in plan.ops[0].payload["fields"]
    assert plan.ops[0].payload["fields"]["short_description"] == "[Payments API] New title"


@pytest.mark.parametrize(("previous", "state", "source", "expected"), [
    ("2", "6", "acknowledged", "resolved"),
    ("1", "7", "triggered", "resolved"),
    ("1", "2", "triggered", "acknowledged"),
    ("6", "2", "resolved", "triggered"),      # reopened on the desk
    ("1", "2", "acknowledged", None),         # already acknowledged
    ("2", "6", "resolved", None),             # already resolved (our own write read back)
])
def test_desk_state_moves_become_source_transitions(mapping, previous, state, source, expected) -> None:  # type: ignore[no-untyped-def]
    plan = plan_desk_change(mapping, ticket=ticket(state=state), entries=(), target_seen={"state": previous},
                            seen_entries=[], source_status=source, integration_user="itsm.bridge")
    assert [op.payload["status"] for op in plan.ops if op.op == "transition"] == ([expected] if expected else [])


def test_only_public_desk_comments_by_people_flow_back_by_default(mapping) -> None:  # type: ignore[no-untyped-def]
    entries = (entry("Customer called", id="j1", kind="comment", author="jane.doe"),
               entry("vendor case 88", id="j2", kind="work_note", author="jane.doe"),
               entry("[PagerDuty] note [itsm-bridge:3]", id="j3", kind="comment", author="jane.doe"),
               entry("from the bridge", id="j4", kind="comment", author="itsm.bridge"))
    plan = plan_desk_change(mapping, ticket=ticket(state="2"), entries=entries, target_seen={"state": "2"},
                            seen_entries=[], source_status="acknowledged", integration_user="itsm.bridge")
    notes = [op.payload["text"] for op in plan.ops if op.op == "note"]
    assert len(notes) == 1 and "Customer called" in notes[0] and "INC0010001" in notes[0]
    assert plan.echoes == 2 and sorted(plan.seen_entries) == ["j1", "j2", "j3", "j4"]


def test_observed_fields_ignore_journal_fields(mapping) -> None:  # type: ignore[no-untyped-def]
    seen = observed_fields(mapping, ticket(state="6", work_notes="", impact="2", unrelated="x"))
    assert seen == {"state": "6", "impact": "2"}


def test_a_stale_desk_snapshot_is_read_again_not_trusted(mapping) -> None:  # type: ignore[no-untyped-def]
    # Read before the bridge's own last write: "6" may be the desk's decision or the past; ask again.
    plan = plan_desk_change(mapping, ticket=ticket(state="6"), entries=(entry("hi", id="j1", kind="comment"),),
                            target_seen={"state": "2"}, seen_entries=[], source_status="acknowledged",
                            integration_user="itsm.bridge", stale=True)
    assert [op.op for op in plan.ops] == ["refresh", "note"]


def test_field_times_later_writer_wins_ties_to_the_source() -> None:
    from bridge.diff import FieldTimes

    t = lambda s: datetime(2026, 11, 23, 9, 0, s, tzinfo=timezone.utc)  # noqa: E731
    times = FieldTimes()
    assert times.decide("urgency", side="source", at=t(1)) is None  # nothing competes
    times.synced("urgency", side="source", at=t(1))
    # The desk changes it later: no conflict with what is already synced.
    assert times.decide("urgency", side="desk", at=t(5)) is None
    times.synced("urgency", side="desk", at=t(5))
    # An older source change read late loses to the desk's newer one, and says so.
    verdict = times.decide("urgency", side="source", at=t(3))
    assert verdict is not None and verdict["winner"] == "desk"
    # Same second as the desk's synced change: the source's change goes through (ties to the source).
    assert times.decide("urgency", side="source", at=t(5)) is None
    fresh = FieldTimes()
    fresh.decide("priority", side="desk", at=t(7))
    assert fresh.decide("priority", side="source", at=t(8))["winner"] == "source"
    assert FieldTimes(fresh.data).decide("priority", side="desk", at=t(6))["winner"] == "source"


def test_desk_reassignment_becomes_a_note_or_an_escalation() -> None:
    spec = load_preset("pagerduty-servicenow")
    for setting, expected in (("note", "note"), ("escalate", "escalate"), ("none", None)):
        spec_with = {**spec, "back": {**spec.get("back", {}), "reassignment": setting}}
        mapping = compile_mapping("pd-sn", MappingSpec.model_validate(spec_with))
        plan = plan_desk_change(mapping, ticket=ticket(state="2", assignment_group="Database Team"), entries=(),
                                target_seen={"state": "2", "assignment_group": "Payments"}, seen_entries=[],
                                source_status="acknowledged", integration_user="itsm.bridge")
        assert [op.op for op in plan.ops] == ([expected] if expected else [])
        if expected == "note":
            assert "reassigned on the desk to Database Team" in plan.ops[0].payload["text"]


def chat_mapping():  # type: ignore[no-untyped-def]
    spec = MappingSpec.model_validate({
        "source": "slack", "target": "servicenow",
        "fields": {"short_description": {"template": "{{ incident.title }}"}},
        "back": {"notes": "comments", "announce": ["state", "assigned_to"],
                 "labels": {"state": {"2": "In Progress", "6": "Resolved"}}}})
    return compile_mapping("chat", spec)


def test_announcement_tells_the_channel_each_desk_field_that_changed_in_words() -> None:
    from bridge.diff import plan_announcement

    op = plan_announcement(chat_mapping(), ticket=ticket(state="6", assigned_to="Bob"),
                           target_seen={"state": "2", "assigned_to": "Alice"}, target_written={})
    assert op is not None and op.op == "announce" and op.side == "source"
    assert op.payload["number"] == "INC0010001" and op.payload["actor"] == "jane.doe"
    assert [(c["label"], c["old"], c["new"]) for c in op.payload["changes"]] == [
        ("State", "In Progress", "Resolved"), ("Assigned to", "Alice", "Bob")]


def test_announcement_is_silent_about_the_bridges_own_writes_and_unknown_baselines() -> None:
    from bridge.diff import plan_announcement

    mapping = chat_mapping()
    # state written by the bridge itself; assigned_to never seen before: nothing to tell
    assert plan_announcement(mapping, ticket=ticket(state="6", assigned_to="Bob"), target_seen={"state": "2"},
                             target_written={"state": "6"}) is None
    # the announce fields are part of what the bridge remembers of the desk, so the next change has a "before"
    assert observed_fields(mapping, ticket(state="2", assigned_to="Bob", other="x")) == {
        "state": "2", "assigned_to": "Bob"}


def test_announcement_names_references_by_their_display_value_never_their_sys_id() -> None:
    from dataclasses import replace

    from bridge.diff import plan_announcement

    mapping = chat_mapping()
    alice, bob = "a" * 32, "b" * 32
    seen = observed_fields(mapping, replace(ticket(state="2", assigned_to=alice), display={
        "state": "In Progress", "assigned_to": "Alice Adams"}))
    assert seen["assigned_to"] == alice  # raw, as every comparison expects; the name is kept beside it
    now = replace(ticket(state="2", assigned_to=bob), display={"assigned_to": "Bob Brown"})
    op = plan_announcement(mapping, ticket=now, target_seen=seen, target_written={})
    assert op is not None and [(c["old"], c["new"]) for c in op.payload["changes"]] == [("Alice Adams", "Bob Brown")]
    # a name is only good for the value it was read with (the bridge has written the field since)
    op = plan_announcement(mapping, ticket=now, target_seen={**seen, "assigned_to": "Carol"}, target_written={})
    assert op is not None and [(c["old"], c["new"]) for c in op.payload["changes"]] == [("Carol", "Bob Brown")]
    # the bridge wrote the name (sysparm_input_display_value) and reads back the record it resolved to
    assert plan_announcement(mapping, ticket=now, target_seen={"assigned_to": "Bob Brown"},
                             target_written={"assigned_to": "Bob Brown"}) is None


def test_the_bridges_own_late_write_seen_after_a_desk_resolve_is_not_a_desk_reopen(mapping) -> None:  # type: ignore[no-untyped-def]
    # The desk resolved (6, processed); a source change older than that resolve was delivered late and
    # wrote 2. Its snapshot, last written by the bridge with the bridge's value, must not reopen anything.
    own = Ticket(connection="servicenow", id="sys1", number="INC0010001", url="u", fields={"state": "2"},
                 updated_at=T0, updated_by="itsm.bridge")
    plan = plan_desk_change(mapping, ticket=own, entries=(), target_seen={"state": "6"}, seen_entries=[],
                            source_status="resolved", integration_user="itsm.bridge",
                            target_written={"state": "2"})
    assert not [op for op in plan.ops if op.op == "transition"]
    # The same state set by a person is a decision (a reopen where the route allows it).
    person = Ticket(connection="servicenow", id="sys1", number="INC0010001", url="u", fields={"state": "2"},
                    updated_at=T0, updated_by="jane.doe")
    reopening = compile_mapping("reopen", MappingSpec.model_validate(
        {**load_preset("pagerduty-servicenow"), "back": {**load_preset("pagerduty-servicenow")["back"],
                                                         "reopen": True, "reopen_states": ["2"],
                                                         "acknowledge_states": []}}))
    plan = plan_desk_change(reopening, ticket=person, entries=(), target_seen={"state": "6"}, seen_entries=[],
                            source_status="resolved", integration_user="itsm.bridge",
                            target_written={"state": "2"})
    assert [op.payload["status"] for op in plan.ops if op.op == "transition"] == ["triggered"]


def test_a_desk_decision_read_before_a_late_bridge_write_still_counts() -> None:
    from datetime import timedelta

    from bridge.diff import WRITTEN_SOURCE_AT, WRITTEN_STATE_BEFORE
    from bridge.engine import _decided_after

    written = {"state": "1", WRITTEN_SOURCE_AT: (T0 - timedelta(seconds=3)).isoformat()}
    desk = Ticket(connection="servicenow", id="s", number="INC1", url="u", fields={"state": "6"}, updated_at=T0,
                  updated_by="jane.doe")
    assert _decided_after(desk, written, "itsm.bridge")  # made after the source change the write carried
    older = Ticket(connection="servicenow", id="s", number="INC1", url="u", fields={"state": "6"},
                   updated_at=T0 - timedelta(seconds=5), updated_by="jane.doe")
    assert not _decided_after(older, written, "itsm.bridge")  # older than it: the write rightly replaced it
    ours = Ticket(connection="servicenow", id="s", number="INC1", url="u", fields={"state": "6"}, updated_at=T0,
                  updated_by="itsm.bridge")
    assert not _decided_after(ours, written, "itsm.bridge")
    # A person commented while the bridge's resolve was in flight: the snapshot shows the state the
    # bridge then replaced, which is not a decision (it would reopen the incident).
    resolved = {"state": "6", WRITTEN_SOURCE_AT: (T0 - timedelta(seconds=3)).isoformat(), WRITTEN_STATE_BEFORE: "2"}
    commented = Ticket(connection="servicenow", id="s", number="INC1", url="u", fields={"state": "2"},
                       updated_at=T0, updated_by="jane.doe")
    assert not _decided_after(commented, resolved, "itsm.bridge")
