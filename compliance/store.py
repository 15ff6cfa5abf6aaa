"""Timelines in the bridge's database, and recording events with an audit entry in the same transaction.

The table shares the SQLModel metadata of `bridge.store`, so ``Store.create_schema()`` creates it once
this module is imported (the lead imports it from `bridge.store`). Each recorded event appends a
``compliance.recorded`` audit entry and keeps a reference to it (``audit#42 sha256:...``) in the
timeline's ``evidence`` under the event's name: findings cite those references, and an auditor finds
each one in the exported, hash-chained audit segment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, Session, SQLModel, select

from bridge import audit
from bridge.model import format_time, utcnow
from bridge.store import AuditEntry, Store, dumps
from compliance.timeline import Timeline, apply_event

RECORDED = "compliance.recorded"
IMPORTED = "compliance.imported"
ASSESSED = "compliance.recurring_assessed"


class IncidentTimeline(SQLModel, table=True):
    """One incident's compliance timeline as JSON, keyed by the source incident (``pagerduty:P123``)."""

    __tablename__ = "incident_timeline"

    incident_id: str = Field(primary_key=True)
    opened_at: datetime | None = Field(default=None, index=True)
    timeline: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


def evidence_ref(entry: AuditEntry) -> str:
    """How findings cite an audit entry: its sequence number and the start of its hash."""
    return f"audit#{entry.seq} sha256:{entry.hash[:16]}"


class UnknownIncident(LookupError):
    """No timeline is stored under that incident id."""


def get_timeline(session: Session, incident_id: str) -> Timeline | None:
    row = session.get(IncidentTimeline, incident_id)
    return Timeline.model_validate_json(row.timeline) if row else None


def save_timeline(session: Session, timeline: Timeline) -> None:
    """Insert or replace one timeline (in the caller's transaction)."""
    row = session.get(IncidentTimeline, timeline.id)
    text = timeline.model_dump_json(exclude_defaults=True)
    opened = timeline.opened_at
    if row is None:
        row = IncidentTimeline(incident_id=timeline.id, opened_at=opened, timeline=text)
    else:
        row.timeline, row.opened_at, row.updated_at = text, opened, utcnow()
    session.add(row)


def load_timelines(store: Store, start: datetime | None = None, end: datetime | None = None) -> list[Timeline]:
    """Timelines of incidents opened in [start, end) (all when no bounds), ordered by id."""
    from compliance.checker import in_period  # lazy: importing the table must not load the rule packs

    with Session(store.engine) as session:  # the JSON column only: row objects would cost more than parsing
        statement = select(IncidentTimeline.timeline).order_by(IncidentTimeline.incident_id)  # type: ignore[arg-type]
        texts = session.exec(statement).all()
    return in_period([Timeline.model_validate_json(text) for text in texts], start, end)


def record_event(store: Store, incident_id: str, name: str, at: datetime, ref: str | None = None, *,
                 create: bool = False) -> dict[str, Any]:
    """Apply one event, append its audit entry, cite the entry in the timeline; all in one transaction.

    Raises `UnknownIncident` unless the timeline exists or `create` is set, and
    `compliance.timeline.EventError` when the event is not valid; nothing is written then.
    """
    with store.transaction() as session:
        timeline = get_timeline(session, incident_id)
        if timeline is None:
            if not create:
                raise UnknownIncident(incident_id)
            timeline = Timeline(id=incident_id)
        updated = apply_event(timeline, name, at, ref)
        entry = audit.append(store, session, RECORDED, incident_id,
                             {"event": name, "at": format_time(at), "ref": ref})
        evidence = {**updated.evidence, name: [*updated.evidence.get(name, []), evidence_ref(entry)]}
        updated = updated.model_copy(update={"evidence": evidence,
                                             "audit_events": (updated.audit_events or 0) + 1})
        save_timeline(session, updated)
        return audit.entry_to_dict(entry)


def import_timelines(store: Store, timelines: Iterable[Timeline]) -> int:
    """Store imported timelines (replacing same ids), one audit entry each so the import itself is evidence."""
    count = 0
    with store.transaction() as session:
        for timeline in timelines:
            entry = audit.append(store, session, IMPORTED, timeline.id,
                                 {"sha256": _digest(timeline)})
            refs = {**timeline.evidence, "imported": [*timeline.evidence.get("imported", []), evidence_ref(entry)]}
            save_timeline(session, timeline.model_copy(update={"evidence": refs}))
            count += 1
    return count


def record_assessment(store: Store, month: str, at: datetime, note: str | None = None) -> dict[str, Any]:
    """Record that the monthly recurring-incident assessment (RTS 2024/1772 Art. 8(2)) was done."""
    with store.transaction() as session:
        entry = audit.append(store, session, ASSESSED, month, {"at": format_time(at), "note": note})
        return audit.entry_to_dict(entry)


def load_assessments(store: Store) -> list[datetime]:
    """Months with a recorded recurring-incident assessment, as the first instant of each month (UTC)."""
    from datetime import timezone

    with Session(store.engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.kind == ASSESSED)).all()
    out = []
    for row in rows:
        year, month = (int(part) for part in row.subject.split("-")[:2])
        out.append(datetime(year, month, 1, tzinfo=timezone.utc))
    return out


def _digest(timeline: Timeline) -> str:
    import hashlib

    return hashlib.sha256(dumps(json.loads(timeline.model_dump_json())).encode()).hexdigest()
