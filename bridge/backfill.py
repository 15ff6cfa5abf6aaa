"""`itsm-bridge backfill`: bring a period's existing incidents from the source into the desk.

Backfill reuses the whole pipeline rather than a side door: each batch of the source's history goes into
the inbox with the batch's resume point in the same transaction, then the engine plans and the outbox
delivers exactly as for live events. That is what makes it

- idempotent: history changes have stable event ids (the inbox keeps one copy), linked incidents are
  only updated when something differs, and a create first looks for a ticket carrying the incident's
  correlation id, so a ticket that already exists is linked, never duplicated;
- resumable: the resume point is committed with the batch, so an interrupted run starts where it was;
- polite: every request goes through the connection's session, with its rate limit and retries.

A dry run reads the source (and asks the desk whether a ticket already exists) but writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from bridge.daemon import work_until_idle
from bridge.engine import correlation_id
from bridge.ingest import store_changes
from bridge.model import Change, format_time, parse_time
from bridge.outbox import next_due_in
from bridge.routing import Route
from bridge.runtime import Runtime
from bridge.status import queue_depths
from bridge.store import Link

Progress = Callable[[str, int, int | None], None]   # (what, done, total or None)


@dataclass
class BackfillReport:
    """What a backfill found and did, per route; `rows` holds one line per incident in a dry run."""

    since: str
    until: str
    dry_run: bool
    incidents: int = 0
    stored: int = 0
    already_stored: int = 0
    resumed_from: dict[str, str] = field(default_factory=dict)
    routes: dict[str, dict[str, int]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    outbox_pending: int = 0
    dead_letters: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def select_routes(runtime: Runtime, route: str | None) -> list[Route]:
    """The enabled routes to backfill (chat routes have no history to bring); ValueError for a bad name."""
    routes = [r for r in runtime.routes if r.enabled and not runtime.connectors[r.source].is_chat]
    if route is not None:
        routes = [r for r in routes if r.name == route]
        if not routes:
            known = ", ".join(r.name for r in runtime.routes) or "none"
            raise ValueError(f"no route named {route!r} can be backfilled (routes: {known})")
    return routes


def backfill(runtime: Runtime, *, since: datetime, until: datetime, route: str | None = None,
             dry_run: bool = False, restart: bool = False,
             progress: Progress = lambda _what, _done, _total: None) -> BackfillReport:
    routes = select_routes(runtime, route)
    report = BackfillReport(since=format_time(since) or "", until=format_time(until) or "", dry_run=dry_run)
    for route_ in routes:
        report.routes[route_.name] = {"created_or_linked": 0, "already_linked": 0, "filtered": 0,
                                      "existing_ticket": 0}
    for source in dict.fromkeys(r.source for r in routes):
        source_routes = [r for r in routes if r.source == source]
        for changes in _history(runtime, source, since, until, dry_run=dry_run, restart=restart, report=report,
                                progress=progress):
            _count(runtime, source_routes, changes, report, dry_run=dry_run)
    if not dry_run:
        _deliver(runtime, progress)
        depths = queue_depths(runtime.store)
        report.outbox_pending, report.dead_letters = depths["outbox_pending"], depths["dead_letters"]
    return report


def _history(runtime: Runtime, source: str, since: datetime, until: datetime, *, dry_run: bool, restart: bool,
             report: BackfillReport, progress: Progress) -> Iterable[list[Change]]:
    """Batches of the source's history, each committed to the inbox with its resume point (unless dry)."""
    connector = runtime.connectors[source]
    name = f"backfill:{source}:{format_time(since)}"
    start = since
    resume = None if (dry_run or restart) else runtime.store.get_cursor(name)
    if resume and since < parse_time(resume) < until:  # type: ignore[operator]
        start = parse_time(resume)  # type: ignore[assignment]
        report.resumed_from[source] = resume
    for batch in connector.history(start, until=until):
        changes = [change for change in batch.changes if change.incident is not None]
        report.incidents += len(changes)
        if not dry_run:
            result = store_changes(runtime, list(batch.changes), cursor=(name, batch.cursor or format_time(until)))
            report.stored += result.accepted
            report.already_stored += result.duplicates
        progress(f"reading {runtime.label(source)}", report.incidents, None)
        yield changes


def _count(runtime: Runtime, routes: list[Route], changes: list[Change], report: BackfillReport, *,
           dry_run: bool) -> None:
    """Tally what each incident means for each route; in a dry run, also ask the desk for a ticket."""
    with Session(runtime.store.engine) as session:
        for change in changes:
            incident = change.incident
            assert incident is not None
            for route in routes:
                counts = report.routes[route.name]
                linked = session.exec(select(Link).where(Link.route == route.name, Link.source_id == incident.id,
                                                         Link.source_connection == route.source)).first()
                if linked is not None:
                    outcome, number = "already linked", linked.target_number
                    counts["already_linked"] += 1
                elif not route.matches(incident):
                    outcome, number = "filtered out by the route's match", None
                    counts["filtered"] += 1
                else:
                    existing = runtime.connectors[route.target].find(correlation_id(route.source, incident.id)) \
                        if dry_run else None
                    if existing is not None:
                        outcome, number = "would link the existing ticket", existing.number
                        counts["existing_ticket"] += 1
                    else:
                        outcome, number = ("would create a ticket" if dry_run else "queued"), None
                        counts["created_or_linked"] += 1
                if dry_run:
                    report.rows.append({"route": route.name, "incident": incident.number or incident.id,
                                        "title": incident.title, "status": incident.status,
                                        "created": format_time(incident.created_at), "outcome": outcome,
                                        "ticket": number})


def _deliver(runtime: Runtime, progress: Progress, *, pause: Callable[[float], None] = time.sleep) -> None:
    """Process what was stored and deliver it, waiting out retries, reporting the queue as it drains."""
    total = 0
    while True:
        work_until_idle(runtime)
        depths = queue_depths(runtime.store)
        left = depths["inbox_pending"] + depths["outbox_pending"]
        total = max(total, left)
        progress("writing to the desk", total - left, total)
        if left == 0:
            return
        wait = next_due_in(runtime)
        if wait is None and not depths["inbox_pending"]:
            return
        pause(min(max(wait or 0.0, 0.05), 5.0))
