"""The daemon's DORA deadline clock: a work note on the desk ticket and an audit entry when a report
deadline comes within the configured lead time, and again when it passes. Each alert is sent once: its
key is kept in the audit trail, which is also what proves to an auditor that the desk was told."""

from __future__ import annotations

import json
import logging

from sqlalchemy import or_
from sqlmodel import Session, col, select

from bridge import audit
from bridge.queue import queue_op
from bridge.runtime import Runtime
from bridge.store import AuditEntry, Link, Store
from compliance.clock import Alert, due_alerts
from compliance.store import IncidentTimeline
from compliance.timeline import Timeline

log = logging.getLogger(__name__)
KIND = "compliance.deadline_alert"


def sent_keys(runtime: Runtime) -> set[str]:
    with Session(runtime.store.engine) as session:
        rows = session.exec(select(AuditEntry.data).where(AuditEntry.kind == KIND)).all()
    return {json.loads(row).get("key", "") for row in rows}


def major_timelines(store: Store) -> list[Timeline]:
    """The timelines of incidents classified major (the only ones owing DORA reports), by incident id.

    The clock runs every minute and most incidents are not major: parsing every stored timeline each
    time made the daemon's memory and CPU grow with its whole history (bench/throughput.py). Stored
    timelines carry only the keys that are set, so a major one mentions ``"major"`` or
    ``"classified_major_at"``: SQL keeps just those rows (a superset), the model decides exactly.
    """
    text = col(IncidentTimeline.timeline)
    with Session(store.engine) as session:
        rows = session.exec(select(IncidentTimeline.timeline)
                            .where(or_(text.contains('"major"'), text.contains('"classified_major_at"')))
                            .order_by(IncidentTimeline.incident_id)).all()  # type: ignore[arg-type]
    return [timeline for timeline in map(Timeline.model_validate_json, rows) if timeline.classified_major]


def run_deadline_clock(runtime: Runtime) -> list[Alert]:
    """Send every alert that is due now; returns them (for logs and tests)."""
    timelines = major_timelines(runtime.store)
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
