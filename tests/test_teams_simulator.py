"""The Teams simulator over real loopback HTTP: Workflows URLs (sig auth, Adaptive Cards only, 202 then a
flow run, throttling, injected faults) with the connector's `requests` on the wire, and the outgoing
webhook's signed delivery to an endpoint that verifies it with the connector itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from bridge.errors import AuthError, NotFoundError, TransientError, WebhookError
from bridge.http import build_session
from connectors.base import Announcement, FieldChange
from connectors.simulator import Faults, ServerThread
from connectors.teams.connector import TeamsConnector, card_message
from connectors.teams.simulator import DidNotRespond, TeamsSimulator
from connectors.teams.webhooks import sign
from tests.conftest import as_the_outbox


@pytest.fixture
def sim() -> Iterator[TeamsSimulator]:
    sim = TeamsSimulator(faults=Faults(seed=3)).start()
    yield sim
    sim.stop()


def connector(sim: TeamsSimulator, *, attempts: int = 1, **settings: object) -> TeamsConnector:
    urls = {sim.channel_id("inc-checkout"): sim.workflow_url("inc-checkout")}
    return TeamsConnector("teams", {"security_token": sim.security_token, "channel_urls": urls,
                                    "default_url": sim.workflow_url("general"), **settings},
                          session=build_session(attempts=attempts, initial_wait=0.01, max_wait=0.3))


# -- Workflows ----------------------------------------------------------------------------------------
def test_a_note_and_an_announcement_arrive_as_cards_after_the_flow_runs(sim: TeamsSimulator) -> None:
    teams = connector(sim)
    channel = sim.channel_id("inc-checkout")
    teams.add_note(channel, "ServiceNow ticket INC0010001 opened for this incident: https://sn/x [itsm-bridge:9]")
    teams.announce(channel, Announcement(desk="ServiceNow", number="INC0010001", url="https://sn/x",
                                         changes=(FieldChange("state", "State", "New", "In Progress"),),
                                         actor="jane.doe"))
    assert sim.wait_idle(5)
    note, announcement = sim.cards("inc-checkout")
    assert note["body"][0]["text"].endswith("[itsm-bridge:9]")
    assert announcement["body"][1]["facts"] == [{"title": "State", "value": "New → In Progress"}]
    assert announcement["actions"][0]["title"] == "Open INC0010001"
    assert sim.cards("general") == [] and [run["status"] for run in sim.runs] == ["Succeeded", "Succeeded"]


def test_unlisted_channels_go_to_the_default_workflow(sim: TeamsSimulator) -> None:
    connector(sim).add_note(sim.channel_id("inc-payments"), "to the default [itsm-bridge:1]")
    assert sim.wait_idle(5)
    assert [card["body"][0]["text"] for card in sim.cards("general")] == ["to the default [itsm-bridge:1]"]


def test_accepted_is_202_without_a_body(sim: TeamsSimulator) -> None:
    answer = requests.post(sim.workflow_url("inc-checkout"), json=card_message([{"type": "TextBlock", "text": "hi"}]),
                           timeout=5)
    assert answer.status_code == 202 and answer.content == b""


@pytest.mark.parametrize("mutate, status, code", [
    (lambda url: url.replace("&sig=", "&nosig="), 401, "AuthorizationFailed"),
    (lambda url: url.split("&sig=")[0] + "&sig=forged", 401, "DirectApiInvalidAuthorizationSignature"),
    (lambda url: url.replace("/workflows/inc-checkout/", "/workflows/deleted-channel/"), 404, "WorkflowNotFound"),
])
def test_workflow_url_auth_and_unknown_workflows(sim: TeamsSimulator, mutate, status: int, code: str) -> None:
    answer = requests.post(mutate(sim.workflow_url("inc-checkout")),
                           json=card_message([{"type": "TextBlock", "text": "hi"}]), timeout=5)
    assert answer.status_code == status and answer.json()["error"]["code"] == code


@pytest.mark.parametrize("payload, words", [
    ({"text": "Hello World!"}, "Required property 'attachments'"),  # the retired O365 connector shape
    ({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.hero",
                                          "content": {}}]}, "contentType must be"),
    ({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                          "content": {"type": "MessageCard", "body": []}}]}, "must be 'AdaptiveCard'"),
])
def test_only_adaptive_card_messages_are_accepted(sim: TeamsSimulator, payload: dict, words: str) -> None:
    answer = requests.post(sim.workflow_url("inc-checkout"), json=payload, timeout=5)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "TriggerInputSchemaMismatch" and words in error["message"]
    assert sim.wait_idle(5) and sim.cards("inc-checkout") == []


def test_connector_maps_a_wrong_sig_to_auth_and_a_deleted_workflow_to_not_found(sim: TeamsSimulator) -> None:
    channel = sim.channel_id("inc-checkout")
    wrong = connector(sim, channel_urls={channel: sim.workflow_url("inc-checkout", sig="revoked")})
    with pytest.raises(AuthError) as caught:
        wrong.add_note(channel, "x [itsm-bridge:1]")
    assert "provided authorization signature is not valid" in str(caught.value) and "revoked" not in str(caught.value)
    gone = connector(sim, channel_urls={channel: sim.workflow_url("inc-checkout").replace("inc-checkout", "gone")})
    with pytest.raises(NotFoundError, match="could not be found"):
        gone.add_note(channel, "x [itsm-bridge:2]")


def test_throttling_is_429_with_retry_after_and_the_session_waits_it_out() -> None:
    sim = TeamsSimulator(rate_limit=2, rate_window=0.2, retry_after=1).start()
    try:
        channel = sim.channel_id("inc-checkout")
        strict = connector(sim)
        strict.add_note(channel, "one [itsm-bridge:1]")
        strict.add_note(channel, "two [itsm-bridge:2]")
        with pytest.raises(TransientError) as caught:
            strict.add_note(channel, "three [itsm-bridge:3]")
        assert caught.value.status == 429 and caught.value.retry_after == 1
        connector(sim, attempts=4).add_note(channel, "four [itsm-bridge:4]")  # waits past the window, then lands
        assert sim.wait_idle(5)
        assert [card["body"][0]["text"][:4] for card in sim.cards("inc-checkout")] == ["one ", "two ", "four"]
    finally:
        sim.stop()


def test_injected_faults_are_absorbed_by_the_session_and_the_outbox_retries(sim: TeamsSimulator) -> None:
    sim.faults.configure(server_error_rate=0.2, rate_limit_rate=0.1, retry_after=0)
    teams = connector(sim, attempts=8)
    channel = sim.channel_id("inc-checkout")
    for number in range(12):
        as_the_outbox(lambda: teams.add_note(channel, f"note {number} [itsm-bridge:{number}]"))
    assert sim.wait_idle(5)
    assert len(sim.cards("inc-checkout")) == 12
    assert sim.faults.injected["5xx"] + sim.faults.injected["429"] > 0


# -- the outgoing webhook -------------------------------------------------------------------------------
class Bridge:
    """A webhook endpoint doing what the bridge's server does with a Teams connector: verify, parse, reply."""

    def __init__(self, token: str, *, failures: int = 0, delay: float = 0.0) -> None:
        self.teams = TeamsConnector("teams", {"security_token": token}, session=build_session(attempts=1))
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.changes: list = []
        self.failures, self.delay, self.gate = failures, delay, threading.Event()
        app = FastAPI()

        @app.post("/webhooks/teams")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.received.append((dict(request.headers), body))
            if self.delay:
                self.gate.wait(self.delay)  # a slow bridge (released at teardown)
            if self.failures:
                self.failures -= 1
                return JSONResponse({"error": "database is locked"}, status_code=503)
            try:
                self.teams.verify_webhook(body, request.headers, now=datetime.now(UTC))
            except WebhookError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            self.changes += self.teams.parse_webhook(body, {})
            reply = self.teams.webhook_reply(body, {})
            return JSONResponse(dict(reply.body) if reply else {"accepted": 1}, status_code=reply.status if reply else 202)

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/webhooks/teams"

    def stop(self) -> None:
        self.gate.set()
        self.server.stop()


@pytest.fixture
def bridge(sim: TeamsSimulator) -> Iterator[Bridge]:
    bridge = Bridge(sim.security_token)
    sim.set_webhook_url(bridge.url)
    yield bridge
    bridge.stop()


def test_a_mention_is_delivered_signed_and_the_user_sees_the_reply(sim: TeamsSimulator, bridge: Bridge) -> None:
    reply = sim.post_message("inc-checkout", "open Checkout errors in eu-west-1", user="alice")
    assert reply == {"type": "message", "text": "Opening a ticket for \"Checkout errors in eu-west-1\". "
                                                "Its number and link will follow in this channel "
                                                "(a channel that has a ticket already keeps it, retitled)."}
    [(headers, body)] = bridge.received
    assert headers["authorization"] == f"HMAC {sign(sim.security_token, body)}"
    activity = json.loads(body)
    channel = sim.channel_id("inc-checkout")
    assert activity["text"] == "<at>itsm-bridge</at> open Checkout errors in eu-west-1"
    assert activity["channelData"]["channel"]["id"] == channel and activity["conversation"]["id"].startswith(f"{channel};messageid=")
    assert activity["from"]["name"] == "Alice Adams" and activity["from"]["id"].startswith("29:")
    [change] = bridge.changes
    assert (change.event_type, change.record_id, change.incident.title) == ("chat.open", channel, "Checkout errors in eu-west-1")
    kinds = [message["kind"] for message in sim.messages("inc-checkout")]
    assert kinds == ["user", "reply"]


def test_a_message_without_the_mention_reaches_nobody(sim: TeamsSimulator, bridge: Bridge) -> None:
    assert sim.post_message("inc-checkout", "grabbing coffee", user="bob", mention=False) is None
    assert bridge.received == [] and [m["text"] for m in sim.messages("inc-checkout")] == ["grabbing coffee"]


def test_messages_and_help_in_the_same_channel(sim: TeamsSimulator, bridge: Bridge) -> None:
    assert "work notes" in sim.post_message("inc-checkout", "rolled back <b>4411</b> & watching", user="bob")["text"]
    assert "Mention me with a command" in sim.post_message("inc-checkout", "help")["text"]
    [note] = bridge.changes
    assert note.entries[0].text == "rolled back <b>4411</b> & watching" and note.entries[0].author == "Bob Brown"


def test_a_webhook_with_the_wrong_token_gets_did_not_respond(sim: TeamsSimulator) -> None:
    other = Bridge("c29tZS1vdGhlci10b2tlbi1mb3ItYW5vdGhlci10ZWFt")
    sim.set_webhook_url(other.url)
    try:
        with pytest.raises(DidNotRespond, match="itsm-bridge did not respond \\(HTTP 401\\)"):
            sim.post_message("inc-checkout", "open Anything")
        assert other.changes == []
    finally:
        other.stop()


def test_a_failing_webhook_is_retried_with_the_same_signed_activity() -> None:
    sim = TeamsSimulator(delivery_attempts=3).start()
    failing = Bridge(sim.security_token, failures=2)
    sim.set_webhook_url(failing.url)
    try:
        assert sim.post_message("inc-checkout", "open Retry me")["text"].startswith("Opening a ticket")
        bodies = {body for _headers, body in failing.received}
        assert len(failing.received) == 3 and len(bodies) == 1  # the same activity (and id) each time
        assert [d["status"] for d in sim.deliveries] == [503, 503, 200]
        assert len(failing.changes) == 1
    finally:
        failing.stop()
        sim.stop()


def test_a_slow_webhook_gets_did_not_respond() -> None:
    sim = TeamsSimulator(timeout=0.3).start()
    slow = Bridge(sim.security_token, delay=2.0)
    sim.set_webhook_url(slow.url)
    try:
        with pytest.raises(DidNotRespond, match="no answer within 0.3s"):
            sim.post_message("inc-checkout", "open Slow")
        assert [m["kind"] for m in sim.messages("inc-checkout")] == ["user"]
    finally:
        slow.stop()
        sim.stop()
