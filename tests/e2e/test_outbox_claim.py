"""Two replicas must never perform the same outbox op at once (found by bench/chaos.py on PostgreSQL).

`deliver_one` claims an op with ``FOR UPDATE SKIP LOCKED`` but commits the claim (attempts + 1) before the
call, and nothing marks the op as in flight: it is still ``pending`` and due. A second replica whose
`deliver_due` read it as pending claims it again while the first is still calling the desk, and performs
it too (fixed: a claim on PostgreSQL only takes a due op and moves it out of sight for
`[sync] claim_lease_seconds`). The chaos bench saw both outcomes: a note written twice, and a JSM transition that the second
replica found already done (HTTP 400, dead-lettered), which also overwrote the first replica's ``done``
with ``dead`` and held back every later write of that incident.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlmodel import Session, select

from bridge.daemon import sync_once
from bridge.outbox import deliver_one
from bridge.queue import queue_op
from bridge.runtime import Runtime
from bridge.store import Link, OutboxOp
from tests.conftest import DATABASE_URL
from tests.e2e.conftest import World

# Replicas share a store only on PostgreSQL (SQLite is one process: one worker, nothing to race).
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not DATABASE_URL, reason="replicas need PostgreSQL: set "
                                                                      "ITSM_BRIDGE_TEST_DATABASE_URL")]


@pytest.fixture
def replicas(world: World) -> Iterator[tuple[Runtime, Runtime]]:
    """Two runtimes on one store, as two `itsm-bridge run` processes would have."""
    first, second = world.runtime(), world.runtime()
    yield first, second
    first.store.dispose()
    second.store.dispose()


def queue_note(runtime: Runtime, text: str) -> int:
    with runtime.store.transaction() as session:
        link = session.exec(select(Link)).one()
        queue_op(runtime, session, key=f"test-note:{text}", route=link.route, link=link,
                 connection="servicenow", side="target", op="note", payload={"text": text})
    with Session(runtime.store.engine) as session:
        return session.exec(select(OutboxOp.id).where(OutboxOp.idempotency_key == f"test-note:{text}")).one()


def held_in_call(runtime: Runtime, entered: threading.Event, release: threading.Event) -> None:
    """Make the first replica's next desk note wait mid-call, as a slow desk answer would."""
    connector = runtime.connectors["servicenow"]
    original: Callable[[str, str], None] = connector.add_note

    def add_note(record_id: str, text: str) -> None:
        entered.set()
        release.wait(30)
        original(record_id, text)

    connector.add_note = add_note  # type: ignore[method-assign]


def test_an_op_in_flight_on_one_replica_is_not_performed_by_another(
        world: World, replicas: tuple[Runtime, Runtime]) -> None:
    first, second = replicas
    incident = world.pd.trigger("Payments API", "Claim race", user="alice")
    assert sync_once(first).ok  # the ticket exists and the link is made
    ticket = world.tickets(incident)[0]
    op_id = queue_note(first, "Rolled back the deploy")
    entered, release = threading.Event(), threading.Event()
    held_in_call(first, entered, release)
    outcomes: list[str] = []
    worker = threading.Thread(target=lambda: outcomes.append(deliver_one(first, op_id)))
    worker.start()
    try:
        assert entered.wait(30), "the first replica never reached the desk call"
        second_outcome = deliver_one(second, op_id)  # the second replica's worker reaches the same op
    finally:
        release.set()
        worker.join(30)
    journal = [row["value"] for row in world.sn.journal(ticket["sys_id"])]
    assert outcomes == ["delivered"]
    assert sum("Rolled back the deploy" in entry for entry in journal) == 1, journal
    assert second_outcome == "skipped"
