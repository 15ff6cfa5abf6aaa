"""What `itsm-bridge status`, /healthz and /metrics report: queue depths, oldest waits, dead-letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from bridge.config import Config
from bridge.config_limits import limits_of
from bridge.model import format_time, utcnow
from bridge.store import BreakerRow, DeadLetter, InboxEvent, Link, OutboxOp, Store


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


def status_report(store: Store, config: Config | None = None) -> dict[str, Any]:
    """Queue depths plus the oldest waiting items and the open dead-letters, for humans and --json;
    with `config`, also every connection's own queue, breaker and rate limit (``connections``)."""
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
    report["connections"] = connection_report(store, config)
    return report


def connection_report(store: Store, config: Config | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """Per connection: its pending ops and the oldest one's age, open dead-letters, circuit breaker and
    rate limit. Read from the store only, so a separate `itsm-bridge status` process sees what the
    daemon's breakers last wrote."""
    now = now or utcnow()
    with Session(store.engine) as session:
        pending = {name: (int(count), oldest) for name, count, oldest in session.exec(
            select(OutboxOp.connection, func.count(), func.min(OutboxOp.created_at))
            .where(OutboxOp.status == "pending").group_by(OutboxOp.connection)).all()}
        dead = dict(session.exec(select(DeadLetter.connection, func.count())
                                 .where(DeadLetter.resolved_at.is_(None))  # type: ignore[union-attr]
                                 .group_by(DeadLetter.connection)).all())
        breakers = {row.connection: row for row in session.exec(select(BreakerRow)).all()}
    names = list(config.connections) if config is not None else []
    names += sorted((set(pending) | set(dead) | set(breakers)) - set(names))
    report: dict[str, Any] = {}
    for name in names:
        count, oldest = pending.get(name, (0, None))
        row = breakers.get(name)
        entry: dict[str, Any] = {
            "outbox_pending": count,
            "oldest_pending_at": format_time(oldest) if oldest else None,
            "oldest_pending_age_seconds": round(max(0.0, (now - _aware(oldest)).total_seconds()), 1) if oldest else None,
            "dead_letters": int(dead.get(name, 0)),
            "breaker": {"state": row.state if row else "closed", "failures": row.failures if row else 0,
                        "opened_at": format_time(_aware(row.opened_at)) if row and row.opened_at else None,
                        "reopens_at": format_time(_aware(row.reopens_at)) if row and row.reopens_at else None,
                        "last_error": row.last_error if row else None},
        }
        if config is not None and name in config.connections:
            rate, burst, breaker = limits_of(config.connections[name])
            entry.update(rate_limit_per_minute=rate, rate_limit_burst=burst,
                         failure_threshold=breaker.failure_threshold, open_seconds=breaker.open_seconds)
        report[name] = entry
    return report


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
