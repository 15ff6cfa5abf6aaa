"""How long `itsm-bridge compliance check --from ... --to ...` takes for N incidents with every pack.
(Named compliance_check.py: a bench/compliance.py would shadow the `compliance` package.)

    python bench/compliance_check.py --incidents 100000 [--json] [--database-url URL]

What is timed is what the command runs before it prints, through its own code (`compliance.cli`'s
`_setup`, `_period` and `_gather`, then `summarize`), in a fresh process as the command would be, from
reading the config on: open the store, read every stored timeline, verify the whole audit chain, read
the recorded monthly assessments, keep the period's incidents, run every pack (itil, dora, nis2, audit)
and count the findings. Printing them is not timed: the table stops at `--limit` rows, and --json
streams some 2.75 million findings (about a gigabyte) at 100,000 incidents.

The store is filled beforehand (not timed) with the fixture timelines (major DORA incidents with
reports, holiday deadlines, SLA breaches, a recurring pair) copied N/6 times: each copy is its own small
world, with fresh ids, its own root-cause wording (so each copy's recurring pair is one cluster, as in
the fixture) and its dates moved 30 minutes earlier per copy, which spreads 100,000 incidents over
about a year of weekdays, weekends and holidays. The audit chain holds as many entries as the
timelines' ``audit_events`` say (one of them the ``compliance.imported`` entry their evidence cites, as
`compliance import` writes it), about 8 per incident. The period is 2025-01-01..2026-12-31, which holds
every incident up to about 115,000.

Prints the incidents checked, seconds, incidents/s, findings, the process's peak RSS and the load
average before and after (other benchmarks on the machine slow this one down), as a table or one JSON
object with --json. Target (issue 6): 100,000 incidents in 30 s or less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from queue import Empty
from typing import Any

from bridge.audit import GENESIS, entry_hash
from bridge.model import format_time
from bridge.store import AuditEntry, Store, dumps
from compliance.store import IMPORTED, IncidentTimeline, _digest
from compliance.timeline import Timeline, read_jsonl

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "compliance" / "incidents.jsonl"
SETTINGS = {"packs": ["itil", "dora", "nis2", "audit"],
            "entity": {"name": "Bench GmbH", "lei": "5299000J2N45DDNE4Y28", "type": "payment_institution",
                       "member_state": "DE", "currency": "EUR", "nis2": "important"},
            "sla": {"1": {"response_minutes": 15, "resolution_minutes": 240},
                    "2": {"response_minutes": 30, "resolution_minutes": 480}}}
PERIOD = ("2025-01-01", "2026-12-31")
NOW = datetime(2027, 6, 30, tzinfo=timezone.utc)
STEP = timedelta(minutes=30)  # how much earlier each copy of the fixture happens
BATCH = 5000


def _shifted(value: Any, by: timedelta) -> Any:
    """The JSON of a timeline with every time moved by `by` (times: keys 'at', '..._at', '..._since')."""
    if isinstance(value, dict):
        return {key: (format_time(datetime.fromisoformat(item.replace("Z", "+00:00")) + by)
                      if isinstance(item, str) and (key == "at" or key.endswith(("_at", "_since"))) else
                      _shifted(item, by)) for key, item in value.items()}
    if isinstance(value, list):
        return [_shifted(item, by) for item in value]
    return value


def incidents(count: int) -> list[Timeline]:
    """`count` timelines: copy n of the fixture is n * STEP earlier, with its own ids and root causes."""
    base, errors = read_jsonl(FIXTURES)
    assert not errors, errors
    templates = [t.model_dump(mode="json", exclude_defaults=True) for t in base]
    out = []
    for number in range(count):
        copy, data = divmod(number, len(templates))
        data = _shifted(templates[data], -copy * STEP)
        data["id"] = f"{data['id']}-{copy}"
        if data.get("root_cause"):
            data["root_cause"] += f" (site {copy})"
        out.append(Timeline.model_validate(data))
    return out


def fill(store: Store, timelines: list[Timeline]) -> int:
    """Store the timelines and an audit chain as `compliance import` and the sync would leave them, in
    bulk (the same rows and hashes as `audit.append`, without its one-by-one round trips)."""
    seq, prev, at = 0, GENESIS, format_time(NOW - timedelta(days=1))  # fixed, so every run has the same hashes
    audit_rows: list[dict[str, Any]] = []
    timeline_rows: list[dict[str, Any]] = []

    def entry(kind: str, subject: str, data: dict[str, Any]) -> str:
        nonlocal seq, prev
        seq += 1
        prev_hash, prev = prev, entry_hash(prev, {"seq": seq, "at": at, "kind": kind, "subject": subject,
                                                  "data": data})
        audit_rows.append({"seq": seq, "at": at, "kind": kind, "subject": subject, "data": dumps(data),
                           "prev_hash": prev_hash, "hash": prev})
        return f"audit#{seq} sha256:{prev[:16]}"

    def flush(force: bool = False) -> None:
        if force or len(audit_rows) >= BATCH:
            with store.engine.begin() as connection:
                if audit_rows:
                    connection.execute(AuditEntry.__table__.insert(), audit_rows)  # type: ignore[attr-defined]
                if timeline_rows:
                    connection.execute(IncidentTimeline.__table__.insert(), timeline_rows)  # type: ignore[attr-defined]
            audit_rows.clear()
            timeline_rows.clear()

    for timeline in timelines:
        for _ in range(max((timeline.audit_events or 1) - 1, 0)):
            entry("op.delivered", timeline.id, {"op": "update", "fields": {"state": "2", "work_notes": "x" * 120},
                                                "http_status": 200})
        ref = entry(IMPORTED, timeline.id, {"sha256": _digest(timeline)})
        stored = timeline.model_copy(update={"evidence": {**timeline.evidence, "imported": [ref]}})
        timeline_rows.append({"incident_id": stored.id, "opened_at": stored.opened_at, "updated_at": NOW,
                              "timeline": stored.model_dump_json(exclude_defaults=True)})
        flush()
    flush(force=True)
    return seq


def write_config(path: Path, url: str) -> None:
    """A config holding only [database] and [compliance] (SETTINGS), as `compliance check` reads it."""
    lines = ["[database]", f"url = {json.dumps(url)}"]

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"\n[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items() if not isinstance(value, dict))
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)
    table("compliance", SETTINGS)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed_check(config_path: Path) -> dict[str, Any]:
    """Run in a fresh process: what `compliance check --from --to` does before it prints, and its cost."""
    from compliance.checker import has_failures, summarize
    from compliance.cli import _gather, _period, _setup

    started = time.perf_counter()
    config, settings = _setup(config_path)
    period = _period(settings, *PERIOD)
    timelines, findings, errors, context = _gather(config, settings, None, period, None, NOW)
    counts = summarize(findings)
    failed = has_failures(findings) or bool(errors)
    seconds = time.perf_counter() - started
    verification = context.audit_verification
    return {"incidents": len(timelines), "stored": len(context.all_timelines), "seconds": seconds,
            "findings": len(findings), "fail": counts["fail"], "warn": counts["warn"], "exit_code": int(failed),
            "audit_entries": verification.entries if verification else None,
            "chain_ok": verification.ok if verification else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(config_path: Path, queue: Any) -> None:
    queue.put(timed_check(config_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=10000)
    parser.add_argument("--database-url", help="a scratch database (its tables are dropped and recreated); "
                                               "default: a temporary SQLite file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        import compliance.store  # noqa: F401 - the incident_timeline table

        store = Store(url)
        if not store.is_sqlite:
            store.drop_schema()
        store.create_schema()
        started = time.perf_counter()
        fill(store, incidents(args.incidents))
        fill_seconds = time.perf_counter() - started
        store.dispose()
        config_path = Path(folder) / "config.toml"
        write_config(config_path, url)
        load_before = os.getloadavg()
        queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(target=_child, args=(config_path, queue))
        child.start()
        while True:
            try:
                result = queue.get(timeout=1)
                break
            except Empty:
                if not child.is_alive():
                    sys.exit(f"the check failed (exit code {child.exitcode})")
        child.join()
        load_after = os.getloadavg()
    figures = {"incidents": result["incidents"], "seconds": round(result["seconds"], 2),
               "incidents_per_s": round(result["incidents"] / result["seconds"]),
               "findings": result["findings"], "fail": result["fail"], "warn": result["warn"],
               "stored_incidents": result["stored"], "audit_entries": result["audit_entries"],
               "chain_ok": result["chain_ok"], "peak_rss_mb": round(result["peak_rss_mb"]),
               "load_average_before": " ".join(f"{x:.2f}" for x in load_before),
               "load_average_after": " ".join(f"{x:.2f}" for x in load_after),
               "cpus": os.cpu_count(), "store": "sqlite" if url.startswith("sqlite") else url.split(":", 1)[0],
               "fill_seconds_untimed": round(fill_seconds, 1), "target_seconds_for_100000": 30}
    if args.json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
