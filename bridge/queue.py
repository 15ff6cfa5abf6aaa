"""Queueing an op in the outbox: the one way every part of the bridge asks for a write."""

from __future__ import annotations

from typing import Any, Mapping

from sqlmodel import Session

from bridge.runtime import Runtime
from bridge.store import Link, OutboxOp, dumps


def queue_op(runtime: Runtime, session: Session, *, key: str, route: str, link: Link, connection: str,
             side: str, op: str, payload: Mapping[str, Any]) -> bool:
    """Insert an op unless one with the same idempotency `key` exists (re-processing is then a no-op)."""
    return runtime.store.insert_ignore(session, OutboxOp, {
        "idempotency_key": key, "route": route, "link_id": link.id, "connection": connection, "side": side,
        "op": op, "payload": dumps(dict(payload)), "status": "pending", "attempts": 0,
        "next_attempt_at": runtime.clock(), "created_at": runtime.clock(),
    })
