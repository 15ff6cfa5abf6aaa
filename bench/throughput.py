"""Events through webhook ingest to ServiceNow writes, against the same writes made by a bare loop.

    python bench/throughput.py --incidents 2000 [--senders 4] [--database-url URL] [--json] [--keep]

Each incident is a PagerDuty lifecycle of five v3 webhooks (triggered, acknowledged, annotated,
priority_updated, resolved), signed and POSTed by `--senders` threads to the daemon, which runs as a
subprocess (`python -m bridge run`) against the ServiceNow simulator in this process. When the desk has
every change: events/s (first send to last desk write), desk API calls per source event by kind (the
simulator's request counter), ingest latency (request to 2xx), propagation (inbox received_at to the
outbox done_at of the event's desk ops), the daemon's peak RSS; then one `sync --once` whose desk writes
must be 0 (echoes), and "the limit": the bridge's creates and PATCHes replayed by a bare `requests` loop
with one worker, the bridge's delivery concurrency. ratio = bridge events/s / limit events/s.

Targets (issue text, 2-core dev machine): ratio >= 0.5 at 10,000 events; <= 1.05 desk calls per source
change, 0 for echoes; ingest p99 <= 25 ms; peak RSS at 100,000 events within 20% of that at 10,000
(compare two runs). 2,000 incidents (10,000 events) take several minutes; see README "Performance".
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from throughput_load import (  # bench/ is sys.path[0] when run
    play_lifecycles,
    replay_limit,
    send_all,
)
from throughput_world import (
    RATE_LIMIT_PER_MINUTE,
    World,
    build_world,
    cpu_seconds,
    reader,
    shut_down,
    start_daemon,
    stop_daemon,
    sync_once,
)

from bridge.store import AuditEntry, DeadLetter, InboxEvent, OutboxOp


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share * len(ordered)))) - 1]


def pending(engine: Engine) -> int:
    """Inbox events and outbox ops not done yet (dead ones are not pending)."""
    with Session(engine) as session:
        return sum(int(session.exec(select(func.count()).select_from(model).where(model.status == "pending")).one())
                   for model in (InboxEvent, OutboxOp))


def wait_for_desk(world: World, engine: Engine, incidents: int, *, timeout: float) -> bool:
    """Until every incident has its ticket resolved on the desk and nothing is queued or in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pending(engine) and world.pagerduty.webhooks.pending == 0:
            records = world.servicenow.records()
            if len(records) >= incidents and all(record["state"] == "6" for record in records):
                return True
        if world.daemon is not None and world.daemon.poll() is not None:
            raise RuntimeError(f"the daemon died; see {world.folder / 'daemon.log'}")
        time.sleep(0.5)
    return False


def desk_calls(snapshot: dict[str, int]) -> dict[str, int]:
    """The simulator's counts grouped: creates, updates, and reads by why they were made."""
    groups: Counter[str] = Counter()
    for kind, count in snapshot.items():
        method = kind.split(" ", 1)[0]
        if method == "POST":
            groups["creates"] += count
        elif method in ("PATCH", "PUT"):
            groups["updates"] += count
        elif kind.endswith("?correlation_id"):
            groups["reads_find_before_create"] += count
        elif kind.endswith("/{sys_id}"):
            groups["reads_ticket"] += count  # before a guarded update, or a refresh after a stale poll
        elif kind.endswith(("?sys_updated_on", "?sys_created_on")):
            groups["reads_poll"] += count
        elif kind.endswith("?element_id"):
            groups["reads_note_check"] += count
        else:
            groups["other"] += count
    groups["total"] = sum(snapshot.values())
    return dict(groups)


def from_store(engine: Engine, sent: set[str]) -> dict[str, Any]:
    """Propagation per source event (received_at -> last done_at of its desk ops) and the echo counts."""
    received: dict[str, datetime] = {}
    echoes: set[str] = set()
    desk_events = 0
    with Session(engine) as session:
        for connection, event_id, at in session.exec(select(InboxEvent.connection, InboxEvent.event_id,
                                                            InboxEvent.received_at)):
            if connection == "pagerduty" and event_id in sent:
                received[event_id] = at
            elif connection == "pagerduty" and not event_id.startswith("poll:"):
                echoes.add(event_id)  # the bridge's own backlink notes, announced back by PagerDuty
            elif connection == "servicenow":
                desk_events += 1
        done: dict[str, datetime] = {}
        echo_ops = desk_origin_ops = 0
        for key, done_at in session.exec(select(OutboxOp.idempotency_key, OutboxOp.done_at)
                                         .where(OutboxOp.connection == "servicenow")):
            parts = key.split(":", 3)  # route:link:connection:event id:index (event ids may hold colons)
            if len(parts) != 4 or not parts[1].isdigit():
                continue  # backlink:..., refresh-after:..., raised:...: follow-ups of an op, not of an event
            origin, event_id = parts[2], parts[3].rsplit(":", 1)[0]
            if origin != "pagerduty":
                desk_origin_ops += 1
            elif event_id in echoes:
                echo_ops += 1
            elif done_at is not None:
                done[event_id] = max(done.get(event_id, done_at), done_at)
        # A refresh settled with the record the desk answered the bridge's last write with made no call:
        # its audit entry has no HTTP status.
        free_refreshes = sum(1 for (data,) in session.execute(select(AuditEntry.data)
                                                              .where(AuditEntry.kind == "op.delivered"))
                             if (entry := json.loads(data))["op"] == "refresh" and entry["http_status"] is None)
        dead = len(session.exec(select(DeadLetter.id)).all())
    seconds = [(done[event_id] - at).total_seconds() for event_id, at in received.items() if event_id in done]
    return {"propagation": seconds, "events_without_desk_write": len(received) - len(seconds),
            "echo_webhooks": len(echoes), "echo_desk_ops": echo_ops, "desk_change_events": desk_events,
            "desk_ops_from_desk_changes": desk_origin_ops - free_refreshes, "refreshes_without_call": free_refreshes,
            "dead_letters": dead}


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    world = build_world(folder, args.database_url)
    engine = reader(world.database_url)
    try:
        started = time.perf_counter()
        start_daemon(world, profile=args.profile)
        events = play_lifecycles(world.pagerduty, args.incidents)
        setup_seconds = time.perf_counter() - started
        world.pagerduty.set_webhook_url(world.webhook_url)  # the bridge's own notes come back as webhooks
        world.servicenow.calls.reset()
        started_cpu = cpu_seconds(world.daemon.pid) if world.daemon else 0.0
        first_send = time.perf_counter()
        sent = send_all(events, url=world.webhook_url, secret=world.creds["pagerduty-webhook-secret"],
                        senders=args.senders)
        send_seconds = time.perf_counter() - first_send
        converged = wait_for_desk(world, engine, args.incidents, timeout=max(300.0, len(events) * 0.2))
        calls = world.servicenow.calls.snapshot()
        writes = list(world.writes)
        last_write = writes[-1][0] if writes else time.perf_counter()
        cpu_before_send = started_cpu
        peak_kb, cpu_at_end = stop_daemon(world)
        world.servicenow.calls.reset()
        sync_code, sync_output = sync_once(world)
        echo_calls = world.servicenow.calls.snapshot()
        stored = from_store(engine, {event.webhook_id for event in events})
        tickets = {record["correlation_id"]: record["sys_id"] for record in world.servicenow.records()}
        limit_seconds = replay_limit(world.servicenow.url, (world.creds["servicenow-user"],
                                                           world.creds["servicenow-password"]), writes, tickets)
    finally:
        engine.dispose()
        shut_down(world)
    bridge_seconds = last_write - first_send
    sending_ended = first_send + send_seconds
    while_sending = sum(1 for at, *_ in writes if at <= sending_ended)
    latencies = [row[2] for row in sent.rows]
    grouped = desk_calls(calls)
    count = len(events)
    rss = [kb for _at, kb in world.rss_samples]
    return {
        "incidents": args.incidents, "events": count, "senders": args.senders,
        "database": "sqlite" if world.database_url.startswith("sqlite") else "postgresql",
        "rate_limit_per_minute_set": RATE_LIMIT_PER_MINUTE, "converged": converged,
        "send_errors": len(sent.errors), "dead_letters": stored["dead_letters"],
        "setup_seconds": round(setup_seconds, 1), "send_seconds": round(send_seconds, 1),
        "bridge_seconds": round(bridge_seconds, 1),
        "bridge_events_per_s": round(count / bridge_seconds, 1),
        "limit_seconds": round(limit_seconds, 1), "limit_events_per_s": round(count / limit_seconds, 1),
        "ratio_to_limit": round(limit_seconds / bridge_seconds, 3),
        "desk_calls": grouped, "desk_calls_by_kind": calls,
        "desk_calls_per_event": round(grouped["total"] / count, 3),
        "desk_writes_per_event": round((grouped.get("creates", 0) + grouped.get("updates", 0)) / count, 3),
        "limit_writes_per_event": round(len(writes) / count, 3),
        "desk_writes_per_s_while_sending": round(while_sending / send_seconds, 1),
        "desk_writes_per_s_after_sending": round((len(writes) - while_sending) / max(0.001, last_write - sending_ended), 1),
        "echo_webhooks": stored["echo_webhooks"], "echo_desk_ops": stored["echo_desk_ops"],
        "desk_ops_from_echoes": stored["echo_desk_ops"] + stored["desk_ops_from_desk_changes"],
        "desk_change_events": stored["desk_change_events"],
        "desk_ops_from_desk_changes": stored["desk_ops_from_desk_changes"],
        "refreshes_without_call": stored["refreshes_without_call"],
        "sync_once_exit": sync_code, "sync_once_desk_writes": sum(n for kind, n in echo_calls.items()
                                                                  if kind.split(" ", 1)[0] != "GET"),
        "sync_once_desk_reads": sum(n for kind, n in echo_calls.items() if kind.startswith("GET")),
        "ingest_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "ingest_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "propagation_p50_s": round(percentile(stored["propagation"], 0.50), 2),
        "propagation_p99_s": round(percentile(stored["propagation"], 0.99), 2),
        "events_without_desk_write": stored["events_without_desk_write"],
        "daemon_peak_rss_mb": round(peak_kb / 1024, 1),
        "daemon_cpu_ms_per_event": round((cpu_at_end - cpu_before_send) * 1000 / count, 1),
        "daemon_rss_mb_by_quarter": [round(rss[min(len(rss) - 1, len(rss) * q // 4)] / 1024, 1) for q in (1, 2, 3, 4)]
        if rss else [],
        "sync_once_output": sync_output[-400:] if sync_code else "",
    }


ROWS: tuple[tuple[str, str, str, Any], ...] = (
    # (figure key, label, target text, check or None)
    ("bridge_events_per_s", "bridge events/s (first send -> last desk write)", "", None),
    ("limit_events_per_s", "limit events/s (bare requests, 1 worker)", "", None),
    ("ratio_to_limit", "ratio bridge / limit", ">= 0.5", lambda v: v >= 0.5),
    ("desk_calls_per_event", "desk API calls per source event", "<= 1.05", lambda v: v <= 1.05),
    ("desk_writes_per_event", "  of which writes (creates + PATCHes)", "", None),
    ("desk_ops_from_echoes", "desk calls caused by echoes (own notes, polls of own writes)", "0",
     lambda v: v == 0),
    ("sync_once_desk_writes", "desk writes by a later sync --once", "0", lambda v: v == 0),
    ("ingest_p50_ms", "ingest p50 ms (request -> 2xx)", "", None),
    ("ingest_p99_ms", "ingest p99 ms", "<= 25", lambda v: v <= 25),
    ("propagation_p50_s", "propagation p50 s (received -> desk write done)", "", None),
    ("propagation_p99_s", "propagation p99 s", "", None),
    ("daemon_peak_rss_mb", "daemon peak RSS MB (VmHWM)", "flat: compare runs", None),
    ("daemon_cpu_ms_per_event", "daemon CPU ms per source event", "", None),
)


def print_table(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"throughput: {figures['incidents']} incidents, {figures['events']} events, "
                        f"{figures['senders']} senders, {figures['database']}", title_justify="left")
    for column in ("figure", "value", "target", "met?"):
        table.add_column(column)
    for key, label, target, check in ROWS:
        value = figures[key]
        table.add_row(label, str(value), target, "" if check is None else ("yes" if check(value) else "[red]no[/]"))
    console = Console()
    console.print(table)
    calls = ", ".join(f"{kind} {count}" for kind, count in sorted(figures["desk_calls"].items()))
    console.print(f"desk calls: {calls}", highlight=False)
    console.print(f"converged {figures['converged']}; send errors {figures['send_errors']}; dead-letters "
                  f"{figures['dead_letters']}; echo webhooks {figures['echo_webhooks']}; desk-change events "
                  f"{figures['desk_change_events']} -> {figures['desk_ops_from_desk_changes']} desk ops "
                  f"(+{figures['refreshes_without_call']} refreshes settled without a call); "
                  f"sync --once exit {figures['sync_once_exit']}, {figures['sync_once_desk_reads']} reads", highlight=False)
    console.print(f"seconds: setup {figures['setup_seconds']}, sending {figures['send_seconds']}, bridge "
                  f"{figures['bridge_seconds']}, limit {figures['limit_seconds']}; daemon RSS MB by quarter "
                  f"{figures['daemon_rss_mb_by_quarter']}; rate_limit_per_minute set to "
                  f"{figures['rate_limit_per_minute_set']:,} on both connections (no pacing)", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=2000, help="lifecycles of 5 events each (default 2000)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent webhook senders (default 4)")
    parser.add_argument("--database-url", help="an EMPTY PostgreSQL database (default: SQLite in the temp folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (config, store, daemon.log)")
    parser.add_argument("--profile", type=Path, help="run the daemon under pyinstrument (pip install pyinstrument) "
                                                     "and write worker and ingest profiles into this folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="itsm-bridge-throughput-"))
    try:
        figures = run(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    figures["folder"] = str(folder) if args.keep else None
    if args.json:
        print(json.dumps(figures))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
