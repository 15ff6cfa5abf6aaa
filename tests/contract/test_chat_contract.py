"""Chat tools: a person's message and the open command arrive signed and parse into changes for the
channel; the bridge's own words never come back as changes; notes and announcements land in the channel.

Verification of forged deliveries (changed byte, wrong secret, missing headers, replays) runs for chat
tools in `test_source_contract.py` on the open command's delivery.
"""

from __future__ import annotations

import uuid

import pytest

from bridge.model import Change
from connectors.base import Announcement, Connector, FieldChange, marker
from tests.conftest import wait_until
from tests.contract.gates import need_chat
from tests.contract.harness import ChatHarness, Delivery, Harness


@pytest.fixture(scope="module")
def channel(harness: Harness) -> str:
    return need_chat(harness).create_channel("Contract chat incident")


def verified_changes(connector: Connector, deliveries: list[Delivery], channel: str) -> list[Change]:
    """Every change the deliveries describe for `channel`, each delivery verified first."""
    changes = []
    for delivery in deliveries:
        connector.verify_webhook(delivery.body, delivery.headers, now=delivery.received_at)
        changes += [c for c in connector.parse_webhook(delivery.body, delivery.headers) if c.record_id == channel]
    return changes


def test_a_message_arrives_as_one_note_for_the_channel(harness: Harness, channel: str) -> None:
    chat: ChatHarness = need_chat(harness)
    text = f"Rolled back deploy {uuid.uuid4().hex[:6]}"
    _, deliveries = chat.act(lambda: chat.post_message(channel, text))
    connector = harness.build()
    changes = verified_changes(connector, deliveries, channel)
    notes = [c for c in changes if any(text in e.text for e in c.entries)]
    assert len(notes) == 1, f"{chat.slug}: expected one change carrying the message, got {changes}"
    (change,) = notes
    assert (change.event_type, change.connection, change.incident) == ("chat.message", harness.name, None)
    (entry,) = change.entries
    assert entry.kind == "note" and entry.id and entry.at.utcoffset() is not None
    again = verified_changes(connector, deliveries, channel)
    assert [c.event_id for c in again] == [c.event_id for c in changes], "event ids must be stable"
    assert [e.id for c in again for e in c.entries] == [e.id for c in changes for e in c.entries]


def test_the_open_command_opens_an_incident_for_the_channel(harness: Harness) -> None:
    chat = need_chat(harness)
    target = chat.create_channel("Contract open")
    _, deliveries = chat.act(lambda: chat.open_command(target, "Checkout is down"))
    opened = [c for c in verified_changes(harness.build(), deliveries, target) if c.event_type == "chat.open"]
    assert len(opened) == 1, f"{chat.slug}: the open command gave {opened}"
    incident = opened[0].incident
    assert incident is not None and (incident.id, incident.source) == (target, harness.name)
    assert (incident.status, incident.title, incident.raw.get("command")) == ("triggered", "Checkout is down", "open")
    assert incident.created_at.utcoffset() is not None


def test_a_message_carrying_the_bridge_marker_never_becomes_a_change(harness: Harness, channel: str) -> None:
    chat = need_chat(harness)
    echo = f"INC0010001 was updated {marker('contract-echo')}"
    _, deliveries = chat.act(lambda: chat.post_message(channel, echo))
    changes = verified_changes(harness.build(), deliveries, channel)
    assert not [c for c in changes if any("INC0010001" in e.text for e in c.entries)], changes


def test_add_note_posts_into_the_channel_with_its_marker(harness: Harness, channel: str) -> None:
    chat = need_chat(harness)
    tag = marker(f"contract-{uuid.uuid4().hex[:8]}")
    harness.build().add_note(channel, f"Ticket INC0010002 opened: https://desk.example/INC0010002 {tag}")
    assert chat.wait_idle()
    wait_until(lambda: any("INC0010002" in t and tag in t for t in chat.channel_texts(channel)), timeout=5,
               message=f"{chat.slug} note in the channel")


def test_announce_posts_the_desk_change_into_the_channel(harness: Harness, channel: str) -> None:
    chat = need_chat(harness)
    change = Announcement(desk="ServiceNow", number="INC0010003", url="https://desk.example/INC0010003",
                          changes=(FieldChange("state", "State", "In Progress", "Resolved"),), actor="Jane Doe")
    harness.build().announce(channel, change)  # type: ignore[attr-defined]
    assert chat.wait_idle()
    wait_until(lambda: any("INC0010003" in t and "Resolved" in t for t in chat.channel_texts(channel)),
               timeout=5, message=f"{chat.slug} announcement in the channel")
