"""Delivering the outbox: each op at least once, exactly once in effect.

- The attempt is recorded (committed) before the call, so after a crash the op knows it may already
  have landed: a create then finds the ticket by correlation id, a note looks for its marker first.
- Ops of one link go in order; an op waiting for a retry holds back the link's later ops.
- Transient failures (429, 5xx, resets) are retried with exponential backoff honouring Retry-After, up
  to `sync.max_attempts`; permanent ones are dead-lettered at once with the desk's own error message.
- Every delivery and every dead-letter is an audit entry (op, record, fields, HTTP status).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from bridge import audit, desk_guard
from bridge.breakers import held_for, may_call, spares_attempt
from bridge.diff import WRITTEN_SOURCE_AT, WRITTEN_STATE_BEFORE, observed_fields
from bridge.errors import AuthError, ConflictError, ConnectorError, PermanentError, TransientError
from bridge.ingest import store_changes
from bridge.model import Change, Incident, Ticket, format_time, parse_time
from bridge.runtime import Runtime
from bridge.queue import queue_op
from bridge.store import DeadLetter, Link, OutboxOp, dumps, retry_transient
from compliance.feed import from_ticket_created
from compliance.store import evidence_ref, get_timeline, save_timeline
from connectors.base import Announcement, Connector, FieldChange, marker

log = logging.getLogger(__name__)


@dataclass
class DeliveryStats:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    waiting: int = 0


def deliver_due(runtime: Runtime, *, limit: int = 500, stopping: Callable[[], bool] = lambda: False) -> DeliveryStats:
    """Deliver every op that is due, in order per link; returns what happened. `stopping` is asked
    before each op: a daemon told to stop leaves the rest for its next start."""
    stats = DeliveryStats()
    now = runtime.clock()
    with Session(runtime.store.engine) as session:
        blocked = set(session.exec(select(OutboxOp.link_id).where(OutboxOp.status == "dead")).all())
        pending = session.exec(select(OutboxOp).where(OutboxOp.status == "pending")
                               .order_by(OutboxOp.id).limit(limit)).all()  # type: ignore[arg-type]
    for op in pending:
        if stopping():
            break
        if op.link_id in blocked or op.next_attempt_at.replace(tzinfo=now.tzinfo) > now:
            blocked.add(op.link_id)
            stats.waiting += 1
            continue
        permit = may_call(runtime, op.connection)
        if permit is None:  # the connection rests (breaker open) or waits out a 429: no attempt is used
            blocked.add(op.link_id)
            stats.waiting += 1
            continue
        outcome = deliver_one(runtime, op.id, probe=permit.probe)  # type: ignore[arg-type]
        if outcome == "skipped" and permit.probe:
            runtime.breakers.release(op.connection)
        if outcome == "delivered":
            stats.delivered += 1
        else:
            blocked.add(op.link_id)
            if outcome == "retry":
                stats.retried += 1
            elif outcome == "dead":
                stats.dead += 1
    return stats


def next_due_in(runtime: Runtime) -> float | None:
    """Seconds until the earliest pending op is due (0 if one is due now), None if nothing is pending.
    An op of a connection that rests (breaker open, 429 pause) is due when the rest is over."""
    with Session(runtime.store.engine) as session:
        rows = session.exec(select(OutboxOp.connection, func.min(OutboxOp.next_attempt_at))
                            .where(OutboxOp.status == "pending").group_by(OutboxOp.connection)).all()
    if not rows:
        return None
    now = runtime.clock()
    return min(max(0.0, (due.replace(tzinfo=now.tzinfo) - now).total_seconds(), held_for(runtime, connection))
               for connection, due in rows)


def deliver_one(runtime: Runtime, op_id: int, *, probe: bool = False) -> str:
    """Claim, perform and record one op: ``delivered``, ``retry``, ``dead`` or ``skipped``.

    How the call went is told to the connection's circuit breaker. `probe` marks the one op a half-open
    breaker lets through: if the connection is still failing, that attempt is not held against the op.
    """
    now = runtime.clock()
    with runtime.store.transaction() as session:
        query = select(OutboxOp).where(OutboxOp.id == op_id, OutboxOp.status == "pending")
        if not runtime.store.is_sqlite:
            # Several replicas: only a due op can be claimed, and claiming it moves it out of sight for
            # the lease, so no other replica performs it while this one is in the call. A crash mid-call
            # leaves it to be retried when the lease runs out (idempotently: find, marker, read-back).
            query = query.where(OutboxOp.next_attempt_at <= now).with_for_update(skip_locked=True)
        op = session.exec(query).first()
        if op is None:
            return "skipped"
        op.attempts += 1
        if not runtime.store.is_sqlite:
            op.next_attempt_at = now + timedelta(seconds=runtime.config.sync.claim_lease_seconds)
        session.add(op)
        link = session.get(Link, op.link_id)
    assert op is not None and link is not None
    connector = runtime.connectors[op.connection]
    try:
        result = _perform_retrying_in_place(runtime, connector, op, link)
    except (TransientError, ConflictError, AuthError) as exc:
        runtime.breakers.record(op.connection, exc)
        return _fail(runtime, op, exc, retryable=True, counted=not spares_attempt(exc, probe=probe))
    except PermanentError as exc:
        runtime.breakers.record(op.connection, exc)
        return _fail(runtime, op, exc, retryable=False)
    except Exception as exc:  # a bug must not kill the worker; the op is kept for replay
        runtime.breakers.record(op.connection, exc)
        log.exception("outbox op %s failed unexpectedly", op.id)
        return _fail(runtime, op, exc, retryable=False)
    runtime.breakers.record(op.connection, None)
    status = None if result.get("no_call") else getattr(connector.session, "last_status", None)
    retry_transient(lambda: _record_success(runtime, op, result, status=status))
    runtime.metrics.ops_delivered.labels(op.connection, op.op).inc()
    return "delivered"


def _perform_retrying_in_place(runtime: Runtime, connector: Connector, op: OutboxOp, link: Link) -> dict[str, Any]:
    """Perform the op; when the transport left a failure to us rather than retry it (a write that may
    have been carried out, a guarded write), perform the whole op again at once, as the transport
    would have retried the request: this time searching for the ticket or note it may have written,
    and re-reading what a guarded write depends on (`RetryingSession.retrying_whole`)."""
    retrying_whole = getattr(connector.session, "retrying_whole", None)
    if retrying_whole is None:
        return _perform(runtime, connector, op, link, retrying=op.attempts > 1)
    return retrying_whole(lambda attempt: _perform(runtime, connector, op, link,  # type: ignore[no-any-return]
                                                   retrying=op.attempts > 1 or attempt > 1))


def _perform(runtime: Runtime, connector: Connector, op: OutboxOp, link: Link, *, retrying: bool) -> dict[str, Any]:
    """One try of the op. `retrying`: an earlier try may have landed, so look for its effects first."""
    payload = json.loads(op.payload)
    tag = marker(str(op.id))
    answer: Ticket | None = None  # the ticket as a desk answered a write with it (ServiceNow)
    if op.op == "create":
        fields = _with_note(runtime, op, payload, tag)
        search = retrying or payload.get("find_first", True) or runtime.config.sync.find_before_create == "always"
        existing = connector.find(link.correlation_id) if search else None
        if existing is not None:
            if fields.get(_notes_field(runtime, op)) and connector.has_note(existing.id, tag):
                fields.pop(_notes_field(runtime, op))
            conflicts = desk_guard.desk_decisions(runtime, connector, op, existing.id, fields)
            connector.update(existing.id, fields)
            runtime.metrics.duplicates_prevented.labels(op.connection).inc(0 if retrying else 1)
            return {"record": existing, "fields": payload["fields"], "found_existing": True, "conflicts": conflicts}
        ref = connector.create(fields, correlation_id=link.correlation_id)
        _remote_link(runtime, connector, ref.id, link)
        return {"record": ref, "fields": payload["fields"], "found_existing": False}
    if op.op == "link":
        return _link_existing(runtime, connector, op, link, payload["number"])
    if op.op == "update" and op.side == "target":
        fields = _with_note(runtime, op, payload, tag)
        note_field = _notes_field(runtime, op)
        if retrying and fields.get(note_field) and connector.has_note(link.target_id, tag):  # type: ignore[arg-type]
            fields.pop(note_field)
        conflicts, read = desk_guard.desk_newer(runtime, connector, op, link, payload, fields)
        if fields:
            # Right after the guard's read: no waiting in between, or a desk decision made meanwhile
            # would be overwritten by a write decided on the older read; where the desk can check the
            # state is still the one read (JSM), it does.
            update_if = getattr(connector, "update_if", None)
            if read is not None and update_if is not None:
                update_if(link.target_id, fields, expect=read.fields)  # prompt where it matters, itself
            else:
                with desk_guard.prompt(connector.session) if read is not None else nullcontext():
                    answer = connector.update(link.target_id, fields)  # type: ignore[arg-type]
        sent = {name: value for name, value in payload["fields"].items() if name in fields}
        return {"fields": sent, "conflicts": conflicts, **_answered(runtime, answer)}
    if op.op == "raise":
        ref = connector.find_incident(payload["incident_key"]) or connector.create_incident(
            title=payload["title"], service_id=payload["service_id"], urgency=payload["urgency"],
            details=payload["details"], incident_key=payload["incident_key"])
        incident = connector.get_incident(ref.id)
        stamp = getattr(runtime.connectors[link.target_connection], "stamp", None)
        if stamp is not None:
            stamp(link.target_id, f"{link.source_connection}:{ref.id}")
        return {"raised": incident.to_dict()}
    if op.op == "refresh":
        return {} if _refresh(runtime, connector, op, link) else {"no_call": True}
    if op.op == "transition":
        connector.transition(link.source_id, payload["status"])
        return {"status": payload["status"]}
    if op.op == "escalate":
        connector.escalate(link.source_id)
        return {}
    if op.op == "update" and op.side == "source":
        connector.update(link.source_id, payload["fields"])
        return {"source_fields": payload["fields"]}
    if op.op == "announce":
        if not (retrying and connector.has_note(link.source_id, tag)):
            changes = tuple(FieldChange(**change) for change in payload["changes"])
            connector.announce(link.source_id, Announcement(  # type: ignore[attr-defined]
                desk=runtime.label(link.target_connection), number=payload["number"], url=payload["url"],
                changes=changes, actor=payload.get("actor"), tag=tag))
        return {}
    if op.op == "note":
        record = link.source_id if op.side == "source" else link.target_id
        if not (retrying and connector.has_note(record, tag)):  # type: ignore[arg-type]
            answer = connector.add_note(record, f"{payload['text']} {tag}")  # type: ignore[arg-type]
        return _answered(runtime, answer) if op.side == "target" else {}
    raise PermanentError(f"unknown op {op.op!r}", connection=op.connection)


def _link_existing(runtime: Runtime, connector: Connector, op: OutboxOp, link: Link, number: str) -> dict[str, Any]:
    """Link a ticket a person named (``/itsm link INC0012345``): stamp it so polls and finds recognise it,
    and read it once so the fields it has now are the baseline later desk changes are told against."""
    ref = connector.find_number(number)
    if ref is None:
        raise PermanentError(f"{runtime.label(op.connection)} has no ticket {number!r} to link "
                             f"(asked from {link.source_connection} {link.source_id})", connection=op.connection)
    stamp = getattr(connector, "stamp", None)
    if stamp is not None:
        stamp(ref.id, link.correlation_id)
    route = runtime.route(op.route)
    seen = observed_fields(route.mapping, connector.get(ref.id)) if route is not None else {}
    _remote_link(runtime, connector, ref.id, link)
    return {"record": ref, "seen": seen, "found_existing": True, "linked": number}


def _answered(runtime: Runtime, answer: Ticket | None) -> dict[str, Any]:
    """The record a desk answered a write with, and when the answer came (what a refresh may rely on)."""
    return {"answer": answer, "answered_at": format_time(runtime.clock())} if answer is not None else {}


def _remote_link(runtime: Runtime, connector: Connector, record_id: str, link: Link) -> None:
    """Desks that keep links apart from fields (JSM remote links) get one back to the source incident."""
    add = getattr(connector, "add_remote_link", None)
    url = link.load("source_state").get("url")
    if add is not None and url:
        add(record_id, url, f"{runtime.label(link.source_connection)} incident {link.source_id}")


def _refresh(runtime: Runtime, connector: Connector, op: OutboxOp, link: Link) -> bool:
    """Read a ticket again and queue what it shows as a fresh change (after a stale snapshot).

    When the desk answered the bridge's last write with the record (`Link.target_answer`), that answer
    is such a read, made at the moment of the write: no call is needed. A later desk change comes with
    a later poll or webhook, which the write does not make stale. Only a snapshot read before the answer
    came is settled so: one read after it (before the write was recorded) may hold a newer desk change,
    and the ticket is read. Whether the desk was called."""
    answered, ticket = _kept_answer(link)
    snapshot_read = parse_time(json.loads(op.payload).get("observed"))
    if ticket and answered and snapshot_read and snapshot_read <= answered and link.target_written_at is not None:
        observed, called = link.target_written_at, False
    else:
        observed, called = runtime.clock(), True
        ticket = connector.get(link.target_id)  # type: ignore[arg-type]
    change = Change(connection=op.connection, event_id=f"refresh:{ticket.id}:{op.id}", event_type="ticket.refreshed",
                    record_id=ticket.id, occurred_at=ticket.updated_at, ticket=ticket, via="refresh")
    store_changes(runtime, [change], observed_at=observed)
    return called


def _kept_answer(link: Link) -> tuple[datetime | None, Ticket | None]:
    """When the desk answered the last write, and the ticket it answered with; (None, None) when no answer
    was kept or it cannot be read (then the ticket is simply read again)."""
    try:
        answer = json.loads(link.target_answer) if link.target_answer else None
        return (parse_time(answer["at"]), Ticket.from_dict(answer["ticket"])) if answer else (None, None)
    except (KeyError, TypeError, ValueError):
        log.warning("link %s: the desk's kept answer cannot be read; reading the ticket instead", link.id)
        return None, None


def _notes_field(runtime: Runtime, op: OutboxOp) -> str:
    route = runtime.route(op.route)
    return route.mapping.spec.notes.field if route else "work_notes"


def _with_note(runtime: Runtime, op: OutboxOp, payload: dict[str, Any], tag: str) -> dict[str, str]:
    fields = dict(payload["fields"])
    if payload.get("note"):
        fields[_notes_field(runtime, op)] = f"{payload['note']}\n{tag}"
    return fields


def _record_success(runtime: Runtime, op: OutboxOp, result: dict[str, Any], *, status: int | None) -> None:
    with runtime.store.transaction() as session:
        row = session.get(OutboxOp, op.id)
        link = session.get(Link, op.link_id)
        assert row is not None and link is not None
        row.status = "done"
        row.done_at = runtime.clock()
        row.last_error = None
        session.add(row)
        record = result.get("record")
        if record is not None:
            link.target_id, link.target_number, link.target_url = record.id, record.number, record.url
        if result.get("seen"):
            link.save("target_seen", {**link.load("target_seen"), **result["seen"]})
        if "fields" in result and op.side == "target":
            seen = link.load("target_seen")
            link.save("target_seen", {**seen, **result["fields"]})
            # Also when the source change behind this write happened, and the state the desk showed
            # before it: a desk decision read before this write landed but made after that change is
            # newer, and must still count (engine); the state before the write is not such a decision.
            source_at = json.loads(op.payload).get("at")
            route = runtime.route(op.route)
            stamp = {WRITTEN_SOURCE_AT: source_at} if source_at else {}
            if route is not None and route.mapping.back.state_field in result["fields"]:
                stamp[WRITTEN_STATE_BEFORE] = seen.get(route.mapping.back.state_field)
            link.save("target_written", {**link.load("target_written"), **result["fields"], **stamp})
        if op.side == "target" and op.op != "refresh":
            link.target_written_at = runtime.clock()
            answer = result.get("answer")
            link.target_answer = dumps({"at": result["answered_at"], "ticket": answer.to_dict()}) \
                if answer is not None else None
        written = {"status": result["status"]} if op.op == "transition" else result.get("source_fields") or {}
        if op.side == "source" and written:
            # Remember what the bridge set on the source, so the source's own event about it is an echo.
            state = link.load("source_state")
            link.save("source_state", Incident.from_dict({**state, **written}).to_dict())
            pending = {k: v for k, v in link.load("pending_echo").items() if k != "at"}
            link.save("pending_echo", {**pending, **written, "at": format_time(runtime.clock())})
        session.add(link)
        if op.op in ("create", "link"):
            _queue_backlink(runtime, session, op, link)
        if result.get("raised"):
            # The desk-raised incident exists: the link now points at it like any other pair.
            link.source_id = result["raised"]["id"]
            link.correlation_id = f"{link.source_connection}:{link.source_id}"
            link.save("source_state", result["raised"])
            session.add(link)
            _queue_raised_note(runtime, session, op, link)
        for conflict in result.get("conflicts") or ():
            audit.append(runtime.store, session, "conflict.decided", link.correlation_id,
                         {"route": op.route, "link": link.id, "op_id": op.id, **conflict})
        if result.get("conflicts"):
            _queue_refresh(runtime, session, op, link)
        entry = audit.append(runtime.store, session, "op.delivered", f"{op.connection}:{link.target_number or link.source_id}", {
            "op": op.op, "op_id": op.id, "route": op.route, "side": op.side, "attempt": op.attempts,
            "record": link.target_id if op.side == "target" else link.source_id,
            "number": link.target_number if op.side == "target" else None,
            "fields": result.get("fields") or result.get("source_fields")
            or ({"status": result["status"]} if "status" in result else {}),
            "found_existing": result.get("found_existing", False), "http_status": status,
        })
        if op.op == "create" and link.target_number:
            timeline = from_ticket_created(get_timeline(session, link.correlation_id), timeline_id=link.correlation_id,
                                           number=link.target_number, ref=evidence_ref(entry))
            save_timeline(session, timeline)


def _queue_backlink(runtime: Runtime, session: Session, op: OutboxOp, link: Link) -> None:
    """After a create: tell the responders where the ticket is (a note on the source incident)."""
    route = runtime.route(op.route)
    if route is None or not runtime.connectors[route.source].can_add_notes:
        return  # the ticket still links back to the incident through its description and link fields
    label = runtime.label(op.connection)
    verb = "linked to" if op.op == "link" else "opened for"
    text = f"{label} ticket {link.target_number} {verb} this incident: {link.target_url}"
    queue_op(runtime, session, key=f"backlink:{op.idempotency_key}", route=op.route, link=link,
             connection=route.source, side="source", op="note", payload={"text": text})


def _queue_raised_note(runtime: Runtime, session: Session, op: OutboxOp, link: Link) -> None:
    """Tell the desk which incident its ticket opened (a work note with the incident's link)."""
    state = link.load("source_state")
    text = f"{runtime.label(link.source_connection)} incident {state.get('number') or link.source_id} opened " \
           f"from this ticket; responders are paged: {state.get('url') or ''}"
    queue_op(runtime, session, key=f"raised:{op.idempotency_key}", route=op.route, link=link,
             connection=link.target_connection, side="target", op="note", payload={"text": text})


def _queue_refresh(runtime: Runtime, session: Session, op: OutboxOp, link: Link) -> None:
    """Read the ticket again after this write, so the desk's newer state is processed as a desk change."""
    queue_op(runtime, session, key=f"refresh-after:{op.id}", route=op.route, link=link,
             connection=op.connection, side="target", op="refresh", payload={"after_op": op.id})


def _backoff(runtime: Runtime, attempts: int, hinted: float | None) -> float:
    sync = runtime.config.sync
    delay = min(sync.max_backoff_seconds, sync.backoff_seconds * (2 ** (attempts - 1)))
    delay = delay * (0.5 + random.random() / 2)  # jitter: replicas and links do not retry in lockstep
    return max(delay, hinted or 0.0)


def _fail(runtime: Runtime, op: OutboxOp, exc: Exception, *, retryable: bool, counted: bool = True) -> str:
    """Reschedule or dead-letter a failed op; `counted=False` gives the attempt back (see `deliver_one`)."""
    message = str(exc) if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"
    runtime.metrics.ops_failed.labels(op.connection, op.op, type(exc).__name__).inc()
    give_up = not retryable or (counted and op.attempts >= runtime.config.sync.max_attempts)
    with runtime.store.transaction() as session:
        row = session.get(OutboxOp, op.id)
        assert row is not None
        if not counted:
            # Never below 1: "attempts > 1" is how the next try knows an earlier one may have landed
            # (and looks for its note marker before writing again).
            row.attempts = max(1, row.attempts - 1)
        row.last_error = message
        if not give_up:
            hinted = exc.retry_after if isinstance(exc, ConnectorError) else None
            wait = _backoff(runtime, row.attempts, hinted)
            if isinstance(exc, AuthError):
                wait = runtime.config.sync.max_backoff_seconds
            row.next_attempt_at = runtime.clock() + timedelta(seconds=wait)
            session.add(row)
            log.warning("op %s (%s %s) failed, retry in %.1fs: %s", op.id, op.op, op.connection, wait, message)
            return "retry"
        row.status = "dead"
        session.add(row)
        reason = "permanent error" if not retryable else f"gave up after {row.attempts} attempts"
        fields = ", ".join(sorted(json.loads(op.payload).get("fields", {}))) or "-"
        error = (f"route {op.route!r}: {op.op} on {op.connection} failed ({reason}): {message}. "
                 f"Fields sent: {fields}. Next: fix the cause, then itsm-bridge dead-letter replay")
        letter = DeadLetter(kind="outbox", ref_id=op.id, connection=op.connection, route=op.route,
                            record_key=str(op.link_id), error=error, payload=op.payload)
        session.add(letter)
        session.flush()
        audit.append(runtime.store, session, "op.dead_lettered", f"{op.connection}:link{op.link_id}",
                     {"op": op.op, "op_id": op.id, "route": op.route, "error": message,
                      "attempts": row.attempts, "dead_letter": letter.id})
    runtime.metrics.dead_letters.labels("outbox").inc()
    log.error("op %s dead-lettered: %s", op.id, error)
    return "dead"
