"""The figures of a bench/chaos.py run and how they are printed (the verdict line, a table, the details)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chaos_fleet import Balancer, Killer, Replica
from sqlalchemy import func
from sqlmodel import Session, select

from bridge.demo_scenario import Scenario, World
from bridge.status import queue_depths
from bridge.store import AuditEntry, DeadLetter, InboxEvent, OutboxOp, Store

#: Details printed per kind of difference; --json carries them all.
SHOWN = 20


def figures_of(world: World, store: Store, scenario: Scenario, balancer: Balancer, killer: Killer,
               replicas: list[Replica], exits: list[int | None]) -> dict[str, Any]:
    """What happened, measured from the simulators, the store and the fleet (not from the bridge's view)."""
    faults: Counter[str] = Counter()
    for simulator in world.simulators():
        faults.update(simulator.faults.injected)
    webhooks = dict(world.src.webhooks.stats)
    desk_actions = sum(len(texts) for texts in scenario.desk_comments.values()) + len(scenario.resolved_on)
    with Session(store.engine) as session:
        inbox = int(session.exec(select(func.count()).select_from(InboxEvent)).one())
        ops = dict(session.exec(select(OutboxOp.status, func.count()).group_by(OutboxOp.status)).all())
        retried_ops = int(session.exec(select(func.count()).select_from(OutboxOp)
                                       .where(OutboxOp.attempts > 1)).one())
        breakers = int(session.exec(select(func.count()).select_from(AuditEntry)
                                    .where(AuditEntry.kind == "breaker.opened")).one())
        letters = [letter.error for letter in session.exec(select(DeadLetter).limit(SHOWN)).all()]
    return {
        "incidents": len(scenario.incidents),
        "events": webhooks["queued"] + desk_actions,
        "source_webhooks": webhooks["queued"],
        "desk_actions": desk_actions,
        "responder_notes": sum(len(texts) for texts in scenario.responder_notes.values()),
        "desk_comments": sum(len(texts) for texts in scenario.desk_comments.values()),
        "resolved_from_desk": len(scenario.resolved_on),
        "inbox_events": inbox,
        "outbox_ops": ops,
        "ops_retried": retried_ops,
        "faults_injected": {kind: faults[kind] for kind in ("5xx", "429", "reset", "slow")},
        "webhook_retries": webhooks["retried"],
        "webhooks_dropped": webhooks["dropped"],
        "deliveries_to_dead_replicas": balancer.failed,
        "replicas": len(replicas),
        "kills": killer.done_kills,
        "restarts": killer.restarts,
        "replica_exit_codes": exits,
        "unclean_stops": sum(1 for code in exits if code != 0),
        "breaker_openings": breakers,
        "dead_letters": queue_depths(store)["dead_letters"],
        "dead_letter_errors": letters,
    }


ROWS: tuple[tuple[str, str], ...] = (
    ("incidents", "incidents (full lifecycles)"),
    ("events", "events (source webhooks + desk actions)"),
    ("source_webhooks", "  PagerDuty webhooks sent"),
    ("desk_actions", "  desk comments and resolves"),
    ("responder_notes", "responder notes"),
    ("inbox_events", "inbox events (webhooks and polls)"),
    ("ops_retried", "outbox ops that needed more than one attempt"),
    ("webhook_retries", "webhook deliveries retried by PagerDuty"),
    ("deliveries_to_dead_replicas", "  of which sent to a dead replica (502)"),
    ("replicas", "replicas"),
    ("kills", "kills (SIGKILL)"),
    ("restarts", "restarts"),
    ("breaker_openings", "circuit breaker openings"),
    ("dead_letters", "dead letters"),
    ("seconds_to_converge", "seconds to converge after the last kill"),
    ("seconds", "seconds in all"),
)


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    figures = result["figures"]
    console.print(result["verdict"], highlight=False, style=None if result["clean"] else "bold red")
    table = Table(title=f"chaos: {figures['incidents']} incidents, {figures['replicas']} replica(s) on "
                        f"{figures['database']}, {figures['kills']} kills", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, label in ROWS:
        table.add_row(label, str(figures[key]))
    for kind, count in figures["faults_injected"].items():
        table.add_row(f"faults injected: {kind}", str(count))
    for status, count in sorted(figures["outbox_ops"].items()):
        table.add_row(f"outbox ops {status}", str(count))
    console.print(table)
    console.print(f"faults on every simulator's API paths: {figures['faults']}; rate_limit_per_minute "
                  f"{figures['rate_limit_per_minute']:,} on every connection (no pacing); replica exit codes "
                  f"{figures['replica_exit_codes']}", highlight=False)
    for kind in ("lost", "duplicates", "diverged"):
        details = result["details"][kind]
        for line in details[:SHOWN]:
            console.print(f"{kind}: {line}", highlight=False, markup=False)
        if len(details) > SHOWN:
            console.print(f"{kind}: ... and {len(details) - SHOWN} more (--json has them all)", highlight=False)
    unsettled = figures.get("unsettled") or []
    for problem in unsettled[:SHOWN]:  # why converged=no: what the three systems still disagree on
        console.print(f"not converged: {problem}", highlight=False, markup=False)
    if len(unsettled) > SHOWN:
        console.print(f"not converged: ... and {len(unsettled) - SHOWN} more (--json has them all)", highlight=False)
    for error in figures["dead_letter_errors"]:
        console.print(f"dead letter: {error}", highlight=False, markup=False)
    for error in result["restart_failures"]:
        console.print(f"restart failed: {error}", highlight=False, markup=False)
    if result.get("folder"):
        console.print(f"config, store and replica logs kept in {result['folder']}", highlight=False)
