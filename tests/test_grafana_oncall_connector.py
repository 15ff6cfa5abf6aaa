"""Grafana OnCall connector: the Authorization-header secret, every outgoing-webhook event normalised from
fixtures shaped like OnCall's own bodies, and the REST calls it makes (with `responses`): poll
pagination and cursor, resolution notes, transitions, refusals and typed errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import AuthError, PermanentError, TransientError, WebhookError
from bridge.http import build_session
from connectors.grafana_oncall import webhooks
from connectors.grafana_oncall.config import SECRET_KEYS, GrafanaOncallConnection
from connectors.grafana_oncall.connector import GrafanaOncallConnector

FIXTURES = Path(__file__).parent / "fixtures" / "grafana_oncall"
API = "https://oncall-prod-eu-west-0.grafana.net/oncall"
TOKEN = "glsa_OnCallT0kenValue_s3cr3t"
SECRET = "whsec-oncall-correct-horse"
NOW = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 2, 20, 30, 5, tzinfo=UTC)
AG = "IZ3F1T4XW8P2K"
GROUPS = f"{API}/api/v1/alert_groups/"
NOTES = f"{API}/api/v1/resolution_notes/"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict:
    return json.loads(raw(name))


def connector(**overrides: object) -> GrafanaOncallConnector:
    settings = {"api_url": API, "api_token": TOKEN, "webhook_secret": SECRET, "page_size": 2, **overrides}
    return GrafanaOncallConnector("oncall", settings, session=build_session(attempts=1))


def parse(body: bytes, received_at: datetime = RECEIVED) -> list:
    return webhooks.parse_payload(body, connection="oncall", received_at=received_at)


# -- config -------------------------------------------------------------------------------------------
def test_connection_model_wants_secret_references_and_an_api_url() -> None:
    ok = GrafanaOncallConnection(type="grafana_oncall", api_url=API, api_token="env:ONCALL_TOKEN",
                                 webhook_secret="file:/run/secret")
    assert (ok.poll_interval, ok.catch_up_hours, ok.page_size, ok.severity_label) == (60, 24, 50, "severity")
    for bad in ({"api_token": TOKEN}, {"api_token": "env:X", "webhook_secret": SECRET}, {"api_token": "env:X", "x": 1}):
        with pytest.raises(ValueError):
            GrafanaOncallConnection(type="grafana_oncall", api_url=API, **bad)
    with pytest.raises(ValueError):
        GrafanaOncallConnection(type="grafana_oncall", api_token="env:X")  # no api_url default: it is per stack
    assert SECRET_KEYS == ("api_token", "webhook_secret")


# -- the shared secret --------------------------------------------------------------------------------
BODY = raw("webhook_acknowledge.json")


@pytest.mark.parametrize("headers", [{"Authorization": SECRET}, {"authorization": f"Bearer {SECRET}"},
                                     {"AUTHORIZATION": f"bearer  {SECRET} "}])
def test_the_bare_secret_or_a_bearer_secret_is_accepted(headers: dict) -> None:
    connector().verify_webhook(BODY, headers, now=NOW)


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing Authorization header"),
    ({"Authorization": ""}, "missing Authorization header"),
    ({"Authorization": "wrong-secret"}, "does not match"),
    ({"Authorization": f"Bearer {SECRET}x"}, "does not match"),
    ({"Authorization": f"Basic {SECRET}"}, "does not match"),
    ({"Authorization": f"Token {SECRET}"}, "does not match"),
    ({"X-Itsm-Bridge-Token": SECRET}, "missing Authorization header"),
])
def test_a_missing_or_wrong_secret_is_refused_with_401(headers: dict, reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().verify_webhook(BODY, headers, now=NOW)
    assert caught.value.status == 401 and reason in str(caught.value) and SECRET not in str(caught.value)


def test_the_secret_is_compared_in_constant_time_in_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac
    real, compared = hmac.compare_digest, []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    connector().verify_webhook(BODY, {"Authorization": SECRET}, now=NOW)
    assert compared == [(SECRET.encode(), SECRET.encode()), (b"", SECRET.encode())]  # no early exit


def test_without_a_configured_secret_every_webhook_is_refused() -> None:
    with pytest.raises(WebhookError) as caught:
        connector(webhook_secret=None).verify_webhook(BODY, {"Authorization": SECRET}, now=NOW)
    assert caught.value.status == 401 and "no webhook_secret configured for connection oncall" in str(caught.value)


def test_there_is_no_timestamp_to_go_stale_replays_are_absorbed_by_event_id() -> None:
    connector().verify_webhook(BODY, {"Authorization": SECRET}, now=NOW + timedelta(days=30))
    assert parse(BODY)[0].event_id == parse(BODY, RECEIVED + timedelta(minutes=3))[0].event_id


# -- every lifecycle event ----------------------------------------------------------------------------
EXPECTED = {  # fixture: (event type, canonical status, OnCall state, timeline kind, text, timed)
    "alert_group_created": ("alert group created", "triggered", "firing", "status",
                            "Alert group created in Grafana OnCall via Checkout Web", True),
    "acknowledge": ("acknowledge", "acknowledged", "acknowledged", "status", "Acknowledged by alice in Grafana OnCall", True),
    "silence": ("silence", "acknowledged", "silenced", "status",
                "Silenced by bob in Grafana OnCall until 2026-03-02T20:29:10.000412+00:00", True),
    "unsilence": ("unsilence", "triggered", "firing", "status", "Unsilenced by bob in Grafana OnCall; firing again", False),
    "resolve": ("resolve", "resolved", "resolved", "status", "Resolved by bob in Grafana OnCall", True),
    "unresolve": ("unresolve", "triggered", "firing", "status", "Unresolved by bob in Grafana OnCall; firing again", False),
    "unacknowledge": ("unacknowledge", "triggered", "firing", "status",
                      "Unacknowledged by alice in Grafana OnCall; firing again", False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_status_event_becomes_the_alert_group_and_a_timeline_line(name: str) -> None:
    kind, status, state, entry_kind, text, timed = EXPECTED[name]
    payload = fixture(f"webhook_{name}.json")
    [change] = connector().parse_webhook(raw(f"webhook_{name}.json"), {"Authorization": SECRET})
    incident = change.incident
    assert (change.record_id, change.event_type, change.via) == (AG, kind, "webhook")
    assert (incident.id, incident.status, incident.raw["state"]) == (AG, status, state)
    assert incident.title == "Checkout error rate above 5% in eu-west-1"
    assert (incident.priority, incident.service) == ("critical", "Checkout Web")  # severity label, integration
    assert incident.url == f"https://acme.grafana.net/a/grafana-oncall-app/alert-groups/{AG}"
    assert incident.raw["labels"] == {"severity": "critical", "region": "eu-west-1", "team": "storefront"}
    assert incident.raw["payload"]["annotations"]["summary"] == incident.title
    assert incident.raw["integration"]["type"] == "alertmanager"  # the tool's own fields stay reachable
    assert incident.assignees == (("alice",) if name in ("acknowledge", "resolve") else ())
    assert (incident.resolved_at is not None) == (status == "resolved")
    if timed:
        moment = datetime.fromisoformat(payload["event"]["time"])
        assert change.occurred_at == moment and change.event_id == f"{AG}:{kind}:{moment:%Y-%m-%dT%H:%M:%S.%f}Z"
    else:  # no event.time in OnCall's body: dated on receipt, never older than what it undoes
        assert change.occurred_at == incident.updated_at and change.event_id.startswith(f"{AG}:{kind}:")
    [entry] = change.entries
    assert (entry.kind, entry.text, entry.id) == (entry_kind, text, f"{change.event_id}:{entry_kind}")


@pytest.mark.parametrize("name, kind, text", [
    ("escalation", "escalation", "Escalation step reached in Grafana OnCall (next: alice, bob)"),
    ("personal_notification", "notification", "bob was notified by Grafana OnCall"),
])
def test_escalation_and_notification_events_add_a_timeline_line_only(name: str, kind: str, text: str) -> None:
    """Their body's state is as old as OnCall's task: it must not undo a status event that came first."""
    [change] = parse(raw(f"webhook_{name}.json"))
    assert change.incident is None and change.record_id == AG and change.occurred_at == RECEIVED
    [entry] = change.entries
    assert (entry.kind, entry.text) == (kind, text)


def test_events_without_a_time_are_dated_on_receipt() -> None:
    [change] = connector().parse_webhook(raw("webhook_unacknowledge.json"), {})
    assert abs(change.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert parse(raw("webhook_unacknowledge.json"))[0].occurred_at == RECEIVED


def test_event_ids_are_stable_per_group_type_and_time_and_absorb_replays() -> None:
    untimed = fixture("webhook_unacknowledge.json")
    replay = {**untimed, "responses": {}, "webhook": {"id": "WHOTHER", "name": "status change", "labels": {}}}
    assert parse(json.dumps(untimed).encode())[0].event_id == parse(json.dumps(replay).encode())[0].event_id
    moved = {**untimed, "alert_group": {**untimed["alert_group"], "alerts_count": 4}}
    assert parse(json.dumps(moved).encode())[0].event_id != parse(json.dumps(untimed).encode())[0].event_id
    ack = fixture("webhook_acknowledge.json")
    later = {**ack, "event": {**ack["event"], "time": "2026-03-02T20:40:00.000001+00:00"}}
    assert parse(json.dumps(ack).encode())[0].event_id != parse(json.dumps(later).encode())[0].event_id


def test_unknown_event_types_pass_through_without_an_incident() -> None:
    body = {**fixture("webhook_escalation.json"), "event": {"type": "alert group merged"}}
    [change] = parse(json.dumps(body).encode())
    assert change.incident is None and change.record_id == AG and change.event_type == "alert group merged"


def _with(path: str, value: object, base: str = "webhook_acknowledge.json") -> bytes:
    body = fixture(base)
    *parents, leaf = path.split(".")
    node = body
    for key in parents:
        node = node[key]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize("body, names", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "body must be a JSON object"),
    (_with("event", ...), "event must be an object"),
    (_with("event.type", ""), "event.type must be a non-empty string, got ''"),
    (_with("alert_group", "IZ3F1T4XW8P2K"), "alert_group must be an object"),
    (_with("event.time", "yesterday"), "event.time must be an ISO 8601 time or absent, got 'yesterday'"),
    (_with("alert_group.state", "exploded"), "alert_group.state 'exploded' is not a Grafana OnCall state"),
    (_with("alert_group.created_at", None), "alert_group.created_at must be an ISO 8601 time, got None"),
    (_with("alert_group.acknowledged_at", 17), "alert_group.acknowledged_at must be an ISO 8601 time, got 17"),
])
def test_malformed_webhooks_are_refused_with_400_naming_the_field(body: bytes, names: str) -> None:
    with pytest.raises(WebhookError) as caught:
        connector().parse_webhook(body, {})
    assert caught.value.status == 400 and names in str(caught.value)


def test_a_missing_alert_group_id_falls_back_to_alert_group_id_then_is_refused() -> None:
    body = json.loads(_with("alert_group.id", ...))
    assert parse(json.dumps(body).encode())[0].record_id == AG
    del body["alert_group_id"]
    with pytest.raises(WebhookError, match="alert_group.id must be a non-empty string"):
        parse(json.dumps(body).encode())


# -- REST: poll, the way back, errors ----------------------------------------------------------------
G_OPEN, G_RESOLVED = "I7B2XK9DM4HRT", "IQ8LPNY3R52VA"


def _lookups() -> None:
    responses.add(responses.GET, f"{API}/api/v1/integrations/CFRPV98RPR1U8/", json=fixture("rest_integration.json"))
    responses.add(responses.GET, f"{API}/api/v1/integrations/CSEARCH1K2J3H/", json={"id": "CSEARCH1K2J3H", "name": "Search"})
    responses.add(responses.GET, f"{API}/api/v1/integrations/CIDENT4T5Y6U7/", status=404, json={"detail": "Not found."})
    for user in ("alice", "bob"):
        data = fixture(f"rest_user_{user}.json")
        responses.add(responses.GET, f"{API}/api/v1/users/{data['id']}/", json=data)
    responses.add(responses.GET, f"{API}/api/v1/users/UBRIDGE7Q2W3E/", json={"id": "UBRIDGE7Q2W3E", "username": "itsm-bridge"})


def _groups(pages: list[dict], seen: list[dict]) -> None:
    def page(request):  # type: ignore[no-untyped-def]
        query = parse_qs(urlsplit(request.url).query)
        seen.append(query)
        return 200, {}, json.dumps(pages[int(query["page"][0]) - 1])

    responses.add_callback(responses.GET, GROUPS, callback=page)


def _notes(seen: list[str]) -> None:
    def notes(request):  # type: ignore[no-untyped-def]
        group = parse_qs(urlsplit(request.url).query)["alert_group_id"][0]
        seen.append(group)
        body = fixture("rest_resolution_notes.json") if group == AG else {"count": 0, "next": None, "results": []}
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.GET, NOTES, callback=notes)


@responses.activate
def test_poll_reads_every_page_of_the_window_and_remembers_versions_in_the_cursor() -> None:
    pages, seen, noted = [fixture("rest_alert_groups_page1.json"), fixture("rest_alert_groups_page2.json")], [], []
    _groups(pages, seen)
    _notes(noted)
    _lookups()
    oncall = connector()
    first = oncall.poll(None, now=NOW)
    assert [q["page"] for q in seen] == [["1"], ["2"]] and seen[0]["perpage"] == ["2"]
    assert seen[0]["started_at"] == ["2026-03-01T20:00:00_2026-03-02T20:05:00"]  # 24h back, 5 min ahead
    assert [c.record_id for c in first.changes] == [G_RESOLVED, G_OPEN, AG]  # oldest first
    resolved, open_, acked = (c.incident for c in first.changes)
    # no severity label: the latest alert's payload label; a deleted integration keeps its id as the service
    assert (resolved.status, resolved.service, resolved.priority) == ("resolved", "CIDENT4T5Y6U7", "critical")
    assert (open_.status, open_.service, open_.priority) == ("triggered", "Search", "warning")
    assert (acked.status, acked.service, acked.assignees, acked.raw["labels"]["region"]) == \
        ("acknowledged", "Checkout Web", ("alice",), "eu-west-1")
    assert [(e.id, e.author) for e in first.changes[2].entries] == [("M9KQWZ2XJ7T3C", "itsm-bridge"),
                                                                   ("M4BTQUS3PRHYQ", "bob")]  # oldest first
    assert all(c.event_id.startswith(f"poll:{c.record_id}:new>") and c.via == "poll" for c in first.changes)
    memory = json.loads(first.cursor)
    assert memory["at"] == "2026-03-02T20:00:00Z" and set(memory["seen"]) == {AG, G_OPEN, G_RESOLVED}
    assert sorted(noted) == sorted([AG, G_OPEN, G_RESOLVED])

    seen.clear(), noted.clear()
    again = oncall.poll(first.cursor, now=NOW + timedelta(minutes=1))
    assert again.changes == [] and json.loads(again.cursor)["seen"] == memory["seen"]
    assert sorted(noted) == sorted([AG, G_OPEN])  # resolved well before the last poll: notes not re-read
    lookups = [c.request.url for c in responses.calls if "/integrations/" in c.request.url or "/users/" in c.request.url]
    assert len(lookups) == len(set(lookups))  # integration names and usernames are cached


@responses.activate
def test_a_changed_group_is_emitted_with_its_previous_version_so_repeated_states_are_not_lost() -> None:
    acked = fixture("rest_alert_group.json")
    firing = {**acked, "state": "firing", "acknowledged_at": None, "acknowledged_by": None}
    reacked = {**acked, "acknowledged_at": "2026-03-02T20:09:00.000000Z"}
    history, ids = [firing, acked, firing, reacked, firing, firing], []
    _lookups()
    _notes([])
    cursor = None
    for step, group in enumerate(history):
        responses.upsert(responses.GET, GROUPS, json={"count": 1, "next": None, "results": [group]})
        result = connector().poll(cursor, now=NOW + timedelta(minutes=step))
        ids += [c.event_id for c in result.changes]
        if step == 2:
            replay = connector().poll(cursor, now=NOW + timedelta(minutes=step))
            assert [c.event_id for c in replay.changes] == ids[-1:]  # a replayed poll repeats its ids
        cursor = result.cursor
    assert len(ids) == 5 and len(set(ids)) == 5  # firing -> ack -> firing -> ack -> firing, no repeat
    assert ids[0].startswith(f"poll:{AG}:new>") and ids[2].split(":")[2].split(">")[1] == ids[0].split(">")[1]


@responses.activate
def test_requests_carry_the_bare_token_per_request() -> None:
    responses.add(responses.POST, NOTES, status=201, json=fixture("rest_resolution_note_created.json"))
    session = build_session(attempts=1)
    GrafanaOncallConnector("oncall", {"api_url": API + "/", "api_token": TOKEN}, session=session).add_note(
        AG, "INC0012345 opened [itsm-bridge:3]")
    request = responses.calls[0].request
    assert request.headers["Authorization"] == TOKEN  # OnCall takes the token with no scheme
    assert request.url == NOTES and "Authorization" not in session.headers
    assert json.loads(request.body) == {"alert_group_id": AG, "text": "INC0012345 opened [itsm-bridge:3]"}


@responses.activate
def test_has_note_looks_for_the_tag_in_the_resolution_notes() -> None:
    _notes([])  # no user lookups: an unregistered URL would fail the test
    assert connector().has_note(AG, "[itsm-bridge:7]")
    assert not connector().has_note(AG, "[itsm-bridge:8]")


def _group_in(state: str) -> dict:
    return {**fixture("rest_alert_group.json"), "state": state}


@pytest.mark.parametrize("state, wanted, actions", [
    ("firing", "acknowledged", ["acknowledge"]),
    ("resolved", "acknowledged", ["unresolve", "acknowledge"]),
    ("firing", "resolved", ["resolve"]),
    ("silenced", "resolved", ["resolve"]),
    ("resolved", "triggered", ["unresolve"]),
    ("acknowledged", "triggered", ["unacknowledge"]),
    ("silenced", "triggered", ["unsilence"]),
])
@responses.activate
def test_transition_uses_the_oncall_action(state: str, wanted: str, actions: list[str]) -> None:
    responses.add(responses.GET, f"{GROUPS[:-1]}/{AG}", json=_group_in(state))
    for action in actions:
        responses.add(responses.POST, f"{GROUPS}{AG}/{action}", status=200)
    connector().transition(AG, wanted)
    assert [c.request.url.rsplit("/", 1)[1] for c in responses.calls[1:]] == actions


@pytest.mark.parametrize("state, wanted", [("silenced", "acknowledged"), ("acknowledged", "acknowledged"),
                                           ("resolved", "resolved"), ("firing", "triggered")])
@responses.activate
def test_transition_to_the_state_it_is_already_in_succeeds_without_a_write(state: str, wanted: str) -> None:
    responses.add(responses.GET, f"{GROUPS[:-1]}/{AG}", json=_group_in(state))
    connector().transition(AG, wanted)
    assert len(responses.calls) == 1
    with pytest.raises(PermanentError, match="unknown status 'bogus'"):
        connector().transition(AG, "bogus")


@responses.activate
def test_a_refused_action_is_permanent_and_names_oncalls_reason() -> None:
    responses.add(responses.GET, f"{GROUPS[:-1]}/{AG}", json=_group_in("firing"))
    responses.add(responses.POST, f"{GROUPS}{AG}/acknowledge", status=400, json=fixture("error_bad_request.json"))
    with pytest.raises(PermanentError, match="Can't acknowledge an acknowledged alert group"):
        connector().transition(AG, "acknowledged")


def test_priority_cannot_flow_back_and_an_empty_update_is_a_no_op() -> None:
    with pytest.raises(PermanentError, match="cannot set priority on a Grafana OnCall alert group") as caught:
        connector().update(AG, {"priority": "critical"})
    assert "'severity' label" in str(caught.value)
    connector().update(AG, {})


@responses.activate
def test_escalate_pages_the_configured_users_or_says_what_is_missing() -> None:
    with pytest.raises(PermanentError, match="set escalation_users"):
        connector().escalate(AG)
    responses.add(responses.POST, f"{API}/api/v1/escalation/", json={"id": AG, "state": "firing"})
    connector(escalation_users=["UVMX6YI9VY9PV"], escalation_important=True).escalate(AG)
    assert json.loads(responses.calls[0].request.body) == {
        "alert_group_id": AG, "users": [{"id": "UVMX6YI9VY9PV", "important": True}]}


@pytest.mark.parametrize("status, body, error, retry_after", [
    (429, "error_throttled.json", TransientError, 12.0), (503, None, TransientError, None),
    (502, None, TransientError, None), (403, "error_invalid_token.json", AuthError, None),
])
@responses.activate
def test_failures_are_typed_and_never_show_the_token(status: int, body: str | None, error: type, retry_after: float | None,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Retry-After": "12"} if status == 429 else {}
    responses.add(responses.GET, f"{GROUPS[:-1]}/{AG}", status=status, headers=headers,
                  json=fixture(body) if body else {"detail": "A server error occurred."})
    with pytest.raises(error) as caught:
        connector().get_incident(AG)
    assert caught.value.status == status and caught.value.retry_after == retry_after
    assert TOKEN not in str(caught.value) and TOKEN not in caplog.text and TOKEN not in repr(connector())


@responses.activate
def test_check_says_whether_the_token_is_accepted() -> None:
    responses.add(responses.GET, GROUPS, status=403, json=fixture("error_invalid_token.json"))
    result = connector().check()
    assert not result.ok and "Grafana OnCall token refused" in result.message and TOKEN not in result.message
    responses.upsert(responses.GET, GROUPS, json=fixture("rest_alert_groups_page2.json"))
    assert connector().check().ok
