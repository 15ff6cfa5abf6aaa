"""`itsm-bridge demo`: the whole product on loopback, in well under a minute.

Starts the PagerDuty and ServiceNow simulators (with injected faults), a fresh SQLite store and the
daemon; plays responders and desk agents through a realistic scenario; waits until both sides agree;
then checks them record by record and verifies the audit chain. What it prints is measured, not assumed.
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
from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.runtime import Runtime
from bridge.status import queue_depths
from compliance.checker import summarize
from compliance.evidence import export_bundle, verify_bundle
from compliance.service import check_store
from compliance.settings import load_signing_key
from connectors.base import MARKER_PREFIX
from connectors.pagerduty.simulator import PagerDutySimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import Faults, free_port

SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
TITLES = ("Error rate above 5% on {s}", "Latency p99 over SLO on {s}", "{s} health check failing",
          "Disk filling on {s} primary", "Elevated 5xx from {s} upstream", "Queue backlog growing in {s}")
RESPONDERS = ("alice", "bob", "carol", "dave")
PD_STATE = {"triggered": {"1"}, "acknowledged": {"2"}, "resolved": {"6", "7"}}

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

[connections.pagerduty]
type = "pagerduty"
api_url = "{pd_url}"
token = "file:secrets/pagerduty-token"
webhook_secret = "file:secrets/pagerduty-webhook-secret"
from_email = "bridge@example.com"
poll_interval = 30

[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/servicenow-user"
password = "file:secrets/servicenow-password"
poll_interval = 1

[[routes]]
name = "pagerduty-to-servicenow"
source = "pagerduty"
target = "servicenow"
preset = "pagerduty-servicenow"

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


@dataclass
class Plan:
    """What the scenario did, so convergence can be checked against intent."""

    incidents: list[str] = field(default_factory=list)
    desk_resolved: set[str] = field(default_factory=set)
    desk_comments: dict[str, str] = field(default_factory=dict)
    responder_notes: dict[str, list[str]] = field(default_factory=dict)


def run_demo(*, incidents: int = 24, workdir: Path | None = None, seed: int = 7, timeout: float = 45.0,
             progress: Callable[[str], None] = lambda _msg: None) -> DemoResult:
    started = time.monotonic()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="itsm-bridge-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    creds = _write_secrets(workdir)
    pd = PagerDutySimulator(token=creds["pagerduty-token"], webhook_secret=creds["pagerduty-webhook-secret"],
                            faults=Faults(server_error_rate=0.05, rate_limit_rate=0.03, seed=seed)).start()
    sn = ServiceNowSimulator(users={creds["servicenow-user"]: creds["servicenow-password"]},
                             faults=Faults(server_error_rate=0.1, rate_limit_rate=0.05, seed=seed + 1)).start()
    config_path = workdir / "config.toml"
    config_path.write_text(CONFIG_TEMPLATE.format(db=(workdir / "itsm-bridge.db").as_posix(), port=free_port(),
                                                  pd_url=pd.url, sn_url=sn.url), encoding="utf-8")
    config = load_config(config_path)
    runtime = Runtime.build(config)
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=config.server.port).start()
    pd.set_webhook_url(f"{daemon.url}/webhooks/pagerduty")
    progress(f"simulators: PagerDuty {pd.url}, ServiceNow {sn.url}; daemon {daemon.url}; store {workdir}")
    try:
        plan = Plan()
        rng = random.Random(seed)
        _play_responders(pd, plan, rng, incidents)
        progress(f"triggered {incidents} incidents; waiting for tickets")
        _wait(lambda: _all_ticketed(sn, plan), timeout=timeout / 2, daemon=daemon)
        _play_desk_and_resolutions(pd, sn, plan, rng)
        progress("desk agents and responders acted; waiting for both sides to agree")
        problems = _wait(lambda: _convergence_problems(pd, sn, runtime, plan, creds["servicenow-user"]),
                         timeout=max(5.0, timeout - (time.monotonic() - started)), daemon=daemon)
    finally:
        daemon.stop()
        pd.stop()
        sn.stop()
    summary = _summary(runtime, pd, sn, plan, creds, problems, workdir, config_path, started)
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


def _write_secrets(workdir: Path) -> dict[str, str]:
    folder = workdir / "secrets"
    folder.mkdir(exist_ok=True)
    values = {"pagerduty-token": secrets.token_urlsafe(20), "pagerduty-webhook-secret": secrets.token_urlsafe(24),
              "servicenow-user": "itsm.bridge", "servicenow-password": secrets.token_urlsafe(16)}
    for name, value in values.items():
        path = folder / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
    key = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    (folder / "evidence-signing-key.pem").write_bytes(key)
    (folder / "evidence-signing-key.pem").chmod(0o600)
    return values


def _play_responders(pd: PagerDutySimulator, plan: Plan, rng: random.Random, count: int) -> None:
    for number in range(count):
        service = SERVICES[number % len(SERVICES)]
        who = rng.choice(RESPONDERS)
        incident = pd.trigger(service, rng.choice(TITLES).format(s=service),
                              urgency="high" if rng.random() < 0.6 else "low", user=who)
        plan.incidents.append(incident)
        if rng.random() < 0.8:
            pd.acknowledge(incident, user=who)
        if rng.random() < 0.7:
            text = f"Investigating {service}: {rng.choice(('rolled back deploy', 'scaled out', 'failing over'))}"
            pd.add_note(incident, text, user=who)
            plan.responder_notes.setdefault(incident, []).append(text)
        if rng.random() < 0.5:
            pd.set_priority(incident, rng.choice(("P1", "P2", "P3")), user=who)
        if rng.random() < 0.3:
            pd.reassign(incident, to_user=rng.choice([r for r in RESPONDERS if r != who]), user=who)


def _play_desk_and_resolutions(pd: PagerDutySimulator, sn: ServiceNowSimulator, plan: Plan,
                               rng: random.Random) -> None:
    for incident in plan.incidents:
        found = sn.find_by_correlation(f"pagerduty:{incident}")
        if not found:
            continue  # no ticket yet: the convergence check will say so
        ticket = found[0]
        roll = rng.random()
        if rng.random() < 0.3:
            text = f"Customer reports checkout failures for {ticket['number']}"
            sn.desk_comment(ticket["sys_id"], text, user="jane.doe")
            plan.desk_comments[incident] = text
        if roll < 0.25:
            sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Workaround provided",
                                              "close_notes": "Resolved by the service desk"}, user="jane.doe")
            plan.desk_resolved.add(incident)
        elif roll < 0.8:
            pd.resolve(incident, user=rng.choice(RESPONDERS))


def _all_ticketed(sn: ServiceNowSimulator, plan: Plan) -> list[str]:
    return [f"no ticket yet for {i}" for i in plan.incidents if not sn.find_by_correlation(f"pagerduty:{i}")]


def _convergence_problems(pd: PagerDutySimulator, sn: ServiceNowSimulator, runtime: Runtime, plan: Plan,
                          bridge_user: str) -> list[str]:
    problems: list[str] = []
    depths = queue_depths(runtime.store)
    if depths["inbox_pending"] or depths["outbox_pending"]:
        problems.append(f"bridge still working: {depths['inbox_pending']} in inbox, "
                        f"{depths['outbox_pending']} in outbox")
    for incident in plan.incidents:
        tickets = sn.find_by_correlation(f"pagerduty:{incident}")
        if len(tickets) != 1:
            problems.append(f"{incident}: {len(tickets)} tickets")
            continue
        ticket = tickets[0]
        status = pd.incident(incident)["status"]
        if incident in plan.desk_resolved and status != "resolved":
            problems.append(f"{incident}: resolved on the desk but {status} in PagerDuty")
        if ticket["state"] not in PD_STATE[status]:
            problems.append(f"{incident}: PagerDuty {status} but {ticket['number']} state {ticket['state']}")
        journal = " ".join(row["value"] for row in sn.journal(ticket["sys_id"]))
        for text in plan.responder_notes.get(incident, []):
            if text not in journal:
                problems.append(f"{incident}: responder note missing from {ticket['number']}")
        notes = [note["content"] for note in pd.notes(incident)]
        if incident in plan.desk_comments and not any(plan.desk_comments[incident] in n for n in notes):
            problems.append(f"{incident}: desk comment missing in PagerDuty")
        if not any(ticket["number"] in n and MARKER_PREFIX in n for n in notes):
            problems.append(f"{incident}: no note in PagerDuty linking {ticket['number']}")
    return problems


def _wait(check: Callable[[], list[str]], *, timeout: float, daemon: Daemon) -> list[str]:
    """Re-check `check` until it reports no problems or time runs out; returns the last problems."""
    deadline = time.monotonic() + timeout
    problems = check()
    while problems and time.monotonic() < deadline:
        daemon.wake()
        time.sleep(0.25)
        problems = check()
    return problems


def _summary(runtime: Runtime, pd: PagerDutySimulator, sn: ServiceNowSimulator, plan: Plan,
             creds: dict[str, str], problems: list[str], workdir: Path, config_path: Path,
             started: float) -> dict[str, Any]:
    metrics = runtime.metrics
    correlations: dict[str, int] = {}
    for record in sn.records():
        if record.get("correlation_id"):
            correlations[record["correlation_id"]] = correlations.get(record["correlation_id"], 0) + 1
    duplicates = sum(count - 1 for count in correlations.values() if count > 1)
    delivered = metrics.by_label(metrics.ops_delivered, "op")
    work_notes = sum(1 for record in sn.records() for row in sn.journal(record["sys_id"])
                     if row["sys_created_by"] == creds["servicenow-user"])
    source_notes = sum(1 for incident in plan.incidents for note in pd.notes(incident)
                       if MARKER_PREFIX in note["content"])
    verification = audit.verify_store(runtime.store)
    outbox_retries = int(metrics.total(metrics.ops_failed))
    return {
        "incidents": len(plan.incidents),
        "tickets": len(correlations),
        "updates": int(delivered.get("update", 0)),
        "notes": work_notes + source_notes,
        "desk_notes_written": work_notes,
        "source_notes_written": source_notes,
        "resolved_from_desk": len(plan.desk_resolved),
        "desk_comments": len(plan.desk_comments),
        "retries": int(metrics.total(metrics.http_retries)) + outbox_retries,
        "faults_injected": sum(pd.faults.injected.values()) + sum(sn.faults.injected.values()),
        "dead_letters": queue_depths(runtime.store)["dead_letters"],
        "duplicates": duplicates,
        "audit_entries": verification.entries,
        "audit_verified": verification.ok,
        "audit_head": verification.head_hash,
        "converged": not problems,
        "problems": problems[:20],
        "seconds": round(time.monotonic() - started, 1),
        "workdir": str(workdir),
        "config": str(config_path),
    }
