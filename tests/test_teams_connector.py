"""Teams connector: the outgoing webhook's HMAC (and activity age), parsing of activities shaped like
Teams' own, the synchronous replies, the Adaptive Cards posted to Workflows URLs (with `responses`), and
the mapping of Workflows errors to the bridge's error types."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import responses
from pydantic import ValidationError

from bridge.config import load_config
from bridge.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
    WebhookError,
)
from bridge.http import build_session
from bridge.registry import connector_class, roles_of
from bridge.runtime import connection_settings
from connectors.base import Announcement, FieldChange
from connectors.teams.config import SECRET_KEYS, TeamsConnection
from connectors.teams.connector import CARD_TYPE, TeamsConnector
from connectors.teams.webhooks import sign

FIXTURES = Path(__file__).parent / "fixtures" / "teams"
TOKEN = base64.b64encode(b"teams-outgoing-webhook-test-key!").decode()
CHANNEL = "19:4e1a0c3b9d8f4a7b8c2d1e0f9a8b7c6d@thread.tacv2"
OTHER = "19:00000000000000000000000000000abc@thread.tacv2"
URL = "https://prod-12.westeurope.logic.azure.com:443/workflows/5f1c/triggers/manual/paths/invoke" \
      "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=ChannelSigS3cr3t"
DEFAULT = "https://prod-12.westeurope.logic.azure.com:443/workflows/9a9a/triggers/manual/paths/invoke" \
          "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=DefaultSigS3cr3t"
NOW = datetime(2026, 3, 2, 20, 0, 30, tzinfo=UTC)


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def connector(**overrides: object) -> TeamsConnector:
    settings = {"security_token": TOKEN, "channel_urls": {CHANNEL: URL}, "default_url": DEFAULT, **overrides}
    return TeamsConnector("teams", settings, session=build_session(attempts=1))


def signed(body: bytes, token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"HMAC {sign(token, body)}"}


# -- config -------------------------------------------------------------------------------------------
def test_connection_model_wants_secret_references_everywhere_a_secret_goes() -> None:
    ok = TeamsConnection(type="teams", security_token="env:TEAMS_TOKEN", default_url="file:/run/teams-url",
                         channel_urls={CHANNEL: "env:TEAMS_INC_CHECKOUT_URL"})
    assert (ok.capture, ok.activity_max_age_seconds) == ("mentions", 300)
    assert SECRET_KEYS == ("security_token", "default_url", "channel_urls")
    with pytest.raises(ValueError, match="secret reference"):
        TeamsConnection(type="teams", security_token=TOKEN)
    with pytest.raises(ValidationError) as caught:
        TeamsConnection(type="teams", security_token="env:T", channel_urls={CHANNEL: URL})
    [error] = caught.value.errors()
    assert error["loc"] == ("channel_urls",) and CHANNEL in error["msg"] and "ChannelSigS3cr3t" not in error["msg"]
    with pytest.raises(ValueError, match="unrecognized|Extra inputs"):
        TeamsConnection(type="teams", security_token="env:T", bot_token="env:X")


def write_config(tmp_path: Path, teams_extra: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[connections.teams]
type = "teams"
security_token = "file:secrets/token"
{teams_extra}
[connections.servicenow]
type = "servicenow"
instance_url = "https://example.service-now.com"
username = "env:SN_USER"
password = "env:SN_PASSWORD"
[[routes]]
name = "teams-to-servicenow"
source = "teams"
target = "servicenow"
preset = "teams-servicenow"
""")
    return path


def test_config_resolves_each_channel_url_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text(TOKEN)
    (tmp_path / "secrets" / "checkout").write_text(URL)
    monkeypatch.setenv("TEAMS_DEFAULT_URL", DEFAULT)
    config = load_config(write_config(tmp_path, f"""channel_urls = {{ "{CHANNEL}" = "file:secrets/checkout" }}
default_url = "env:TEAMS_DEFAULT_URL"
"""))
    settings = connection_settings(config, "teams")
    assert settings["channel_urls"] == {CHANNEL: URL} and settings["default_url"] == DEFAULT
    assert settings["security_token"] == TOKEN and config.connections["teams"].capture == "mentions"


def test_config_names_the_channel_whose_url_is_missing_or_inline(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text(TOKEN)
    config = load_config(write_config(tmp_path, f'channel_urls = {{ "{CHANNEL}" = "env:TEAMS_UNSET_URL_VARIABLE" }}'))
    with pytest.raises(ConfigError) as caught:
        connection_settings(config, "teams")
    [problem] = caught.value.problems
    assert problem.location == f"connections.teams.channel_urls[{CHANNEL!r}]" and "TEAMS_UNSET_URL_VARIABLE" in str(problem)
    with pytest.raises(ConfigError) as inline:
        load_config(write_config(tmp_path, f'channel_urls = {{ "{CHANNEL}" = "{URL}" }}\ncapture = "all"'))
    text = str(inline.value)
    assert "connections.teams.channel_urls" in text and "ChannelSigS3cr3t" not in text
    assert "connections.teams.capture" in text and "only deliver messages that @mention" in text


@pytest.mark.parametrize("mode", ["reaction", "pinned", "all"])
def test_capture_modes_teams_cannot_deliver_are_refused_with_the_reason(mode: str) -> None:
    with pytest.raises(ValueError) as caught:
        TeamsConnection(type="teams", security_token="env:T", capture=mode)
    message = str(caught.value)
    assert "capture" in message and repr(mode) in message
    assert "only deliver messages that @mention the webhook" in message


def test_unknown_capture_mode_is_named() -> None:
    with pytest.raises(ValueError, match="capture = 'everything' is unknown"):
        TeamsConnection(type="teams", security_token="env:T", capture="everything")


def test_registered_as_a_chat_source() -> None:
    assert connector_class("teams") is TeamsConnector and roles_of("teams") == frozenset({"source"})
    assert TeamsConnector.is_chat and TeamsConnector.can_add_notes
    assert "S3cr3t" not in repr(connector())


# -- signatures ---------------------------------------------------------------------------------------
BODY = raw("activity_open.json")


def test_signature_is_base64_hmac_sha256_under_the_decoded_token() -> None:
    expected = base64.b64encode(hmac.new(base64.b64decode(TOKEN), BODY, hashlib.sha256).digest()).decode()
    assert sign(TOKEN, BODY) == expected


def test_correct_signature_is_accepted_whatever_the_header_case() -> None:
    teams = connector()
    teams.verify_webhook(BODY, signed(BODY), now=NOW)
    teams.verify_webhook(BODY, {"authorization": f"HMAC {sign(TOKEN, BODY)}"}, now=NOW)


WRONG_TOKEN = base64.b64encode(b"some-other-webhook-token-0123456").decode()


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing Authorization header"),
    ({"Authorization": ""}, "missing Authorization header"),
    ({"Authorization": f"Bearer {sign(TOKEN, BODY)}"}, "must be \"HMAC <base64 signature>\""),
    ({"Authorization": "HMAC "}, "must be \"HMAC <base64 signature>\""),
    ({"Authorization": f"HMAC {sign(WRONG_TOKEN, BODY)}"}, "does not match"),
    ({"Authorization": f"HMAC {sign(TOKEN, BODY + b' ')}"}, "does not match"),
])
def test_wrong_or_missing_signature_is_refused_with_401(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value)
    assert TOKEN not in str(caught.value) and sign(TOKEN, BODY) not in str(caught.value)


def test_tampered_body_is_refused() -> None:
    tampered = BODY.replace(b"open Checkout", b"open Payments")
    with pytest.raises(WebhookError, match="does not match"):
        connector().verify_webhook(tampered, signed(BODY), now=NOW)


@pytest.mark.parametrize("shift, words", [(timedelta(seconds=301), "old"), (timedelta(hours=-1), "in the future")])
def test_stale_or_future_activity_is_refused_even_when_signed(shift: timedelta, words: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, signed(BODY), now=datetime(2026, 3, 2, 19, 58, 5, tzinfo=UTC) + shift)
    assert caught.value.status == 401 and words in str(caught.value) and "limit 300s" in str(caught.value)


def test_age_limit_is_configurable_and_zero_disables_it() -> None:
    later = NOW + timedelta(hours=2)
    connector(activity_max_age_seconds=0).verify_webhook(BODY, signed(BODY), now=later)
    connector(activity_max_age_seconds=3 * 3600).verify_webhook(BODY, signed(BODY), now=later)
    with pytest.raises(WebhookError):
        connector(activity_max_age_seconds=60).verify_webhook(BODY, signed(BODY), now=later)


def test_missing_or_unreadable_token_refuses_without_showing_it() -> None:
    with pytest.raises(WebhookError, match="no security_token configured for connection teams"):
        connector(security_token=None).verify_webhook(BODY, signed(BODY), now=NOW)
    with pytest.raises(WebhookError) as caught:
        connector(security_token="not base64 at all!").verify_webhook(BODY, {"Authorization": "HMAC x"}, now=NOW)
    assert caught.value.status == 401 and "not base64" in str(caught.value)
    assert "not base64 at all!" not in str(caught.value)


# -- parsing ------------------------------------------------------------------------------------------
def parse(name: str) -> list:
    return connector().parse_webhook(raw(name), {})


def test_open_becomes_an_incident_whose_id_is_the_channel() -> None:
    [change] = parse("activity_open.json")
    incident = change.incident
    assert (change.event_type, change.record_id, change.event_id) == ("chat.open", CHANNEL, "1772481485123")
    assert change.entries == () and change.via == "webhook"
    assert (incident.source, incident.id, incident.status) == ("teams", CHANNEL, "triggered")
    assert incident.title == "Checkout 5xx above 5% in eu-west-1"
    assert incident.created_at == incident.updated_at == change.occurred_at == \
        datetime(2026, 3, 2, 19, 58, 5, 123000, tzinfo=UTC)
    assert incident.description == "Opened from Microsoft Teams by Ana Ops in channel inc-checkout of team Site Reliability."
    assert incident.url == ("https://teams.microsoft.com/l/channel/19%3A4e1a0c3b9d8f4a7b8c2d1e0f9a8b7c6d%40thread.tacv2/"
                            "inc-checkout?groupId=d5a9c0e1-2b3c-4d5e-8f70-91a2b3c4d5e6"
                            "&tenantId=72f988bf-86f1-41af-91ab-2d7cd011db47")
    assert incident.raw["command"] == "open" and "link_ticket" not in incident.raw
    assert incident.raw["channel"]["name"] == "inc-checkout" and incident.raw["user"]["name"] == "Ana Ops"
    assert incident.raw["team"]["name"] == "Site Reliability"


def test_link_carries_the_ticket_number_in_capitals() -> None:
    [change] = parse("activity_link.json")
    assert (change.event_type, change.record_id) == ("chat.link", CHANNEL)
    assert change.incident.raw["link_ticket"] == "INC0012345" and change.incident.raw["command"] == "link"
    assert change.incident.description == "Linked from Microsoft Teams by Ana Ops in channel inc-checkout of team Site Reliability."


def test_any_other_mention_is_a_captured_note_in_plain_text() -> None:
    [change] = parse("activity_message.json")
    [entry] = change.entries
    assert (change.event_type, change.incident, change.record_id) == ("chat.message", None, CHANNEL)
    assert entry.id == f"{CHANNEL}:1772481601234" and entry.kind == "note" and entry.author == "Ben Notes"
    assert entry.text == "rolled back deploy 4411 & error rate is back under 1%\ncc Ben Notes <checking dashboards>"
    assert entry.at == datetime(2026, 3, 2, 20, 0, 1, 234000, tzinfo=UTC)


def test_older_shape_without_recipient_entities_or_channel_object_still_reads() -> None:
    [change] = parse("activity_legacy_shape.json")
    assert change.record_id == CHANNEL and change.incident.title == "Payments latency"
    assert change.incident.url.endswith("/channel?tenantId=72f988bf-86f1-41af-91ab-2d7cd011db47")


def test_channel_falls_back_to_the_conversation_without_its_thread_suffix() -> None:
    activity = json.loads(raw("activity_open.json"))
    activity["channelData"] = {"tenant": {"id": "t"}}
    [change] = connector().parse_webhook(json.dumps(activity).encode(), {})
    assert change.record_id == CHANNEL


@pytest.mark.parametrize("name", ["activity_help.json", "activity_bot.json"])
def test_help_and_the_bridges_own_posts_are_no_change(name: str) -> None:
    assert parse(name) == []


def test_a_user_quoting_a_bridge_post_with_its_marker_is_not_echoed() -> None:
    activity = json.loads(raw("activity_message.json"))
    activity["text"] = "<at>itsm-bridge</at> INC0012345 jane: on it [itsm-bridge:42]"
    assert connector().parse_webhook(json.dumps(activity).encode(), {}) == []


@pytest.mark.parametrize("text", ["<at>itsm-bridge</at> open", "<at>itsm-bridge</at> link", "<at>itsm-bridge</at> link soon",
                                  "<at>itsm-bridge</at>", "<at>itsm-bridge</at> HELP"])
def test_incomplete_commands_make_no_change_and_answer_with_usage(text: str) -> None:
    activity = json.loads(raw("activity_open.json"))
    activity["text"] = text
    body = json.dumps(activity).encode()
    teams = connector()
    assert teams.parse_webhook(body, {}) == []
    reply = teams.webhook_reply(body, {})
    assert reply is not None and reply.status == 200 and reply.body["type"] == "message"
    assert "Mention me with a command" in reply.body["text"] and "**link** *number*" in reply.body["text"]


def test_redelivery_keeps_the_event_id_so_the_inbox_drops_it() -> None:
    first, second = parse("activity_message.json"), parse("activity_message.json")
    assert first[0].event_id == second[0].event_id == "1772481601234"
    assert first[0].entries[0].id == second[0].entries[0].id


@pytest.mark.parametrize("mutate, field", [
    (lambda a: a.update(type="conversationUpdate"), "type must be \"message\""),
    (lambda a: a.pop("id"), "id must be a non-empty string"),
    (lambda a: a.update(timestamp="yesterday"), "timestamp must be an ISO 8601 time, got 'yesterday'"),
    (lambda a: (a.pop("channelData"), a["conversation"].update(id="")), "channelData.channel.id"),
    (lambda a: a.update(text=None), "text must be a string"),
])
def test_malformed_activity_is_a_400_naming_the_field(mutate, field: str) -> None:
    activity = json.loads(raw("activity_open.json"))
    mutate(activity)
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(json.dumps(activity).encode(), {})
    assert caught.value.status == 400 and field in str(caught.value)
    with pytest.raises(WebhookError, match="not JSON"):
        connector().parse_webhook(b"<html>", {})


# -- replies ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, words", [
    ("activity_open.json", "Opening a ticket for \"Checkout 5xx above 5% in eu-west-1\". Its number and link will follow"),
    ("activity_link.json", "Linking this channel to INC0012345"),
    ("activity_message.json", "Noted: this goes to the ticket's work notes"),
    ("activity_help.json", "Mention me with a command"),
])
def test_the_synchronous_reply_is_a_teams_message(name: str, words: str) -> None:
    reply = connector().webhook_reply(raw(name), {})
    assert reply is not None and reply.status == 200
    assert set(reply.body) == {"type", "text"} and reply.body["type"] == "message" and words in reply.body["text"]


def test_no_reply_to_the_bridges_own_post_and_nothing_to_poll() -> None:
    assert connector().webhook_reply(raw("activity_bot.json"), {}) is None
    result = connector().poll(None, now=NOW)
    assert list(result.changes) == [] and result.cursor is None


# -- the way back: Adaptive Cards to Workflows ----------------------------------------------------------
def posted(call_index: int = 0) -> dict:
    return json.loads(responses.calls[call_index].request.body)


def only_card(payload: dict) -> dict:
    assert payload["type"] == "message" and len(payload["attachments"]) == 1
    attachment = payload["attachments"][0]
    assert attachment["contentType"] == CARD_TYPE == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"], card["$schema"]) == \
        ("AdaptiveCard", "1.4", "http://adaptivecards.io/schemas/adaptive-card.json")
    return card


@responses.activate
def test_add_note_posts_a_wrapping_text_block_with_the_marker_to_the_channels_workflow() -> None:
    responses.post(URL, status=202)
    text = "ServiceNow ticket INC0010001 opened for this incident: https://sn/inc?sys_id=1 [itsm-bridge:17]"
    connector().add_note(CHANNEL, text)
    card = only_card(posted())
    assert card["body"] == [{"type": "TextBlock", "text": text, "wrap": True}]
    assert responses.calls[0].request.url == URL


@responses.activate
def test_channels_without_their_own_url_use_the_default_and_none_at_all_is_permanent() -> None:
    responses.post(DEFAULT, status=202)
    connector().add_note(OTHER, "hello [itsm-bridge:1]")
    assert responses.calls[0].request.url == DEFAULT
    with pytest.raises(PermanentError) as caught:
        connector(default_url=None).add_note(OTHER, "hello [itsm-bridge:2]")
    assert OTHER in str(caught.value) and "channel_urls" in str(caught.value)


@responses.activate
def test_announce_posts_title_facts_actor_and_an_open_button() -> None:
    responses.post(URL, status=202)
    announcement = Announcement(desk="ServiceNow", number="INC0010001", url="https://sn.example.com/inc?sys_id=1",
                                changes=(FieldChange("state", "State", "New", "Resolved"),
                                         FieldChange("assigned_to", "Assigned to", None, "Jane Doe")),
                                actor="jane.doe")
    connector().announce(CHANNEL, announcement)
    card = only_card(posted())
    title, facts, actor = card["body"]
    assert title["text"] == "[ServiceNow INC0010001](https://sn.example.com/inc?sys_id=1) changed"
    assert title["weight"] == "Bolder" and title["wrap"] is True
    assert facts == {"type": "FactSet", "facts": [{"title": "State", "value": "New → Resolved"},
                                                  {"title": "Assigned to", "value": "(none) → Jane Doe"}]}
    assert actor["text"] == "Changed by jane.doe"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open INC0010001",
                                "url": "https://sn.example.com/inc?sys_id=1"}]
    assert card["fallbackText"] == announcement.text()


def test_has_note_cannot_read_back_and_says_so() -> None:
    assert connector().has_note(CHANNEL, "[itsm-bridge:17]") is False
    assert "at-least-once" in (TeamsConnector.has_note.__doc__ or "")


@responses.activate
@pytest.mark.parametrize("status, body, headers, error", [
    (429, "error_throttled.json", {"Retry-After": "7"}, TransientError),
    (502, None, {}, TransientError),
    (401, "error_invalid_signature.json", {}, AuthError),
    (404, "error_workflow_not_found.json", {}, NotFoundError),
    (400, "error_schema_mismatch.json", {}, PermanentError),
])
def test_workflow_errors_map_to_typed_errors_without_the_url(status: int, body: str | None, headers: dict,
                                                             error: type) -> None:
    responses.post(URL, status=status, body=raw(body) if body else b"", headers=headers)
    with pytest.raises(error) as caught:
        connector().add_note(CHANNEL, "note [itsm-bridge:3]")
    assert caught.value.status == status and CHANNEL in str(caught.value)
    assert "S3cr3t" not in str(caught.value)
    if body:
        assert json.loads(raw(body))["error"]["message"] in str(caught.value)
    if status == 429:
        assert caught.value.retry_after == 7
    if error is PermanentError:
        assert not isinstance(caught.value, (AuthError, TransientError))


@responses.activate
def test_connection_failure_is_transient_and_hides_the_sig() -> None:
    responses.post(URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(TransientError) as caught:
        connector().add_note(CHANNEL, "note [itsm-bridge:4]")
    assert "S3cr3t" not in str(caught.value) and "sig=***" in str(caught.value)


@responses.activate
def test_check_probes_each_workflows_url_without_a_card_and_names_the_refused_one() -> None:
    responses.post(URL, status=202)
    responses.post(DEFAULT, status=401, json={"error": {"code": "DirectApiInvalidAuthorizationSignature"}})
    result = connector().check()
    assert not result.ok and "default_url" in result.message and "sig" in result.message
    assert URL not in result.message and DEFAULT not in result.message  # the URLs are secrets
    assert all(json.loads(call.request.body)["attachments"] == [] for call in responses.calls)  # nothing posted


@responses.activate
def test_check_is_ok_when_every_url_accepts_and_reports_configuration_problems() -> None:
    responses.post(URL, status=202)
    responses.post(DEFAULT, status=202)
    assert connector().check().ok
    bad = connector(security_token="###", channel_urls={}, default_url=None).check()
    assert not bad.ok and "not base64" in bad.message and "nothing can be posted back" in bad.message
