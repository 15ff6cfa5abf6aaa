"""The Slack presets validate, compile, and map chat incidents parsed from Slack fixtures: the ticket a
channel opens, the work note a captured message becomes, and what flows back into the channel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.diff import plan_announcement
from bridge.http import build_session
from bridge.model import Ticket, TimelineEntry
from connectors.slack.connector import SlackConnector
from connectors.slack.webhooks import sign
from mappings.engine import apply, compile_mapping, render_back_note, render_note
from mappings.schema import MappingSpec, load_preset
from tests.slack_fake import FIXTURES

T = 1712345678


def parsed(name: str):
    body = (FIXTURES / name).read_bytes()
    slack = SlackConnector("slack", {"api_url": "http://127.0.0.1:9/api", "bot_token": "xoxb-t", "capture": "all",
                                     "signing_secret": "s", "resolve_user_names": False}, session=build_session())
    return slack.parse_webhook(body, {"X-Slack-Request-Timestamp": str(T), "X-Slack-Signature": sign("s", T, body)})


def compiled(name: str):
    return compile_mapping(name, MappingSpec.model_validate(load_preset(name)))


@pytest.mark.parametrize("name", ["slack-servicenow", "slack-jsm"])
def test_slack_presets_validate_and_announce_desk_changes(name: str) -> None:
    spec = MappingSpec.model_validate(load_preset(name))
    assert spec.source == "slack" and spec.back.notes == "comments" and spec.back.announce


def test_servicenow_preset_opens_a_ticket_from_the_open_command() -> None:
    (change,) = parsed("command_open.txt")
    fields = apply(compiled("slack-servicenow"), change.incident, creating=True).fields
    assert fields["short_description"] == "Card payments failing in EU & US"
    assert {k: fields[k] for k in ("impact", "urgency", "category", "caller_id")} == {
        "impact": "2", "urgency": "2", "category": "software", "caller_id": "itsm.bridge"}
    assert "Opened in Slack by alice in #inc-2041-payments with /itsm open." in fields["description"]
    assert "Slack channel: #inc-2041-payments https://acme-sre.slack.com/archives/C06A1B2C3D4" in fields["description"]
    assert apply(compiled("slack-servicenow"), change.incident, creating=False).fields == {}  # the desk owns it now


def test_shortcut_ticket_quotes_the_first_message_and_jsm_labels_the_channel() -> None:
    (change,) = parsed("shortcut_message_action.txt")
    description = apply(compiled("slack-servicenow"), change.incident, creating=True).fields["description"]
    assert "First message (U024BE7LH):\nCheckout returns 502 for ~30% of EU users" in description
    fields = apply(compiled("slack-jsm"), change.incident, creating=True).fields
    assert fields["summary"] == "Checkout returns 502 for ~30% of EU users"
    assert (fields["priority"], fields["labels"]) == ("Medium", "slack,slack-inc-2041-payments")


def test_captured_message_becomes_a_work_note_and_a_desk_comment_a_channel_message() -> None:
    (opened,) = parsed("command_open.txt")
    (message,) = parsed("event_message.json")
    note = render_note(compiled("slack-servicenow"), opened.incident, message.entries[0])
    assert note.startswith("[Slack #inc-2041-payments] U024BE7LH: Failover to the eu-west replica finished &")
    ticket = Ticket(connection="servicenow", id="abc", number="INC0010042", url="https://sn/x", fields={},
                    updated_at=datetime(2024, 4, 5, tzinfo=UTC))
    comment = TimelineEntry(id="j1", at=ticket.updated_at, kind="comment", text="Fix confirmed", author="jane.doe",
                            public=True)
    assert render_back_note(compiled("slack-servicenow"), ticket, comment) == \
        ":speech_balloon: INC0010042 jane.doe: Fix confirmed"


def test_a_desk_state_change_is_announced_in_words() -> None:
    ticket = Ticket(connection="servicenow", id="abc", number="INC0010042", url="https://sn/x",
                    fields={"state": "6", "priority": "3", "assignment_group": "g1"},
                    updated_at=datetime(2024, 4, 5, tzinfo=UTC), updated_by="jane.doe")
    op = plan_announcement(compiled("slack-servicenow"), ticket=ticket,
                           target_seen={"state": "2", "priority": "3", "assignment_group": "g1"}, target_written={})
    assert op is not None and op.payload["changes"] == [
        {"field": "state", "label": "State", "old": "In Progress", "new": "Resolved"}]
