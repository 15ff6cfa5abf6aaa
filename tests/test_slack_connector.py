"""Slack connector, the inbound side: request signatures, the three kinds of request on one Request URL, every
command and capture mode, and the immediate replies; on fixtures shaped like Slack's own payloads.
(The Web API side, poll and the way back: tests/test_slack_connector_api.py.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from bridge.errors import WebhookError
from bridge.http import build_session
from connectors.base import MARKER_PREFIX
from connectors.slack.config import SECRET_KEYS, SlackConnection
from connectors.slack.connector import SlackConnector
from connectors.slack.webhooks import sign
from tests.slack_fake import FIXTURES, FakeSlackApi

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = datetime(2024, 4, 5, 19, 35, tzinfo=UTC)
T = int(NOW.timestamp())
CHANNEL, MESSAGE_TS = "C06A1B2C3D4", "1712345678.000200"
NOWHERE = "http://127.0.0.1:9/api"  # nothing listens: a test touching the Web API unexpectedly fails


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def headers(body: bytes, *, stamp: int = T, secret: str = SECRET, **extra: str) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": sign(secret, stamp, body), **extra}


def connector(api_url: str = NOWHERE, **overrides: object) -> SlackConnector:
    settings = {"api_url": api_url, "bot_token": "xoxb-17-test-token", "signing_secret": SECRET,
                "capture": "all", "resolve_user_names": False, **overrides}
    return SlackConnector("slack", settings, session=build_session(attempts=1))


@pytest.fixture
def fake() -> Iterator[FakeSlackApi]:
    api = FakeSlackApi()
    yield api
    api.stop()


def parse(slack: SlackConnector, name: str, **extra: str):
    body = raw(name)
    return slack.parse_webhook(body, headers(body, **extra))


def reply(slack: SlackConnector, body: bytes) -> tuple[int, dict]:
    answer = slack.webhook_reply(body, headers(body))
    assert answer is not None
    return answer.status, dict(answer.body)


# -- config -------------------------------------------------------------------------------------------
def test_connection_model_wants_secret_references_and_names_bad_values() -> None:
    ok = SlackConnection(type="slack", bot_token="env:SLACK_BOT_TOKEN", signing_secret="file:/run/slack",
                         capture_emoji=":memo:")
    assert (ok.capture, ok.capture_emoji, ok.command, ok.signature_tolerance_seconds) == ("reaction", "memo", "/itsm", 300)
    assert SECRET_KEYS == ("bot_token", "signing_secret")
    with pytest.raises(ValueError, match="secret reference"):
        SlackConnection(type="slack", bot_token="xoxb-inline-token")
    with pytest.raises(ValueError, match="capture = 'everything' is unknown; Slack supports 'reaction'"):
        SlackConnection(type="slack", bot_token="env:T", capture="everything")
    with pytest.raises(ValueError, match="command = 'itsm' is not a slash command"):
        SlackConnection(type="slack", bot_token="env:T", command="itsm")
    with pytest.raises(ValueError):
        SlackConnection(type="slack", bot_token="env:T", unknown=1)


# -- signatures ---------------------------------------------------------------------------------------
BODY = raw("event_message.json")


def test_signature_agrees_with_slack_sdk_both_ways() -> None:
    verifier = SignatureVerifier(SECRET)
    assert sign(SECRET, T, BODY) == verifier.generate_signature(timestamp=str(T), body=BODY)
    connector().verify_webhook(BODY, {"x-slack-request-timestamp": str(T),
                                      "x-slack-signature": verifier.generate_signature(timestamp=str(T), body=BODY)},
                               now=NOW)


@pytest.mark.parametrize("changed, reason", [
    ({"X-Slack-Signature": None}, "missing X-Slack-Signature"),
    ({"X-Slack-Request-Timestamp": None}, "must be unix seconds"),
    ({"X-Slack-Request-Timestamp": "yesterday"}, "must be unix seconds"),
    ({"X-Slack-Signature": sign("wrong-secret", T, BODY)}, "does not match"),
    ({"X-Slack-Signature": sign(SECRET, T, BODY).replace("v0=", "v1=")}, "does not match"),
    ({"X-Slack-Request-Timestamp": str(T + 1)}, "does not match"),
    ({"X-Slack-Request-Timestamp": str(T - 301), "X-Slack-Signature": sign(SECRET, T - 301, BODY)}, "301s away"),
    ({"X-Slack-Request-Timestamp": str(T + 900), "X-Slack-Signature": sign(SECRET, T + 900, BODY)}, "tolerance 300s"),
])
def test_wrong_missing_or_stale_signature_is_refused_with_401(changed: dict, reason: str) -> None:
    sent = {k: v for k, v in {**headers(BODY), **changed}.items() if v is not None}
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, sent, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value)
    assert SECRET not in str(caught.value) and sign(SECRET, T, BODY) not in str(caught.value)


def test_tampered_body_unsigned_connection_and_tolerance_setting() -> None:
    with pytest.raises(WebhookError, match="does not match"):
        connector().verify_webhook(BODY.replace(b"eu-west", b"us-east"), headers(BODY), now=NOW)
    with pytest.raises(WebhookError, match="no signing_secret configured for connection slack") as caught:
        connector(signing_secret=None).verify_webhook(BODY, headers(BODY), now=NOW)
    assert caught.value.status == 401
    old = headers(BODY, stamp=T - 3600)
    connector(signature_tolerance_seconds=0).verify_webhook(BODY, old, now=NOW)
    with pytest.raises(WebhookError):
        connector(signature_tolerance_seconds=60).verify_webhook(BODY, old, now=NOW)


# -- Events API ---------------------------------------------------------------------------------------
def test_url_verification_is_answered_with_the_challenge() -> None:
    slack, body = connector(), raw("event_url_verification.json")
    assert slack.parse_webhook(body, headers(body)) == []
    assert reply(slack, body) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    with pytest.raises(WebhookError, match="'challenge'"):
        slack.parse_webhook(b'{"type":"url_verification"}', {})


def test_capture_all_turns_a_message_into_one_note_with_an_id_from_the_message() -> None:
    (change,) = parse(connector(), "event_message.json")
    assert (change.event_type, change.record_id, change.incident, change.via) == ("chat.message", CHANNEL, None, "webhook")
    assert change.event_id == f"slack:message:{CHANNEL}:{MESSAGE_TS}"
    (entry,) = change.entries
    assert (entry.id, entry.kind, entry.author) == (f"{CHANNEL}:{MESSAGE_TS}", "note", "U024BE7LH")
    assert entry.text == "Failover to the eu-west replica finished & error rate is back under 0.5%. Thanks @U0G9QF9C6!"
    assert entry.at == datetime(2024, 4, 5, 19, 34, 38, 200, tzinfo=UTC) == change.occurred_at
    retried = parse(connector(), "event_message.json", **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert [c.event_id for c in retried] == [change.event_id]  # a redelivery is the same event for the inbox


def test_thread_replies_broadcasts_and_file_shares_are_captured() -> None:
    slack = connector()
    (reply_change,) = parse(slack, "event_message_thread_reply.json")
    assert reply_change.entries[0].text == "Rolling back deploy 4411 now"
    (broadcast,) = parse(slack, "event_thread_broadcast.json")
    assert broadcast.entries[0].text.startswith("Root cause: connection pool exhausted")
    (shared,) = parse(slack, "event_file_share.json")
    assert shared.entries[0].text == "Grafana panel at the peak\n[file: error-rate.png]"


@pytest.mark.parametrize("name", ["event_message_bot.json", "event_message_bot_subtype.json",
                                  "event_message_changed.json", "event_channel_join.json"])
def test_bot_posts_edits_and_joins_never_become_changes(name: str) -> None:
    assert parse(connector(), name) == []


def test_a_persons_message_carrying_the_marker_is_never_captured() -> None:
    document = json.loads(BODY)
    document["event"]["text"] = f"copied: INC0010042 comment {MARKER_PREFIX}17]"
    body = json.dumps(document).encode()
    assert connector().parse_webhook(body, headers(body)) == []


def test_capture_reaction_reads_the_reacted_message_once(fake: FakeSlackApi) -> None:
    slack = connector(fake.api_url, capture="reaction")
    assert parse(slack, "event_message.json") == []  # plain messages are not captured in this mode
    fake.script("conversations.history", "conversations_history_one.json")
    (change,) = parse(slack, "event_reaction_added.json")
    assert change.event_id == f"slack:message:{CHANNEL}:{MESSAGE_TS}"
    assert change.entries[0].text.startswith("Failover to the eu-west replica finished &")
    (call,) = fake.called("conversations.history")
    assert call == {"channel": CHANNEL, "latest": MESSAGE_TS, "inclusive": "1", "limit": "1"}
    other = json.loads(raw("event_reaction_added.json"))
    other["event"]["reaction"] = "eyes"
    body = json.dumps(other).encode()
    assert slack.parse_webhook(body, headers(body)) == [] and len(fake.calls) == 1  # no read for other emoji


def test_a_reacted_thread_reply_is_read_from_its_thread(fake: FakeSlackApi) -> None:
    slack = connector(fake.api_url, capture="reaction")
    document = json.loads(raw("event_reaction_added.json"))
    document["event"]["item"]["ts"] = "1712345690.000300"
    body = json.dumps(document).encode()
    fake.script("conversations.history", "conversations_history_page1.json")  # the reply is not top level
    fake.script("conversations.replies", "conversations_replies.json")
    (change,) = slack.parse_webhook(body, headers(body))
    assert change.entries[0].id == f"{CHANNEL}:1712345690.000300"
    assert fake.called("conversations.replies")[0]["ts"] == "1712345690.000300"


def test_capture_pinned_and_mentions_and_none() -> None:
    (pinned,) = parse(connector(capture="pinned"), "event_pin_added.json")
    assert pinned.event_id == f"slack:message:{CHANNEL}:1712345600.000100"
    assert pinned.entries[0].text == "Customer impact: EU card payments failed 13:41-14:02 UTC"
    assert parse(connector(capture="pinned"), "event_message.json") == []
    (mentioned,) = parse(connector(capture="mentions"), "event_app_mention.json")
    assert mentioned.entries[0].text == "@U05R2LB6T9X customer impact ended at 14:02 UTC"
    for name in ("event_message.json", "event_app_mention.json", "event_pin_added.json", "event_reaction_added.json"):
        assert parse(connector(capture="none"), name) == []


def test_rate_limited_notice_and_unknown_events_store_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse(connector(), "event_app_rate_limited.json") == []
    assert "app_rate_limited" in caplog.text
    assert connector().webhook_reply(BODY, headers(BODY)) is None  # events get the usual answer


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfegarbage", "neither JSON nor a UTF-8 form"),
    (b"{not json", "does not parse"),
    (b'{"event": {}}', "string 'type'"),
    (b'{"type": "event_callback"}', "'event' object"),
    (b'{"type": "event_callback", "event": {"type": "message", "channel": "C1", "user": "U1", "text": "x", "ts": "soon"}}',
     "Slack timestamp"),
    (b"payload=%7Bnot-json", "'payload' is not JSON"),
    (b"team_id=T1&user_id=U1", "is not a Slack event"),
])
def test_malformed_requests_are_refused_with_400(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, headers(body))
    assert caught.value.status == 400 and reason in str(caught.value)


# -- slash commands -----------------------------------------------------------------------------------
def test_open_command_opens_an_incident_for_the_channel() -> None:
    slack = connector()
    (change,) = parse(slack, "command_open.txt")
    incident = change.incident
    assert (change.event_type, change.record_id, change.occurred_at) == ("chat.open", CHANNEL, NOW)
    assert change.event_id == "slack:command:6987654321013.2528207731.4ff1d1b2c3a4e5f60718293a4b5c6d7e"
    assert (incident.source, incident.id, incident.status) == ("slack", CHANNEL, "triggered")
    assert incident.title == "Card payments failing in EU & US"
    assert incident.url == f"https://acme-sre.slack.com/archives/{CHANNEL}"
    assert "alice" in incident.description and "#inc-2041-payments" in incident.description
    assert incident.raw["command"] == "open" and incident.raw["channel"] == {"id": CHANNEL, "name": "inc-2041-payments"}
    assert "link_ticket" not in incident.raw and change.entries == ()
    status, answer = reply(slack, raw("command_open.txt"))
    assert status == 200 and answer["response_type"] == "ephemeral"
    assert "Opening a ticket for #inc-2041-payments" in answer["text"] and "posted in this channel" in answer["text"]


def test_link_command_names_the_existing_ticket() -> None:
    slack = connector()
    (change,) = parse(slack, "command_link.txt")
    assert change.event_type == "chat.link" and change.incident.raw["link_ticket"] == "INC0012345"
    assert change.incident.raw["command"] == "link" and change.incident.id == CHANNEL
    assert "Linking #inc-2041-payments to INC0012345" in reply(slack, raw("command_link.txt"))[1]["text"]


def command(text: str, **fields: str) -> bytes:
    form = {k: v[0] for k, v in parse_qs(raw("command_open.txt").decode()).items()}
    return urlencode({**form, "text": text, **fields}).encode()


@pytest.mark.parametrize("text, fields, answer", [
    ("", {}, "*/itsm open <title>* opens a service desk ticket"),
    ("help", {}, "React with :memo: to a message"),
    ("close now", {}, "Unknown subcommand \"close\""),
    ("link", {}, "Which ticket?"),
    ("link tomorrow", {}, "\"tomorrow\" does not look like a ticket number"),
    ("open x", {"channel_id": "D0DIRECT01", "channel_name": "directmessage"}, "not in a direct message"),
    ("open x", {"command": "/weather"}, "answers /itsm only"),
])
def test_help_and_refusals_reply_without_a_change(text: str, fields: dict, answer: str) -> None:
    slack, body = connector(capture="reaction"), command(text, **fields)
    assert slack.parse_webhook(body, headers(body)) == []
    assert answer in reply(slack, body)[1]["text"]


def test_open_without_title_custom_command_and_jsm_keys() -> None:
    (change,) = connector().parse_webhook(body := command("open"), headers(body))
    assert change.incident.title == "Incident in #inc-2041-payments"
    slack = connector(command="/incident")
    (linked,) = slack.parse_webhook(body := command("link ops-42", command="/incident"), headers(body))
    assert linked.incident.raw["link_ticket"] == "OPS-42"


def test_private_channel_name_is_read_with_conversations_info(fake: FakeSlackApi) -> None:
    fake.script("conversations.info", "conversations_info_private.json")
    slack = connector(fake.api_url)
    body = command("open Secret incident", channel_id="G06PRIV0001", channel_name="privategroup")
    (change,) = slack.parse_webhook(body, headers(body))
    assert change.incident.raw["channel"]["name"] == "inc-2042-secret"
    assert "#inc-2042-secret" in reply(slack, body)[1]["text"]


def test_ssl_check_is_acknowledged_and_an_unreadable_channel_name_falls_back_to_the_id() -> None:
    body = b"ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO"
    assert connector().parse_webhook(body, headers(body)) == [] and reply(connector(), body) == (200, {})
    body = command("open Secret incident", channel_id="G06PRIV0001", channel_name="privategroup")
    (change,) = connector().parse_webhook(body, headers(body))  # conversations.info unreachable
    assert change.incident.title == "Secret incident" and change.incident.raw["channel"]["name"] == "G06PRIV0001"


def test_a_command_missing_its_channel_is_refused_with_400() -> None:
    body = command("open x", channel_id="")
    with pytest.raises(WebhookError, match="'channel_id'") as caught:
        connector().parse_webhook(body, headers(body))
    assert caught.value.status == 400


# -- the message shortcut -----------------------------------------------------------------------------
def test_message_shortcut_opens_a_ticket_titled_by_the_first_line() -> None:
    slack = connector()
    (change,) = parse(slack, "shortcut_message_action.txt")
    assert change.event_type == "chat.open" and change.record_id == CHANNEL
    assert change.event_id == "slack:shortcut:6987654321016.2528207731.c0ffee00c0ffee00c0ffee00c0ffee00"
    assert change.incident.title == "Checkout returns 502 for ~30% of EU users"
    assert change.incident.raw["via"] == "message_shortcut"
    (entry,) = change.entries
    assert entry.id == f"{CHANNEL}:{MESSAGE_TS}"  # the same note id as capturing that message later
    assert entry.text.endswith("see dashboard (https://grafana.example.com/d/abc)")
    assert reply(slack, raw("shortcut_message_action.txt")) == (200, {})


def test_other_interactions_are_acknowledged_without_a_change() -> None:
    payload = json.loads(parse_qs(raw("shortcut_message_action.txt").decode())["payload"][0])
    for changed in ({"callback_id": "someone_elses"}, {"type": "block_actions"}):
        body = urlencode({"payload": json.dumps({**payload, **changed})}).encode()
        assert connector().parse_webhook(body, headers(body)) == []
        assert reply(connector(), body) == (200, {})
