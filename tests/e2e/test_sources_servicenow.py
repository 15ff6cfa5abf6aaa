"""Every responder tool besides PagerDuty through the same engine: its own signed (or token-checked)
webhook in, the ticket on ServiceNow, and a desk resolve back in the tool."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.daemon import Daemon, sync_once
from bridge.runtime import Runtime
from connectors.grafana_oncall.simulator import GrafanaOncallSimulator
from connectors.incidentio.simulator import IncidentioSimulator
from connectors.opsgenie.simulator import OpsgenieSimulator
from connectors.rootly.simulator import RootlySimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import free_port
from connectors.squadcast.simulator import SquadcastSimulator
from tests.conftest import database_url, fresh_store, wait_until

pytestmark = pytest.mark.e2e
INCIDENTIO_SECRET = "whsec_aW5jaWRlbnQuaW8tdGVzdC1zZWNyZXQ="


@dataclass(frozen=True)
class Source:
    slug: str
    simulator: Callable[[str], Any]  # webhook secret -> a started simulator accepting token "src-token"
    token_key: str                   # the connection option holding the API credential
    secret: str
    priority: str                    # the tool's name for its most urgent level
    closed: Callable[[dict], bool]   # whether the tool shows the incident resolved/closed


SOURCES = [
    Source("rootly", lambda secret: RootlySimulator(api_token="src-token", webhook_secret=secret).start(),
           "api_token", "src-hook", "SEV1", lambda i: i["attributes"]["status"] in ("resolved", "closed")),
    Source("opsgenie", lambda secret: OpsgenieSimulator(api_key="src-token", webhook_secret=secret).start(),
           "api_key", "src-hook", "P1", lambda i: i["status"] == "closed"),
    Source("incidentio", lambda secret: IncidentioSimulator(api_key="src-token", webhook_secret=secret).start(),
           "api_key", INCIDENTIO_SECRET, "Major", lambda i: i["incident_status"]["category"] == "closed"),
    Source("grafana_oncall", lambda secret: GrafanaOncallSimulator(api_token="src-token", webhook_secret=secret).start(),
           "api_token", "src-hook", "critical", lambda i: i["state"] == "resolved"),
    Source("squadcast", lambda secret: SquadcastSimulator(refresh_token="src-token", webhook_secret=secret).start(),
           "refresh_token", "src-hook", "P1", lambda i: i["status"] == "resolved"),
]


def write_config(tmp_path: Path, source: Source, tool_url: str, sn_url: str, port: int) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("src-token", "src-token"), ("src-hook", source.secret), ("sn-user", "itsm.bridge"),
                        ("sn-pw", "sn-pw")):
        (secrets / name).write_text(value)
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url(tmp_path)}"
[server]
port = {port}
[sync]
backoff_seconds = 0.05
max_backoff_seconds = 0.5
[connections.{source.slug}]
type = "{source.slug}"
api_url = "{tool_url}"
{source.token_key} = "file:secrets/src-token"
webhook_secret = "file:secrets/src-hook"
poll_interval = 3600
[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/sn-user"
password = "file:secrets/sn-pw"
poll_interval = 0.3
[[routes]]
name = "{source.slug}-to-servicenow"
source = "{source.slug}"
target = "servicenow"
preset = "{source.slug}-servicenow"
""")
    return path


@pytest.mark.parametrize("source", SOURCES, ids=[source.slug for source in SOURCES])
def test_incident_reaches_servicenow_and_a_desk_resolve_comes_back(tmp_path: Path, source: Source) -> None:
    fresh_store(tmp_path).dispose()
    tool = source.simulator(source.secret)
    sn = ServiceNowSimulator(users={"itsm.bridge": "sn-pw"}).start()
    port = free_port()
    runtime = Runtime.build(load_config(write_config(tmp_path, source, tool.url, sn.url, port)))
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=port).start()
    tool.set_webhook_url(f"{daemon.url}/webhooks/{source.slug}")
    try:
        incident = tool.trigger("Payments API", "Card declines", user="alice", priority=source.priority)
        correlation = f"{source.slug}:{incident}"
        tool.acknowledge(incident, user="alice")
        assert tool.wait_idle(10)
        wait_until(lambda: [r for r in sn.find_by_correlation(correlation) if r["state"] == "2"],
                   message="ticket in progress")
        (ticket,) = sn.find_by_correlation(correlation)
        assert ticket["urgency"] == "1" and "Card declines" in ticket["short_description"]
        sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Solution provided", "close_notes": "done"},
                       user="jane.doe")
        wait_until(lambda: source.closed(tool.incident(incident)), message=f"{source.slug} closed from the desk")
        daemon.stop()
        assert sync_once(runtime).ok  # one more full cycle: nothing echoes, nothing doubles
        assert len(sn.find_by_correlation(correlation)) == 1
        assert sn.find_by_correlation(correlation)[0]["state"] == "6"
    finally:
        daemon.stop()
        tool.stop()
        sn.stop()
        runtime.store.dispose()


def test_opsgenie_the_ticket_follows_priority_and_owner_changes_without_waiting_for_a_poll(tmp_path: Path) -> None:
    fresh_store(tmp_path).dispose()
    opsgenie = next(source for source in SOURCES if source.slug == "opsgenie")
    og = opsgenie.simulator(opsgenie.secret)
    sn = ServiceNowSimulator(users={"itsm.bridge": "sn-pw"}).start()
    port = free_port()
    runtime = Runtime.build(load_config(write_config(tmp_path, opsgenie, og.url, sn.url, port)))  # polls hourly
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=port).start()
    og.set_webhook_url(f"{daemon.url}/webhooks/opsgenie")
    try:
        alert = og.trigger("Payments API", "Card declines", user="alice", priority="P3")
        og.acknowledge(alert, user="alice")
        correlation = f"opsgenie:{alert}"
        wait_until(lambda: [r for r in sn.find_by_correlation(correlation) if r["state"] == "2"],
                   message="ticket in progress")
        (ticket,) = sn.find_by_correlation(correlation)
        assert (ticket["urgency"], ticket["impact"]) == ("2", "2")
        og.set_priority(alert, "P1", user="alice")
        wait_until(lambda: sn.record(ticket["sys_id"])["urgency"] == "1", message="urgency follows P1")
        assert (sn.record(ticket["sys_id"])["impact"], sn.record(ticket["sys_id"])["state"]) == ("1", "2")
        og.set_priority(alert, "P5", user="bob")
        og.take_ownership(alert, user="bob")
        wait_until(lambda: sn.record(ticket["sys_id"])["urgency"] == "3", message="urgency follows P5")
        notes = lambda: "\n".join(row["value"] for row in sn.journal(ticket["sys_id"]))  # noqa: E731
        wait_until(lambda: "Ownership taken by bob@example.com" in notes(), message="the owner change noted")
        assert "[Opsgenie] Priority changed from P3 to P1 by alice@example.com in Opsgenie" in notes()
        assert "Priority changed from P1 to P5 by bob@example.com" in notes()
        assert len(sn.find_by_correlation(correlation)) == 1
    finally:
        daemon.stop()
        og.stop()
        sn.stop()
        runtime.store.dispose()
