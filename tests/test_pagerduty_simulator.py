"""The PagerDuty simulator over real loopback HTTP: what a client of the real API would notice (auth,
``From``, errors, pagination, filters, rate-limit headers) and the signed v3 webhooks it sends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests
from fastapi import FastAPI, Request, Response

from bridge.http import build_session
from connectors.pagerduty.connector import PagerDutyConnector
from connectors.pagerduty.simulator import PagerDutySimulator
from connectors.pagerduty.webhooks import sign
from connectors.simulator import Faults, ServerThread

TOKEN = "sim-test-token"
SECRET = "sim-test-secret"
ACCEPT = "application/vnd.pagerduty+json;version=2"
READ = {"Authorization": f"Token token={TOKEN}", "Accept": ACCEPT, "Content-Type": "application/json"}
WRITE = {**READ, "From": "bridge@example.com"}


class Receiver:
    """A webhook endpoint that records every request and answers the statuses it is told to, in turn."""

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
                status = self.answers.pop(0) if self.answers else 202
            return Response(status_code=status)

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/hook"

    def events(self) -> list[dict]:
        with self.lock:
            return [json.loads(body)["event"] for _headers, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[PagerDutySimulator]:
    sim = PagerDutySimulator(token=TOKEN, webhook_secret=SECRET, webhook_url=receiver.url,
                             webhook_backoff=0.01, webhook_max_backoff=0.05).start()
    yield sim
    sim.stop()


# -- REST ---------------------------------------------------------------------------------------------
def test_wrong_or_missing_token_is_401_with_pagerduty_error_body(sim: PagerDutySimulator) -> None:
    for headers in ({}, {"Authorization": "Token token=nope"}, {"Authorization": f"Bearer {TOKEN}"}):
        answer = requests.get(f"{sim.url}/incidents", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert set(answer.json()["error"]) >= {"message", "code"}


def test_writes_need_a_known_from_user(sim: PagerDutySimulator) -> None:
    incident = sim.trigger("Search", "Search health check failing")
    body = {"incident": {"type": "incident_reference", "status": "acknowledged"}}
    missing = requests.put(f"{sim.url}/incidents/{incident}", headers=READ, json=body, timeout=5)
    unknown = requests.put(f"{sim.url}/incidents/{incident}", headers={**READ, "From": "eve@example.com"},
                           json=body, timeout=5)
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, 2016)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, 1008)
    assert sim.incident(incident)["status"] == "triggered"


def test_status_changes_over_rest_and_same_state_errors(sim: PagerDutySimulator) -> None:
    incident = sim.trigger("Payments API", "Error rate above 5% on Payments API", priority="P2")

    def put(status: str) -> requests.Response:
        return requests.put(f"{sim.url}/incidents/{incident}", headers=WRITE, timeout=5,
                            json={"incident": {"type": "incident_reference", "status": status}})

    acked = put("acknowledged")
    assert acked.status_code == 200 and acked.json()["incident"]["status"] == "acknowledged"
    assert acked.json()["incident"]["acknowledgements"][0]["acknowledger"]["summary"] == "ITSM Bridge"
    assert put("acknowledged").json()["error"]["code"] == 1002
    resolved = put("resolved").json()["incident"]
    assert resolved["assignments"] == [] and resolved["resolved_at"] is not None
    again = put("resolved")
    assert (again.status_code, again.json()["error"]["code"]) == (400, 1001)
    reopened = put("triggered").json()["incident"]
    assert reopened["status"] == "triggered" and reopened["resolved_at"] is None and reopened["assignments"]
    assert reopened["priority"]["name"] == "P2"


def test_unknown_incident_is_404(sim: PagerDutySimulator) -> None:
    answer = requests.get(f"{sim.url}/incidents/QNOPE", headers=READ, timeout=5)
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, 2100)


def test_notes_are_created_with_200_and_listed(sim: PagerDutySimulator) -> None:
    incident = sim.trigger("Identity", "Login failures")
    created = requests.post(f"{sim.url}/incidents/{incident}/notes", headers=WRITE, timeout=5,
                            json={"note": {"content": "Ticket INC0010001 opened [itsm-bridge:1]"}})
    assert created.status_code == 200
    assert created.json()["note"]["user"]["summary"] == "ITSM Bridge"
    listed = requests.get(f"{sim.url}/incidents/{incident}/notes", headers=READ, timeout=5).json()["notes"]
    assert [n["content"] for n in listed] == ["Ticket INC0010001 opened [itsm-bridge:1]"]


def test_list_pagination_total_and_offset_limit(sim: PagerDutySimulator) -> None:
    for number in range(30):
        sim.trigger("Search", f"Incident {number}")
    first = requests.get(f"{sim.url}/incidents", headers=READ, timeout=5)
    page = first.json()
    assert (len(page["incidents"]), page["limit"], page["offset"]) == (25, 25, 0)
    assert (page["more"], page["total"]) == (True, None)
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(first.headers)
    last = requests.get(f"{sim.url}/incidents", headers=READ, params={"offset": 25, "total": "true"}, timeout=5).json()
    assert (len(last["incidents"]), last["more"], last["total"]) == (5, False, 30)
    capped = requests.get(f"{sim.url}/incidents", headers=READ, params={"limit": 500}, timeout=5).json()
    assert capped["limit"] == 100 and len(capped["incidents"]) == 30
    too_deep = requests.get(f"{sim.url}/incidents", headers=READ, params={"offset": 9950, "limit": 100}, timeout=5)
    assert too_deep.status_code == 400


def test_filters_by_status_urgency_service_and_creation_time() -> None:
    clock = [datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)]
    sim = PagerDutySimulator(token=TOKEN, clock=lambda: clock[0]).start()
    try:
        old = sim.trigger("Search", "Old one", urgency="low")
        clock[0] += timedelta(days=1)
        new = sim.trigger("Identity", "New one")
        sim.acknowledge(new, user="bob")
        clock[0] += timedelta(hours=1)

        def ids(params: list[tuple[str, str]]) -> list[str]:
            answer = requests.get(f"{sim.url}/incidents", headers=READ, params=params, timeout=5)
            return [i["id"] for i in answer.json()["incidents"]]

        assert ids([("statuses[]", "triggered"), ("statuses[]", "resolved")]) == [old]
        assert ids([("urgencies[]", "high")]) == [new]
        assert ids([("service_ids[]", "PSVC003")]) == [old]
        assert ids([("since", "2026-03-02T00:00:00Z"), ("until", "2026-03-03T00:00:00Z")]) == [new]
        assert ids([("sort_by", "created_at:desc")]) == [new, old]
        bad = requests.get(f"{sim.url}/incidents", headers=READ, params={"since": "2025-01-01T00:00:00Z"}, timeout=5)
        assert bad.status_code == 400
    finally:
        sim.stop()


def test_rate_limit_is_429_code_2020_without_retry_after() -> None:
    sim = PagerDutySimulator(token=TOKEN, rate_limit=2).start()
    try:
        answers = [requests.get(f"{sim.url}/priorities", headers=READ, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["error"]["code"] == 2020 and "Retry-After" not in answers[2].headers
        assert answers[2].headers["ratelimit-remaining"] == "0"
    finally:
        sim.stop()


def test_injected_faults_are_retried_by_the_bridge_session() -> None:
    sim = PagerDutySimulator(token=TOKEN, faults=Faults(rate_limit_rate=1.0, retry_after=0)).start()
    try:
        session = build_session(attempts=3, initial_wait=0.01, max_wait=0.05)
        answer = session.get(f"{sim.url}/services", headers=READ, timeout=5)
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "0"
        assert sim.faults.injected["429"] == 3
        sim.faults.configure(rate_limit_rate=0.0)
        services = session.get(f"{sim.url}/services", headers=READ, timeout=5).json()["services"]
        assert [s["name"] for s in services] == ["Payments API", "Checkout Web", "Search", "Identity", "Data Platform"]
    finally:
        sim.stop()


# -- webhooks -----------------------------------------------------------------------------------------
def test_every_change_is_one_signed_v3_webhook_in_order(sim: PagerDutySimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Payments API", "Error rate above 5% on Payments API", user="alice")
    sim.acknowledge(incident, user="alice")
    note = sim.add_note(incident, "Rolled back the deploy", user="bob")
    sim.set_priority(incident, "P1", user="alice")
    sim.reassign(incident, to_user="carol", user="alice")
    sim.escalate(incident, user="carol")
    sim.resolve(incident, user="dave")
    sim.reopen(incident, user="alice")
    assert sim.wait_idle(10)

    events = receiver.events()
    assert [e["event_type"] for e in events] == [
        "incident.triggered", "incident.acknowledged", "incident.annotated", "incident.priority_updated",
        "incident.reassigned", "incident.escalated", "incident.resolved", "incident.reopened"]
    for headers, body in receiver.requests:
        assert headers["x-pagerduty-signature"] == f"v1={sign(SECRET, body)}"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == "PagerDuty-Webhook/V3.0"
        assert headers["x-webhook-id"] and headers["x-webhook-subscription"]
    acked = events[1]
    assert acked["agent"]["summary"] == "Alice Adams" and acked["occurred_at"].endswith("Z")
    assert len(acked["occurred_at"].split(".")[1]) == 4  # milliseconds + Z
    data = events[3]["data"]
    assert data["number"] == 1 and data["priority"]["summary"] == "P1" and "incident_number" not in data
    assert [a["summary"] for a in events[4]["data"]["assignees"]] == ["Carol Chen"]
    assert events[2]["data"] == {**events[2]["data"], "id": note, "content": "Rolled back the deploy",
                                 "type": "incident_note", "trimmed": False}
    assert events[6]["data"]["assignees"] == [] and "reopened_at" in events[7]["data"]


def test_unacknowledge_puts_the_incident_back_to_triggered(sim: PagerDutySimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Identity", "Token service errors")
    sim.acknowledge(incident, user="dave")
    sim.unacknowledge(incident)
    assert sim.wait_idle(10)
    event = receiver.events()[-1]
    assert event["event_type"] == "incident.unacknowledged"
    assert (event["agent"], event["data"]["status"]) == (None, "triggered")
    assert sim.incident(incident)["acknowledgements"] == []


def test_the_bridges_own_rest_writes_fire_webhooks_too(sim: PagerDutySimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Search", "Search latency")
    requests.put(f"{sim.url}/incidents/{incident}", headers=WRITE, timeout=5,
                 json={"incident": {"type": "incident_reference", "status": "resolved"}})
    assert sim.wait_idle(10)
    resolved = receiver.events()[-1]
    assert resolved["event_type"] == "incident.resolved" and resolved["agent"]["summary"] == "ITSM Bridge"


def test_failed_deliveries_are_retried_with_the_same_id_and_4xx_dropped(sim: PagerDutySimulator,
                                                                       receiver: Receiver) -> None:
    receiver.answers = [503, 429, 200, 410]
    first = sim.trigger("Search", "Retried")
    sim.acknowledge(first, user="alice")
    assert sim.wait_idle(10)
    ids = [headers["x-webhook-id"] for headers, _ in receiver.requests]
    assert len(ids) == 4 and ids[0] == ids[1] == ids[2] != ids[3]
    assert sim.webhooks.stats == {"queued": 2, "delivered": 1, "retried": 2, "dropped": 1}


def test_connector_accepts_what_the_simulator_sends(sim: PagerDutySimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Checkout Web", "Checkout errors", user="bob")
    sim.acknowledge(incident, user="bob")
    sim.rotate_webhook_secret("new-secret")
    sim.add_note(incident, "Failing over", user="bob")
    assert sim.wait_idle(10)
    pd = PagerDutyConnector("pagerduty", {"api_url": sim.url, "token": TOKEN, "webhook_secret": SECRET,
                                          "from_email": "bridge@example.com"}, session=build_session())
    changes = []
    for headers, body in receiver.requests:
        pd.verify_webhook(body, headers, now=datetime.now(timezone.utc))
        changes += pd.parse_webhook(body, headers)
    assert [c.event_type for c in changes] == ["incident.triggered", "incident.acknowledged", "incident.annotated"]
    assert changes[1].incident.status == "acknowledged" and changes[1].entries[0].author == "Bob Brown"
    assert changes[1].incident.tracked() == pd.get_incident(incident).with_attributes(
        status="acknowledged").tracked()
    assert changes[2].entries[0].text == "Failing over"
    assert len(receiver.requests[2][0]["x-pagerduty-signature"].split(",")) == 2  # signed during rotation


def test_without_a_webhook_url_nothing_is_queued() -> None:
    sim = PagerDutySimulator(token=TOKEN).start()
    try:
        sim.trigger("Search", "Quiet")
        assert sim.wait_idle(0.1) and sim.webhooks.stats["queued"] == 0
    finally:
        sim.stop()


def test_wait_idle_times_out_while_the_receiver_keeps_failing(sim: PagerDutySimulator, receiver: Receiver) -> None:
    receiver.answers = [500] * 1000
    sim.trigger("Search", "Never delivered")
    assert sim.wait_idle(0.3) is False
    receiver.answers = []
    assert sim.wait_idle(10) is True
