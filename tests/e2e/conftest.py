"""End-to-end fixtures: both simulators on loopback, a config pointing at them, a runtime and a daemon.

Everything goes over real HTTP with the real clients (pysnow, requests). Secrets are written to files
and referenced as ``file:`` so the same config also works for a daemon started as a subprocess.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.runtime import Runtime
from connectors.pagerduty.simulator import PagerDutySimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import Faults, free_port
from tests.conftest import database_url, fresh_store

TOKEN, SECRET, USER, PASSWORD = "e2e-pd-token", "e2e-webhook-secret", "itsm.bridge", "e2e-sn-password"


@dataclass
class World:
    pd: PagerDutySimulator
    sn: ServiceNowSimulator
    config_path: Path
    port: int

    def runtime(self) -> Runtime:
        config = load_config(self.config_path)
        runtime = Runtime.build(config)
        runtime.store.create_schema()
        return runtime

    def tickets(self, incident_id: str) -> list[dict]:
        return self.sn.find_by_correlation(f"pagerduty:{incident_id}")


def write_config(tmp_path: Path, pd_url: str, sn_url: str, *, port: int, db_url: str, extra: str = "") -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name, value in (("pd-token", TOKEN), ("pd-secret", SECRET), ("sn-user", USER), ("sn-password", PASSWORD)):
        (secrets / name).write_text(value)
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{db_url}"

[server]
port = {port}

[sync]
backoff_seconds = 0.05
max_backoff_seconds = 0.5
max_attempts = 12
http_max_wait_seconds = 0.5
claim_lease_seconds = 5

[connections.pagerduty]
type = "pagerduty"
api_url = "{pd_url}"
token = "file:secrets/pd-token"
webhook_secret = "file:secrets/pd-secret"
from_email = "bridge@example.com"
poll_interval = 3600
# Tests compress time (sync --once in tight loops, the desk polled every 0.3 s): both connections get
# far more than the real defaults (PagerDuty 960/min, ServiceNow 600/min), which would only slow them.
rate_limit_per_minute = 6000

[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/sn-user"
password = "file:secrets/sn-password"
poll_interval = 0.3
rate_limit_per_minute = 6000

[[routes]]
name = "pagerduty-to-servicenow"
source = "pagerduty"
target = "servicenow"
preset = "pagerduty-servicenow"
{extra}
""")
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = fresh_store(tmp_path)  # clean schema (PostgreSQL in CI), then handed over by URL
    store.dispose()
    pd = PagerDutySimulator(token=TOKEN, webhook_secret=SECRET, faults=Faults(seed=1)).start()
    sn = ServiceNowSimulator(users={USER: PASSWORD}, faults=Faults(seed=2)).start()
    port = free_port()
    path = write_config(tmp_path, pd.url, sn.url, port=port, db_url=database_url(tmp_path))
    try:
        yield World(pd, sn, path, port)
    finally:
        pd.stop()
        sn.stop()


@pytest.fixture
def running(world: World) -> Iterator[tuple[World, Runtime, Daemon]]:
    """The daemon running in-process, PagerDuty webhooks pointed at it."""
    runtime = world.runtime()
    daemon = Daemon(runtime, host="127.0.0.1", port=world.port).start()
    world.pd.set_webhook_url(f"{daemon.url}/webhooks/pagerduty")
    try:
        yield world, runtime, daemon
    finally:
        daemon.stop()
        runtime.store.dispose()


BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def chaos(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/chaos.py as a module (its siblings import each other as top-level modules, as when run)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("chaos")


@dataclass
class QuietChaos:
    """bench/chaos.py's world (the source tool and both desks) with its faults off, and a runtime on it."""

    world: Any
    runtime: Runtime


@pytest.fixture
def quiet_chaos(chaos: ModuleType, tmp_path: Path) -> Iterator[QuietChaos]:
    world = chaos.start_world(chaos.write_secrets(tmp_path), seed=3)
    for simulator in world.simulators():
        simulator.faults.configure(server_error_rate=0, rate_limit_rate=0, reset_rate=0, slow_rate=0)
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    store = chaos.prepare_store(url, reset=False)
    path = tmp_path / "config.toml"
    path.write_text(chaos.CONFIG.format(database_url=url, port=8080, rate=6000, sn_url=world.sn.url,
                                        jsm_url=world.jsm.url,
                                        source_block=world.source.connection.format(url=world.src.url)))
    try:
        yield QuietChaos(world, Runtime.build(load_config(path), store=store))
    finally:
        store.dispose()
        for simulator in world.simulators():
            simulator.stop()
