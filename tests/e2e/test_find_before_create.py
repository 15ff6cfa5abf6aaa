"""A create asks the desk for an existing ticket only when one could exist: never a duplicate, no wasted call.

A live webhook about an incident the store has never linked cannot have a ticket made by an earlier try
of the same create (there was none), so its first try goes straight to the POST: one desk call per new
incident instead of two (bench/throughput.py counts them). A retry, whose earlier try may have landed
with its answer lost, searches by correlation id first; so does every create with
``[sync] find_before_create = "always"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlmodel import Session, select

from bridge.daemon import Daemon, sync_once
from bridge.dead_letters import discard
from bridge.engine import process_inbox
from bridge.ingest import poll_connection
from bridge.outbox import deliver_due
from bridge.runtime import Runtime
from bridge.status import queue_depths
from bridge.store import AuditEntry, DeadLetter
from tests.conftest import wait_until
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e
SEARCH, CREATE = "GET /api/now/table/incident?correlation_id", "POST /api/now/table/incident"


class LosesTheFirstCreateAnswer(HTTPAdapter):
    """The desk creates the ticket, but the answer never arrives (the connection drops on the way back)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if request.method == "POST" and not self.lost:
            self.lost += 1
            raise requests.ConnectionError("connection reset by peer (after the desk had written)", request=request)
        return response


def settled(runtime: Runtime) -> bool:
    depths = queue_depths(runtime.store)
    return not (depths["inbox_pending"] or depths["outbox_pending"])


def start(world: World) -> tuple[Runtime, Daemon]:
    runtime = world.runtime()
    daemon = Daemon(runtime, host="127.0.0.1", port=world.port).start()
    world.pd.set_webhook_url(f"{daemon.url}/webhooks/pagerduty")
    return runtime, daemon


@pytest.fixture
def daemon(world: World) -> Iterator[tuple[Runtime, Daemon]]:
    runtime, running = start(world)
    try:
        yield runtime, running
    finally:
        running.stop()
        runtime.store.dispose()


def synced(world: World, runtime: Runtime, incident: str) -> list[dict[str, str]]:
    wait_until(lambda: world.tickets(incident) and settled(runtime), message=f"a ticket for {incident}")
    return world.tickets(incident)


def test_a_live_incident_gets_its_ticket_in_one_call(world: World, daemon: tuple[Runtime, Daemon]) -> None:
    runtime, _ = daemon
    incident = world.pd.trigger("Payments API", "Card declines spiking", user="alice")
    assert len(synced(world, runtime, incident)) == 1
    calls = world.sn.calls.snapshot()
    assert calls.get(SEARCH, 0) == 0, calls
    assert calls[CREATE] == 1


def test_a_create_whose_answer_was_lost_finds_its_ticket_instead_of_making_a_second(
        world: World, daemon: tuple[Runtime, Daemon]) -> None:
    runtime, _ = daemon
    wire = LosesTheFirstCreateAnswer()
    runtime.connectors["servicenow"].session.mount("http://", wire)
    incident = world.pd.trigger("Search", "Index lag", user="alice")
    tickets = synced(world, runtime, incident)
    assert wire.lost == 1
    assert len(tickets) == 1  # the retry searched, found the ticket the lost answer was about, and used it
    calls = world.sn.calls.snapshot()
    assert calls[CREATE] == 1 and calls[SEARCH] >= 1, calls
    wait_until(lambda: any(tickets[0]["number"] in note["content"] for note in world.pd.notes(incident)),
               message="the backlink names the one ticket")


def test_always_searches_before_every_create_when_configured(world: World) -> None:
    config = world.config_path.read_text()
    world.config_path.write_text(config.replace("claim_lease_seconds = 5",
                                                "claim_lease_seconds = 5\nfind_before_create = \"always\""))
    runtime, running = start(world)
    try:
        incident = world.pd.trigger("Identity", "Login latency", user="alice")
        assert len(synced(world, runtime, incident)) == 1
        assert world.sn.calls.snapshot()[SEARCH] == 1
    finally:
        running.stop()
        runtime.store.dispose()


class DeskResolvesBeforeTheAnswerArrives(LosesTheFirstCreateAnswer):
    """The first create lands and its answer is lost; before the bridge tries again, an agent resolves it."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if request.method == "POST" and not self.lost:
            response = HTTPAdapter.send(self, request, **kwargs)
            self.lost += 1
            sys_id = response.json()["result"]["sys_id"]
            self.world.sn.desk_update(sys_id, {"state": "6", "close_code": "Workaround provided",
                                               "close_notes": "Known issue, fixed by a restart"}, user="desk.agent")
            raise requests.ConnectionError("connection reset by peer (after the desk had written)", request=request)
        return super().send(request, **kwargs)


def test_a_desk_decision_on_a_ticket_whose_create_answer_was_lost_stands_and_flows_back(
        world: World, daemon: tuple[Runtime, Daemon]) -> None:
    """The retry finds the ticket; it must not write its creation state over the agent's resolve (which
    the bridge could not yet tell was about a linked ticket), and the resolve must reach the responders."""
    runtime, _ = daemon
    wire = DeskResolvesBeforeTheAnswerArrives(world)
    runtime.connectors["servicenow"].session.mount("http://", wire)
    incident = world.pd.trigger("Search", "Index lag", user="alice")
    (ticket,) = synced(world, runtime, incident)
    assert wire.lost == 1
    wait_until(lambda: world.pd.incident(incident)["status"] == "resolved", message="the desk's resolve in PagerDuty")
    assert world.sn.record(ticket["sys_id"])["state"] == "6"
    with Session(runtime.store.engine) as session:
        decided = [json.loads(data) for data in session.exec(select(AuditEntry.data)
                                                             .where(AuditEntry.kind == "conflict.decided"))]
    assert [(entry["field"], entry["desk_value"], entry["winner"]) for entry in decided] == [("state", "6", "desk")]


class DeskActsBeforeTheCreateIsRecorded(HTTPAdapter):
    """The create lands; before its answer reaches the bridge, an agent resolves the ticket and a desk poll
    is taken in (the bridge cannot tell yet which incident the ticket belongs to)."""

    def __init__(self, world: World, runtime: Runtime) -> None:
        super().__init__()
        self.world, self.runtime, self.done = world, runtime, False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if request.method == "POST" and not self.done:
            self.done = True
            self.world.sn.desk_update(response.json()["result"]["sys_id"], {
                "state": "6", "close_code": "Workaround provided", "close_notes": "Fixed by a restart"},
                user="desk.agent")
            poll_connection(self.runtime, "servicenow")
            process_inbox(self.runtime)
        return response


def test_a_desk_change_seen_before_the_create_is_recorded_waits_for_the_link_and_flows_back(world: World) -> None:
    runtime = world.runtime()
    try:
        wire = DeskActsBeforeTheCreateIsRecorded(world, runtime)
        runtime.connectors["servicenow"].session.mount("http://", wire)
        incident = world.pd.trigger("Search", "Index lag", user="alice")
        wait_until(lambda: sync_once(runtime).ok and world.pd.incident(incident)["status"] == "resolved",
                   message="the desk's resolve in PagerDuty")
        assert wire.done and len(world.tickets(incident)) == 1
    finally:
        runtime.store.dispose()


class LandsThenRefusesEverything(LosesTheFirstCreateAnswer):
    """The create lands and its answer is lost; from then on the desk refuses every call (a 400, as for a
    query an instance's ACLs reject): the create's retry is dead-lettered at once."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.lost:
            refused = requests.Response()
            refused.status_code, refused.url, refused.request = 400, request.url, request
            refused._content = b'{"error": {"message": "Invalid query", "detail": null}, "status": "failure"}'
            refused.headers["Content-Type"] = "application/json"
            return refused
        return super().send(request, **kwargs)


def test_a_desk_change_about_a_ticket_whose_create_was_discarded_is_not_held_forever(world: World) -> None:
    """While the create is dead-lettered the desk's change waits (a replay would link the ticket); once an
    admin discards the create, no link will come, and the change is let go instead of blocking the queue."""
    runtime = world.runtime()
    try:
        runtime.connectors["servicenow"].session.mount("http://", LandsThenRefusesEverything())
        incident = world.pd.trigger("Search", "Index lag", user="alice")
        poll_connection(runtime, "pagerduty")
        process_inbox(runtime)
        deliver_due(runtime)
        (ticket,) = world.tickets(incident)  # landed, though the bridge could not record it
        world.sn.desk_update(ticket["sys_id"], {"state": "2"}, user="desk.agent")
        runtime.connectors["servicenow"].session.mount("http://", HTTPAdapter())  # the desk answers again
        poll_connection(runtime, "servicenow")
        process_inbox(runtime)
        assert queue_depths(runtime.store)["inbox_pending"] == 1  # waits: a replay would still link it
        with Session(runtime.store.engine) as session:
            (letter,) = session.exec(select(DeadLetter).where(DeadLetter.kind == "outbox")).all()
        discard(runtime, letter.id, "ticket opened by hand meanwhile")  # type: ignore[arg-type]
        process_inbox(runtime)
        assert queue_depths(runtime.store)["inbox_pending"] == 0
    finally:
        runtime.store.dispose()

