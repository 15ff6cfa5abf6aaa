"""Compliance fed by the sync: timelines built from both sides, and the daemon's DORA deadline clock
writing work notes on the desk ticket (once each) as a report deadline nears and passes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.daemon import sync_once
from bridge.deadline_clock import KIND, run_deadline_clock
from bridge.store import AuditEntry
from compliance.store import load_timelines
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e

COMPLIANCE = """
[compliance]
deadline_lead_minutes = 60
desk_fields = { major = "u_dora_major" }

[compliance.entity]
name = "Beispiel Zahlungsdienste GmbH"
lei = "5299000J2N45DDNE4Y28"
type = "payment_institution"
member_state = "DE"
currency = "EUR"
"""


def journal(world: World, sys_id: str) -> str:
    return "\n".join(row["value"] for row in world.sn.journal(sys_id))


def test_timeline_follows_both_sides_and_the_clock_warns_the_desk_once(world: World) -> None:
    world.config_path.write_text(world.config_path.read_text().replace("[[routes]]", COMPLIANCE + "\n[[routes]]", 1))
    incident = world.pd.trigger("Payments API", "Card payments failing", user="alice")
    world.pd.acknowledge(incident, user="bob")
    runtime = world.runtime()
    assert sync_once(runtime).ok
    ticket = world.tickets(incident)[0]
    world.sn.desk_update(ticket["sys_id"], {"u_dora_major": "true"}, user="jane.doe")
    assert sync_once(runtime).ok

    (timeline,) = load_timelines(runtime.store)
    assert timeline.id == f"pagerduty:{incident}" and timeline.desk_record == ticket["number"]
    assert timeline.acknowledged_at is not None and timeline.opened_at is not None
    assert timeline.major is True and timeline.classified_major_at is not None
    assert all(ref.startswith("audit#") for refs in timeline.evidence.values() for ref in refs)

    classified = timeline.classified_major_at
    runtime.clock = lambda: classified + timedelta(hours=3, minutes=30)  # 30 min before the 4 h limit
    (soon,) = run_deadline_clock(runtime)
    assert soon.kind == "due_soon" and soon.stage == "initial"
    assert run_deadline_clock(runtime) == []  # never twice
    runtime.clock = lambda: classified + timedelta(hours=4, minutes=1)
    (late,) = run_deadline_clock(runtime)
    assert late.kind == "overdue"
    assert sync_once(runtime).ok  # delivers the work notes
    notes = journal(world, ticket["sys_id"])
    assert "DORA initial notification" in notes and "OVERDUE" in notes
    assert runtime.store.count(AuditEntry, kind=KIND) == 2
    runtime.store.dispose()
