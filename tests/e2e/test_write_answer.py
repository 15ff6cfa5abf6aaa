"""ServiceNow answers each write with the whole record: the bridge keeps that answer as a read made at the
moment of its write, so a poll snapshot older than the write (an echo of the bridge's own work) is settled without reading
the ticket again; where no answer was kept, the ticket is read as before."""

from __future__ import annotations

import json
from datetime import timedelta
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from bridge.daemon import sync_once, work_until_idle
from bridge.ingest import poll_connection, store_changes
from bridge.model import Change, parse_time
from bridge.runtime import Runtime
from bridge.store import AuditEntry, DeadLetter, Link, OutboxOp
from tests.e2e.conftest import World
from tests.e2e.test_two_way import SN_TWO_WAY

pytestmark = pytest.mark.e2e
TICKET_READ = "GET /api/now/table/incident/{sys_id}"


@pytest.fixture
def runtime(world: World) -> Iterator[Runtime]:
    runtime = world.runtime()
    yield runtime
    runtime.store.dispose()


def ticket_for(world: World, runtime: Runtime, service: str, title: str, user: str) -> tuple[str, str]:
    """A PagerDuty incident and the sys_id of the ticket the bridge opened for it."""
    incident = world.pd.trigger(service, title, urgency="high", user=user)
    assert sync_once(runtime).ok
    (ticket,) = world.tickets(incident)
    return incident, ticket["sys_id"]


def then_the_bridge_writes(runtime: Runtime) -> None:
    """The bridge takes the responder's change from PagerDuty and writes it to the ticket."""
    poll_connection(runtime, "pagerduty")
    work_until_idle(runtime)


def stale_poll(world: World, runtime, sys_id: str):  # type: ignore[no-untyped-def]
    """A poll's snapshot of the ticket, read now; stored later, after the bridge has written the ticket."""
    observed = runtime.clock()
    ticket = runtime.connectors["servicenow"].get(sys_id)
    return Change(connection="servicenow", event_id=f"poll:{sys_id}:{ticket.updated_at.isoformat()}",
                  event_type="ticket.updated", record_id=sys_id, occurred_at=ticket.updated_at, ticket=ticket,
                  via="poll"), observed


def test_a_poll_older_than_the_bridges_own_state_write_is_settled_without_reading_the_ticket(
        world: World, runtime: Runtime) -> None:
    """The echo a backlog makes: a poll read the ticket before the bridge's acknowledge landed."""
    incident, sys_id = ticket_for(world, runtime, "Payments API", "Error rate above 5%", "alice")
    change, observed = stale_poll(world, runtime, sys_id)  # New, as the bridge created it
    world.pd.acknowledge(incident, user="alice")
    then_the_bridge_writes(runtime)
    assert world.sn.record(sys_id)["state"] == "2"
    with Session(runtime.store.engine) as session:
        link = session.exec(select(Link).where(Link.target_id == sys_id)).one()
        assert json.loads(link.target_answer or "{}")["ticket"]["fields"]["state"] == "2"  # the PATCH's answer

    world.sn.calls.reset()
    store_changes(runtime, [change], observed_at=observed)
    work_until_idle(runtime)

    assert world.sn.calls.total() == 0  # neither a read nor a write: the write's answer settled it
    assert world.pd.incident(incident)["status"] == "acknowledged"
    with Session(runtime.store.engine) as session:
        assert [op.status for op in session.exec(select(OutboxOp).where(OutboxOp.op == "refresh"))] == ["done"]
        delivered = [json.loads(data) for data in session.exec(select(AuditEntry.data)
                                                                .where(AuditEntry.kind == "op.delivered"))]
    # The audit trail tells it as it was: the refresh made no call, so it has no HTTP status.
    assert [entry["http_status"] for entry in delivered if entry["op"] == "refresh"] == [None]


def test_after_a_write_the_desk_did_not_answer_with_the_record_a_refresh_still_reads_it(
        world: World, runtime: Runtime) -> None:
    incident, sys_id = ticket_for(world, runtime, "Search", "Latency p99 over SLO", "bob")
    world.sn.desk_update(sys_id, {"state": "2"}, user="desk.agent")  # In Progress at the desk
    change, observed = stale_poll(world, runtime, sys_id)
    world.pd.add_note(incident, "Scaled out the search tier", user="bob")
    then_the_bridge_writes(runtime)
    with runtime.store.transaction() as session:  # as after a write answered with nothing usable
        link = session.exec(select(Link).where(Link.target_id == sys_id)).one()
        link.target_answer = None
        session.add(link)

    world.sn.calls.reset()
    store_changes(runtime, [change], observed_at=observed)
    work_until_idle(runtime)

    assert world.sn.calls.snapshot().get(TICKET_READ, 0) == 1
    assert world.pd.incident(incident)["status"] == "acknowledged"



def test_a_poll_read_after_the_answer_but_before_the_write_was_recorded_still_reads_the_ticket(
        world: World) -> None:
    """Between the desk's answer and the bridge recording its write (a wait for the store's write lock),
    an agent may change a two-way field and a poll may read it: the answer does not hold that change,
    so the ticket is read, and the change reaches the source."""
    world.config_path.write_text(world.config_path.read_text() + SN_TWO_WAY)
    runtime = world.runtime()
    try:
        incident = world.pd.trigger("Identity", "Login latency", urgency="high", user="carol", priority="P3")
        assert sync_once(runtime).ok
        (ticket,) = world.tickets(incident)
        sys_id = ticket["sys_id"]
        world.pd.acknowledge(incident, user="carol")
        then_the_bridge_writes(runtime)
        with runtime.store.transaction() as session:  # the write was recorded two seconds after its answer
            link = session.exec(select(Link).where(Link.target_id == sys_id)).one()
            answer = json.loads(link.target_answer or "{}")
            answered = parse_time(answer["at"]) - timedelta(seconds=2)  # type: ignore[operator]
            link.target_answer = json.dumps({**answer, "at": answered.isoformat()})
            session.add(link)
        world.sn.desk_update(sys_id, {"urgency": "3"}, user="desk.agent")  # meanwhile, at the desk
        change, _ = stale_poll(world, runtime, sys_id)

        store_changes(runtime, [change], observed_at=answered + timedelta(seconds=1))  # read in between
        work_until_idle(runtime)

        assert world.pd.incident(incident)["priority"]["name"] == "P5"  # the desk's urgency was not lost
    finally:
        runtime.store.dispose()


def test_an_unreadable_kept_answer_is_never_a_dead_letter_the_ticket_is_read_instead(
        world: World, runtime: Runtime) -> None:
    incident, sys_id = ticket_for(world, runtime, "Payments API", "Refund failures", "dave")
    change, observed = stale_poll(world, runtime, sys_id)
    world.pd.acknowledge(incident, user="dave")
    then_the_bridge_writes(runtime)
    with runtime.store.transaction() as session:  # e.g. written in another shape by another version
        link = session.exec(select(Link).where(Link.target_id == sys_id)).one()
        link.target_answer = json.dumps({"fields": {"state": "2"}})
        session.add(link)

    world.sn.calls.reset()
    store_changes(runtime, [change], observed_at=observed)
    work_until_idle(runtime)

    assert world.sn.calls.snapshot().get(TICKET_READ, 0) == 1
    with Session(runtime.store.engine) as session:
        assert session.exec(select(DeadLetter)).all() == []
