"""`itsm-bridge demo`: the whole product on loopback, in well under a minute.

Starts the simulators of the responders' tool (PagerDuty unless `source` names another, see
bridge/demo_sources.py), ServiceNow and Jira Service Management (with injected faults), a fresh
SQLite store and the daemon; plays responders and agents on both desks through a realistic scenario
(bridge/demo_scenario.py); waits until all three agree; checks them record by record, verifies the audit
chain, runs the compliance check and writes a signed evidence bundle. What it prints is measured.
"""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge import audit
from bridge.audit_verify import verify_store
from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.demo_sources import SOURCES, DemoSource
from bridge.demo_scenario import (
    Scenario,
    World,
    convergence_problems,
    desk_counts,
    missing_tickets,
    play_desks_and_resolutions,
    play_responders,
)
from bridge.runtime import Runtime
from bridge.status import queue_depths
from compliance.checker import summarize
from compliance.evidence import export_bundle, verify_bundle
from compliance.service import check_store
from compliance.settings import load_signing_key
from connectors.base import MARKER_PREFIX
from connectors.jsm.simulator import JsmSimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import Faults, free_port

CONFIG_TEMPLATE = """\
# Written by `itsm-bridge demo`: the config the demo daemon ran with, pointing at its simulators.
[database]
url = "sqlite:///{db}"

[server]
host = "127.0.0.1"
port = {port}

[sync]
backoff_seconds = 0.2
max_backoff_seconds = 2.0
http_max_wait_seconds = 1.0

[connections.{slug}]
type = "{slug}"
{source_block}
[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/servicenow-user"
password = "file:secrets/servicenow-password"
poll_interval = 1
# The demo compresses a day into seconds (desks polled every second, on loopback): it needs far more
# than a real desk's default pace (600/min); 429s from the simulators still rest the connection.
rate_limit_per_minute = 6000

[connections.jsm]
type = "jsm"
url = "{jsm_url}"
email = "file:secrets/jsm-email"
api_token = "file:secrets/jsm-api-token"
project = "OPS"
poll_interval = 1
poll_overlap_seconds = 5
rate_limit_per_minute = 6000

[[routes]]
name = "{slug}-to-servicenow"
source = "{slug}"
target = "servicenow"
preset = "{slug}-servicenow"

[[routes]]
name = "{slug}-to-jsm"
source = "{slug}"
target = "jsm"
preset = "{slug}-jsm"

[compliance]
packs = ["itil", "dora", "audit"]
signing_key = "file:secrets/evidence-signing-key.pem"
desk_fields = {{ major = "u_dora_major" }}

[compliance.entity]
name = "Demo Payments GmbH"
lei = "5299000J2N45DDNE4Y28"
type = "payment_institution"
member_state = "DE"
currency = "EUR"

[compliance.sla.1]
response_minutes = 15
resolution_minutes = 240

[compliance.sla.2]
response_minutes = 30
resolution_minutes = 480
"""


@dataclass
class DemoResult:
    summary: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.summary["converged"]) and self.summary["duplicates"] == 0 and \
            bool(self.summary["audit_verified"]) and bool(self.summary.get("bundle_verified"))


def run_demo(*, incidents: int = 24, workdir: Path | None = None, seed: int = 7, timeout: float = 90.0,
             source: str = "pagerduty", progress: Callable[[str], None] = lambda _msg: None) -> DemoResult:
    started = time.monotonic()
    tool = SOURCES[source]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="itsm-bridge-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    creds = _write_secrets(workdir, tool)
    world = World(
        source=tool,
        src=tool.start(creds["source-token"], creds["source-webhook-secret"],
                       Faults(server_error_rate=0.05, rate_limit_rate=0.01, seed=seed)),
        sn=ServiceNowSimulator(users={creds["servicenow-user"]: creds["servicenow-password"]},
                               faults=Faults(server_error_rate=0.08, rate_limit_rate=0.02, seed=seed + 1)).start(),
        jsm=JsmSimulator(users={creds["jsm-email"]: creds["jsm-api-token"]},
                         faults=Faults(server_error_rate=0.03, rate_limit_rate=0.01, seed=seed + 2)).start())
    config_path = workdir / "config.toml"
    source_block = tool.connection_block(world.src, workdir / "secrets", incidents)
    config_path.write_text(CONFIG_TEMPLATE.format(db=(workdir / "itsm-bridge.db").as_posix(), port=free_port(),
                                                  slug=tool.slug, source_block=source_block, sn_url=world.sn.url,
                                                  jsm_url=world.jsm.url), encoding="utf-8")
    config = load_config(config_path)
    runtime = Runtime.build(config)
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=config.server.port).start()
    world.src.set_webhook_url(f"{daemon.url}/webhooks/{tool.slug}")
    progress(f"simulators: {tool.label} {world.src.url}, ServiceNow {world.sn.url}, JSM {world.jsm.url}; "
             f"daemon {daemon.url}; store {workdir}")
    scenario = Scenario()
    try:
        rng = random.Random(seed)
        play_responders(world, scenario, rng, incidents)
        progress(f"triggered {incidents} incidents; waiting for tickets on both desks")
        _wait(lambda: missing_tickets(world, scenario), timeout=timeout / 2, daemon=daemon)
        # Agents open a ticket once it is there and act on it seconds later, not in the millisecond the
        # bridge is still writing the responders' updates to it: they wait for the bridge to settle.
        # (A desk change landing between the bridge's read of a ticket and its write can be overwritten:
        # Jira and ServiceNow have no conditional write. See the README's "Two-way sync" notes.)
        _wait(lambda: _busy(runtime), timeout=timeout / 4, daemon=daemon)
        play_desks_and_resolutions(world, scenario, rng)
        progress("desk agents and responders acted; waiting for all three systems to agree")
        problems = _wait(lambda: convergence_problems(world, runtime, scenario),
                         timeout=max(5.0, timeout - (time.monotonic() - started)), daemon=daemon)
    finally:
        daemon.stop()
        for simulator in world.simulators():
            simulator.stop()
    summary = _summary(runtime, world, scenario, creds, problems, workdir, config_path)
    progress("checking compliance and writing the evidence bundle")
    summary.update(_compliance(runtime, config, workdir))
    summary["seconds"] = round(time.monotonic() - started, 1)
    runtime.store.dispose()
    return DemoResult(summary, problems)


def _compliance(runtime: Runtime, config: Any, workdir: Path) -> dict[str, Any]:
    """Check the demo's incidents against the rule packs and export a signed, verified evidence bundle."""
    now = runtime.clock()
    timelines, findings, context = check_store(runtime.store, runtime.compliance, now=now)
    verification = context.audit_verification
    out = workdir / "evidence"
    export_bundle(out, timelines=timelines, findings=findings, audit_entries=audit.iter_entries(runtime.store),
                  period=(None, None), settings=runtime.compliance,
                  signing_key=load_signing_key(runtime.compliance, base_dir=config.base_dir), now=now,
                  chain_head={"seq": verification.head_seq, "hash": verification.head_hash} if verification else None)
    counts = summarize(findings)
    return {"compliance_findings": {"fail": counts["fail"], "warn": counts["warn"], "pass": counts["pass"]},
            "compliance_timelines": len(timelines), "evidence_bundle": str(out),
            "bundle_verified": verify_bundle(out).ok}


def _write_secrets(workdir: Path, tool: DemoSource) -> dict[str, str]:
    folder = workdir / "secrets"
    folder.mkdir(exist_ok=True)
    values = {"source-token": secrets.token_urlsafe(20), "source-webhook-secret": tool.make_secret(),
              "servicenow-user": "itsm.bridge", "servicenow-password": secrets.token_urlsafe(16),
              "jsm-email": "bridge@example.com", "jsm-api-token": secrets.token_urlsafe(16)}
    for name, value in values.items():
        path = folder / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
    key = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    (folder / "evidence-signing-key.pem").write_bytes(key)
    (folder / "evidence-signing-key.pem").chmod(0o600)
    return values


def _busy(runtime: Runtime) -> list[str]:
    depths = queue_depths(runtime.store)
    return [f"{depths['inbox_pending']} in inbox, {depths['outbox_pending']} in outbox"] \
        if depths["inbox_pending"] or depths["outbox_pending"] else []


def _wait(check: Callable[[], list[str]], *, timeout: float, daemon: Daemon) -> list[str]:
    """Re-check `check` until it reports no problems or time runs out; returns the last problems."""
    deadline = time.monotonic() + timeout
    problems = check()
    while problems and time.monotonic() < deadline:
        daemon.wake()
        time.sleep(0.25)
        problems = check()
    return problems


def _summary(runtime: Runtime, world: World, scenario: Scenario, creds: dict[str, str], problems: list[str],
             workdir: Path, config_path: Path) -> dict[str, Any]:
    metrics = runtime.metrics
    desks = desk_counts(world, scenario)
    delivered = metrics.by_label(metrics.ops_delivered, "op")
    work_notes = sum(1 for record in world.sn.records() for row in world.sn.journal(record["sys_id"])
                     if row["sys_created_by"] == creds["servicenow-user"])
    jsm_notes = sum(1 for issue in world.jsm.issues() for comment in world.jsm.comments(issue["key"])
                    if MARKER_PREFIX in comment["body"])
    source_notes = sum(1 for incident in scenario.incidents for note in world.source.notes(world.src, incident)
                       if MARKER_PREFIX in note)
    desks["servicenow"]["notes_written"], desks["jsm"]["notes_written"] = work_notes, jsm_notes
    verification = verify_store(runtime.store)
    return {
        "source": world.source.slug,
        "incidents": len(scenario.incidents),
        "tickets": sum(desk["tickets"] for desk in desks.values()),
        "updates": int(delivered.get("update", 0)),
        "notes": work_notes + jsm_notes + source_notes,
        "source_notes_written": source_notes,
        "resolved_from_desk": len(scenario.resolved_on),
        "desk_comments": sum(len(texts) for texts in scenario.desk_comments.values()),
        "retries": int(metrics.total(metrics.http_retries)) + int(metrics.total(metrics.ops_failed)),
        "faults_injected": sum(sum(sim.faults.injected.values()) for sim in world.simulators()),
        "dead_letters": queue_depths(runtime.store)["dead_letters"],
        "duplicates": sum(desk["duplicates"] for desk in desks.values()),
        "desks": desks,
        "audit_entries": verification.entries,
        "audit_verified": verification.ok,
        "audit_head": verification.head_hash,
        "converged": not problems,
        "problems": problems[:20],
        "workdir": str(workdir),
        "config": str(config_path),
    }
