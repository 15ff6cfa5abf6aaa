"""Slack connector, the Web API side, against a scripted loopback API (slack_sdk speaks urllib, so the calls
really go over HTTP): what add_note, has_note and announce send, the catch-up poll per capture mode, display
names, check(), and how every Slack failure maps to the bridge's typed errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bridge.errors import AuthError, NotFoundError, PermanentError, TransientError
from bridge.http import build_session
from bridge.ratelimit import RateLimited, RateLimiter
from connectors.base import Announcement, FieldChange
from connectors.simulator import free_port
from connectors.slack.connector import SlackConnector
from tests.slack_fake import FakeSlackApi, fixture
from tests.test_slack_connector import connector as webhook_connector
from tests.test_slack_connector import parse

TOKEN = "xoxb-1234-5678-SeCrEtBoTtOkEn"
CHANNEL = "C06A1B2C3D4"
NOW = datetime(2024, 4, 5, 20, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeSlackApi]:
    api = FakeSlackApi()
    yield api
    api.stop()


def connector(fake: FakeSlackApi | str, **overrides: object) -> SlackConnector:
    url = fake if isinstance(fake, str) else fake.api_url
    settings = {"api_url": url, "bot_token": TOKEN, "signing_secret": "s3cret", "capture": "all",
                "resolve_user_names": False, "timeout_seconds": 1, **overrides}
    return SlackConnector("slack", settings, session=build_session(attempts=1))


# -- the way back -------------------------------------------------------------------------------------
def test_add_note_posts_blocks_and_keeps_the_marker_in_the_text(fake: FakeSlackApi) -> None:
    fake.script("chat.postMessage", "chat_post_message.json")
    connector(fake).add_note(CHANNEL, "INC0010042 jane.doe (comment): <!channel> rollback & retry [itsm-bridge:17]")
    ((method, args, sent),) = fake.calls
    assert method == "chat.postMessage" and sent["authorization"] == f"Bearer {TOKEN}"
    assert "token" not in args and sent["content-type"].startswith("application/json")
    assert args["channel"] == CHANNEL and args["unfurl_links"] is False
    assert args["text"] == "INC0010042 jane.doe (comment): &lt;!channel&gt; rollback &amp; retry [itsm-bridge:17]"
    section, context = args["blocks"]
    assert section["text"] == {"type": "mrkdwn",
                               "text": "INC0010042 jane.doe (comment): &lt;!channel&gt; rollback &amp; retry"}
    assert context["type"] == "context"


def test_a_long_note_is_split_into_sections_slack_accepts(fake: FakeSlackApi) -> None:
    fake.script("chat.postMessage", "chat_post_message.json")
    connector(fake).add_note(CHANNEL, "x" * 7000 + " [itsm-bridge:3]")
    blocks = fake.called("chat.postMessage")[0]["blocks"]
    assert [len(b["text"]["text"]) for b in blocks[:-1]] == [3000, 3000, 1000]


def test_has_note_searches_recent_history_page_by_page(fake: FakeSlackApi) -> None:
    fake.script("conversations.history", "conversations_history_page1.json")
    slack = connector(fake)
    assert slack.has_note(CHANNEL, "[itsm-bridge:3]") is True  # found on the first page: no second read
    fake.script("conversations.history", "conversations_history_page1.json", "conversations_history_page2.json")
    assert slack.has_note(CHANNEL, "[itsm-bridge:4]") is False
    assert [call.get("cursor") for call in fake.called("conversations.history")] == \
        [None, None, "bmV4dF90czoxNzEyMzQ1Njc4MDAwMjAw"]
    fake.script("conversations.history", "conversations_history_page1.json")
    assert connector(fake, has_note_depth=2).has_note(CHANNEL, "[itsm-bridge:9]") is False
    assert fake.called("conversations.history")[-1]["limit"] == "2" and len(fake.called("conversations.history")) == 4


def test_announce_is_a_block_kit_message_with_the_ticket_linked(fake: FakeSlackApi) -> None:
    fake.script("chat.postMessage", "chat_post_message.json")
    announcement = Announcement(desk="ServiceNow", number="INC0012345", url="https://acme.service-now.com/x?a=1|2",
                                changes=(FieldChange("state", "State", "In Progress", "Resolved"),
                                         FieldChange("assigned_to", "Assigned to", None, "Jane <Doe>")),
                                actor="jane.doe")
    connector(fake).announce(CHANNEL, announcement)
    args = fake.called("chat.postMessage")[0]
    head, fields, context = args["blocks"]
    assert head["text"]["text"] == ":ticket: *ServiceNow <https://acme.service-now.com/x?a=1%7C2|INC0012345>* was updated"
    assert [f["text"] for f in fields["fields"]] == ["*State*\nIn Progress → Resolved",
                                                     "*Assigned to*\n(none) → Jane &lt;Doe&gt;"]
    assert "Changed by jane.doe in ServiceNow" in context["elements"][0]["text"]
    assert args["text"].startswith("ServiceNow INC0012345 changed by jane.doe: State: In Progress -&gt; Resolved")
    assert "[itsm-bridge:" in args["text"]  # the bridge's own post is recognised as such if it comes back


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, status, headers, kind, words", [
    ("error_ratelimited.json", 429, {"Retry-After": "7"}, TransientError, "HTTP 429"),
    ("<html>Bad gateway</html>", 502, {}, TransientError, "HTTP 502"),
    ({"ok": False, "error": "ratelimited"}, 200, {}, TransientError, "'ratelimited'"),
    ({"ok": False, "error": "internal_error"}, 200, {}, TransientError, "'internal_error'"),
    ({"ok": False, "error": "service_unavailable"}, 200, {}, TransientError, "'service_unavailable'"),
    ({"ok": False, "error": "fatal_error"}, 200, {}, TransientError, "'fatal_error'"),
    ({"ok": False, "error": "request_timeout"}, 200, {}, TransientError, "'request_timeout'"),
    ("error_invalid_auth.json", 200, {}, AuthError, "'invalid_auth'"),
    ({"ok": False, "error": "not_authed"}, 200, {}, AuthError, "'not_authed'"),
    ({"ok": False, "error": "token_revoked"}, 200, {}, AuthError, "reinstall"),
    ("error_missing_scope.json", 200, {}, AuthError, "needs scope channels:history"),
    ("error_channel_not_found.json", 200, {}, NotFoundError, "'channel_not_found'"),
    ("error_not_in_channel.json", 200, {}, PermanentError, "'not_in_channel'; invite the app"),
    ({"ok": False, "error": "is_archived"}, 200, {}, PermanentError, "'is_archived'"),
    ({"ok": False, "error": "invalid_blocks"}, 200, {}, PermanentError, "'invalid_blocks'"),
])
def test_slack_failures_become_typed_errors_without_the_token(fake: FakeSlackApi, answer: object, status: int,
                                                               headers: dict, kind: type, words: str) -> None:
    fake.script("chat.postMessage", answer, status=status, headers=headers)
    with pytest.raises(kind) as caught:
        connector(fake).add_note(CHANNEL, "hello [itsm-bridge:1]")
    error = caught.value
    assert type(error) is kind and words in str(error) and "post a note in channel C06A1B2C3D4" in str(error)
    assert TOKEN not in str(error) and error.connection == "slack"
    assert len(fake.calls) == 1  # slack_sdk's own retries are off: the outbox decides
    if status == 429:
        assert error.retry_after == 7.0


def test_calls_take_the_connections_rate_limit_and_a_429_rests_the_connection(fake: FakeSlackApi) -> None:
    waits: list[float] = []
    limiter = RateLimiter(600, 5, connection="slack", max_wait=5, sleep=waits.append)
    slack = SlackConnector("slack", {"api_url": fake.api_url, "bot_token": TOKEN, "capture": "all"},
                           session=build_session(attempts=1, limiter=limiter))
    fake.script("chat.postMessage", "error_ratelimited.json", status=429, headers={"Retry-After": "30"})
    with pytest.raises(TransientError):
        slack.add_note(CHANNEL, "x [itsm-bridge:1]")
    assert limiter.backlog() > 25  # the whole connection waits out Retry-After, not just this op
    with pytest.raises(RateLimited):
        slack.add_note(CHANNEL, "x [itsm-bridge:1]")  # refused before sending: no second request
    assert len(fake.calls) == 1


def test_name_lookups_never_wait_for_the_rate_limit(fake: FakeSlackApi) -> None:
    limiter = RateLimiter(60, 1, connection="slack", max_wait=5, sleep=lambda _s: None)
    slack = SlackConnector("slack", {"api_url": fake.api_url, "bot_token": TOKEN, "capture": "all"},
                           session=build_session(attempts=1, limiter=limiter))
    limiter.acquire()  # the bucket is empty: the next call would wait about a second
    assert slack.display_name("U024BE7LH", "alice") == "alice" and slack.channel_name("G06PRIV0001") == "G06PRIV0001"
    assert fake.calls == []  # Slack's 3-second answer comes first; the names are asked next time


def test_connection_failures_and_timeouts_are_transient(fake: FakeSlackApi) -> None:
    with pytest.raises(TransientError, match="URLError") as refused:
        connector(f"http://127.0.0.1:{free_port()}/api").add_note(CHANNEL, "x [itsm-bridge:1]")
    assert TOKEN not in str(refused.value)
    fake.script("chat.postMessage", "chat_post_message.json", delay=2.5)
    with pytest.raises(TransientError, match="timed out|timeout"):
        connector(fake).add_note(CHANNEL, "x [itsm-bridge:1]")


def test_check_reports_the_workspace_or_the_refusal(fake: FakeSlackApi) -> None:
    fake.script("auth.test", "auth_test.json", "auth_test.json")
    result = connector(fake).check()
    assert result.ok and result.message == "token accepted for workspace Acme SRE as itsm-bridge"
    assert result.details["bot_id"] == "B05R2LAN3QP"
    unsigned = connector(fake, signing_secret=None).check()
    assert not unsigned.ok and "no signing_secret" in unsigned.message
    fake.script("auth.test", "error_invalid_auth.json")
    refused = connector(fake).check()
    assert not refused.ok and refused.message.startswith("Slack token refused") and TOKEN not in refused.message


def test_display_names_are_read_once_and_a_missing_scope_falls_back_to_the_id(fake: FakeSlackApi) -> None:
    fake.script("users.info", "users_info.json")
    slack = connector(fake, resolve_user_names=True)
    assert slack.display_name("U024BE7LH") == slack.display_name("U024BE7LH") == "alice.a"
    fake.script("users.info", "error_missing_scope.json")
    assert slack.display_name("U0G9QF9C6", "bob") == "bob" and slack.display_name("U0G9QF9C6") == "U0G9QF9C6"
    assert len(fake.called("users.info")) == 2


# -- the catch-up poll --------------------------------------------------------------------------------
def script_history(fake: FakeSlackApi) -> None:
    fake.script("users.conversations", "users_conversations.json")
    fake.script("conversations.history", "conversations_history_page1.json", "conversations_history_page2.json")
    fake.script("conversations.replies", "conversations_replies.json")


def test_poll_with_capture_reaction_finds_reacted_messages_and_thread_replies(fake: FakeSlackApi) -> None:
    script_history(fake)
    result = connector(fake, capture="reaction").poll("1712345000.000000", now=NOW)
    assert [c.event_id for c in result.changes] == [f"slack:message:{CHANNEL}:1712345690.000300",
                                                    f"slack:message:{CHANNEL}:1712345800.000100"]
    assert all(c.via == "poll" and c.event_type == "chat.message" for c in result.changes)
    assert result.cursor == "1712345800.000100"  # the newest ts seen
    listing = fake.called("users.conversations")[0]
    assert listing["types"] == "public_channel,private_channel" and listing["exclude_archived"] == "1"
    first = fake.called("conversations.history")[0]
    assert first["oldest"] == "1712260800.000000"  # 24 h of reaction look-back before now, not the cursor
    assert fake.called("conversations.replies")[0]["ts"] == "1712345678.000200"


def test_poll_with_capture_all_takes_every_persons_message_since_the_cursor(fake: FakeSlackApi) -> None:
    script_history(fake)
    result = connector(fake, capture="all", poll_overlap_seconds=60).poll("1712345000.000000", now=NOW)
    texts = [c.entries[0].text for c in result.changes]
    assert texts == ["Failover finished", "Rolling back deploy 4411 now", "Deploy 4411 rolled back"]
    assert fake.called("conversations.history")[0]["oldest"] == "1712344940.000000"


def test_poll_pinned_mentions_and_none(fake: FakeSlackApi) -> None:
    fake.script("users.conversations", "users_conversations.json")
    fake.script("pins.list", "pins_list.json")
    pinned = connector(fake, capture="pinned").poll(None, now=NOW)
    assert [c.event_id for c in pinned.changes] == [f"slack:message:{CHANNEL}:1712345600.000100"]
    assert pinned.cursor == "1712345780.000000"
    fake.script("users.conversations", "users_conversations.json")
    fake.script("auth.test", "auth_test.json")
    mention = {"type": "message", "user": "U024BE7LH", "text": "<@U05R2LB6T9X> impact over", "ts": "1712345900.000100"}
    fake.script("conversations.history", {"ok": True, "messages": [mention, {**mention, "text": "no mention",
                                                                             "ts": "1712345901.000100"}]})
    assert [c.entries[0].text for c in connector(fake, capture="mentions").poll(None, now=NOW).changes] == \
        ["@U05R2LB6T9X impact over"]
    calls = len(fake.calls)
    nothing = connector(fake, capture="none").poll("1712345000.000000", now=NOW)
    assert nothing.changes == [] and len(fake.calls) == calls


def test_a_channel_the_app_cannot_read_is_skipped_but_transient_failures_fail_the_poll(fake: FakeSlackApi) -> None:
    listing = fixture("users_conversations.json")
    listing["channels"] = [{**listing["channels"][0], "id": "C0GONE0001"}, *listing["channels"]]
    fake.script("users.conversations", listing)
    fake.script("conversations.history", "error_not_in_channel.json")
    fake.script("conversations.history", {"ok": True, "messages": [
        {"type": "message", "user": "U024BE7LH", "text": "still here", "ts": "1712345950.000100"}], "has_more": False})
    result = connector(fake).poll("1712345000.000000", now=NOW)
    assert [c.record_id for c in result.changes] == [CHANNEL]
    fake.script("users.conversations", "users_conversations.json")
    fake.script("conversations.history", "error_ratelimited.json", status=429, headers={"Retry-After": "30"})
    with pytest.raises(TransientError) as caught:
        connector(fake).poll("1712345000.000000", now=NOW)
    assert caught.value.retry_after == 30.0


def test_poll_and_webhook_give_one_message_the_same_event_and_entry_ids(fake: FakeSlackApi) -> None:
    fake.script("users.conversations", "users_conversations.json")
    message = fixture("event_message.json")["event"]
    fake.script("conversations.history", {"ok": True, "messages": [message], "has_more": False})
    (polled,) = connector(fake).poll(None, now=NOW).changes
    (pushed,) = parse(webhook_connector(), "event_message.json")
    assert (polled.event_id, polled.entries[0].id, polled.entries[0].text) == \
        (pushed.event_id, pushed.entries[0].id, pushed.entries[0].text)
    assert json.dumps(polled.to_dict()["entries"]) == json.dumps(pushed.to_dict()["entries"])
