"""The Rootly simulator over real loopback HTTP, and the connector against it with `requests` on the wire
(including 30% injected 5xx/429 absorbed by `bridge.http.build_session`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import requests
from fastapi import FastAPI, Request, Response

from bridge.errors import PermanentError
from bridge.http import build_session
from connectors.rootly.connector import RootlyConnector
from connectors.rootly.sim_state import SimError
from connectors.rootly.simulator import RootlySimulator
from connectors.simulator import Faults, ServerThread
from tests.conftest import as_the_outbox

TOKEN = "sim-rootly-test-token"
SECRET = "sim-rootly-test-secret"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/vnd.api+json"}


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
def sim(receiver: Receiver) -> Iterator[RootlySimulator]:
    sim = RootlySimulator(api_token=TOKEN, webhook_secret=SECRET, webhook_url=receiver.url,
                          webhook_backoff=0.01, webhook_max_backoff=0.05).start()
    yield sim
    sim.stop()


def connector(sim: RootlySimulator, **settings: object) -> RootlyConnector:
    return RootlyConnector("rootly", {"api_url": sim.url, "api_token": TOKEN, "webhook_secret": SECRET,
                                      "page_size": 2, **settings}, session=build_session(initial_wait=0.01))


# -- REST ---------------------------------------------------------------------------------------------
def test_wrong_or_missing_token_is_401_with_jsonapi_errors(sim: RootlySimulator) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Token token={TOKEN}"}):
        answer = requests.get(f"{sim.url}/v1/incidents", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.json()["errors"][0]["title"] == "Unauthorized"


def test_pagination_meta_links_and_updated_at_filter() -> None:
    ticks = iter(range(10_000))
    sim = RootlySimulator(api_token=TOKEN, clock=lambda: datetime(2026, 3, 2, 12, 0, next(ticks), tzinfo=timezone.utc)).start()
    try:
        _check_pagination(sim)
    finally:
        sim.stop()


def _check_pagination(sim: RootlySimulator) -> None:
    ids = [sim.trigger("Search", f"Search incident {n}") for n in range(5)]
    page = requests.get(f"{sim.url}/v1/incidents", headers=HEADERS, timeout=5,
                        params={"page[number]": "3", "page[size]": "2", "sort": "created_at"}).json()
    assert [i["id"] for i in page["data"]] == ids[4:]
    assert page["meta"] == {"current_page": 3, "next_page": None, "prev_page": 2, "total_count": 5, "total_pages": 3}
    assert page["links"]["next"] is None and page["links"]["prev"]
    later = sim.incident(ids[3])["attributes"]["updated_at"]
    found = requests.get(f"{sim.url}/v1/incidents", headers=HEADERS, timeout=5,
                         params={"filter[updated_at][gte]": later}).json()
    assert {i["id"] for i in found["data"]} == set(ids[3:])
    bad = requests.get(f"{sim.url}/v1/incidents", headers=HEADERS, params={"page[size]": "500"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["errors"]


def test_actions_and_their_refusals(sim: RootlySimulator) -> None:
    incident = sim.trigger("Payments API", "Payments 5xx", priority="SEV1")

    def put(path: str, attributes: dict) -> requests.Response:
        return requests.put(f"{sim.url}/v1/incidents/{incident}{path}", headers=HEADERS, timeout=5,
                            json={"data": {"type": "incidents", "attributes": attributes}})

    assert put("/mitigate", {"mitigation_message": "rolled back"}).json()["data"]["attributes"]["status"] == "mitigated"
    resolved = put("/resolve", {"resolution_message": "fixed"}).json()["data"]["attributes"]
    assert (resolved["status"], resolved["resolution_message"]) == ("resolved", "fixed") and resolved["resolved_at"]
    again = put("/resolve", {})
    assert again.status_code == 422 and "already resolved" in again.json()["errors"][0]["detail"]
    assert put("", {"status": "acknowledged"}).status_code == 422
    assert put("/restart", {}).json()["data"]["attributes"]["status"] == "started"
    assert put("/explode", {}).status_code == 404
    assert requests.get(f"{sim.url}/v1/incidents/nope", headers=HEADERS, timeout=5).status_code == 404


def test_timeline_events_are_created_with_201_and_listed(sim: RootlySimulator) -> None:
    incident = sim.trigger("Identity", "Login failures")
    created = requests.post(f"{sim.url}/v1/incidents/{incident}/events", headers=HEADERS, timeout=5,
                            json={"data": {"type": "incident_events", "attributes": {"event": "INC001 [itsm-bridge:1]"}}})
    assert created.status_code == 201 and created.json()["data"]["attributes"]["visibility"] == "internal"
    listed = requests.get(f"{sim.url}/v1/incidents/{incident}/events", headers=HEADERS, timeout=5).json()["data"]
    assert [e["attributes"]["kind"] for e in listed] == ["trail", "event"]
    blank = requests.post(f"{sim.url}/v1/incidents/{incident}/events", headers=HEADERS, timeout=5,
                          json={"data": {"type": "incident_events", "attributes": {"event": " "}}})
    assert blank.status_code == 422


def test_rate_limit_is_429_with_headers() -> None:
    sim = RootlySimulator(api_token=TOKEN, rate_limit=2).start()
    try:
        answers = [requests.get(f"{sim.url}/v1/incidents", headers=HEADERS, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["X-RateLimit-Remaining"] == "1" and answers[2].headers["Retry-After"]
    finally:
        sim.stop()


# -- webhooks -----------------------------------------------------------------------------------------
def test_every_change_is_one_signed_webhook_the_connector_accepts(sim: RootlySimulator, receiver: Receiver) -> None:
    incident = sim.trigger("Checkout Web", "Checkout 5xx", user="alice", priority="SEV2")
    sim.acknowledge(incident, "bob")
    sim.set_priority(incident, "SEV0", "bob")
    sim.add_note(incident, "Rolling back", "bob")  # timeline events fire no webhook, as in Rootly
    sim.mitigate(incident, "bob", "rolled back")
    sim.resolve(incident, "carol", "fixed")
    sim.reopen(incident, "carol")
    sim.cancel(incident, "carol", "duplicate")
    assert sim.wait_idle(10)
    assert receiver.types() == ["incident.created", "incident.updated", "incident.updated", "incident.mitigated",
                                "incident.resolved", "incident.updated", "incident.cancelled"]
    rootly = connector(sim)
    statuses = []
    for headers, body in receiver.requests:
        assert headers["x-rootly-signature"].startswith("t=")
        rootly.verify_webhook(body, headers, now=datetime.now(timezone.utc))
        [change] = rootly.parse_webhook(body, headers)
        statuses.append(change.incident.status)
    assert statuses == ["triggered", "acknowledged", "acknowledged", "acknowledged", "resolved", "triggered", "resolved"]
    assert [n["attributes"]["event"] for n in sim.notes(incident)] == ["Rolling back"]


def test_failed_deliveries_are_retried_and_4xx_dropped(sim: RootlySimulator, receiver: Receiver) -> None:
    receiver.answers = [503, 500, 200, 400]
    first = sim.trigger("Search", "one")
    sim.trigger("Search", "two")
    assert sim.wait_idle(10)
    assert sim.webhooks.stats["delivered"] == 1 and sim.webhooks.stats["dropped"] == 1
    ids = [json.loads(body)["event"]["id"] for _h, body in receiver.requests[:3]]
    assert len(set(ids)) == 1 and json.loads(receiver.requests[0][1])["data"]["id"] == first


def test_without_a_webhook_url_nothing_is_queued() -> None:
    sim = RootlySimulator(api_token=TOKEN).start()
    try:
        sim.trigger("Search", "quiet")
        assert sim.wait_idle(1) and sim.webhooks.stats["queued"] == 0
    finally:
        sim.stop()


# -- the connector against the simulator -------------------------------------------------------------
def _round_trip(sim: RootlySimulator) -> None:
    rootly = connector(sim)
    ids = [sim.trigger("Payments API", f"Payments incident {n}", priority="SEV1") for n in range(5)]
    for incident in ids:
        as_the_outbox(lambda: rootly.transition(incident, "acknowledged"))
        as_the_outbox(lambda: rootly.transition(incident, "acknowledged"))
        rootly.add_note(incident, f"Ticket opened [itsm-bridge:{incident[:8]}]")
        assert rootly.has_note(incident, f"[itsm-bridge:{incident[:8]}]")
        rootly.update(incident, {"priority": "SEV0"})
        as_the_outbox(lambda: rootly.transition(incident, "resolved"))
        as_the_outbox(lambda: rootly.transition(incident, "resolved"))
        rootly.transition(incident, "triggered")
    result = rootly.poll(None, now=datetime.now(timezone.utc))
    assert {c.record_id for c in result.changes} == set(ids)
    for change in result.changes:
        assert (change.incident.status, change.incident.priority) == ("triggered", "SEV0")
        assert len(change.entries) == 1 and "[itsm-bridge:" in change.entries[0].text
    assert rootly.get_incident(ids[0]).raw["status"] == "started"
    with pytest.raises(PermanentError, match="unknown status 'bogus'"):
        rootly.transition(ids[1], "bogus")
    rootly.transition(ids[2], "acknowledged")
    with pytest.raises(PermanentError, match="restarts only resolved or cancelled"):
        rootly.transition(ids[2], "triggered")
    assert rootly.check().ok


def test_connector_round_trip_against_the_simulator(sim: RootlySimulator) -> None:
    _round_trip(sim)


def test_connector_succeeds_through_30_percent_injected_5xx_and_429() -> None:
    faults = Faults(server_error_rate=0.15, rate_limit_rate=0.15, retry_after=0, seed=7)
    sim = RootlySimulator(api_token=TOKEN, faults=faults).start()
    try:
        rootly = connector(sim)
        rootly.session = build_session(attempts=8, initial_wait=0.001, max_wait=0.01)
        ids = [sim.trigger("Search", f"flaky {n}") for n in range(4)]
        for incident in ids:
            as_the_outbox(lambda: rootly.transition(incident, "acknowledged"))
            as_the_outbox(lambda: rootly.add_note(incident, f"note [itsm-bridge:{incident[:6]}]"))
            as_the_outbox(lambda: rootly.transition(incident, "resolved"))
        assert {sim.incident(i)["attributes"]["status"] for i in ids} == {"resolved"}
        assert len(rootly.poll(None, now=datetime.now(timezone.utc)).changes) == 4
        assert faults.injected["5xx"] > 0 and faults.injected["429"] > 0
    finally:
        sim.stop()


# -- custom fields: include=custom_field_selections ---------------------------------------------------
def test_include_serves_form_field_selections_as_included_resources(sim: RootlySimulator, receiver: Receiver) -> None:
    answered = sim.trigger("Payments API", "Payments 5xx")
    quiet = sim.trigger("Search", "Search slow")
    sim.set_custom_field(answered, "customer-impact", "Partial outage", "bob")
    sim.set_custom_field(answered, "Affected regions", ["eu-west-1", "ap-south-1"], "bob")
    sim.set_custom_field(answered, "change-ticket", "CHG0031337", "bob")
    url = f"{sim.url}/v1/incidents/{answered}"
    document = requests.get(url, headers=HEADERS, params={"include": "custom_field_selections"}, timeout=5).json()
    linkage = document["data"]["relationships"]["custom_field_selections"]["data"]
    included = document["included"]
    assert [(r["type"], r["id"]) for r in included] == [(r["type"], r["id"]) for r in linkage]
    assert {r["type"] for r in included} == {"incident_form_field_selections"}
    by_slug = {r["attributes"]["form_field"]["slug"]: r["attributes"] for r in included}
    impact = by_slug["customer-impact"]
    assert impact["incident_id"] == answered and impact["selected_options"]["value"] == "Partial outage"
    assert impact["selected_option_ids"] == [impact["selected_options"]["id"]] and impact["value"] is None
    assert impact["form_field"]["input_kind"] == "select" and len(impact["form_field"]["options"]) == 4
    assert by_slug["change-ticket"]["value"] == "CHG0031337" and by_slug["change-ticket"]["selected_option_ids"] == []
    assert "included" not in requests.get(url, headers=HEADERS, timeout=5).json()
    for bad in ("form_field_selections", "custom_field_selections,bogus"):
        refused = requests.get(url, headers=HEADERS, params={"include": bad}, timeout=5)
        assert refused.status_code == 400 and "invalid include" in refused.json()["errors"][0]["detail"]
    page = requests.get(f"{sim.url}/v1/incidents", headers=HEADERS, timeout=5,
                        params={"include": "custom_field_selections,roles", "page[size]": "1", "sort": "created_at"}).json()
    assert [i["id"] for i in page["data"]] == [answered] and len(page["included"]) == 3
    second = requests.get(f"{sim.url}/v1/incidents", headers=HEADERS, timeout=5, params={
        "include": "custom_field_selections", "page[size]": "1", "page[number]": "2", "sort": "created_at"}).json()
    assert [i["id"] for i in second["data"]] == [quiet] and second["included"] == []
    listed = requests.get(f"{url}/form_field_selections", headers=HEADERS, timeout=5).json()["data"]
    assert [r["id"] for r in listed] == [r["id"] for r in included]

    rootly = connector(sim)
    expected = {"customer-impact": "Partial outage", "affected-regions": ["eu-west-1", "ap-south-1"],
                "change-ticket": "CHG0031337"}
    assert rootly.get_incident(answered).raw["custom_fields"] == expected
    polled = {c.record_id: c.incident.raw["custom_fields"] for c in rootly.poll(None, now=datetime.now(timezone.utc)).changes}
    assert polled == {answered: expected, quiet: {}}
    assert sim.wait_idle(10)
    headers, body = receiver.requests[-1]  # the change ticket's incident.updated, answers inline
    [change] = rootly.parse_webhook(body, headers)
    assert change.event_type == "incident.updated" and change.incident.raw["custom_fields"] == expected

    sim.set_custom_field(answered, "change-ticket", None, "bob")
    assert "change-ticket" not in rootly.get_incident(answered).raw["custom_fields"]
    with pytest.raises(SimError) as refused:
        sim.set_custom_field(answered, "customer-impact", "Meltdown", "bob")
    assert refused.value.status == 422 and "no option 'Meltdown'" in refused.value.detail
