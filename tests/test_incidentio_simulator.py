"""The incident.io simulator over real loopback HTTP (auth, errors, pagination, rate limit, Svix webhooks),
and the connector against it with `requests` on the wire, through 30% injected 5xx/429."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests
from fastapi import FastAPI, Request, Response

from bridge.errors import PermanentError
from bridge.http import build_session
from connectors.incidentio.connector import IncidentioConnector
from connectors.incidentio.simulator import IncidentioSimulator
from connectors.incidentio.webhooks import sign
from connectors.simulator import ServerThread
from tests.conftest import as_the_outbox

KEY = "sim-test-key-0123456789"
SECRET = "whsec_" + base64.b64encode(b"sim-test-secret-for-incidentio!!").decode()
AUTH = {"Authorization": f"Bearer {KEY}"}


class Receiver:
    """A webhook endpoint recording every request, answering the statuses it is told to, in turn."""

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
                return Response(status_code=self.answers.pop(0) if self.answers else 204)

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/hook"

    def events(self) -> list[str]:
        with self.lock:
            return [json.loads(body)["event_type"] for _h, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[IncidentioSimulator]:
    sim = IncidentioSimulator(api_key=KEY, webhook_secret=SECRET, webhook_url=receiver.url,
                              webhook_backoff=0.01, webhook_max_backoff=0.05).start()
    yield sim
    sim.stop()


def connector(sim: IncidentioSimulator, **settings: object) -> IncidentioConnector:
    return IncidentioConnector("incidentio", {"api_url": sim.url, "api_key": KEY, "webhook_secret": SECRET,
                                              **settings},
                               session=build_session(attempts=8, initial_wait=0.001, max_wait=0.01))


# -- REST -----------------------------------------------------------------------------------------------
def test_wrong_key_is_401_with_incident_io_error_body(sim: IncidentioSimulator) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        answer = requests.get(f"{sim.url}/v2/incidents", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.json()["type"] == "authentication_error" and answer.json()["errors"][0]["code"]


def test_cursor_pagination_and_updated_at_filter() -> None:
    clock = [datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)]
    sim = IncidentioSimulator(api_key=KEY, clock=lambda: clock[0]).start()
    try:
        ids = []
        for number in range(30):
            clock[0] += timedelta(minutes=1)
            ids.append(sim.trigger("Search", f"Incident {number}"))
        first = requests.get(f"{sim.url}/v2/incidents", headers=AUTH, timeout=5).json()
        assert len(first["incidents"]) == 25 and first["pagination_meta"]["total_record_count"] == 30
        rest = requests.get(f"{sim.url}/v2/incidents", headers=AUTH, timeout=5,
                            params={"after": first["pagination_meta"]["after"]}).json()
        assert len(rest["incidents"]) == 5 and rest["pagination_meta"]["after"] is None
        assert {i["id"] for i in first["incidents"] + rest["incidents"]} == set(ids)
        recent = requests.get(f"{sim.url}/v2/incidents", headers=AUTH, timeout=5,
                              params={"updated_at[gte]": "2026-03-01T08:28:00Z"}).json()["incidents"]
        assert [i["name"] for i in recent] == ["Incident 29", "Incident 28", "Incident 27"]
        too_big = requests.get(f"{sim.url}/v2/incidents", headers=AUTH, params={"page_size": 251}, timeout=5)
        assert too_big.status_code == 422 and too_big.json()["errors"][0]["source"]["field"] == "page_size"
    finally:
        sim.stop()


def test_edit_changes_only_given_fields_and_refuses_triage(sim: IncidentioSimulator) -> None:
    incident = sim.trigger("Payments API", "Card errors", priority="Major")
    statuses = requests.get(f"{sim.url}/v1/incident_statuses", headers=AUTH, timeout=5).json()["incident_statuses"]
    live = next(s["id"] for s in statuses if s["category"] == "live")
    triage = next(s["id"] for s in statuses if s["category"] == "triage")
    url = f"{sim.url}/v2/incidents/{incident}/actions/edit"
    edited = requests.post(url, headers=AUTH, timeout=5, json={"incident": {"incident_status_id": live},
                                                                 "notify_incident_channel": False})
    assert edited.status_code == 200 and edited.json()["incident"]["severity"]["name"] == "Major"
    assert edited.json()["incident"]["incident_status"]["category"] == "live"
    back = requests.post(url, headers=AUTH, timeout=5, json={"incident": {"incident_status_id": triage},
                                                               "notify_incident_channel": False})
    assert back.status_code == 422 and back.json()["type"] == "validation_error"
    missing = requests.post(url, headers=AUTH, timeout=5, json={"incident": {}})
    assert missing.status_code == 422
    gone = requests.get(f"{sim.url}/v2/incidents/01NOPE", headers=AUTH, timeout=5)
    assert gone.status_code == 404 and gone.json()["type"] == "not_found"


def test_rate_limit_is_429_with_the_documented_body() -> None:
    sim = IncidentioSimulator(api_key=KEY, rate_limit=2).start()
    try:
        answers = [requests.get(f"{sim.url}/v1/severities", headers=AUTH, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        body = answers[2].json()
        assert body["type"] == "too_many_requests" and body["rate_limit"]["limit"] == 2
        assert body["rate_limit"]["retry_after"].endswith("GMT")
    finally:
        sim.stop()


# -- webhooks -------------------------------------------------------------------------------------------
def test_every_change_is_one_signed_svix_webhook_in_order(sim: IncidentioSimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Payments API", "Card errors", user="alice", priority="Major")
    sim.acknowledge(incident, user="bob")
    note = sim.add_note(incident, "Rolled back the deploy", user="bob")
    sim.set_priority(incident, "Critical", user="alice")
    sim.resolve(incident, user="carol")
    sim.reopen(incident, user="alice")
    sim.trigger("Identity", "Credential leak", private=True)
    assert sim.wait_idle(10)
    assert receiver.events() == [
        "public_incident.incident_created_v2", "public_incident.incident_status_updated_v2",
        "public_incident.incident_updated_v2", "public_incident.incident_updated_v2",
        "public_incident.incident_status_updated_v2", "public_incident.incident_status_updated_v2",
        "private_incident.incident_created_v2"]
    for headers, body in receiver.requests:
        assert headers["webhook-signature"] == sign(SECRET, headers["webhook-id"], headers["webhook-timestamp"], body)
        assert headers["webhook-id"].startswith("msg_")
    assert json.loads(receiver.requests[-1][1])["private_incident.incident_created_v2"].keys() == {"id"}
    assert [n["id"] for n in sim.notes(incident)] == [note]
    assert sim.incident(incident)["incident_role_assignments"][0]["assignee"]["name"] == "Bob Brown"


def test_failed_deliveries_are_retried_with_the_same_id(sim: IncidentioSimulator, receiver: Receiver) -> None:
    receiver.answers = [503, 410, 200]
    sim.trigger("Search", "Retried")
    assert sim.wait_idle(10)
    ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert len(ids) == 3 and len(set(ids)) == 1
    assert sim.webhooks.stats["retried"] == 2 and sim.webhooks.stats["delivered"] == 1


# -- the connector against the simulator ----------------------------------------------------------------
def test_connector_accepts_what_the_simulator_sends(sim: IncidentioSimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Checkout Web", "Checkout errors", user="bob", priority="Minor")
    sim.acknowledge(incident, user="bob")
    sim.rotate_webhook_secret("whsec_" + base64.b64encode(b"next-secret").decode())
    private = sim.trigger("Identity", "Credential leak", private=True)
    assert sim.wait_idle(10)
    io = connector(sim)
    changes = []
    for headers, body in receiver.requests:
        io.verify_webhook(body, headers, now=datetime.now(timezone.utc))
        changes += io.parse_webhook(body, headers)
    assert [c.incident.status for c in changes] == ["triggered", "acknowledged", "triggered"]
    assert changes[1].incident.assignees == ("Bob Brown",) and changes[1].incident.service == "Checkout Web"
    assert changes[2].record_id == private and changes[2].incident.title == "Credential leak"
    assert changes[1].incident.tracked() == io.get_incident(incident).tracked()
    assert len(receiver.requests[-1][0]["webhook-signature"].split(" ")) == 2


def test_way_back_and_poll_through_30_percent_faults(sim: IncidentioSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    incidents = [sim.trigger("Search", f"Incident {n}", priority="Minor") for n in range(7)]
    sim.add_note(incidents[0], "Looking at the index", user="carol")
    sim.faults.configure(server_error_rate=0.15, rate_limit_rate=0.15, retry_after=0)
    io = connector(sim, page_size=3)
    as_the_outbox(lambda: io.transition(incidents[0], "acknowledged"))
    as_the_outbox(lambda: io.transition(incidents[0], "acknowledged"))
    as_the_outbox(lambda: io.update(incidents[0], {"priority": "Critical"}))
    as_the_outbox(lambda: io.transition(incidents[1], "resolved"))
    as_the_outbox(lambda: io.transition(incidents[1], "resolved"))
    as_the_outbox(lambda: io.transition(incidents[1], "triggered"))
    result = io.poll(None, now=datetime.now(timezone.utc))
    assert sim.faults.injected["5xx"] + sim.faults.injected["429"] > 0
    by_id = {c.record_id: c for c in result.changes}
    assert set(by_id) == set(incidents)
    first = by_id[incidents[0]]
    assert (first.incident.status, first.incident.priority) == ("acknowledged", "Critical")
    assert [e.text for e in first.entries] == ["Looking at the index"]
    assert by_id[incidents[1]].incident.status == "acknowledged"  # reopened to live
    assert sim.incident(incidents[1])["incident_status"]["name"] == "Investigating"
    with pytest.raises(PermanentError):
        io.add_note(incidents[0], "x [itsm-bridge:1]")
    assert KEY not in caplog.text
