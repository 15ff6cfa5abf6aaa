"""The Slack simulator over real loopback HTTP behaves like Slack: Web API auth and errors, history and
pagination semantics, rate limits, signed requests to the Request URL with Slack's retries; and the
connector (slack_sdk on the wire) works against it end to end."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
import requests
from fastapi import FastAPI, Request, Response
from slack_sdk.signature import SignatureVerifier

from bridge.errors import NotFoundError, PermanentError, TransientError
from bridge.http import build_session
from connectors.base import Announcement, FieldChange
from connectors.simulator import Faults, ServerThread
from connectors.slack.connector import SlackConnector
from connectors.slack.simulator import SlackSimulator
from connectors.slack.webhooks import sign

TOKEN, SECRET = "xoxb-sim-test-token", "sim-test-signing-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Receiver:
    """A Request URL recording every request; `answers` are (status, headers, delay) used in turn."""

    def __init__(self, respond: Callable[[bytes], Response] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[tuple[int, dict[str, str], float]] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/slack")
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.requests.append((dict(request.headers), body))
                status, headers, delay = self.answers.pop(0) if self.answers else (200, {}, 0.0)
            if delay:
                await asyncio.sleep(delay)  # hold the answer past Slack's timeout
            return respond(body) if respond and status == 200 else Response(status_code=status, headers=headers)

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/slack"

    def events(self) -> list[tuple[dict[str, str], dict]]:
        with self.lock:
            return [(h, json.loads(b)) for h, b in self.requests if b.startswith(b"{")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[SlackSimulator]:
    sim = SlackSimulator(bot_token=TOKEN, signing_secret=SECRET, retry_delays=(0.0, 0.05, 0.1), timeout=0.5).start()
    sim.set_webhook_url(receiver.url)
    yield sim
    sim.stop()


def api(sim: SlackSimulator, method: str, **kwargs: object) -> requests.Response:
    return requests.post(f"{sim.api_url}/{method}", timeout=5, **kwargs)  # type: ignore[arg-type]


def connector(sim: SlackSimulator, **settings: object) -> SlackConnector:
    return SlackConnector("slack", {"api_url": sim.api_url, "bot_token": TOKEN, "signing_secret": SECRET,
                                    "capture": "reaction", **settings}, session=build_session())


# -- the Web API --------------------------------------------------------------------------------------
def test_auth_errors_are_http_200_with_ok_false(sim: SlackSimulator) -> None:
    for kwargs, error in (({}, "not_authed"), ({"headers": {"Authorization": "Bearer xoxb-nope"}}, "invalid_auth")):
        answer = api(sim, "auth.test", **kwargs)
        assert answer.status_code == 200 and answer.json() == {"ok": False, "error": error}
    assert api(sim, "auth.test", data={"token": TOKEN}).json()["user_id"] == sim.bot_user_id()  # token as a form field
    sim.revoked = True
    assert api(sim, "auth.test", headers=AUTH).json()["error"] == "token_revoked"


def test_arguments_by_query_form_or_json_and_slack_errors(sim: SlackSimulator) -> None:
    channel = sim.create_channel("inc-1")
    sim.post_message(channel, "hello", "alice")
    for kwargs in ({"params": {"channel": channel}}, {"data": {"channel": channel}}, {"json": {"channel": channel}}):
        assert [m["text"] for m in api(sim, "conversations.history", headers=AUTH, **kwargs).json()["messages"]] == ["hello"]
    errors = {
        "unknown_method": api(sim, "chat.explode", headers=AUTH),
        "channel_not_found": api(sim, "chat.postMessage", headers=AUTH, json={"channel": "C0NOPE", "text": "x"}),
        "no_text": api(sim, "chat.postMessage", headers=AUTH, json={"channel": channel}),
        "msg_too_long": api(sim, "chat.postMessage", headers=AUTH, json={"channel": channel, "text": "x" * 40_001}),
        "invalid_blocks": api(sim, "chat.postMessage", headers=AUTH, json={"channel": channel, "text": "x", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}]}),
    }
    assert {error: answer.json()["error"] for error, answer in errors.items()} == {e: e for e in errors}
    assert all(answer.status_code == 200 for answer in errors.values())
    sim.remove_bot(channel)
    assert api(sim, "conversations.history", headers=AUTH, data={"channel": channel}).json()["error"] == "not_in_channel"
    private = sim.create_channel("inc-secret", private=True, bot=False)
    assert api(sim, "conversations.info", headers=AUTH, data={"channel": private}).json()["error"] == "channel_not_found"


def test_missing_scope_names_the_scope_needed() -> None:
    sim = SlackSimulator(bot_token=TOKEN, scopes=("chat:write",)).start()
    try:
        channel = sim.create_channel("inc-2")
        answer = api(sim, "conversations.history", headers=AUTH, data={"channel": channel}).json()
        assert answer == {"ok": False, "error": "missing_scope", "needed": "channels:history", "provided": "chat:write"}
    finally:
        sim.stop()


def test_history_is_newest_first_windowed_and_paginated_with_threads_apart(sim: SlackSimulator) -> None:
    channel = sim.create_channel("inc-3")
    stamps = [sim.post_message(channel, f"m{n}", "alice") for n in range(5)]
    reply = sim.post_message(channel, "in thread", "bob", thread_ts=stamps[1])

    def history(**args: object) -> dict:
        return api(sim, "conversations.history", headers=AUTH, data={"channel": channel, **args}).json()

    assert [m["text"] for m in history()["messages"]] == ["m4", "m3", "m2", "m1", "m0"]
    assert [m["text"] for m in history(oldest=stamps[1], latest=stamps[3])["messages"]] == ["m2"]
    assert [m["text"] for m in history(oldest=stamps[1], latest=stamps[3], inclusive="true")["messages"]] == ["m3", "m2", "m1"]
    first = history(limit=2)
    second = history(limit=2, cursor=first["response_metadata"]["next_cursor"])
    assert [m["text"] for m in first["messages"] + second["messages"]] == ["m4", "m3", "m2", "m1"] and first["has_more"]
    parent = next(m for m in history()["messages"] if m["ts"] == stamps[1])
    assert (parent["reply_count"], parent["latest_reply"]) == (1, reply)
    thread = api(sim, "conversations.replies", headers=AUTH, data={"channel": channel, "ts": reply}).json()["messages"]
    assert [m["text"] for m in thread] == ["m1", "in thread"]
    assert api(sim, "conversations.history", headers=AUTH, data={"channel": channel, "cursor": "bogus"}).json()["error"] \
        == "invalid_cursor"


def test_channel_listing_pages_and_pins(sim: SlackSimulator) -> None:
    ids = sorted(sim.create_channel(f"inc-{n}") for n in range(3))
    sim.create_channel("random", bot=False)
    sim.archive(ids[2])
    page = api(sim, "users.conversations", headers=AUTH, data={"limit": 1, "types": "public_channel"}).json()
    rest = api(sim, "users.conversations", headers=AUTH,
               data={"limit": 5, "cursor": page["response_metadata"]["next_cursor"], "exclude_archived": "true"}).json()
    assert [c["id"] for c in page["channels"] + rest["channels"]] == ids[:2]
    ts = sim.post_message(ids[0], "impact: EU card payments", "alice")
    sim.pin(ids[0], ts, "bob")
    (item,) = api(sim, "pins.list", headers=AUTH, data={"channel": ids[0]}).json()["items"]
    assert item["message"]["ts"] == ts and item["message"]["pinned_to"] == [ids[0]] and item["created_by"] == sim.user_id("bob")


def test_post_rate_tier_and_injected_faults_answer_429_with_retry_after() -> None:
    sim = SlackSimulator(bot_token=TOKEN, post_rate_limit=True, faults=Faults(seed=3)).start()
    try:
        one, two = sim.create_channel("inc-a"), sim.create_channel("inc-b")
        assert api(sim, "chat.postMessage", headers=AUTH, json={"channel": one, "text": "a"}).json()["ok"]
        limited = api(sim, "chat.postMessage", headers=AUTH, json={"channel": one, "text": "b"})
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.json() == {"ok": False, "error": "ratelimited"}
        assert api(sim, "chat.postMessage", headers=AUTH, json={"channel": two, "text": "c"}).json()["ok"]
        with pytest.raises(TransientError) as caught:
            connector(sim).add_note(two, "d [itsm-bridge:1]")
        assert caught.value.retry_after == 1.0
        sim.faults.configure(server_error_rate=1.0)
        with pytest.raises(TransientError, match="HTTP 5"):
            connector(sim).has_note(one, "x")
        sim.faults.configure(server_error_rate=0.0, rate_limit_rate=1.0)
        assert api(sim, "auth.test", headers=AUTH).status_code == 429
    finally:
        sim.stop()


# -- the Request URL ----------------------------------------------------------------------------------
def test_events_are_signed_and_sent_only_for_the_apps_channels(sim: SlackSimulator, receiver: Receiver) -> None:
    mine, other = sim.create_channel("inc-4"), sim.create_channel("watercooler", bot=False)
    sim.post_message(other, "lunch?", "bob")
    ts = sim.post_message(mine, "db is back", "alice")
    sim.add_reaction(mine, ts, "memo", "bob")
    assert sim.wait_idle(5)
    verifier = SignatureVerifier(SECRET)
    with receiver.lock:
        assert all(verifier.is_valid(body, h["x-slack-request-timestamp"], h["x-slack-signature"])
                   for h, body in receiver.requests)
    kinds = [(doc["type"], doc["event"]["type"], doc["event"].get("text")) for _h, doc in receiver.events()]
    assert kinds == [("event_callback", "message", "db is back"), ("event_callback", "reaction_added", None)]


def test_failed_deliveries_are_retried_three_times_with_slacks_headers(sim: SlackSimulator, receiver: Receiver) -> None:
    channel = sim.create_channel("inc-5")
    receiver.answers = [(500, {}, 0.0), (200, {}, 1.0), (500, {}, 0.0), (200, {}, 0.0)]
    sim.post_message(channel, "first", "alice")
    assert sim.wait_idle(10)
    retries = [(h.get("x-slack-retry-num"), h.get("x-slack-retry-reason")) for h, _doc in receiver.events()]
    assert retries == [(None, None), ("1", "http_error"), ("2", "http_timeout"), ("3", "http_error")]
    assert len({doc["event_id"] for _h, doc in receiver.events()}) == 1 and sim.sender.stats["delivered"] == 1
    receiver.answers = [(500, {}, 0.0)] * 4
    sim.post_message(channel, "second", "alice")
    assert sim.wait_idle(10) and sim.sender.stats["dropped"] == 1
    receiver.answers = [(503, {"X-Slack-No-Retry": "1"}, 0.0)]
    sim.post_message(channel, "third", "alice")
    assert sim.wait_idle(10) and sim.sender.stats["dropped"] == 2
    assert [a.retry for a in sim.sender.attempts if a.outcome != "ok"][-1] == 0  # No-Retry stopped at once


def test_set_request_url_performs_the_challenge_handshake(sim: SlackSimulator) -> None:
    echo = Receiver(lambda body: Response(json.dumps({"challenge": json.loads(body)["challenge"]}),
                                          media_type="application/json"))
    silent = Receiver()
    try:
        sim.set_request_url(echo.url)
        assert sim.sender.url == echo.url
        with pytest.raises(RuntimeError, match="challenge"):
            sim.set_request_url(silent.url)
        assert sim.sender.url is None
    finally:
        echo.server.stop()
        silent.server.stop()


def test_slash_command_and_shortcut_are_signed_forms_and_return_the_apps_answer(sim: SlackSimulator) -> None:
    slack = connector(sim)

    def respond(body: bytes) -> Response:
        stamp = int(time.time())
        headers = {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": sign(SECRET, stamp, body)}
        reply = slack.webhook_reply(body, headers)
        return Response(json.dumps(dict(reply.body)) if reply else "", media_type="application/json")

    app = Receiver(respond)
    try:
        sim.set_webhook_url(app.url)
        channel = sim.create_channel("inc-2043-search")
        answer = sim.slash_command(channel, "open Search is slow", "carol")
        assert answer["response_type"] == "ephemeral" and "Opening a ticket for #inc-2043-search" in answer["text"]
        headers, body = next((h, b) for h, b in reversed(app.requests) if b"command=" in b)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        assert (form["command"], form["text"], form["user_name"], form["channel_id"]) == ("/itsm", "open Search is slow",
                                                                                          "carol", channel)
        (change,) = slack.parse_webhook(body, headers)
        assert change.incident.title == "Search is slow" and change.incident.raw["user"]["name"] == "Carol"
        ts = sim.post_message(channel, "p99 latency 4s on /search\nsince 10:02", "alice")
        assert sim.message_shortcut(channel, ts, "bob") == {} and sim.last_status == 200
        # The message's own event is delivered asynchronously and may land after the shortcut.
        headers, body = next((h, b) for h, b in reversed(app.requests) if b.startswith(b"payload="))
        (opened,) = slack.parse_webhook(body, headers)
        assert opened.incident.title == "p99 latency 4s on /search" and opened.entries[0].author == "Alice"
        app.answers = [(500, {}, 0.0)]
        assert sim.slash_command(channel, "help", "carol")["error"] == "http_service_error"
    finally:
        app.server.stop()


# -- the connector against the simulator --------------------------------------------------------------
def test_connector_round_trip_notes_announcements_and_poll(sim: SlackSimulator, receiver: Receiver) -> None:
    slack = connector(sim)
    channel = sim.create_channel("inc-2044-login")
    ts = sim.post_message(channel, "SSO provider down since 09:12", "alice")
    sim.add_reaction(channel, ts, "memo", "bob")
    slack.add_note(channel, "ServiceNow ticket INC0010001 opened for this incident: https://sn.example/x [itsm-bridge:5]")
    slack.announce(channel, Announcement("ServiceNow", "INC0010001", "https://sn.example/x",
                                         (FieldChange("state", "State", "New", "In Progress"),), "jane.doe"))
    posts = sim.bot_messages(channel)
    assert [p["text"].split(" [itsm-bridge:")[0] for p in posts] == [
        "ServiceNow ticket INC0010001 opened for this incident: https://sn.example/x",
        "ServiceNow INC0010001 changed by jane.doe: State: New -&gt; In Progress"]
    assert posts[1]["blocks"][1]["fields"][0]["text"] == "*State*\nNew → In Progress"
    assert slack.has_note(channel, "[itsm-bridge:5]") and not slack.has_note(channel, "[itsm-bridge:6]")
    result = slack.poll(None, now=datetime.now(UTC))
    assert [(c.record_id, c.entries[0].text, c.entries[0].author) for c in result.changes] == \
        [(channel, "SSO provider down since 09:12", "Alice")]
    assert sim.wait_idle(5)
    parsed = [slack.parse_webhook(body, h) for h, body in receiver.requests]
    assert [c.event_id for changes in parsed for c in changes] == [result.changes[0].event_id]  # bot posts ignored
    with pytest.raises(NotFoundError, match="channel_not_found"):
        slack.add_note("C0UNKNOWN", "x [itsm-bridge:9]")
    sim.remove_bot(channel)
    with pytest.raises(PermanentError, match="not_in_channel"):
        slack.add_note(channel, "x [itsm-bridge:9]")
