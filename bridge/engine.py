"""Processing the inbox: change -> routes -> mapping -> plan -> outbox ops + link + audit, atomically.

Each inbox event is processed in its own transaction: its ops are queued, its link updated, its audit
entry written and the event marked done together, or not at all. Events of one record are processed in
arrival order; when one of them fails (a mapping error, a bug) it is dead-lettered with a message naming
route, field and value, and the record's later events wait behind it until it is replayed, while every
other record keeps flowing. The daemon never stops because of one bad event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from sqlmodel import Session, select

from bridge import audit
from bridge.diff import (
    WRITTEN_SOURCE_AT,
    WRITTEN_STATE_BEFORE,
    FieldTimes,
    Plan,
    PlannedOp,
    observed_fields,
    plan_announcement,
    plan_create,
    plan_desk_change,
    plan_source_update,
    state_news_only,
    whole_second,
)
from bridge.errors import MappingError
from bridge.model import Change, Incident, Ticket, TimelineEntry, format_time, parse_time
from bridge.routing import Route
from bridge.runtime import Runtime
from bridge.queue import queue_op
from bridge.store import DeadLetter, InboxEvent, Link, OutboxOp, is_transient, retry_transient
from compliance.feed import from_incident, from_ticket
from compliance.store import evidence_ref, get_timeline, save_timeline

log = logging.getLogger(__name__)


def process_inbox(runtime: Runtime, *, limit: int = 500, stopping: Callable[[], bool] = lambda: False) -> int:
    """Process pending inbox events in order; returns how many were processed (done or dead-lettered).
    `stopping` is asked before each event: a daemon told to stop leaves the rest for its next start."""
    with Session(runtime.store.engine) as session:
        blocked = set(session.exec(select(InboxEvent.record_key).where(InboxEvent.status == "dead")).all())
        pending = session.exec(select(InboxEvent.id, InboxEvent.record_key)
                               .where(InboxEvent.status == "pending")
                               .order_by(InboxEvent.id).limit(limit)).all()  # type: ignore[arg-type]
    processed = 0
    for event_id, record_key in pending:
        if stopping():
            break
        if record_key in blocked:
            continue
        try:
            if retry_transient(lambda: _process_one(runtime, event_id)):  # noqa: B023 (called at once)
                processed += 1
            else:
                # Another replica holds (or just finished) this event: its record's later events wait for
                # the next pass, so one record's events are never processed out of order.
                blocked.add(record_key)
        except NotYetLinked as exc:  # its ticket's create is in flight: take it in once the link is made
            log.debug("inbox event %s waits: %s", event_id, exc)
            blocked.add(record_key)
        except MappingError as exc:  # an admin's to fix: say what, no traceback
            log.error("inbox event %s dead-lettered: %s", event_id, exc)
            _dead_letter_event(runtime, event_id, exc)
            blocked.add(record_key)
            processed += 1
        except Exception as exc:  # the job boundary: anything unexpected is kept, never fatal
            if is_transient(exc):  # the database kept aborting it (deadlocks under load): the next pass
                log.warning("inbox event %s waits for the next pass: %s", event_id, exc)
                blocked.add(record_key)
                continue
            log.exception("inbox event %s failed", event_id)
            _dead_letter_event(runtime, event_id, exc)
            blocked.add(record_key)
            processed += 1
    return processed


class NotYetLinked(Exception):
    """A desk change about a ticket the bridge created but has not recorded yet (its create's answer is on
    the way, or was lost and the create will be retried): it waits instead of being ignored."""


def _locked(runtime: Runtime, query: Any) -> Any:
    """On PostgreSQL, hold the link rows until commit: a source event and a desk event of the same pair,
    processed by two replicas at once, then update the link one after the other, never over each other."""
    return query if runtime.store.is_sqlite else query.with_for_update()


def _process_one(runtime: Runtime, event_id: int) -> bool:
    with runtime.store.transaction() as session:
        query = select(InboxEvent).where(InboxEvent.id == event_id, InboxEvent.status == "pending")
        if not runtime.store.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        row = session.exec(query).first()
        if row is None:
            return False  # another worker has it, or it is already done
        change = Change.from_dict(json.loads(row.change))
        if change.ticket is not None:
            results = _process_desk_change(runtime, session, change, row)
        else:
            results = _process_source_change(runtime, session, change, row)
        row.status = "done"
        row.processed_at = runtime.clock()
        session.add(row)
        entry = audit.append(runtime.store, session, "event.processed", row.record_key,
                             {"event_id": change.event_id, "event_type": change.event_type, "routes": results})
        _feed_timelines(runtime, session, change, results, evidence_ref(entry))
    for result in results:
        runtime.metrics.events_processed.labels(result.get("route", "-"), result["decision"]).inc()
    return True


def _process_source_change(runtime: Runtime, session: Session, change: Change, row: InboxEvent) -> list[dict[str, Any]]:
    routes = [route for route in runtime.routes if route.source == change.connection and route.enabled]
    if not routes:
        return [{"route": "-", "decision": "ignored", "reason": f"no route reads {change.connection}"}]
    if change.incident is None and not change.entries:
        return [{"route": "-", "decision": "ignored", "reason": f"event type {change.event_type} is not synced"}]
    return [_apply_source_route(runtime, session, route, change, row) for route in routes]


def _apply_source_route(runtime: Runtime, session: Session, route: Route, change: Change,
                        row: InboxEvent) -> dict[str, Any]:
    link = session.exec(_locked(runtime, select(Link).where(
        Link.route == route.name, Link.source_connection == change.connection,
        Link.source_id == change.record_id))).first()
    result: dict[str, Any] = {"route": route.name}
    if link is None:
        incident = change.incident
        if incident is None:
            return {**result, "decision": "ignored", "reason": "timeline entry for an incident not linked"}
        if not route.matches(incident):
            return {**result, "decision": "filtered", "reason": "incident does not match the route's match filter"}
        plan = _plan_link(incident, change) if incident.raw.get("link_ticket") else \
            plan_create(route.mapping, incident, change.entries)
        # A live webhook about an incident this store has never linked: no earlier try of this create
        # can have landed, so its first try needs no search (a retry still searches). Polls and backfill
        # bring incidents that may predate this store: their creates always search first.
        plan.ops = [replace(op, payload={**op.payload, "find_first": change.via != "webhook"})
                    if op.op == "create" else op for op in plan.ops]
        link = Link(route=route.name, source_connection=change.connection, source_id=incident.id,
                    target_connection=route.target, correlation_id=correlation_id(change.connection, incident.id),
                    source_seen_at=_aware(row.observed_at if change.via == "poll" else change.occurred_at))
        link.save("source_state", incident.to_dict())
        link.save("seen_entries", plan.seen_entries)
        session.add(link)
        session.flush()
    else:
        plan = _plan_linked_source(route, link, change, row)
        _audit_conflicts(runtime, session, route, link, plan)
    _queue(runtime, session, route, link, plan, row)
    return {**result, "decision": plan.decision, "link": link.id, "ops": [op.op for op in plan.ops],
            "echoes": plan.echoes, "warnings": plan.warnings}


def _plan_linked_source(route: Route, link: Link, change: Change, row: InboxEvent) -> Plan:
    before = Incident.from_dict(link.load("source_state"))
    after = change.incident or before
    entries = change.entries
    pending_echo = link.load("pending_echo")
    written = {name: value for name, value in pending_echo.items() if name != "at"}
    seen_at = _aware(row.observed_at if change.via == "poll" else change.occurred_at)
    if change.incident is not None and link.source_seen_at is not None and seen_at < _aware(link.source_seen_at):
        # A snapshot older than a state already processed (a poll read before a webhook's change):
        # its timeline lines are history, its state is not news.
        after = before
    elif change.incident is not None:
        link.source_seen_at = seen_at
    if change.incident is not None and written and after is not before:
        if all(str(getattr(after, name)) == str(value) for name, value in written.items()):
            # The source announcing what the bridge itself set (a desk resolve flowing back): its side
            # effects (assignees cleared on resolve) and its own timeline line are part of the echo.
            before = before.with_attributes(**written, assignees=after.assignees)
            entries = tuple(entry for entry in entries if entry.kind == "note")
            link.save("pending_echo", {})
        elif _older_than(change, row, parse_time(pending_echo.get("at"))):
            # Happened before the bridge's own write (in flight meanwhile): its timeline lines are true
            # history, its state is not the source's state any more.
            after = before
        else:
            link.save("pending_echo", {})
    if change.via == "poll" and after is change.incident and before.status != after.status:
        entries = entries + (TimelineEntry(id=f"{change.event_id}:status", at=change.occurred_at, kind="status",
                                           text=f"Status is now {after.status} (caught up by polling)"),)
    seen = link.load("seen_entries")
    times = FieldTimes(link.load("field_times"))
    plan = plan_source_update(route.mapping, before=before, after=after, entries=entries, seen_entries=seen,
                              times=times, at=_aware(change.occurred_at), desk_values=link.load("target_seen"))
    link.save("field_times", times.data)
    link.save("source_state", after.to_dict())
    link.save("seen_entries", seen + plan.seen_entries)
    if plan.echoes and plan.decision in ("echo", "no-change"):
        plan.decision = "echo"
    return plan


def _older_than(change: Change, row: InboxEvent, moment: datetime | None) -> bool:
    """Whether the state a change carries predates `moment` (a poll read before it, an event before it)."""
    if moment is None:
        return False
    seen = row.observed_at if change.via == "poll" else change.occurred_at
    return _aware(seen) < moment


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _create_in_flight(session: Session, connection: str, correlation: str) -> bool:
    """A link carrying `correlation` waits for its ticket: its create (or link) is pending, or dead and
    replayable. One discarded on purpose makes no link, so a desk change about that ticket is not held."""
    return session.exec(select(Link.id).join(OutboxOp, OutboxOp.link_id == Link.id).where(  # type: ignore[arg-type]
        Link.target_connection == connection, Link.correlation_id == correlation,
        Link.target_id.is_(None),  # type: ignore[union-attr]
        OutboxOp.op.in_(("create", "link")), OutboxOp.status != "discarded")).first() is not None  # type: ignore[attr-defined]


def _process_desk_change(runtime: Runtime, session: Session, change: Change, row: InboxEvent) -> list[dict[str, Any]]:
    ticket = change.ticket
    assert ticket is not None
    links = session.exec(_locked(runtime, select(Link).where(Link.target_connection == change.connection,
                                                             Link.target_id == ticket.id))).all()
    if not links:
        correlation = ticket.fields.get("correlation_id")
        if correlation and _create_in_flight(session, change.connection, correlation):
            raise NotYetLinked(f"{ticket.number} carries {correlation}, whose create is not recorded yet")
        raised = [_raise_from_desk(runtime, session, route, change, row) for route in runtime.routes
                  if route.enabled and route.target == change.connection and route.raises(ticket.fields)]
        return raised or [{"route": "-", "decision": "ignored", "reason": f"ticket {ticket.number} is not linked"}]
    results, snapshot = [], ticket
    for link in links:
        ticket = snapshot
        route = runtime.route(link.route)
        if route is None:
            results.append({"route": link.route, "decision": "ignored", "reason": "route no longer configured"})
            continue
        seen = link.load("seen_entries")
        target_seen = link.load("target_seen")
        written = link.target_written_at
        target_written = link.load("target_written")
        read_before_write = written is not None and _aware(row.observed_at) < _aware(written)
        late_decision = read_before_write and _decided_after(
            ticket, target_written, runtime.integration_user(change.connection), route.mapping.back.state_field)
        stale = read_before_write and not late_decision
        refresh = None
        if late_decision:  # only its state is news: its other fields may predate the bridge's write
            ticket, refresh = state_news_only(route.mapping, ticket, target_seen)
        source_state = link.load("source_state")
        times = FieldTimes(link.load("field_times"))
        plan = plan_desk_change(route.mapping, ticket=ticket, entries=change.entries, target_seen=target_seen,
                                seen_entries=seen, source_status=source_state.get("status", ""),
                                integration_user=runtime.integration_user(change.connection), stale=stale,
                                source=Incident.from_dict(source_state) if source_state else None, times=times,
                                written_at=_aware(written) if written else None, target_written=target_written)
        if late_decision and any(op.op == "transition" for op in plan.ops):
            _restore_desk_state(plan, route, ticket)
        if refresh is not None:
            plan.ops.append(refresh)
            plan.decision = "back"
        if runtime.connectors[route.source].is_chat:
            _announce_instead(plan, route, ticket, target_seen, target_written, stale=stale)
        link.save("field_times", times.data)
        if not stale:  # a snapshot read before our own last write says nothing about the desk's state now
            link.save("target_seen", {**target_seen, **observed_fields(route.mapping, ticket)})
        link.save("seen_entries", seen + plan.seen_entries)
        link.target_number = ticket.number
        session.add(link)
        _queue(runtime, session, route, link, plan, row)
        _audit_conflicts(runtime, session, route, link, plan)
        results.append({"route": route.name, "decision": plan.decision, "link": link.id,
                        "ops": [op.op for op in plan.ops], "echoes": plan.echoes})
    return results


def _decided_after(ticket: Ticket, target_written: dict[str, Any], integration_user: str | None,
                   state_field: str | None = None) -> bool:
    """Whether a snapshot read before the bridge's last write still holds a desk decision that counts.

    The bridge's write may carry an older source change (delivered late: retries, a busy queue); a
    person's edit made after that source change is newer by last-writer-wins, even though the bridge's
    write landed after it. Only a state the bridge neither wrote nor replaced can be such a decision (a
    snapshot showing the state from before the write is just older: a person commented, say). Desk times
    have one-second resolution: a tie goes to the desk, as for state everywhere else.
    """
    source_at = parse_time(target_written.get(WRITTEN_SOURCE_AT))
    if source_at is None or (integration_user and ticket.updated_by == integration_user):
        return False
    state_field = state_field or "state"
    state = ticket.fields.get(state_field)
    if state in (target_written.get(state_field), target_written.get(WRITTEN_STATE_BEFORE)):
        return False  # the state the bridge wrote, or the one it replaced: no decision of the desk's
    return whole_second(ticket.updated_at) >= whole_second(source_at)


def _restore_desk_state(plan: Plan, route: Route, ticket: Ticket) -> None:
    """A desk decision the bridge's late write overwrote is put back on the ticket (besides flowing to
    the source): the source's own event about it is then an echo, and would not restore it."""
    field = route.mapping.back.state_field
    plan.ops.append(PlannedOp("target", "update", {"fields": {field: ticket.fields[field]}, "note": "",
                                                   "at": format_time(ticket.updated_at)}))


def _plan_link(incident: Incident, change: Change) -> Plan:
    """``/itsm link INC0012345`` from a chat channel: link the existing ticket instead of creating one."""
    return Plan("link", [PlannedOp("target", "link", {"number": str(incident.raw["link_ticket"])})],
                seen_entries=[entry.id for entry in change.entries])


def _announce_instead(plan: Plan, route: Route, ticket: Ticket, target_seen: dict[str, str],
                      target_written: dict[str, str], *, stale: bool) -> None:
    """A chat channel has no status to move: desk changes are told to it as one announcement."""
    plan.ops = [op for op in plan.ops if op.op == "note" or op.side == "target"]
    announcement = None if stale else plan_announcement(route.mapping, ticket=ticket, target_seen=target_seen,
                                                        target_written=target_written)
    if announcement is not None:
        plan.ops.append(announcement)
        if plan.decision in ("no-change", "echo"):
            plan.decision = "back"


def _raise_from_desk(runtime: Runtime, session: Session, route: Route, change: Change,
                     row: InboxEvent) -> dict[str, Any]:
    """A desk ticket matching the route's ``[routes.raise]`` filter opens an incident in the source.

    The link is made now (with a placeholder source id) so the ticket is never raised twice; the
    outbox op finds the incident by its key before creating one, and then completes the link.
    """
    ticket = change.ticket
    assert ticket is not None and route.raise_ is not None
    settings = route.raise_
    service = settings.service_map.get(ticket.fields.get(settings.service_field, ""), settings.service_id)
    link = Link(route=route.name, source_connection=route.source, source_id=f"desk:{ticket.id}",
                target_connection=route.target, target_id=ticket.id, target_number=ticket.number,
                target_url=ticket.url, correlation_id=f"{change.connection}:{ticket.id}")
    link.save("target_seen", observed_fields(route.mapping, ticket))
    link.save("target_written", observed_fields(route.mapping, ticket))  # the baseline later writes compare to
    link.save("seen_entries", [entry.id for entry in change.entries])
    session.add(link)
    session.flush()
    title = ticket.fields.get(settings.title_field) or f"{runtime.label(change.connection)} {ticket.number}"
    plan = Plan("raise", [PlannedOp("source", "raise", {
        "title": f"{ticket.number}: {title}", "service_id": service, "urgency": settings.urgency,
        "incident_key": link.correlation_id,
        "details": f"Raised from {runtime.label(change.connection)} ticket {ticket.number}: {ticket.url}"})])
    _queue(runtime, session, route, link, plan, row)
    return {"route": route.name, "decision": "raise", "link": link.id, "ops": ["raise"], "service": service}


def _audit_conflicts(runtime: Runtime, session: Session, route: Route, link: Link, plan: Plan) -> None:
    """Every last-writer-wins decision is an audit entry naming both values and the winner."""
    for conflict in plan.conflicts:
        audit.append(runtime.store, session, "conflict.decided", link.correlation_id,
                     {"route": route.name, "link": link.id, **conflict})


def _queue(runtime: Runtime, session: Session, route: Route, link: Link, plan: Plan, row: InboxEvent) -> None:
    """Insert the plan's ops into the outbox; the key makes re-processing the same event a no-op."""
    session.add(link)
    session.flush()
    for index, op in enumerate(plan.ops):
        connection = route.target if op.side == "target" else route.source
        key = f"{route.name}:{link.id}:{row.connection}:{row.event_id}:{index}"
        payload = op.payload
        if op.op == "refresh":  # when the snapshot that asks for it was read (see outbox._refresh)
            payload = {**payload, "observed": format_time(_aware(row.observed_at))}
        queue_op(runtime, session, key=key, route=route.name, link=link, connection=connection, side=op.side,
                 op=op.op, payload=payload)


def _feed_timelines(runtime: Runtime, session: Session, change: Change, results: list[dict[str, Any]],
                    ref: str) -> None:
    """Keep each linked incident's compliance timeline in step, in the same transaction, citing `ref`."""
    for link_id in {result["link"] for result in results if result.get("link")}:
        link = session.get(Link, link_id)
        if link is None:
            continue
        current = get_timeline(session, link.correlation_id)
        if change.ticket is not None:
            updated = from_ticket(current, change.ticket, timeline_id=link.correlation_id, ref=ref,
                                  desk_fields=runtime.compliance.desk_fields)
        elif change.incident is not None:
            updated = from_incident(current, change.incident, timeline_id=link.correlation_id,
                                    at=change.occurred_at, ref=ref)
        else:
            continue
        save_timeline(session, updated)


def correlation_id(connection: str, source_id: str) -> str:
    """The stable key written on the desk ticket that makes "find before create" possible."""
    return f"{connection}:{source_id}"


def _dead_letter_event(runtime: Runtime, event_id: int, exc: Exception) -> None:
    with runtime.store.transaction() as session:
        row = session.get(InboxEvent, event_id)
        if row is None:
            return
        route = exc.route if isinstance(exc, MappingError) else None
        message = str(exc) if isinstance(exc, MappingError) else f"{type(exc).__name__}: {exc}"
        hint = ("fix the mapping (itsm-bridge mappings preview shows the result), then "
                "itsm-bridge dead-letter replay") if isinstance(exc, MappingError) else \
            "this is a bug in itsm-bridge or a connector; report it with the dead-letter payload"
        row.status = "dead"
        row.error = message
        session.add(row)
        letter = DeadLetter(kind="inbox", ref_id=row.id, connection=row.connection, route=route,
                            record_key=row.record_key, error=f"{message}. Next: {hint}", payload=row.change)
        session.add(letter)
        session.flush()
        audit.append(runtime.store, session, "event.dead_lettered", row.record_key,
                     {"event_id": row.event_id, "dead_letter": letter.id, "error": message, "route": route})
    runtime.metrics.dead_letters.labels("inbox").inc()
