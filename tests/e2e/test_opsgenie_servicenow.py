"""Opsgenie as the responders' tool: token-checked webhooks in, the ticket, and a desk resolve back."""

from __future__ import annotations

import pytest

from bridge.config import load_config
from bridge.daemon import Daemon, sync_once
from bridge.runtime import Runtime
from connectors.opsgenie.simulator import OpsgenieSimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import free_port
from tests.conftest import database_url, fresh_store, wait_until

pytestmark = pytest.mark.e2e


def test_opsgenie_alert_reaches_servicenow_and_a_desk_resolve_comes_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fresh_store(tmp_path).dispose()
    rootly = OpsgenieSimulator(api_key="rt-token", webhook_secret="rt-hook").start()
    sn = ServiceNowSimulator(users={"itsm.bridge": "sn-pw"}).start()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("rt-token", "rt-token"), ("rt-hook", "rt-hook"), ("sn-user", "itsm.bridge"), ("sn-pw", "sn-pw")):
        (secrets / name).write_text(value)
    port = free_port()
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url(tmp_path)}"
[server]
port = {port}
[sync]
backoff_seconds = 0.05
max_backoff_seconds = 0.5
[connections.opsgenie]
type = "opsgenie"
api_url = "{rootly.url}"
api_key = "file:secrets/rt-token"
webhook_secret = "file:secrets/rt-hook"
poll_interval = 3600
[connections.servicenow]
type = "servicenow"
instance_url = "{sn.url}"
username = "file:secrets/sn-user"
password = "file:secrets/sn-pw"
poll_interval = 0.3
[[routes]]
name = "opsgenie-to-servicenow"
source = "opsgenie"
target = "servicenow"
preset = "opsgenie-servicenow"
""")
    runtime = Runtime.build(load_config(path))
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=port).start()
    rootly.set_webhook_url(f"{daemon.url}/webhooks/opsgenie")
    try:
        incident = rootly.trigger("Payments API", "Card declines", user="alice", priority="P1")
        rootly.acknowledge(incident, user="alice")
        assert rootly.wait_idle(10)
        wait_until(lambda: [r for r in sn.find_by_correlation(f"opsgenie:{incident}") if r["state"] == "2"],
                   message="ticket in progress")
        (ticket,) = sn.find_by_correlation(f"opsgenie:{incident}")
        assert ticket["urgency"] == "1" and "Card declines" in ticket["short_description"]
        sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Solution provided", "close_notes": "done"},
                       user="jane.doe")
        wait_until(lambda: rootly.incident(incident)["status"] == "closed",
                   message="Opsgenie closed from the desk")
        daemon.stop()
        assert sync_once(runtime).ok  # one more full cycle: nothing echoes, nothing doubles
        assert len(sn.find_by_correlation(f"opsgenie:{incident}")) == 1
        assert sn.find_by_correlation(f"opsgenie:{incident}")[0]["state"] == "6"
    finally:
        daemon.stop()
        rootly.stop()
        sn.stop()
        runtime.store.dispose()
