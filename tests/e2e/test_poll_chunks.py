"""A poll that brings many changes stores them a chunk per transaction, so a catch-up poll never holds the
write lock for long (webhooks waited tens of seconds behind one); its cursor moves with the last chunk
only, so a bridge stopped in between reads the rest again, and nothing is lost or stored twice."""

from __future__ import annotations

from typing import Any

import pytest

import bridge.ingest
from bridge.daemon import sync_once
from bridge.ingest import poll_connection
from bridge.status import queue_depths
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e


def test_a_poll_stopped_between_chunks_keeps_its_cursor_and_the_next_poll_brings_the_rest(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = world.runtime()
    try:
        incidents = [world.pd.trigger("Search", f"Index lag {n}", user="alice") for n in range(5)]
        store = bridge.ingest.store_changes
        chunks: list[int] = []

        def stops_at_the_third_chunk(*args: Any, **kwargs: Any) -> bridge.ingest.IngestResult:
            chunks.append(len(args[1]))
            assert kwargs["cursor"] is None or len(chunks) >= 3, "the cursor moved before the last chunk"
            if len(chunks) == 3:
                raise SystemExit("the bridge stops here")
            return store(*args, **kwargs)

        monkeypatch.setattr(bridge.ingest, "store_changes", stops_at_the_third_chunk)
        with pytest.raises(SystemExit):
            poll_connection(runtime, "pagerduty", chunk=2)
        assert chunks == [2, 2, 1]
        assert queue_depths(runtime.store)["inbox_pending"] == 4  # two chunks stored, each committed
        assert runtime.store.get_cursor("poll:pagerduty") is None  # the poll did not finish

        monkeypatch.setattr(bridge.ingest, "store_changes", store)
        again = poll_connection(runtime, "pagerduty", chunk=2)
        assert (again.accepted, again.duplicates) == (1, 4)
        assert runtime.store.get_cursor("poll:pagerduty") is not None
        assert sync_once(runtime).ok
        assert all(len(world.tickets(incident)) == 1 for incident in incidents)
    finally:
        runtime.store.dispose()
