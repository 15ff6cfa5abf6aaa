"""The world of bench/chaos.py: the three simulators with the issue's faults, the replicas' config, secrets
and store (a PostgreSQL database holding someone's itsm-bridge tables is refused unless reset)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from sqlalchemy import inspect
from sqlmodel import SQLModel
from starlette.requests import ClientDisconnect

from bridge.demo_scenario import World
from bridge.demo_sources import SOURCES
from bridge.store import Store
from connectors.jsm.simulator import JsmSimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import ConnectionReset, Faults

#: The issue's fault mix, on every simulator's API paths.
FAULTS: dict[str, float] = {"server_error_rate": 0.20, "rate_limit_rate": 0.05, "retry_after": 1,
                            "reset_rate": 0.05, "slow_rate": 0.05, "slow_seconds": 0.5}
#: The bridge's own pacing is not what is tested here: high enough never to throttle (bridge/config_limits.py).
RATE_LIMIT_PER_MINUTE = 1_000_000

CONFIG = """\
# Written by bench/chaos.py: every replica runs with this file (and its own --port).
[database]
url = "{database_url}"

[server]
host = "127.0.0.1"
port = {port}

[sync]
backoff_seconds = 0.2
max_backoff_seconds = 2.0
http_max_wait_seconds = 1.0

[connections.pagerduty]
type = "pagerduty"
{source_block}rate_limit_per_minute = {rate}

[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/servicenow-user"
password = "file:secrets/servicenow-password"
poll_interval = 1
rate_limit_per_minute = {rate}

[connections.jsm]
type = "jsm"
url = "{jsm_url}"
email = "file:secrets/jsm-email"
api_token = "file:secrets/jsm-api-token"
project = "OPS"
poll_interval = 1
poll_overlap_seconds = 5
rate_limit_per_minute = {rate}

[[routes]]
name = "pagerduty-to-servicenow"
source = "pagerduty"
target = "servicenow"
preset = "pagerduty-servicenow"

[[routes]]
name = "pagerduty-to-jsm"
source = "pagerduty"
target = "jsm"
preset = "pagerduty-jsm"
"""


class StoreNotEmpty(Exception):
    """The database already holds itsm-bridge tables (someone's data, or an earlier run)."""


def prepare_store(url: str, *, reset: bool) -> Store:
    """A store with a fresh schema. A PostgreSQL database holding itsm-bridge tables is refused unless `reset`."""
    store = Store(url)
    if not store.is_sqlite:
        ours = set(SQLModel.metadata.tables) & set(inspect(store.engine).get_table_names())
        if ours and not reset:
            store.dispose()
            raise StoreNotEmpty(f"the database already has itsm-bridge tables ({', '.join(sorted(ours))}); "
                                "give the bench a database of its own, or --reset to drop them")
        if ours:
            store.drop_schema()
    store.create_schema()
    return store


def write_secrets(folder: Path) -> dict[str, str]:
    values = {"source-token": secrets.token_urlsafe(20), "source-webhook-secret": SOURCES["pagerduty"].make_secret(),
              "servicenow-user": "itsm.bridge", "servicenow-password": secrets.token_urlsafe(16),
              "jsm-email": "bridge@example.com", "jsm-api-token": secrets.token_urlsafe(16)}
    (folder / "secrets").mkdir(exist_ok=True)
    for name, value in values.items():
        path = folder / "secrets" / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
    return values


def _not_an_injected_reset(record: logging.LogRecord) -> bool:
    """uvicorn logs a traceback for every connection a simulator drops on purpose (hundreds per run) and
    for every request a replica was killed in the middle of: both are the bench at work, not news."""
    return not (record.exc_info and isinstance(record.exc_info[1], (ConnectionReset, ClientDisconnect)))


def start_world(creds: dict[str, str], seed: int) -> World:
    """The three simulators with the issue's faults; PagerDuty's own request budget out of the way."""
    if _not_an_injected_reset not in logging.getLogger("uvicorn.error").filters:
        logging.getLogger("uvicorn.error").addFilter(_not_an_injected_reset)
    tool = SOURCES["pagerduty"]
    return World(
        source=tool,
        src=tool.start(creds["source-token"], creds["source-webhook-secret"], Faults(**FAULTS, seed=seed),
                       rate_limit=10**9),
        sn=ServiceNowSimulator(users={creds["servicenow-user"]: creds["servicenow-password"]},
                               faults=Faults(**FAULTS, seed=seed + 1)).start(),
        jsm=JsmSimulator(users={creds["jsm-email"]: creds["jsm-api-token"]},
                         faults=Faults(**FAULTS, seed=seed + 2)).start())
