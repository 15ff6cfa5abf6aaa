"""ServiceNowConnector against the simulator, pysnow and the RetryingSession on the wire over loopback HTTP.

What a user would notice: tickets created once and found again, edits and notes landing, desk changes
read back with their journal, errors typed, and all of it still working when a third of the answers
are 5xx or 429.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from bridge.errors import AuthError, NotFoundError, PermanentError
from bridge.http import build_session
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import Faults
from tests.conftest import as_the_outbox

USER, PASSWORD = "itsm.bridge", "sim-sn-password"
START = datetime(2025, 3, 14, 9, 0, 0, tzinfo=timezone.utc)


class Clock:
    """The simulator's clock, moved by the test (timestamps have second resolution)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[ServiceNowSimulator]:
    simulator = ServiceNowSimulator(users={USER: PASSWORD}, clock=clock).start()
    yield simulator
    simulator.stop()


def connect(sim: ServiceNowSimulator, **settings: object) -> ServiceNowConnector:
    return ServiceNowConnector("servicenow", {"instance_url": sim.url, "username": USER, "password": PASSWORD,
                                              **settings}, session=build_session(attempts=1))


def test_create_find_update_and_notes_round_trip(sim: ServiceNowSimulator) -> None:
    connector = connect(sim)
    assert connector.find("pagerduty:Q1") is None
    ref = connector.create({"short_description": "[Payments API] Checkout latency", "impact": "1", "urgency": "2",
                            "assignment_group": "Payments", "work_notes": "Opened from PagerDuty [itsm-bridge:1]"},
                           correlation_id="pagerduty:Q1")
    assert ref.number == "INC0010001" and ref.url == f"{sim.url}/nav_to.do?uri=incident.do?sys_id={ref.id}"
    assert connector.find("pagerduty:Q1") == ref
    connector.update(ref.id, {"state": "2", "urgency": "1"})
    connector.add_note(ref.id, "Rolled back deploy 4711 [itsm-bridge:2]")
    ticket = connector.get(ref.id)
    assert (ticket.fields["state"], ticket.fields["priority"]) == ("2", "1")  # computed by the instance
    assert ticket.fields["correlation_display"] == "itsm-bridge" and ticket.updated_by == USER
    assert sim.record(ref.id)["assignment_group"] == "Payments"  # stored as sent: reads back equal
    assert [row["value"] for row in sim.journal(ref.id)] == ["Opened from PagerDuty [itsm-bridge:1]",
                                                            "Rolled back deploy 4711 [itsm-bridge:2]"]
    assert connector.has_note(ref.id, "[itsm-bridge:2]") and not connector.has_note(ref.id, "[itsm-bridge:3]")
    assert sim.record(ref.id)["sys_mod_count"] == "2"  # one PATCH per update, nothing else written


def test_reference_names_resolve_when_input_display_value_is_on(sim: ServiceNowSimulator) -> None:
    connector = connect(sim, input_display_value=True)
    ref = connector.create({"assignment_group": "Payments"}, correlation_id="pagerduty:Q9")
    group = connector.get(ref.id).fields["assignment_group"]
    assert group != "Payments" and sim.state.reference_display("assignment_group", group) == "Payments"


def test_find_returns_the_oldest_of_duplicates_and_counts_them(sim: ServiceNowSimulator, clock: Clock) -> None:
    connector = connect(sim)
    first = connector.create({"short_description": "a"}, correlation_id="pagerduty:DUP")
    clock.advance(1)
    connector.create({"short_description": "b"}, correlation_id="pagerduty:DUP")
    connector.create({"short_description": "c"}, correlation_id="pagerduty:OTHER")
    assert connector.find("pagerduty:DUP") == first
    assert connector.count_correlated("pagerduty:DUP") == 2
    assert connector.count_correlated("pagerduty:NONE") == 0


def test_poll_reads_desk_changes_with_their_journal(sim: ServiceNowSimulator, clock: Clock) -> None:
    connector = connect(sim)
    ref = connector.create({"short_description": "Login failures"}, correlation_id="pagerduty:Q2")
    requests_only = sim.state.insert({"short_description": "not ours"}, user="jane.doe")  # no correlation
    clock.advance(60)
    sim.desk_comment(ref.id, "Customers cannot log in since 09:10")
    sim.desk_comment(ref.id, "internal: vendor ticket 881", work_note=True)
    sim.desk_update(ref.id, {"state": "6", "close_code": "Workaround provided", "close_notes": "Fixed by desk"})
    result = connector.poll("2025-03-14 09:00:30", now=clock.now)
    (change,) = result.changes
    assert change.record_id == ref.id != requests_only["sys_id"]
    assert change.event_id == f"poll:{ref.id}:3" and change.actor == "jane.doe" and change.via == "poll"
    assert change.ticket is not None and change.ticket.fields["state"] == "6"
    assert change.ticket.fields["close_notes"] == "Fixed by desk"
    assert [(entry.kind, entry.public, entry.author) for entry in change.entries] == [
        ("comment", True, "jane.doe"), ("work_note", False, "jane.doe")]
    assert result.cursor == "2025-03-14 09:01:00"
    again = connector.poll(result.cursor, now=clock.now)  # the boundary second is read again ...
    assert [c.event_id for c in again.changes] == [change.event_id]  # ... with the same event id
    clock.advance(5)
    assert connector.poll(result.cursor, now=clock.now).cursor == result.cursor


def test_poll_without_cursor_and_across_pages(sim: ServiceNowSimulator, clock: Clock) -> None:
    connector = connect(sim, page_size=2)
    refs = []
    for index in range(5):
        refs.append(connector.create({"short_description": f"n{index}"}, correlation_id=f"pagerduty:P{index}"))
        clock.advance(1)
    result = connector.poll(None, now=clock.now + timedelta(minutes=30))
    assert [change.record_id for change in result.changes] == [ref.id for ref in refs]
    assert result.cursor == "2025-03-14 09:00:04"
    assert connector.poll(None, now=clock.now + timedelta(hours=2)).changes == []


def test_desk_refusals_and_missing_records_are_typed(sim: ServiceNowSimulator) -> None:
    connector = connect(sim)
    ref = connector.create({"short_description": "x"}, correlation_id="pagerduty:Q3")
    with pytest.raises(PermanentError, match="Resolution code, Resolution notes"):
        connector.update(ref.id, {"state": "6"})
    assert sim.record(ref.id)["state"] == "1"
    connector.update(ref.id, {"state": "6", "close_code": "Solution provided", "close_notes": "Resolved in PagerDuty"})
    assert sim.record(ref.id)["resolved_at"]
    with pytest.raises(NotFoundError):
        connector.get("0" * 32)
    with pytest.raises(NotFoundError):
        connector.add_note("0" * 32, "lost")


def test_wrong_password_is_an_auth_error_and_check_says_so(sim: ServiceNowSimulator) -> None:
    wrong = ServiceNowConnector("servicenow", {"instance_url": sim.url, "username": USER, "password": "nope-123"},
                                session=build_session(attempts=1))
    with pytest.raises(AuthError) as refused:
        wrong.find("pagerduty:Q4")
    assert refused.value.status == 401 and "nope-123" not in str(refused.value)
    report = wrong.check()
    assert not report.ok and "nope-123" not in report.message
    assert connect(sim).check().ok


def test_everything_still_succeeds_with_a_third_of_answers_failing(clock: Clock) -> None:
    faults = Faults(server_error_rate=0.2, rate_limit_rate=0.1, retry_after=0, seed=7)
    sim = ServiceNowSimulator(users={USER: PASSWORD}, faults=faults, clock=clock).start()
    try:
        connector = ServiceNowConnector(
            "servicenow", {"instance_url": sim.url, "username": USER, "password": PASSWORD, "page_size": 3},
            session=build_session(attempts=10, initial_wait=0.001, max_wait=0.01))
        for index in range(8):
            cid = f"pagerduty:F{index}"
            # Writes answered 5xx are left to the caller; repeated as the outbox does, searching first.
            ref = as_the_outbox(lambda: connector.find(cid) or  # noqa: B023 (called at once)
                                connector.create({"short_description": f"f{index}"}, correlation_id=cid))
            as_the_outbox(lambda: connector.update(ref.id, {"state": "2", "impact": "2"}))  # noqa: B023
            tag = f"[itsm-bridge:{index}]"
            as_the_outbox(lambda: connector.has_note(ref.id, tag)  # noqa: B023
                          or connector.add_note(ref.id, f"note {tag}"))
            assert connector.get(ref.id).fields["state"] == "2"
            clock.advance(1)
        result = connector.poll("2025-03-14 09:00:00", now=clock.now)
    finally:
        sim.stop()
    assert len(sim.records()) == 8  # no duplicate created by a retried POST
    assert all(connector_note_count == 1 for connector_note_count in
               (len(sim.journal(record["sys_id"])) for record in sim.records()))
    assert len(result.changes) == 8 and all(len(change.entries) == 1 for change in result.changes)
    assert faults.injected["5xx"] > 5 and faults.injected["429"] > 2
