"""Dead-letters: list them, and replay them once their cause is fixed (each step audited)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from bridge import audit
from bridge.ingest import store_changes
from bridge.model import format_time
from bridge.runtime import Runtime
from bridge.store import DeadLetter, InboxEvent, OutboxOp, Store


def list_letters(store: Store, *, include_resolved: bool = False) -> list[dict[str, Any]]:
    with Session(store.engine) as session:
        query = select(DeadLetter).order_by(DeadLetter.id)
        if not include_resolved:
            query = query.where(DeadLetter.resolved_at.is_(None))  # type: ignore[union-attr]
        letters = session.exec(query).all()
    return [{"id": d.id, "kind": d.kind, "connection": d.connection, "route": d.route, "ref_id": d.ref_id,
             "error": d.error, "created_at": format_time(d.created_at), "resolution": d.resolution}
            for d in letters]


def show_letter(store: Store, letter_id: int) -> dict[str, Any]:
    """One dead-letter with its payload, for `itsm-bridge dead-letter show`."""
    with Session(store.engine) as session:
        letter = session.get(DeadLetter, letter_id)
    if letter is None:
        from bridge.errors import BridgeError

        raise BridgeError(f"no dead-letter with id {letter_id} (itsm-bridge dead-letter list --all shows them)")
    return {"id": letter.id, "kind": letter.kind, "connection": letter.connection, "route": letter.route,
            "ref_id": letter.ref_id, "record": letter.record_key, "error": letter.error,
            "created_at": format_time(letter.created_at), "resolved_at": format_time(letter.resolved_at),
            "resolution": letter.resolution, "payload": letter.payload}


def discard(runtime: Runtime, letter_id: int, reason: str) -> None:
    """Give up on a dead-letter on purpose, with the reason in the audit trail; held events stay held
    only while a dead item blocks them, so discarding an inbox event releases its incident's queue."""
    from bridge.errors import BridgeError

    with runtime.store.transaction() as session:
        letter = session.get(DeadLetter, letter_id)
        if letter is None or letter.resolved_at is not None:
            raise BridgeError(f"no open dead-letter with id {letter_id} (itsm-bridge dead-letter list shows them)")
        if letter.kind == "inbox" and letter.ref_id is not None:
            row = session.get(InboxEvent, letter.ref_id)
            if row is not None:
                row.status = "discarded"
                session.add(row)
        elif letter.kind == "outbox" and letter.ref_id is not None:
            op = session.get(OutboxOp, letter.ref_id)
            if op is not None:
                op.status = "discarded"
                session.add(op)
        letter.resolved_at = runtime.clock()
        letter.resolution = f"discarded: {reason}"
        session.add(letter)
        audit.append(runtime.store, session, "dead_letter.discarded", f"{letter.kind}:{letter.id}",
                     {"dead_letter": letter.id, "ref_id": letter.ref_id, "reason": reason})


def replay(runtime: Runtime, letter_id: int | None) -> list[int]:
    """Requeue one dead-letter (or all open ones with None); returns the ids replayed."""
    with Session(runtime.store.engine) as session:
        query = select(DeadLetter.id).where(DeadLetter.resolved_at.is_(None)).order_by(DeadLetter.id)  # type: ignore[union-attr]
        if letter_id is not None:
            query = query.where(DeadLetter.id == letter_id)
        ids = list(session.exec(query).all())
    if letter_id is not None and not ids:
        from bridge.errors import BridgeError

        raise BridgeError(f"no open dead-letter with id {letter_id} (itsm-bridge dead-letter list shows them)")
    for one in ids:
        _replay_one(runtime, one)
    return ids


def _replay_one(runtime: Runtime, letter_id: int) -> None:
    with runtime.store.transaction() as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        letter_kind, connection, payload = letter.kind, letter.connection, letter.payload
        if letter.kind == "inbox" and letter.ref_id is not None:
            row = session.get(InboxEvent, letter.ref_id)
            if row is not None:
                row.status, row.error = "pending", None
                session.add(row)
        elif letter.kind == "outbox" and letter.ref_id is not None:
            op = session.get(OutboxOp, letter.ref_id)
            if op is not None:
                op.status, op.attempts, op.next_attempt_at, op.last_error = "pending", 0, runtime.clock(), None
                session.add(op)
        letter.resolved_at = runtime.clock()
        letter.resolution = "replayed"
        session.add(letter)
        audit.append(runtime.store, session, "dead_letter.replayed", f"{letter.kind}:{letter.id}",
                     {"dead_letter": letter.id, "ref_id": letter.ref_id})
    if letter_kind == "webhook":
        # Verified when it arrived; parse again with the (presumably fixed) connector.
        changes = runtime.connectors[connection].parse_webhook(payload.encode("utf-8"), {})
        store_changes(runtime, changes)
