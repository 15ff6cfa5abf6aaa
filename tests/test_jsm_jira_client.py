"""JsmConnector against the simulator, with the real `jira` client and the RetryingSession on the wire.

What a user would notice: issues created once and found again (even when search lags behind), edits,
notes and workflow moves landing, desk changes read back with their comments, errors typed, and all of
it still working when almost a third of the answers are 5xx or 429.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from bridge.errors import AuthError, ConflictError, NotFoundError, PermanentError
from bridge.http import RetryingSession, build_session
from connectors.jsm.connector import JsmConnector
from connectors.jsm.simulator import JsmSimulator
from connectors.jsm.wire import BridgeJiraSession
from connectors.simulator import Faults

EMAIL, TOKEN = "bridge@example.com", "sim-jira-token"
START = datetime(2025, 3, 14, 9, 0, 0, tzinfo=timezone.utc)
TRANSITIONS = {"In Progress": "Start progress", "Resolved": "Resolve", "Reopened": "Reopen"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[JsmSimulator]:
    simulator = JsmSimulator(clock=clock).start()
    yield simulator
    simulator.stop()


def connect(sim: JsmSimulator, session: RetryingSession | None = None, **settings: object) -> JsmConnector:
    return JsmConnector("jsm", {"url": sim.url, "email": EMAIL, "api_token": TOKEN, "project": "OPS",
                                "transitions": TRANSITIONS, **settings}, session=session or build_session(attempts=1))


def run_story(sim: JsmSimulator, jsm: JsmConnector) -> str:
    """The life of one ticket as the engine drives it; returns the issue key."""
    assert jsm.check().ok
    assert jsm.find("pagerduty:Q1") is None
    ref = jsm.create({"summary": "[Payments API] Checkout latency", "description": "p99 above 2s",
                      "priority": "High", "labels": "payments", "components": "Payments",
                      "customfield_10001": "Q1", "work_notes": "Opened from PagerDuty [itsm-bridge:1]"},
                     correlation_id="pagerduty:Q1")
    assert ref.url == f"{sim.url}/browse/{ref.id}" and jsm.find("pagerduty:Q1") == ref
    jsm.add_remote_link(ref.id, "https://acme.pagerduty.com/incidents/Q1", "PagerDuty Q1")
    jsm.update(ref.id, {"status": "In Progress", "priority": "Highest"})
    jsm.add_note(ref.id, "Rolled back deploy 4711 [itsm-bridge:2]")
    jsm.update(ref.id, {"status": "Resolved", "comments": "Fixed, sorry for the trouble [itsm-bridge:3]"})
    jsm.update(ref.id, {"status": "Resolved"})  # a retried op: already there, nothing happens
    return ref.id


def check_story(sim: JsmSimulator, jsm: JsmConnector, key: str) -> None:
    ticket = jsm.get(key)
    assert (ticket.fields["status"], ticket.fields["status_category"], ticket.fields["resolution"]) == (
        "Resolved", "done", "Done")
    assert ticket.fields["priority"] == "Highest" and ticket.fields["labels"] == "payments"
    assert ticket.fields["customfield_10001"] == "Q1" and ticket.updated_by == EMAIL
    assert [(c["body"].split(" [")[0], c["jsdPublic"]) for c in sim.comments(key)] == [
        ("Opened from PagerDuty", False), ("Rolled back deploy 4711", False), ("Fixed, sorry for the trouble", True)]
    assert jsm.has_note(key, "[itsm-bridge:2]") and not jsm.has_note(key, "[itsm-bridge:9]")
    assert [i["key"] for i in sim.find_by_correlation("pagerduty:Q1")] == [key]  # exactly one issue
    assert len(sim.remote_links(key)) == 1
    assert "itsm-bridge" in sim.issue(key)["fields"]["labels"]


def test_ticket_life_round_trip_on_the_real_client(sim: JsmSimulator) -> None:
    jsm = connect(sim)
    key = run_story(sim, jsm)
    check_story(sim, jsm, key)
    assert isinstance(jsm.client._session, BridgeJiraSession) and jsm.client._session.max_retries == 0


def test_thirty_percent_5xx_and_429_still_converge_through_the_retrying_session(clock: Clock) -> None:
    faults = Faults(server_error_rate=0.15, rate_limit_rate=0.15, retry_after=0, seed=20250314)
    sim = JsmSimulator(clock=clock, faults=faults).start()
    retries: list[object] = []
    try:
        session = build_session(attempts=12, initial_wait=0.001, max_wait=0.01, on_retry=retries.append)
        jsm = connect(sim, session)
        key = run_story(sim, jsm)
        check_story(sim, jsm, key)
    finally:
        sim.stop()
    assert faults.injected["5xx"] > 0 and faults.injected["429"] > 0
    assert len(retries) == faults.injected["5xx"] + faults.injected["429"]  # every retry was ours, none jira's


def test_find_after_a_crash_sees_an_issue_search_does_not_know_yet(sim: JsmSimulator, clock: Clock) -> None:
    sim.search_lag_seconds = 60
    first = connect(sim).create({"summary": "Disk filling"}, correlation_id="pagerduty:Q2")
    restarted = connect(sim)  # a new process: nothing remembered
    assert restarted.find("pagerduty:Q2") == first
    other = restarted.create({"summary": "Other"}, correlation_id="pagerduty:Q3")
    assert restarted.find("pagerduty:Q3") == other and restarted.find("pagerduty:Q4") is None
    clock.advance(61)
    assert restarted.find("pagerduty:Q2") == first and restarted.count_correlated("pagerduty:Q2") == 1


def test_poll_reads_desk_changes_with_comments_and_overlaps_safely(sim: JsmSimulator, clock: Clock) -> None:
    jsm = connect(sim)
    key = jsm.create({"summary": "Search down"}, correlation_id="pagerduty:Q5").id
    unrelated = sim.state.create({"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"},
                                             "summary": "Not ours"}}, user="agent@example.com")
    first = jsm.poll(None, now=clock())
    assert [c.record_id for c in first.changes] == [key]  # only issues carrying the bridge label
    clock.advance(90)
    sim.desk_transition(key, "Start progress")
    sim.desk_comment(key, "Looking into it")
    sim.desk_comment(key, "Cache node restarted", internal=True)
    second = jsm.poll(first.cursor, now=clock())
    change = second.changes[-1]
    assert change.ticket.fields["status"] == "In Progress" and change.actor == "agent@example.com"
    assert [(e.kind, e.text, e.author) for e in change.entries] == [
        ("comment", "Looking into it", "agent@example.com"), ("work_note", "Cache node restarted", "agent@example.com")]
    assert second.cursor == sim.issue(key)["fields"]["updated"] and second.cursor > first.cursor
    again = jsm.poll(second.cursor, now=clock())
    assert [c.event_id for c in again.changes] == [change.event_id]  # the overlap repeats; the inbox drops it
    assert unrelated["key"] not in {c.record_id for c in second.changes}


def test_errors_are_typed(sim: JsmSimulator) -> None:
    jsm = connect(sim)
    with pytest.raises(NotFoundError):
        jsm.get("OPS-404")
    with pytest.raises(PermanentError, match="priority 'Urgent'"):
        jsm.create({"summary": "x", "priority": "Urgent"}, correlation_id="pagerduty:Q6")
    key = jsm.create({"summary": "x"}, correlation_id="pagerduty:Q6").id
    with pytest.raises(PermanentError, match="transition 'Reopen' is not available"):
        jsm.update(key, {"status": "Reopened"})
    intruder = JsmConnector("jsm", {"url": sim.url, "email": EMAIL, "api_token": "wrong-token", "project": "OPS"},
                            session=build_session(attempts=1))
    result = intruder.check()
    assert not result.ok and "wrong-token" not in result.message
    with pytest.raises(AuthError):
        intruder.get(key)
    assert not connect(sim, project="NOPE").check().ok


def test_an_agent_moving_the_issue_mid_transition_is_a_conflict_to_retry_not_a_dead_letter(sim: JsmSimulator) -> None:
    jsm = connect(sim)
    ref = jsm.create({"summary": "Card declines"}, correlation_id="pagerduty:PRACE01")
    real_transitions = jsm.client.transitions

    def agent_resolves_right_after_we_read(key: str, **kwargs: object) -> object:
        listed = real_transitions(key, **kwargs)
        sim.desk_transition(ref.id, "Resolve")  # the agent is faster than our POST
        jsm.client.transitions = real_transitions  # only once
        return listed

    jsm.client.transitions = agent_resolves_right_after_we_read
    with pytest.raises(ConflictError, match="changed status"):
        jsm.update(ref.id, {"state": "In Progress"})
    assert sim.issue(ref.id)["fields"]["status"]["name"] == "Resolved"  # the agent's decision stands


def test_an_agent_resolving_between_the_status_check_and_the_move_is_never_reopened(sim: JsmSimulator) -> None:
    """The guarded write checked the status (To Do) and then lists transitions; an agent resolving in
    between leaves no way to In Progress but through Reopen, which would silently undo the agent."""
    jsm = connect(sim)
    ref = jsm.create({"summary": "Card declines"}, correlation_id="pagerduty:PRACE02")
    real_transitions = jsm.client.transitions

    def agent_resolves_right_before_we_list(key: str, **kwargs: object) -> object:
        sim.desk_transition(ref.id, "Resolve")  # the agent is faster than our transitions read
        jsm.client.transitions = real_transitions  # only once
        return real_transitions(key, **kwargs)

    jsm.client.transitions = agent_resolves_right_before_we_list
    with pytest.raises(ConflictError, match="Resolved"):
        jsm.update_if(ref.id, {"status": "In Progress"}, expect={"status": "To Do"})
    assert sim.issue(ref.id)["fields"]["status"]["name"] == "Resolved"  # the agent's decision stands
    jsm.update(ref.id, {"status": "In Progress"})  # unguarded, a move out of Resolved still reopens
    assert sim.issue(ref.id)["fields"]["status"]["name"] == "In Progress"
