"""The store's own troubles are not the events' faults: an event whose transaction the database aborts
(a deadlock between replicas on PostgreSQL) is run again, and never dead-lettered for it."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

import bridge.engine
from bridge import audit
from bridge.audit_verify import verify_store
from bridge.engine import process_inbox
from bridge.ingest import IngestResult, poll_connection, store_changes
from bridge.model import Change
from bridge.outbox import deliver_due
from bridge.status import queue_depths
from bridge.store import DeadLetter, InboxEvent
from tests.conftest import wait_until
from tests.e2e.conftest import World
from tests.test_store_transactions import aborted

pytestmark = pytest.mark.e2e


def test_an_event_whose_transaction_keeps_deadlocking_waits_for_the_next_pass_instead_of_a_dead_letter(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas on PostgreSQL: the database aborts one of two transactions that wait for each other. That
    is no fault of the event: it is tried again (here every try of the pass is aborted) and then waits."""
    runtime = world.runtime()
    try:
        incident = world.pd.trigger("Search", "Index lag", user="alice")
        poll_connection(runtime, "pagerduty")
        tries: list[int] = []

        def deadlocked(*args: Any, **kwargs: Any) -> Any:
            tries.append(1)
            raise aborted("40P01")

        with monkeypatch.context() as patch:
            patch.setattr(bridge.engine, "_process_source_change", deadlocked)
            assert process_inbox(runtime) == 0
        assert len(tries) == 5 and queue_depths(runtime.store)["inbox_pending"] == 1
        assert process_inbox(runtime) == 1  # the next pass, the database willing
        deliver_due(runtime)
        assert len(world.tickets(incident)) == 1
        with Session(runtime.store.engine) as session:
            assert not session.exec(select(DeadLetter)).all()
    finally:
        runtime.store.dispose()


def _event(event_id: str) -> Change:
    return Change(connection="pagerduty", event_id=event_id, event_type="incident.annotated", record_id="P1",
                  occurred_at=datetime(2026, 12, 3, tzinfo=timezone.utc))


def test_two_transactions_storing_the_same_event_do_not_deadlock_on_the_audit_chain(world: World) -> None:
    """A webhook and a poll (or two replicas) store the same event at once. The second insert waits for
    the first transaction; it must not wait holding the audit chain's lock, which the first one needs."""
    runtime = world.runtime()
    try:
        if runtime.store.is_sqlite:
            pytest.skip("SQLite has one writer at a time: no two transactions can wait for each other")
        first = Session(runtime.store.engine)
        runtime.store.insert_ignore(first, InboxEvent, {  # stored, not committed yet
            "connection": "pagerduty", "event_id": "E-shared", "event_type": "incident.annotated",
            "record_key": "pagerduty:P1", "change": "{}", "status": "pending",
            "received_at": runtime.clock(), "observed_at": runtime.clock()})
        outcome: dict[str, IngestResult | BaseException] = {}

        def second() -> None:
            try:
                outcome["second"] = store_changes(runtime, [_event("E-other"), _event("E-shared")])
            except BaseException as exc:  # noqa: BLE001  (reported below)
                outcome["second"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        with Session(runtime.store.engine) as observer:
            wait_until(lambda: observer.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()")).scalar(), message="the second insert to wait for the first")
        audit.append(runtime.store, first, "event.received", "pagerduty:P1", {"event_id": "E-shared"})
        first.commit()
        first.close()
        thread.join(timeout=30)
        assert outcome["second"] == IngestResult(accepted=1, duplicates=1)
        assert verify_store(runtime.store).ok
    finally:
        runtime.store.dispose()
