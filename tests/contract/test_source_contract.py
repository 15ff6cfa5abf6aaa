"""Sources: a real signed delivery from the tool's simulator is accepted, and every forgery refused; what it
says parses into the canonical model; polls catch up without repeating; the way back reaches the tool.

The deliveries are captured by a small endpoint the simulator posts to, so the bytes and headers are the
ones the tool sends, signed by the simulator with the secret the connection is configured with.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from bridge.errors import WebhookError
from bridge.model import Change
from connectors.base import Connector, marker
from tests.conftest import wait_until
from tests.contract.gates import (
    assert_no_secret,
    need_notes,
    need_oncall,
    need_source,
    now,
)
from tests.contract.harness import Delivery, Harness, SourceHarness

CANONICAL = ("triggered", "acknowledged", "resolved")
_UNIX_SECONDS = re.compile(r"(?<!\d)\d{10}(?!\d)")


@dataclass(frozen=True)
class Opened:
    """One incident a responder opened in the tool, and the delivery that told the bridge."""

    record_id: str
    title: str
    delivery: Delivery


@pytest.fixture(scope="module")
def opened(harness: Harness) -> Opened:
    """For a chat tool: the open command typed in a new channel (the channel is the record)."""
    source = need_source(harness)
    title = f"Contract checkout errors {uuid.uuid4().hex[:6]}"
    record_id, deliveries = source.act(lambda: source.trigger(title))
    assert deliveries, f"{source.slug}: triggering an incident delivered no webhook"
    return Opened(record_id, title, deliveries[0])


def incident_changes(connector: Connector, delivery: Delivery, record_id: str) -> list[Change]:
    return [c for c in connector.parse_webhook(delivery.body, delivery.headers)
            if c.record_id == record_id and c.incident is not None]


def refused(connector: Connector, body: bytes, headers: dict[str, str], *, at: object) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        connector.verify_webhook(body, headers, now=at)  # type: ignore[arg-type]
    assert caught.value.status == 401, f"refused with {caught.value.status}, not 401: {caught.value}"
    return caught.value


# -- verification --------------------------------------------------------------------------------------
def test_the_real_delivery_is_verified(harness: Harness, opened: Opened) -> None:
    harness.build().verify_webhook(opened.delivery.body, opened.delivery.headers, now=opened.delivery.received_at)


def test_a_changed_byte_is_refused(harness: Harness, opened: Opened) -> None:
    source = need_source(harness)
    carrying = [name for name, value in opened.delivery.headers.items() if source.webhook_secret in value]
    if carrying:
        pytest.skip(f"the tool sends the shared secret itself ({', '.join(carrying)}) and signs no body, "
                    "so a changed byte cannot be detected")
    body = opened.delivery.body
    at = body.find(opened.title.encode()) if opened.title.encode() in body else len(body) // 2
    tampered = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1:]
    error = refused(harness.build(), tampered, opened.delivery.headers, at=opened.delivery.received_at)
    assert_no_secret(harness, error)


def test_a_wrong_secret_is_refused(harness: Harness, opened: Opened) -> None:
    source = need_source(harness)
    connector = harness.build(**{source.webhook_secret_key: source.wrong_webhook_secret})
    error = refused(connector, opened.delivery.body, opened.delivery.headers, at=opened.delivery.received_at)
    assert_no_secret(harness, error)


def test_missing_auth_headers_are_refused(harness: Harness, opened: Opened) -> None:
    bare = {k: v for k, v in opened.delivery.headers.items() if k in ("content-type", "content-length")}
    error = refused(harness.build(), opened.delivery.body, bare, at=opened.delivery.received_at)
    assert_no_secret(harness, error)


def test_a_replay_outside_the_signed_timestamp_window_is_refused(harness: Harness, opened: Opened) -> None:
    """An hour late (or early) is refused where the tool signs a time; elsewhere the inbox de-duplicates."""
    delivery = opened.delivery
    moment = delivery.received_at.timestamp()
    stamped = [name for name, value in delivery.headers.items()
               if any(abs(int(n) - moment) < 600 for n in _UNIX_SECONDS.findall(value))]
    connector = harness.build()
    accepted = []
    for skew in (timedelta(hours=1), -timedelta(hours=1)):
        try:
            connector.verify_webhook(delivery.body, delivery.headers, now=delivery.received_at + skew)
        except WebhookError as exc:
            assert exc.status == 401, f"refused with {exc.status}, not 401: {exc}"
        else:
            accepted.append(skew)
    assert not (accepted and stamped), f"{stamped} carry a signed time, yet a delivery {accepted} off passed"
    if accepted:
        pytest.skip("the tool signs no timestamp (none in the delivery's headers or checked in its body): "
                    "replays are absorbed by the inbox's de-duplication on the event id")


# -- parsing -------------------------------------------------------------------------------------------
def test_the_delivery_parses_into_the_incident(harness: Harness, opened: Opened) -> None:
    connector = harness.build()
    changes = connector.parse_webhook(opened.delivery.body, opened.delivery.headers)
    assert changes and all(c.connection == harness.name for c in changes)
    assert all(c.event_id for c in changes)
    (change, *_) = incident_changes(connector, opened.delivery, opened.record_id)
    incident = change.incident
    assert incident is not None and incident.id == opened.record_id
    assert incident.source == harness.name
    assert incident.status == "triggered"
    assert opened.title in incident.title
    assert incident.created_at.utcoffset() is not None and incident.updated_at.utcoffset() is not None
    again = connector.parse_webhook(opened.delivery.body, opened.delivery.headers)
    assert [c.event_id for c in again] == [c.event_id for c in changes], "event ids must be stable"


def test_status_changes_arrive_in_canonical_words(harness: Harness) -> None:
    source = need_oncall(harness)
    connector = harness.build()
    record_id, _ = source.act(lambda: source.trigger("Contract lifecycle"))
    for act, status in ((source.acknowledge, "acknowledged"), (source.resolve, "resolved")):
        _, deliveries = source.act(lambda act=act: act(record_id))
        assert deliveries, f"{source.slug}: {status} delivered no webhook"
        for delivery in deliveries:
            connector.verify_webhook(delivery.body, delivery.headers, now=delivery.received_at)
        seen = [c.incident.status for d in deliveries for c in incident_changes(connector, d, record_id)]
        assert seen and set(seen) <= set(CANONICAL) and seen[-1] == status, seen


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"{}"], ids=["not-json", "not-an-object", "empty"])
def test_malformed_bodies_are_refused_with_400(harness: Harness, opened: Opened, body: bytes) -> None:
    with pytest.raises(WebhookError) as caught:
        harness.build().parse_webhook(body, opened.delivery.headers)
    assert caught.value.status == 400 and str(caught.value)
    if body == b"{not json":
        assert "json" in str(caught.value).lower(), f"should say the body is not JSON: {caught.value}"


# -- poll and the way back -----------------------------------------------------------------------------
def test_poll_finds_the_incident_and_a_second_poll_adds_nothing_new(harness: Harness) -> None:
    source = need_oncall(harness)
    connector = harness.build()
    record_id = source.trigger("Contract poll")
    first = connector.poll(None, now=now())
    mine = [c for c in first.changes if c.record_id == record_id]
    assert mine, f"{source.slug}: poll(None) did not find incident {record_id}"
    assert all(c.incident is not None and c.incident.source == harness.name for c in mine)
    assert mine[-1].incident.status == "triggered"  # type: ignore[union-attr]
    second = connector.poll(first.cursor, now=now())
    again = {c.event_id for c in second.changes if c.record_id == record_id}
    assert again <= {c.event_id for c in mine}, "an unchanged incident came back as a new event"


def test_transition_is_visible_in_the_tool(harness: Harness) -> None:
    source = need_oncall(harness)
    connector = harness.build()
    record_id = source.trigger("Contract way back")
    for status in ("acknowledged", "resolved"):
        connector.transition(record_id, status)
        wait_until(lambda status=status: source.tool_status(record_id) == status, timeout=5,
                   message=f"{source.slug} incident {status}")


def test_add_note_is_written_once_and_found_by_its_tag(harness: Harness) -> None:
    source = need_oncall(harness)
    need_notes(harness)
    connector = harness.build()
    record_id = source.trigger("Contract notes")
    tag, other = marker(f"contract-{uuid.uuid4().hex[:8]}"), marker("contract-never-written")
    text = f"Ticket INC0010001 opened {tag}"
    connector.add_note(record_id, text)
    wait_until(lambda: text in source.tool_notes(record_id), timeout=5, message=f"{source.slug} note")
    assert connector.has_note(record_id, tag)
    assert not connector.has_note(record_id, other)


def test_a_note_a_responder_writes_is_found_by_has_note(harness: Harness) -> None:
    """What makes a redelivered backlink note a no-op must also see notes written in the tool itself."""
    source: SourceHarness = need_oncall(harness)
    need_notes(harness)
    connector = harness.build()
    record_id = source.trigger("Contract responder note")
    tag = marker(f"contract-{uuid.uuid4().hex[:8]}")
    source.add_note(record_id, f"Rolled back the deploy {tag}")
    assert connector.has_note(record_id, tag)
    assert not connector.has_note(record_id, marker("contract-never-written"))
