"""Targets (service desks): find before create, create, update, notes, read back, desk changes polled,
and a ticket found by the number a person types.

Every ticket is stamped with a fresh correlation id, so tests sharing one simulator never see each
other's tickets through `find`.
"""

from __future__ import annotations

import uuid

from bridge.model import RecordRef
from connectors.base import Connector, marker
from tests.contract.gates import need_target, now
from tests.contract.harness import Harness, TargetHarness


def opened(desk: TargetHarness, connector: Connector, title: str) -> tuple[str, RecordRef]:
    correlation = f"contract:{uuid.uuid4().hex[:12]}"
    return correlation, connector.create(desk.ticket_fields(title), correlation_id=correlation)


def test_find_misses_then_create_then_find_returns_it(harness: Harness) -> None:
    desk = need_target(harness)
    connector = harness.build()
    correlation = f"contract:{uuid.uuid4().hex[:12]}"
    assert connector.find(correlation) is None
    ref = connector.create(desk.ticket_fields("Contract checkout errors"), correlation_id=correlation)
    assert ref.id and ref.number and ref.url
    assert desk.desk_value(ref.id, desk.title_field) == "Contract checkout errors"
    found = connector.find(correlation)
    assert found is not None and found.id == ref.id and found.number == ref.number


def test_update_is_visible_in_the_desk(harness: Harness) -> None:
    desk = need_target(harness)
    connector = harness.build()
    _, ref = opened(desk, connector, "Contract before update")
    connector.update(ref.id, {desk.title_field: "Contract after update"})
    assert desk.desk_value(ref.id, desk.title_field) == "Contract after update"


def test_add_note_then_has_note_by_tag(harness: Harness) -> None:
    desk = need_target(harness)
    connector = harness.build()
    _, ref = opened(desk, connector, "Contract notes")
    tag = marker(f"contract-{uuid.uuid4().hex[:8]}")
    connector.add_note(ref.id, f"Rolled back deploy 4411 {tag}")
    assert connector.has_note(ref.id, tag)
    assert not connector.has_note(ref.id, marker("contract-never-written"))


def test_get_returns_the_ticket(harness: Harness) -> None:
    desk = need_target(harness)
    connector = harness.build()
    _, ref = opened(desk, connector, "Contract read back")
    ticket = connector.get(ref.id)
    assert (ticket.connection, ticket.id, ticket.number) == (harness.name, ref.id, ref.number)
    assert ticket.url and ticket.fields[desk.title_field] == "Contract read back"
    assert ticket.updated_at.utcoffset() is not None


def test_poll_sees_a_change_made_at_the_desk(harness: Harness) -> None:
    desk = need_target(harness)
    connector = harness.build()
    _, ref = opened(desk, connector, "Contract desk edit")
    first = connector.poll(None, now=now())
    assert any(c.record_id == ref.id for c in first.changes), "poll(None) misses a ticket the bridge created"
    desk.desk_edit(ref.id, desk.title_field, "Contract desk edit (agent)")
    second = connector.poll(first.cursor, now=now())
    seen = [c for c in second.changes if c.record_id == ref.id]
    assert seen, "the desk change was not polled"
    assert all(c.connection == harness.name and c.ticket is not None for c in seen)
    assert seen[-1].ticket.fields[desk.title_field] == "Contract desk edit (agent)"  # type: ignore[union-attr]
    assert {c.event_id for c in seen} - {c.event_id for c in first.changes}, "the change needs a new event id"


def test_find_number_returns_the_ticket_a_person_names(harness: Harness) -> None:
    desk = need_target(harness)
    connector = harness.build()
    _, ref = opened(desk, connector, "Contract link by number")
    found = connector.find_number(ref.number)
    assert found is not None and (found.id, found.number) == (ref.id, ref.number)
    assert connector.find_number(desk.unknown_number) is None
