"""The daemon's DORA deadline clock: a work note on the desk ticket and an audit entry when a report
deadline comes within the configured lead time, and again when it passes. Each alert is sent once: its
key is kept in the audit trail, which is also what proves to an auditor that the desk was told."""

from __future__ import annotations

import json
import logging

from sqlmodel import Session, select

from bridge import audit
from bridge.runtime import Runtime
from bridge.queue import queue_op
from bridge.store import AuditEntry, Link
from compliance.clock import Alert, due_alerts
from compliance.store import load_timelines

log = logging.getLogger(__name__)
KIND = "compliance.deadline_alert"


def sent_keys(runtime: Runtime) -> set[str]:
    with Session(runtime.store.engine) as session:
        rows = session.exec(select(AuditEntry.data).where(AuditEntry.kind == KIND)).all()
    return {json.loads(row).get("key", "") for row in rows}


def run_deadline_clock(runtime: Runtime) -> list[Alert]:
    """Send every alert that is due now; returns them (for logs and tests)."""
    timelines = [t for t in load_timelines(runtime.store) if t.classified_major]
    alerts = due_alerts(timelines, runtime.compliance, runtime.clock(), sent_keys(runtime))
    for alert in alerts:
        with runtime.store.transaction() as session:
            link = session.exec(select(Link).where(Link.correlation_id == alert.incident_id)
                                .order_by(Link.id)).first()  # type: ignore[arg-type]
            if link is not None and link.target_id:
                queue_op(runtime, session, key=f"deadline:{alert.key}", route=link.route, link=link,
                         connection=link.target_connection, side="target", op="note", payload={"text": alert.message})
            audit.append(runtime.store, session, KIND, alert.incident_id, {
                "key": alert.key, "rule_id": alert.rule_id, "stage": alert.stage, "kind": alert.kind,
                "deadline": alert.deadline.isoformat(), "message": alert.message,
                "desk_ticket": link.target_number if link else None,
            })
        log.warning("%s", alert.message)
    return alerts
