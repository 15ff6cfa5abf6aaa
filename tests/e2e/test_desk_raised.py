"""Desk-raised incidents: a priority-1 ticket opened on the desk pages the responders in PagerDuty, once,
and from then on the two are linked like any other pair."""

from __future__ import annotations

import pytest
import requests

from bridge.daemon import sync_once
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e

RAISE = """
[routes.raise]
match = { priority = ["1"] }
service_id = "PSVC005"
service_map = { "Payments" = "PSVC001" }
"""


def test_priority_one_desk_ticket_opens_one_incident_and_stays_linked(world: World) -> None:
    text = world.config_path.read_text().replace(
        'poll_interval = 0.3\n', 'poll_interval = 0.3\npoll_query = "correlation_displaySTARTSWITHitsm-bridge^ORpriority=1"\n', 1)
    world.config_path.write_text(text + RAISE)
    created = requests.post(f"{world.sn.url}/api/now/table/incident", auth=("jane.doe", "sim-desk-password"),
                            headers={"Accept": "application/json", "Content-Type": "application/json"}, timeout=5,
                            json={"short_description": "Card payments declined everywhere", "impact": "1",
                                  "urgency": "1", "assignment_group": "Payments"})
    assert created.status_code == 201
    sys_id = created.json()["result"]["sys_id"]
    low = requests.post(f"{world.sn.url}/api/now/table/incident", auth=("jane.doe", "sim-desk-password"),
                        headers={"Accept": "application/json", "Content-Type": "application/json"}, timeout=5,
                        json={"short_description": "Printer jam", "impact": "3", "urgency": "3"})
    assert low.status_code == 201

    runtime = world.runtime()
    assert sync_once(runtime).ok
    incidents = [i for i in world.pd.incidents() if i.get("incident_key") == f"servicenow:{sys_id}"]
    assert len(incidents) == 1 and len(world.pd.incidents()) == 1  # the printer stays on the desk
    incident = incidents[0]
    assert incident["service"]["id"] == "PSVC001"
    assert "Card payments declined everywhere" in incident["title"]
    ticket = world.sn.record(sys_id)
    assert ticket["correlation_id"] == f"pagerduty:{incident['id']}"
    journal = "\n".join(row["value"] for row in world.sn.journal(sys_id))
    assert "opened from this ticket" in journal and incident["html_url"] in journal

    assert sync_once(runtime).ok
    assert len(world.pd.incidents()) == 1  # read back again: never raised twice
    world.pd.acknowledge(incident["id"], user="alice")
    assert sync_once(runtime).ok
    assert world.sn.record(sys_id)["state"] == "2"
    world.sn.desk_update(sys_id, {"state": "6", "close_code": "Solution provided", "close_notes": "Acquirer fixed"},
                         user="jane.doe")
    assert sync_once(runtime).ok
    assert world.pd.incident(incident["id"])["status"] == "resolved"
    runtime.store.dispose()
