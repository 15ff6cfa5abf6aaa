"""A desk snapshot read before the bridge's own last write, showing another state: always read again.

bench/throughput.py found such re-reads costing desk calls when the snapshot showed only the bridge's own
earlier write, and skipping them looked free. It is not: a desk resolve made just before a bridge write
shows in the same snapshot with the bridge as last writer, the next poll may never read that version
again (same modification count), and the desk's decision was lost (found by the demo with incident.io).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.diff import plan_desk_change
from bridge.model import Ticket, TimelineEntry
from mappings.engine import compile_mapping
from mappings.schema import MappingSpec, load_preset

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def mapping():  # type: ignore[no-untyped-def]
    return compile_mapping("pd-sn", MappingSpec.model_validate(load_preset("pagerduty-servicenow")))


def snapshot(state: str, updated_by: str | None) -> Ticket:
    return Ticket(connection="servicenow", id="sys1", number="INC0010001", url="https://x/INC0010001",
                  fields={"state": state}, updated_at=T0, updated_by=updated_by)


def test_a_stale_snapshot_last_written_by_the_bridge_is_read_again_too(mapping) -> None:  # type: ignore[no-untyped-def]
    # The desk resolved (6), then a bridge write of a note made the bridge the last writer; the poll that
    # read this had started before that write. Only a fresh read can tell the resolve is the desk's.
    plan = plan_desk_change(mapping, ticket=snapshot("6", "itsm.bridge"), entries=(), target_seen={"state": "2"},
                            seen_entries=[], source_status="acknowledged", integration_user="itsm.bridge", stale=True)
    assert [op.op for op in plan.ops] == ["refresh"]


@pytest.mark.parametrize("updated_by", ["jane.doe", None])
def test_a_stale_snapshot_someone_else_wrote_is_read_again(mapping, updated_by) -> None:  # type: ignore[no-untyped-def]
    plan = plan_desk_change(mapping, ticket=snapshot("6", updated_by), entries=(), target_seen={"state": "2"},
                            seen_entries=[], source_status="acknowledged", integration_user="itsm.bridge", stale=True)
    assert [op.op for op in plan.ops] == ["refresh"]


def test_without_a_known_integration_user_every_stale_state_is_read_again(mapping) -> None:  # type: ignore[no-untyped-def]
    plan = plan_desk_change(mapping, ticket=snapshot("1", "itsm.bridge"),
                            entries=(TimelineEntry(id="j1", at=T0, kind="comment", text="hi", author="jane.doe"),),
                            target_seen={"state": "2"}, seen_entries=[], source_status="acknowledged",
                            integration_user=None, stale=True)
    assert [op.op for op in plan.ops] == ["refresh", "note"]


def test_a_stale_snapshot_showing_another_two_way_value_is_read_again() -> None:
    """A desk edit of a field that flows back ([routes.back.fields]) seen in a snapshot read before the
    bridge's own last write: maybe the desk's, maybe the value before that write; only a read can tell."""
    spec = load_preset("pagerduty-servicenow")
    spec["back"] = {**spec.get("back", {}), "fields": {"priority": {"from": "urgency", "map": {"1": "P1", "3": "P5"}}}}
    two_way = compile_mapping("pd-sn-two-way", MappingSpec.model_validate(spec))
    ticket = Ticket(connection="servicenow", id="sys1", number="INC0010001", url="https://x/INC0010001",
                    fields={"state": "2", "urgency": "3"}, updated_at=T0, updated_by="desk.agent")
    plan = plan_desk_change(two_way, ticket=ticket, entries=(), target_seen={"state": "2", "urgency": "1"},
                            seen_entries=[], source_status="acknowledged", integration_user="itsm.bridge", stale=True)
    assert [(op.op, op.payload["reason"]) for op in plan.ops] == [
        ("refresh", "a two-way field read before the bridge's last write")]
    fresh = plan_desk_change(two_way, ticket=ticket, entries=(), target_seen={"state": "2", "urgency": "1"},
                             seen_entries=[], source_status="acknowledged", integration_user="itsm.bridge")
    assert "refresh" not in [op.op for op in fresh.ops]


def test_a_late_desk_decision_brings_only_its_state_and_reads_the_rest_again(mapping) -> None:  # type: ignore[no-untyped-def]
    """A resolve made after the source change the bridge's last write carried counts, although the snapshot
    was read before that write; the snapshot's other values may be from before the write (bench/chaos.py:
    an old priority flowed back to PagerDuty as if an agent had set it)."""
    from bridge.diff import state_news_only

    ticket = Ticket(connection="servicenow", id="sys1", number="INC0010001", url="https://x/INC0010001",
                    fields={"state": "6", "urgency": "3", "short_description": "Index lag"}, updated_at=T0,
                    updated_by="jane.doe")
    seen = {"state": "2", "urgency": "1", "short_description": "Index lag"}
    view, refresh = state_news_only(mapping, ticket, seen)
    assert view.fields == {"state": "6", "urgency": "1", "short_description": "Index lag"}
    assert refresh is not None and (refresh.op, refresh.payload["reason"]) == (
        "refresh", "urgency read before the bridge's last write")
    # Nothing but the state differs: the snapshot is taken as it is, with no read.
    same, none = state_news_only(mapping, ticket, {**seen, "urgency": "3"})
    assert same is ticket and none is None
