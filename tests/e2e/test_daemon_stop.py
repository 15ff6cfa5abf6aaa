"""A daemon told to stop (SIGTERM) stops within one event or write, however long its queues: the rest
waits in the store for the next start, as after a crash, and nothing is lost."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.engine import process_inbox
from bridge.ingest import poll_connection
from bridge.outbox import deliver_due
from bridge.status import queue_depths
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e


def stops_after(calls: int) -> Callable[[], bool]:
    """A stop flag that goes up after `calls` items (SIGTERM arriving mid-pass)."""
    asked: list[int] = []

    def stopping() -> bool:
        asked.append(1)
        return len(asked) > calls

    return stopping


def test_a_stopping_worker_leaves_the_rest_of_its_queues_for_the_next_start(world: World) -> None:
    runtime = world.runtime()
    try:
        incidents = [world.pd.trigger("Search", f"Index lag {n}", user="alice") for n in range(5)]
        poll_connection(runtime, "pagerduty")
        assert process_inbox(runtime, stopping=stops_after(2)) == 2
        assert queue_depths(runtime.store)["inbox_pending"] == 3
        process_inbox(runtime)
        assert deliver_due(runtime, stopping=stops_after(1)).delivered == 1
        assert len(world.sn.records()) == 1  # one ticket made, four creates still queued
        deliver_due(runtime)  # the next start: everything left is still there, and goes
        assert all(len(world.tickets(incident)) == 1 for incident in incidents)
    finally:
        runtime.store.dispose()
