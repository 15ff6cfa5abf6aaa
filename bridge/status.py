"""What `itsm-bridge status`, /healthz and /metrics report: queue depths, oldest waits, dead-letters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from bridge.model import format_time
from bridge.store import DeadLetter, InboxEvent, Link, OutboxOp, Store


def queue_depths(store: Store) -> dict[str, int]:
    with Session(store.engine) as session:
        def count(model: Any, *where: Any) -> int:
            return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

        return {
            "inbox_pending": count(InboxEvent, InboxEvent.status == "pending"),
            "outbox_pending": count(OutboxOp, OutboxOp.status == "pending"),
            "dead_letters": count(DeadLetter, DeadLetter.resolved_at.is_(None)),  # type: ignore[union-attr]
            "links": count(Link),
        }


def status_report(store: Store) -> dict[str, Any]:
    """Queue depths plus the oldest waiting items and the open dead-letters, for humans and --json."""
    report: dict[str, Any] = queue_depths(store)
    with Session(store.engine) as session:
        oldest_in = session.exec(select(func.min(InboxEvent.received_at)).where(InboxEvent.status == "pending")).one()
        oldest_out = session.exec(select(func.min(OutboxOp.created_at)).where(OutboxOp.status == "pending")).one()
        failing = session.exec(select(OutboxOp).where(OutboxOp.status == "pending", OutboxOp.attempts > 0)
                               .order_by(OutboxOp.id).limit(20)).all()  # type: ignore[arg-type]
        letters = session.exec(select(DeadLetter).where(DeadLetter.resolved_at.is_(None))  # type: ignore[union-attr]
                               .order_by(DeadLetter.id).limit(50)).all()
        blocked = session.exec(select(func.count()).select_from(InboxEvent).where(
            InboxEvent.status == "pending",
            InboxEvent.record_key.in_(select(InboxEvent.record_key).where(InboxEvent.status == "dead")))).one()  # type: ignore[attr-defined]
    report["oldest_inbox_pending"] = format_time(oldest_in) if oldest_in else None
    report["oldest_outbox_pending"] = format_time(oldest_out) if oldest_out else None
    report["events_waiting_behind_dead_letters"] = int(blocked)
    report["retrying"] = [{"op": op.id, "kind": op.op, "connection": op.connection, "route": op.route,
                           "attempts": op.attempts, "next_attempt_at": format_time(op.next_attempt_at),
                           "error": op.last_error} for op in failing]
    report["open_dead_letters"] = [{"id": d.id, "kind": d.kind, "connection": d.connection, "route": d.route,
                                    "error": d.error, "created_at": format_time(d.created_at)} for d in letters]
    return report
