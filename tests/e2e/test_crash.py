"""The daemon as a real process, killed with SIGKILL mid-run and restarted: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_until
from tests.e2e.conftest import World

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start_daemon(world: World, log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(world.config_path)],
                               stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{world.port}/healthz"

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(healthy, timeout=30, message="daemon health")
    return process


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "daemon.log"
    yield path


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(world: World, daemon_log: Path) -> None:
    world.sn.faults.configure(slow_rate=0.3, slow_seconds=0.2)
    process = start_daemon(world, daemon_log)
    world.pd.set_webhook_url(f"http://127.0.0.1:{world.port}/webhooks/pagerduty")
    incidents = [world.pd.trigger(service, f"Crash test {n}", user="alice")
                 for n, service in enumerate(["Payments API", "Search", "Identity"] * 4)]
    for number, incident in enumerate(incidents):
        world.pd.acknowledge(incident, user="bob")
        world.pd.add_note(incident, f"crash note {number} end", user="bob")
    wait_until(lambda: len(world.sn.records()) >= 3, message="some tickets before the kill")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    for incident in incidents[:6]:  # responders keep working while the bridge is down
        world.pd.resolve(incident, user="carol")
    process = start_daemon(world, daemon_log)
    try:
        assert world.pd.wait_idle(60), "PagerDuty could not deliver its webhooks after the restart"

        def converged() -> bool:
            for number, incident in enumerate(incidents):
                tickets = world.tickets(incident)
                if len(tickets) != 1:
                    return False
                expected = "6" if number < 6 else "2"
                journal = "\n".join(row["value"] for row in world.sn.journal(tickets[0]["sys_id"]))
                if tickets[0]["state"] != expected or f"crash note {number} end" not in journal:
                    return False
            return True

        wait_until(converged, timeout=60, message="convergence after SIGKILL and restart")
        assert len(world.sn.records()) == len(incidents)
        for number, incident in enumerate(incidents):
            journal = [row["value"] for row in world.sn.journal(world.tickets(incident)[0]["sys_id"])]
            assert sum(f"crash note {number} end" in entry for entry in journal) == 1, journal
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, daemon_log.read_text()[-3000:]
