"""The Squadcast simulator over real loopback HTTP, and the connector against it with `requests` on the
wire: token exchange and expiry, the export, actions, warroom notes, webhooks with the admin's header,
and 30% injected 5xx/429 absorbed by `bridge.http.build_session`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from fastapi import FastAPI, Request, Response

from bridge.errors import PermanentError
from bridge.http import build_session
from connectors.simulator import Faults, ServerThread
from connectors.squadcast.connector import SquadcastConnector
from connectors.squadcast.simulator import SquadcastSimulator
from tests.conftest import as_the_outbox

REFRESH = "sim-squadcast-test-refresh"
SECRET = "sim-squadcast-test-secret"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Receiver:
    """A webhook endpoint recording every request and answering the statuses it is told to, in turn."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.requests.append((dict(request.headers), body))
                status = self.answers.pop(0) if self.answers else 200
            return Response(status_code=status)

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/hook"

    def types(self) -> list[str]:
        with self.lock:
            return [json.loads(body)["event"]["type"] for _headers, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[SquadcastSimulator]:
    sim = SquadcastSimulator(refresh_token=REFRESH, webhook_secret=SECRET, webhook_url=receiver.url,
                             webhook_backoff=0.01, webhook_max_backoff=0.05).start()
    yield sim
    sim.stop()


def connector(sim: SquadcastSimulator, **settings: object) -> SquadcastConnector:
    return SquadcastConnector("squadcast", {"api_url": sim.url, "refresh_token": REFRESH, "webhook_secret": SECRET,
                                            **settings}, session=build_session(initial_wait=0.01))


def bearer(sim: SquadcastSimulator) -> dict[str, str]:
    answer = requests.get(f"{sim.url}/oauth/access-token", headers={"X-Refresh-Token": REFRESH}, timeout=5).json()
    return {"Authorization": f"Bearer {answer['data']['access_token']}"}


# -- tokens ---------------------------------------------------------------------------------------------
def test_the_refresh_token_buys_an_expiring_access_token() -> None:
    now = [1_000_000.0]
    sim = SquadcastSimulator(refresh_token=REFRESH, token_ttl=3600, token_clock=lambda: now[0]).start()
    try:
        wrong = requests.get(f"{sim.url}/oauth/access-token", headers={"X-Refresh-Token": "nope"}, timeout=5)
        assert wrong.status_code == 401 and wrong.json()["meta"]["error_message"] == "invalid refresh token"
        data = requests.get(f"{sim.url}/oauth/access-token", headers={"X-Refresh-Token": REFRESH}, timeout=5).json()["data"]
        assert (data["type"], data["expires_at"] - data["issued_at"]) == ("bearer", 3600)
        headers = {"Authorization": f"Bearer {data['access_token']}"}
        assert requests.get(f"{sim.url}/v3/teams", headers=headers, timeout=5).status_code == 200
        for bad in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Token {data['access_token']}"}):
            answer = requests.get(f"{sim.url}/v3/teams", headers=bad, timeout=5)
            assert answer.status_code == 401 and answer.json() == {"meta": {"status": 401, "error_message": "Unauthorized"}}
        now[0] += 3600
        assert requests.get(f"{sim.url}/v3/teams", headers=headers, timeout=5).status_code == 401
    finally:
        sim.stop()


def test_the_connector_renews_an_expired_or_revoked_token() -> None:
    now = [1_000_000.0]
    sim = SquadcastSimulator(refresh_token=REFRESH, token_ttl=600, token_clock=lambda: now[0]).start()
    try:
        squadcast = connector(sim)
        squadcast.clock = lambda: now[0]
        incident = sim.trigger("Search", "Search is slow")
        for _ in range(3):
            squadcast.transition(incident, "triggered")
        assert sim.tokens_issued == 1  # cached
        now[0] += 560  # inside the renewal margin
        squadcast.add_note(incident, "one")
        sim.revoke_tokens()  # as regenerating the refresh token does: the next call gets a 401
        squadcast.add_note(incident, "two")
        assert sim.tokens_issued == 3 and [n["message"] for n in sim.notes(incident)] == ["one", "two"]
    finally:
        sim.stop()


# -- REST -----------------------------------------------------------------------------------------------
def test_the_export_selects_by_creation_time_and_validates_its_query() -> None:
    ticks = iter(range(10_000))
    sim = SquadcastSimulator(refresh_token=REFRESH, clock=lambda: T0 + timedelta(minutes=next(ticks))).start()
    try:
        headers = bearer(sim)
        ids = [sim.trigger("Search", f"Search incident {n}", priority="P3") for n in range(4)]
        sim.resolve(ids[0], "bob")  # activity later than the window does not matter: creation time does
        team = requests.get(f"{sim.url}/v3/teams", headers=headers, timeout=5).json()["data"][0]["id"]
        query = {"type": "json", "owner_id": team, "start_time": "2026-03-02T12:01:00.000Z", "end_time": "2026-03-02T12:02:00.000Z"}
        found = requests.get(f"{sim.url}/v3/incidents/export", headers=headers, params=query, timeout=5).json()["incidents"]
        assert [i["id"] for i in found] == ids[1:3] and found[0]["priority"] == "P3" and found[0]["service"] == "Search"
        as_csv = requests.get(f"{sim.url}/v3/incidents/export", headers=headers, params={**query, "type": "csv"}, timeout=5)
        assert as_csv.text.splitlines()[0].startswith("id,title,status") and len(as_csv.text.splitlines()) == 3
        for missing in ("type", "owner_id", "start_time"):
            bad = requests.get(f"{sim.url}/v3/incidents/export", headers=headers, timeout=5,
                               params={k: v for k, v in query.items() if k != missing})
            assert bad.status_code == 400 and bad.json()["meta"]["error_message"]
    finally:
        sim.stop()


def test_actions_and_their_refusals(sim: SquadcastSimulator) -> None:
    headers, incident = bearer(sim), sim.trigger("Payments API", "Payments 5xx", priority="P1")
    base = f"{sim.url}/v3/incidents/{incident}"
    assert requests.post(f"{base}/acknowledge", headers=headers, timeout=5).json() == {"data": "Incident acknowledged successfully"}
    again = requests.post(f"{base}/acknowledge", headers=headers, timeout=5)
    assert again.status_code == 400 and again.json()["meta"]["error_message"] == "incident is already acknowledged"
    assert requests.patch(f"{base}/priority", headers=headers, json={"priority": "P9"}, timeout=5).status_code == 400
    assert requests.patch(f"{base}/priority", headers=headers, json={"priority": "P2"}, timeout=5).status_code == 200
    bad = requests.post(f"{base}/reassign", headers=headers, json={"reassign_to": {"id": "x", "type": "team"}}, timeout=5)
    assert bad.status_code == 400
    resolved = requests.post(f"{base}/resolve", headers=headers, json={"resolution_reason": {"message": "fixed"}}, timeout=5)
    assert resolved.status_code == 200 and sim.incident(incident)["status"] == "resolved"
    assert requests.post(f"{base}/resolve", headers=headers, json={}, timeout=5).status_code == 400
    record = requests.get(base, headers=headers, timeout=5).json()["data"]
    assert (record["priority"], record["incidentNumber"], [log["action"] for log in record["logs"]]) == (
        "P2", 1, ["triggered", "acknowledged", "priority_updated", "resolved"])
    assert requests.get(f"{sim.url}/v3/incidents/nope", headers=headers, timeout=5).status_code == 404


def test_a_mandatory_resolution_reason_is_enforced() -> None:
    sim = SquadcastSimulator(refresh_token=REFRESH, require_resolution_reason=True).start()
    try:
        incident, headers = sim.trigger("Search", "Search down"), bearer(sim)
        refused = requests.post(f"{sim.url}/v3/incidents/{incident}/resolve", headers=headers, json={}, timeout=5)
        assert refused.status_code == 400 and "mandatory" in refused.json()["meta"]["error_message"]
        connector(sim).transition(incident, "resolved")  # the connector always sends its resolution message
        assert sim.incident(incident)["status"] == "resolved"
    finally:
        sim.stop()


def test_warroom_notes_are_created_with_201_and_listed(sim: SquadcastSimulator) -> None:
    headers, incident = bearer(sim), sim.trigger("Identity", "Login failures")
    created = requests.post(f"{sim.url}/v3/incidents/{incident}/warroom", headers=headers, timeout=5,
                            json={"message": "INC001 [itsm-bridge:1]", "attachments": []})
    assert created.status_code == 201 and created.json()["data"]["user"]["first_name"] == "ITSM"
    listed = requests.get(f"{sim.url}/v3/incidents/{incident}/warroom", headers=headers, timeout=5).json()["data"]
    assert [(n["message"], n["type"]) for n in listed] == [("INC001 [itsm-bridge:1]", "message")]
    blank = requests.post(f"{sim.url}/v3/incidents/{incident}/warroom", headers=headers, json={"message": " "}, timeout=5)
    assert blank.status_code == 400


def test_rate_limit_is_429_with_headers() -> None:
    sim = SquadcastSimulator(refresh_token=REFRESH, rate_limit=3).start()
    try:
        headers = bearer(sim)
        answers = [requests.get(f"{sim.url}/v3/teams", headers=headers, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["X-RateLimit-Remaining"] == "1" and answers[2].headers["Retry-After"] == "60"
    finally:
        sim.stop()


# -- webhooks -------------------------------------------------------------------------------------------
def test_every_change_sends_its_v2_webhook_with_the_admins_header(sim: SquadcastSimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Checkout Web", "Checkout 5xx", priority="P2")
    sim.reassign(incident, "carol", "alice")
    sim.acknowledge(incident, "bob")
    sim.add_note(incident, "Rolling back", "bob")
    sim.set_priority(incident, "P1", "bob")  # Squadcast has no webhook event for a priority change
    sim.resolve(incident, "bob", "rolled back deploy")
    assert sim.wait_idle(10)
    assert receiver.types() == ["incident.triggered", "incident.reassigned", "incident.acknowledged",
                                "incident.incident_notes_created", "incident.resolved"]
    squadcast, seen = connector(sim), []
    for headers, body in receiver.requests:
        assert headers["x-itsm-bridge-token"] == SECRET and headers["content-type"] == "application/json"
        squadcast.verify_webhook(body, headers, now=datetime.now(UTC))
        [change] = squadcast.parse_webhook(body, headers)
        seen.append((change.incident.status, change.incident.assignees, [e.kind for e in change.entries]))
    assert seen == [("triggered", ("Checkout Web on-call",), ["status"]), ("triggered", ("Carol Chen",), ["assignment"]),
                    ("acknowledged", ("Bob Brown",), ["status"]), ("acknowledged", ("Bob Brown",), ["note"]),
                    ("resolved", ("Bob Brown",), ["status"])]
    assert [n["message"] for n in sim.notes(incident)] == ["Rolling back"]  # the resolution reason is no note


def test_failed_deliveries_are_retried_three_times_then_dropped(sim: SquadcastSimulator, receiver: Receiver) -> None:
    receiver.answers = [503, 404, 200, 500, 500, 500, 500]
    first = sim.trigger("Search", "one")
    sim.trigger("Search", "two")
    assert sim.wait_idle(10)
    assert sim.webhooks.stats["delivered"] == 1 and sim.webhooks.stats["dropped"] == 1
    ids = [json.loads(body)["event"]["id"] for _h, body in receiver.requests]
    assert len(ids) == 7 and len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1
    assert json.loads(receiver.requests[0][1])["data"]["resource_data"]["id"] == first


# -- the connector against the simulator -------------------------------------------------------------
def _round_trip(sim: SquadcastSimulator) -> None:
    squadcast = connector(sim)
    ids = [sim.trigger("Payments API", f"Payments incident {n}", priority="P1") for n in range(5)]
    for incident in ids:
        squadcast.transition(incident, "acknowledged")
        squadcast.transition(incident, "acknowledged")
        squadcast.add_note(incident, f"Ticket opened [itsm-bridge:{incident[:8]}]")
        assert squadcast.has_note(incident, f"[itsm-bridge:{incident[:8]}]")
        squadcast.update(incident, {"priority": "P2"})
    squadcast.transition(ids[0], "resolved")
    squadcast.transition(ids[0], "resolved")
    result = squadcast.poll(None, now=datetime.now(UTC))
    assert {c.record_id for c in result.changes} == set(ids)
    for change in result.changes:
        assert (change.incident.status, change.incident.priority) == ("resolved" if change.record_id == ids[0] else "acknowledged", "P2")
        assert len(change.entries) == 1 and "[itsm-bridge:" in change.entries[0].text
    with pytest.raises(PermanentError, match="can neither reopen nor unacknowledge"):
        squadcast.transition(ids[0], "triggered")
    squadcast = connector(sim, escalate_to=f"user:{sim.org.users['carol']['id']}")
    squadcast.escalate(ids[1])
    assert sim.incident(ids[1])["assignedTo"][0]["id"] == sim.org.users["carol"]["id"]
    assert squadcast.get_incident(ids[1]).service == "Payments API" and squadcast.check().ok


def test_connector_round_trip_against_the_simulator(sim: SquadcastSimulator) -> None:
    _round_trip(sim)


def test_connector_succeeds_through_30_percent_injected_5xx_and_429() -> None:
    faults = Faults(server_error_rate=0.15, rate_limit_rate=0.15, retry_after=0, seed=7)
    sim = SquadcastSimulator(refresh_token=REFRESH, faults=faults).start()
    try:
        squadcast = connector(sim)
        squadcast.session = build_session(attempts=8, initial_wait=0.001, max_wait=0.01)
        ids = [sim.trigger("Search", f"flaky {n}") for n in range(4)]
        for incident in ids:
            as_the_outbox(lambda: squadcast.transition(incident, "acknowledged"))
            as_the_outbox(lambda: squadcast.add_note(incident, f"note [itsm-bridge:{incident[:6]}]"))
            as_the_outbox(lambda: squadcast.transition(incident, "resolved"))
        assert {sim.incident(i)["status"] for i in ids} == {"resolved"}
        assert len(squadcast.poll(None, now=datetime.now(UTC)).changes) == 4
        assert faults.injected["5xx"] > 0 and faults.injected["429"] > 0
    finally:
        sim.stop()
