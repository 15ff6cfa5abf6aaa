"""The Opsgenie simulator over real loopback HTTP (auth, 202 + request status, errors, pagination, query,
rate limit, faults), its outgoing webhooks, and the connector against it through `build_session`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI, Request, Response

from bridge.errors import PermanentError
from bridge.http import build_session
from connectors.opsgenie.connector import OpsgenieConnector
from connectors.opsgenie.simulator import OpsgenieSimulator
from connectors.simulator import Faults, ServerThread
from tests.conftest import as_the_outbox

FIXTURES = Path(__file__).parent / "fixtures" / "opsgenie"

KEY = "sim-og-test-key"
SECRET = "sim-og-test-secret"
AUTH = {"Authorization": f"GenieKey {KEY}", "Content-Type": "application/json"}


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
                status = self.answers.pop(0) if self.answers else 200
            return Response(status_code=status)

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/hook"

    def payloads(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _headers, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[OpsgenieSimulator]:
    sim = OpsgenieSimulator(api_key=KEY, webhook_secret=SECRET, webhook_url=receiver.url,
                            webhook_backoff=0.01, webhook_max_backoff=0.05).start()
    yield sim
    sim.stop()


def connector(sim: OpsgenieSimulator, **session: float) -> OpsgenieConnector:
    return OpsgenieConnector("opsgenie", {"api_url": sim.url, "api_key": KEY, "webhook_secret": SECRET,
                                          "user": "itsm-bridge"}, session=build_session(**session))


# -- REST -----------------------------------------------------------------------------------------------
def test_wrong_or_missing_key_is_401_with_opsgenie_error_body(sim: OpsgenieSimulator) -> None:
    for headers in ({}, {"Authorization": "GenieKey nope"}, {"Authorization": f"Bearer {KEY}"}):
        answer = requests.get(f"{sim.url}/v2/alerts", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.json()["message"] == "Could not authenticate" and set(answer.json()) >= {"took", "requestId"}


def test_actions_answer_202_and_report_their_outcome_in_the_request_status(sim: OpsgenieSimulator) -> None:
    alert = sim.trigger("Search", "Search latency", priority="P2")
    ack = requests.post(f"{sim.url}/v2/alerts/{alert}/acknowledge", headers=AUTH, json={"user": "itsm-bridge"}, timeout=5)
    assert ack.status_code == 202 and ack.json()["result"] == "Request will be processed"
    status = requests.get(f"{sim.url}/v2/alerts/requests/{ack.json()['requestId']}", headers=AUTH, timeout=5).json()
    assert status["data"]["isSuccess"] and status["data"]["alertId"] == alert
    data = requests.get(f"{sim.url}/v2/alerts/{alert}", headers=AUTH, timeout=5).json()["data"]
    assert (data["status"], data["acknowledged"], data["report"]["acknowledgedBy"]) == ("open", True, "itsm-bridge")
    requests.post(f"{sim.url}/v2/alerts/{alert}/close", headers=AUTH, json={}, timeout=5)
    late = requests.post(f"{sim.url}/v2/alerts/{alert}/acknowledge", headers=AUTH, json={}, timeout=5)
    assert late.status_code == 202
    failed = requests.get(f"{sim.url}/v2/alerts/requests/{late.json()['requestId']}", headers=AUTH, timeout=5).json()
    assert failed["data"]["isSuccess"] is False and "closed" in failed["data"]["status"]


def test_unknown_alert_is_404_and_bad_bodies_422(sim: OpsgenieSimulator) -> None:
    missing = requests.get(f"{sim.url}/v2/alerts/nope", headers=AUTH, timeout=5)
    assert (missing.status_code, missing.json()["message"]) == (404, "Alert does not exist")
    alert = sim.trigger("Search", "x")
    bad = requests.put(f"{sim.url}/v2/alerts/{alert}/priority", headers=AUTH, json={"priority": "High"}, timeout=5)
    assert bad.status_code == 422 and "priority" in bad.json()["errors"]
    empty = requests.post(f"{sim.url}/v2/alerts", headers=AUTH, json={}, timeout=5)
    assert empty.status_code == 422 and empty.json()["errors"] == {"message": "Message can not be empty."}


def test_list_pages_sorts_and_filters_by_updated_at() -> None:
    clock = [datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)]
    sim = OpsgenieSimulator(api_key=KEY, clock=lambda: clock[0]).start()
    try:
        ids = []
        for number in range(25):
            ids.append(sim.trigger("Search", f"Alert {number}"))
            clock[0] += timedelta(seconds=1)
        sim.acknowledge(ids[0], user="bob")
        page = requests.get(f"{sim.url}/v2/alerts", headers=AUTH, timeout=5).json()
        assert len(page["data"]) == 20 and "next" in page["paging"]
        for listed in page["data"]:  # BaseAlert, as Opsgenie's list: what only GET /v2/alerts/{id} has is absent
            assert not {"entity", "description", "details", "actions"} & set(listed)
        full = requests.get(f"{sim.url}/v2/alerts/{ids[-1]}", headers=AUTH, timeout=5).json()["data"]
        assert {"entity", "description", "details", "actions"} <= set(full) and full["entity"] == "Search"
        assert page["data"][0]["id"] == ids[-1]  # createdAt desc by default
        after = int(datetime(2026, 3, 1, 8, 0, 24, tzinfo=timezone.utc).timestamp() * 1000)
        recent = requests.get(f"{sim.url}/v2/alerts", headers=AUTH, timeout=5, params={
            "query": f"updatedAt>={after}", "sort": "updatedAt", "order": "asc", "limit": 100}).json()
        assert [a["id"] for a in recent["data"]] == [ids[24], ids[0]] and "next" not in recent["paging"]
        bad = requests.get(f"{sim.url}/v2/alerts", headers=AUTH, params={"query": "who knows"}, timeout=5)
        assert bad.status_code == 422
    finally:
        sim.stop()


def test_rate_limit_is_429_throttled() -> None:
    sim = OpsgenieSimulator(api_key=KEY, rate_limit=2).start()
    try:
        answers = [requests.get(f"{sim.url}/v2/alerts", headers=AUTH, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["X-RateLimit-State"] == "THROTTLED" and "requestId" in answers[2].json()
    finally:
        sim.stop()


# -- webhooks -------------------------------------------------------------------------------------------
def test_every_change_is_one_webhook_with_the_token_header(sim: OpsgenieSimulator, receiver: Receiver) -> None:
    alert = sim.trigger("Payments API", "Error rate above 5% on Payments API", user="alice", priority="P2")
    sim.acknowledge(alert, user="alice")
    sim.add_note(alert, "Rolled back the deploy", user="bob")
    sim.escalate(alert, user="alice")
    sim.assign(alert, to_user="carol", user="alice")
    sim.take_ownership(alert, user="dave")
    sim.unacknowledge(alert, user="dave")
    sim.resolve(alert, user="dave")
    assert sim.wait_idle(10)
    payloads = receiver.payloads()
    assert [p["action"] for p in payloads] == ["Create", "Acknowledge", "AddNote", "Escalate", "AssignOwnership",
                                               "TakeOwnership", "UnAcknowledge", "Close"]
    for headers, _body in receiver.requests:
        assert headers["x-itsm-bridge-token"] == SECRET and headers["content-type"] == "application/json"
    stamps = [p["alert"]["updatedAt"] for p in payloads]
    assert stamps == sorted(set(stamps)) and stamps[0] > 10**18  # epoch nanoseconds, strictly increasing
    assert payloads[2]["alert"]["note"] == "Rolled back the deploy" and payloads[4]["alert"]["owner"] == "carol@example.com"
    assert sim.incident(alert)["status"] == "closed" and sim.notes(alert)[0]["owner"] == "bob@example.com"


def test_failed_deliveries_are_retried_and_4xx_dropped(sim: OpsgenieSimulator, receiver: Receiver) -> None:
    receiver.answers = [503, 429, 200, 410]
    alert = sim.trigger("Search", "Retried")
    sim.acknowledge(alert, user="alice")
    assert sim.wait_idle(10)
    assert sim.webhooks.stats == {"queued": 2, "delivered": 1, "retried": 2, "dropped": 1}


def test_connector_accepts_what_the_simulator_sends(sim: OpsgenieSimulator, receiver: Receiver) -> None:
    alert = sim.trigger("Checkout Web", "Checkout errors", user="bob", priority="P1")
    sim.acknowledge(alert, user="bob")
    note = sim.add_note(alert, "Failing over", user="bob")
    assert sim.wait_idle(10)
    og = connector(sim)
    changes = []
    for headers, body in receiver.requests:
        og.verify_webhook(body, headers, now=datetime.now(timezone.utc))
        changes += og.parse_webhook(body, headers)
    assert [c.event_type for c in changes] == ["alert.Create", "alert.Acknowledge", "alert.AddNote"]
    assert changes[1].incident.tracked() == og.get_incident(alert).tracked()
    assert changes[2].entries[0].id == note == og.list_notes(alert)[0].id


def test_poll_reads_what_the_list_leaves_out_and_agrees_with_the_webhooks(sim: OpsgenieSimulator,
                                                                          receiver: Receiver) -> None:
    alert = sim.trigger("Checkout Web", "Checkout errors", user="bob", priority="P1",
                        description="Runbook: https://wiki.example.com/checkout")
    sim.acknowledge(alert, user="bob")
    assert sim.wait_idle(10)
    og = connector(sim)
    [polled] = og.poll(None, now=datetime.now(timezone.utc)).changes
    incident = polled.incident
    assert (incident.service, incident.priority, incident.status) == ("Checkout Web", "P1", "acknowledged")
    assert incident.raw["description"] == "Runbook: https://wiki.example.com/checkout"
    [hooked] = og.parse_webhook(receiver.requests[-1][1], receiver.requests[-1][0])
    assert hooked.incident.tracked() == incident.tracked()
    assert hooked.incident.raw["description"] == incident.raw["description"]


def test_a_priority_change_fires_update_priority_shaped_like_the_real_webhook(sim: OpsgenieSimulator,
                                                                           receiver: Receiver) -> None:
    alert = sim.trigger("Payments API", "Error rate above 5% on Payments API", user="alice", priority="P2")
    sim.acknowledge(alert, user="alice")
    sim.set_priority(alert, "P1", user="alice")
    put = requests.put(f"{sim.url}/v2/alerts/{alert}/priority", headers=AUTH, json={"priority": "P3"}, timeout=5)
    assert put.status_code == 202
    assert sim.wait_idle(10)
    payloads = receiver.payloads()
    assert [p["action"] for p in payloads] == ["Create", "Acknowledge", "UpdatePriority", "UpdatePriority"]
    real = json.loads((FIXTURES / "webhook_updatepriority.json").read_text(encoding="utf-8"))
    for payload in payloads[2:]:
        assert set(payload) == set(real) and set(payload["alert"]) == set(real["alert"])
    by_hand, by_api = payloads[2]["alert"], payloads[3]["alert"]
    assert (by_hand["priority"], by_hand["oldPriority"], by_hand["username"]) == ("P1", "P2", "alice@example.com")
    assert (by_api["priority"], by_api["oldPriority"]) == ("P3", "P1")

    og = connector(sim)
    changes = [og.parse_webhook(body, headers)[0] for headers, body in receiver.requests]
    assert [c.event_type for c in changes][2:] == ["alert.UpdatePriority"] * 2
    assert (changes[2].incident.priority, changes[2].incident.status) == ("P3", "acknowledged")  # re-read: now P3
    assert changes[2].entries[0].text == "Priority changed from P2 to P1 by alice@example.com in Opsgenie"
    assert changes[3].incident.tracked() == og.get_incident(alert).tracked()
    assert len({c.event_id for c in changes}) == 4



# -- the connector against the simulator ----------------------------------------------------------------
@pytest.fixture
def faulty() -> Iterator[OpsgenieSimulator]:
    sim = OpsgenieSimulator(api_key=KEY, webhook_secret=SECRET, faults=Faults(seed=7)).start()
    yield sim
    sim.stop()


def test_connector_round_trip_with_30_percent_injected_faults(faulty: OpsgenieSimulator,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    sim = faulty
    alerts = [sim.trigger("Search", f"Alert {n}", priority="P3") for n in range(5)]
    sim.faults.configure(server_error_rate=0.15, rate_limit_rate=0.15, retry_after=0)
    og = connector(sim, attempts=10, initial_wait=0.001, max_wait=0.01)
    caplog.set_level(logging.DEBUG)
    assert og.check().ok
    as_the_outbox(lambda: og.transition(alerts[0], "acknowledged"))
    as_the_outbox(lambda: og.transition(alerts[0], "acknowledged"))  # already there: a no-op
    as_the_outbox(lambda: og.transition(alerts[1], "resolved"))
    as_the_outbox(lambda: og.transition(alerts[0], "triggered"))
    as_the_outbox(lambda: og.update(alerts[2], {"priority": "P1"}))
    as_the_outbox(lambda: og.add_note(alerts[3], "INC0010001 opened [itsm-bridge:1]"))
    assert og.has_note(alerts[3], "[itsm-bridge:1]")
    result = og.poll(None, now=datetime.now(timezone.utc))
    by_id = {c.record_id: c.incident for c in result.changes}
    assert set(by_id) == set(alerts)
    assert (by_id[alerts[0]].status, by_id[alerts[1]].status, by_id[alerts[2]].priority) == ("triggered", "resolved", "P1")
    assert sim.faults.injected["5xx"] > 0 and sim.faults.injected["429"] > 0
    assert KEY not in caplog.text and SECRET not in caplog.text
    with pytest.raises(PermanentError) as closed:
        og.transition(alerts[1], "acknowledged")
    assert KEY not in str(closed.value)
