"""The Grafana OnCall simulator over real loopback HTTP, and the connector against it with `requests` on the
wire (including 30% injected 5xx/429 absorbed by `bridge.http.build_session`)."""

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
from connectors.grafana_oncall.connector import GrafanaOncallConnector
from connectors.grafana_oncall.simulator import GrafanaOncallSimulator
from connectors.simulator import Faults, ServerThread, free_port
from tests.conftest import as_the_outbox

TOKEN = "sim-oncall-test-token"
SECRET = "sim-oncall-test-secret"
HEADERS = {"Authorization": TOKEN}


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
def sim(receiver: Receiver) -> Iterator[GrafanaOncallSimulator]:
    sim = GrafanaOncallSimulator(api_token=TOKEN, webhook_secret=SECRET, webhook_url=receiver.url,
                                 webhook_backoff=0.01, webhook_max_backoff=0.05).start()
    yield sim
    sim.stop()


def connector(sim: GrafanaOncallSimulator, **settings: object) -> GrafanaOncallConnector:
    return GrafanaOncallConnector("oncall", {"api_url": sim.url, "api_token": TOKEN, "webhook_secret": SECRET,
                                             "page_size": 2, **settings}, session=build_session(initial_wait=0.01))


def get(sim: GrafanaOncallSimulator, path: str, **params: str) -> requests.Response:
    return requests.get(f"{sim.url}{path}", headers=HEADERS, params=params, timeout=5)


def post(sim: GrafanaOncallSimulator, path: str, body: dict | None = None) -> requests.Response:
    return requests.post(f"{sim.url}{path}", headers=HEADERS, json=body or {}, timeout=5)


# -- REST ---------------------------------------------------------------------------------------------
def test_a_wrong_or_schemed_token_is_403_invalid_token(sim: GrafanaOncallSimulator) -> None:
    for headers in ({}, {"Authorization": "nope"}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Token {TOKEN}"}):
        answer = requests.get(f"{sim.url}/api/v1/alert_groups/", headers=headers, timeout=5)
        assert (answer.status_code, answer.json()) == (403, {"detail": "Invalid token."})


def test_pages_filters_and_newest_first() -> None:
    ticks = iter(range(10_000))
    sim = GrafanaOncallSimulator(api_token=TOKEN, clock=lambda: datetime(2026, 3, 2, 12, 0, next(ticks), tzinfo=UTC)).start()
    try:
        assert get(sim, "/api/v1/alert_groups/", state="bogus").status_code == 400  # refused even when empty
        ids = [sim.trigger("Search", f"Search alert {n}", priority="warning") for n in range(5)]
        page = get(sim, "/api/v1/alert_groups/", perpage="2", page="3").json()
        assert [g["id"] for g in page["results"]] == ids[:1] and page["next"] is None and "page=2" in page["previous"]
        assert {k: page[k] for k in ("count", "current_page_number", "page_size", "total_pages")} == \
            {"count": 5, "current_page_number": 3, "page_size": 2, "total_pages": 3}
        assert get(sim, "/api/v1/alert_groups", perpage="2", page="4").json() == {"detail": "Invalid page."}
        sim.acknowledge(ids[1], "alice")
        sim.silence(ids[2], "bob", delay=1800)
        states = {s: [g["id"] for g in get(sim, "/api/v1/alert_groups/", state=s).json()["results"]]
                  for s in ("new", "acknowledged", "silenced")}
        assert states == {"new": [ids[4], ids[3], ids[0]], "acknowledged": [ids[1]], "silenced": [ids[2]]}
        assert get(sim, "/api/v1/alert_groups/", state="bogus").json()["state"][0].startswith("Must be one of")
        window = get(sim, "/api/v1/alert_groups/", started_at="2026-03-02T12:00:01_2026-03-02T12:00:03").json()
        assert [g["id"] for g in window["results"]] == [ids[3], ids[2], ids[1]]
        for bad in ("2026-03-02T12:00:03_2026-03-02T12:00:01", "2026-03-02_2026-03-03", "2026-03-02T12:00:01"):
            assert get(sim, "/api/v1/alert_groups/", started_at=bad).json() == {"detail": "Invalid range value"}
        group = get(sim, f"/api/v1/alert_groups/{ids[1]}").json()
        assert group["labels"] == [{"key": {"id": "severity", "name": "severity"},
                                    "value": {"id": "warning", "name": "warning"}}]
        assert group["acknowledged_by"] == sim.user_id("alice") and group["created_at"].endswith("Z")
    finally:
        sim.stop()


def test_actions_follow_oncalls_rules_and_refusals(sim: GrafanaOncallSimulator) -> None:
    group = sim.trigger("Payments API", "Card declines", priority="critical")

    def act(action: str, body: dict | None = None) -> requests.Response:
        return post(sim, f"/api/v1/alert_groups/{group}/{action}", body)

    assert act("silence").json() == {"detail": "delay is required"}
    assert (act("silence", {"delay": -1}).status_code, sim.incident(group)["state"]) == (200, "silenced")
    assert act("acknowledge").content == b"" and sim.incident(group)["silenced_at"] is None  # ack ends a silence
    assert act("acknowledge").json() == {"detail": "Can't acknowledge an acknowledged alert group"}
    assert act("silence", {"delay": 60}).json() == {"detail": "Can't silence an acknowledged alert group"}
    assert act("resolve").status_code == 200 and sim.incident(group)["state"] == "resolved"
    assert act("unacknowledge").json() == {"detail": "Can't unacknowledge a resolved alert group"}
    assert act("unresolve/").status_code == 200  # the trailing slash is optional
    assert (sim.incident(group)["state"], sim.incident(group)["acknowledged_at"]) == ("firing", None)
    assert act("unsilence").json() == {"detail": "Can't unsilence an unsilenced alert group"}
    assert act("explode").status_code == 404 and get(sim, "/api/v1/alert_groups/INOPE").status_code == 404


def test_resolution_notes_are_created_with_201_validated_and_listed(sim: GrafanaOncallSimulator) -> None:
    group, other = sim.trigger("Identity", "Login failures"), sim.trigger("Search", "Slow search")
    created = post(sim, "/api/v1/resolution_notes/", {"alert_group_id": group, "text": "INC001 [itsm-bridge:1]"})
    assert created.status_code == 201
    assert {k: created.json()[k] for k in ("alert_group_id", "source", "text")} == \
        {"alert_group_id": group, "source": "web", "text": "INC001 [itsm-bridge:1]"}
    assert created.json()["author"] == sim.user_id("itsm-bridge")  # the token's owner
    sim.add_note(other, "unrelated", "bob")
    listed = get(sim, "/api/v1/resolution_notes/", alert_group_id=group).json()
    assert [n["id"] for n in listed["results"]] == [created.json()["id"]] and listed["count"] == 1
    assert get(sim, f"/api/v1/resolution_notes/{created.json()['id']}").json()["text"] == "INC001 [itsm-bridge:1]"
    assert post(sim, "/api/v1/resolution_notes/", {"alert_group_id": group, "text": " "}).json() == \
        {"text": ["This field may not be blank."]}
    assert post(sim, "/api/v1/resolution_notes/", {"text": "x"}).json() == {"alert_group_id": ["This field is required."]}
    assert "object does not exist" in post(sim, "/api/v1/resolution_notes/",
                                           {"alert_group_id": "INOPE", "text": "x"}).json()["alert_group_id"][0]


def test_the_rate_limit_is_429_with_retry_after() -> None:
    sim = GrafanaOncallSimulator(api_token=TOKEN, rate_limit=2).start()
    try:
        answers = [get(sim, "/api/v1/alert_groups/") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["Retry-After"] == answers[2].headers["RateLimit-Reset"]
        assert answers[2].json()["detail"].startswith("Request was throttled.")
    finally:
        sim.stop()


# -- webhooks -----------------------------------------------------------------------------------------
def test_every_change_is_one_webhook_with_the_secret_the_connector_accepts(sim: GrafanaOncallSimulator,
                                                                           receiver: Receiver) -> None:
    group = sim.trigger("Checkout Web", "Checkout 5xx", priority="critical")
    sim.silence(group, "bob", delay=600)
    sim.unsilence(group, "bob")
    sim.escalate(group)
    sim.notify(group, "alice")
    sim.acknowledge(group, "alice")
    sim.add_note(group, "Rolling back", "alice")  # resolution notes fire no webhook, as in OnCall
    sim.set_priority(group, "warning", "alice")  # nor do labels
    sim.unacknowledge(group, "alice")
    sim.resolve(group, "carol")
    sim.unresolve(group, "carol")
    assert sim.wait_idle(10)
    assert receiver.types() == ["alert group created", "silence", "unsilence", "escalation", "personal notification",
                                "acknowledge", "unacknowledge", "resolve", "unresolve"]
    oncall, statuses = connector(sim), []
    for headers, body in receiver.requests:
        assert headers["authorization"] == SECRET
        oncall.verify_webhook(body, headers, now=datetime.now(UTC))
        [change] = oncall.parse_webhook(body, headers)
        incident = change.incident
        statuses.append((incident.status, incident.priority) if incident else (change.entries[0].kind, None))
    assert [s for s, _p in statuses] == ["triggered", "acknowledged", "triggered", "escalation", "notification",
                                         "acknowledged", "triggered", "resolved", "triggered"]
    assert statuses[0][1] == "critical" and statuses[-1][1] == "warning"
    assert [n["text"] for n in sim.notes(group)] == ["Rolling back"]


def test_a_bearer_authorization_header_is_sent_as_configured(receiver: Receiver) -> None:
    sim = GrafanaOncallSimulator(api_token=TOKEN, webhook_secret=SECRET, auth_scheme="Bearer",
                                 webhook_url=receiver.url).start()
    try:
        sim.trigger("Search", "one")
        assert sim.wait_idle(10)
        headers, body = receiver.requests[0]
        assert headers["authorization"] == f"Bearer {SECRET}"
        connector(sim).verify_webhook(body, headers, now=datetime.now(UTC))
    finally:
        sim.stop()


def test_like_oncall_only_failed_requests_are_retried_and_any_answer_ends_a_delivery(
        sim: GrafanaOncallSimulator, receiver: Receiver) -> None:
    receiver.answers = [503]
    sim.trigger("Search", "answered 503")
    assert sim.wait_idle(10)
    assert (len(receiver.requests), sim.webhooks.stats["dropped"], sim.webhooks.stats["retried"]) == (1, 1, 0)
    sim.set_webhook_url(f"http://127.0.0.1:{free_port()}/nobody-listens")
    sim.trigger("Search", "unreachable")
    assert sim.wait_idle(10)
    assert sim.webhooks.stats["retried"] == 3 and "gave up after 4 attempts" in sim.webhooks.dropped[-1][1]


def test_without_a_webhook_url_nothing_is_queued() -> None:
    sim = GrafanaOncallSimulator(api_token=TOKEN).start()
    try:
        sim.trigger("Search", "quiet")
        assert sim.wait_idle(1) and sim.webhooks.stats["queued"] == 0
    finally:
        sim.stop()


# -- the connector against the simulator -------------------------------------------------------------
def _round_trip(sim: GrafanaOncallSimulator) -> None:
    oncall = connector(sim, escalation_users=[sim.user_id("bob")])
    ids = [sim.trigger("Payments API", f"Payments alert {n}", priority="critical") for n in range(5)]
    for group in ids:
        as_the_outbox(lambda: oncall.transition(group, "acknowledged"))
        as_the_outbox(lambda: oncall.transition(group, "acknowledged"))
        oncall.add_note(group, f"Ticket opened [itsm-bridge:{group}]")
        assert oncall.has_note(group, f"[itsm-bridge:{group}]")
        as_the_outbox(lambda: oncall.transition(group, "resolved"))
        as_the_outbox(lambda: oncall.transition(group, "resolved"))
        oncall.transition(group, "triggered")
    result = oncall.poll(None, now=datetime.now(UTC))
    assert {c.record_id for c in result.changes} == set(ids)
    for change in result.changes:
        assert (change.incident.status, change.incident.priority, change.incident.service) == \
            ("triggered", "critical", "Payments API")
        assert [e.author for e in change.entries] == ["itsm-bridge"] and "[itsm-bridge:" in change.entries[0].text
    assert oncall.poll(result.cursor, now=datetime.now(UTC) + timedelta(seconds=1)).changes == []
    oncall.transition(ids[0], "acknowledged")
    [changed] = oncall.poll(result.cursor, now=datetime.now(UTC)).changes
    assert (changed.record_id, changed.incident.status, changed.incident.assignees) == (ids[0], "acknowledged",
                                                                                        ("itsm-bridge",))
    oncall.escalate(ids[1])
    assert sim.org.groups[ids[1]].notified == ["bob"]
    with pytest.raises(PermanentError, match="cannot set priority"):
        oncall.update(ids[2], {"priority": "warning"})
    assert oncall.check().ok


def test_connector_round_trip_against_the_simulator(sim: GrafanaOncallSimulator) -> None:
    _round_trip(sim)


def test_connector_succeeds_through_30_percent_injected_5xx_and_429() -> None:
    faults = Faults(server_error_rate=0.15, rate_limit_rate=0.15, retry_after=0, seed=7)
    sim = GrafanaOncallSimulator(api_token=TOKEN, faults=faults).start()
    try:
        oncall = connector(sim)
        oncall.session = build_session(attempts=8, initial_wait=0.001, max_wait=0.01)
        ids = [sim.trigger("Search", f"flaky {n}") for n in range(4)]
        for group in ids:
            as_the_outbox(lambda: oncall.transition(group, "acknowledged"))
            as_the_outbox(lambda: oncall.add_note(group, f"note [itsm-bridge:{group}]"))
            as_the_outbox(lambda: oncall.transition(group, "resolved"))
        assert {sim.incident(i)["state"] for i in ids} == {"resolved"}
        assert len(oncall.poll(None, now=datetime.now(UTC)).changes) == 4
        assert faults.injected["5xx"] > 0 and faults.injected["429"] > 0
    finally:
        sim.stop()
