"""Feeding compliance timelines from what the bridge syncs (pure; the engine stores the result).

Every source change and every desk read updates the incident's timeline in the same transaction as the
sync itself, with a reference to the audit entry that proves it. The source says when the incident was
opened, became known, was acknowledged and resolved; the desk says the ITIL record (state, priority,
impact, urgency, category, group, resolution fields, closure) and, through ``[compliance.desk_fields]``,
anything the desk records for regulators (a ``u_dora_major`` flag, a root cause, a problem number).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.model import Incident, Ticket
from compliance.timeline import StateChange, Timeline

#: Timeline fields a desk field can feed: the value of the desk field becomes the timeline's value.
DESK_FIELD_TARGETS = ("major", "root_cause", "problem_id", "category", "pir_at", "client_notified_at",
                      "management_informed_at", "classified_major_at", "recovered_at")
_TRUE = {"true", "1", "yes", "y"}


def _first(current: datetime | None, candidate: datetime | None) -> datetime | None:
    return current or candidate


def _cite(timeline: Timeline, event: str, ref: str | None) -> dict[str, list[str]]:
    evidence = {name: list(refs) for name, refs in timeline.evidence.items()}
    if ref and ref not in evidence.get(event, []):
        evidence.setdefault(event, []).append(ref)
    return evidence


def from_incident(timeline: Timeline | None, incident: Incident, *, timeline_id: str, at: datetime,
                  ref: str | None) -> Timeline:
    """The timeline after a source change: opened/aware, acknowledged and resolved times, title."""
    timeline = timeline or Timeline(id=timeline_id)
    values: dict[str, Any] = {
        "title": incident.title, "source": incident.source,
        "opened_at": _first(timeline.opened_at, incident.created_at),
        "detected_at": _first(timeline.detected_at, incident.created_at),
    }
    event = "opened" if timeline.opened_at is None else "source_update"
    if incident.status in ("acknowledged", "resolved") and timeline.acknowledged_at is None:
        values["acknowledged_at"] = at
        event = "acknowledged"
    if incident.status == "resolved" and timeline.resolved_at is None:
        values["resolved_at"] = incident.resolved_at or at
        event = "resolved"
    values["evidence"] = _cite(timeline, event, ref)
    values["audit_events"] = (timeline.audit_events or 0) + (1 if ref else 0)
    return timeline.model_copy(update=values)


def from_ticket(timeline: Timeline | None, ticket: Ticket, *, timeline_id: str, ref: str | None,
                desk_fields: Mapping[str, str] | None = None) -> Timeline:
    """The timeline after a desk read: the ITIL record's fields, its state history and closure."""
    timeline = timeline or Timeline(id=timeline_id)
    fields = ticket.fields
    values: dict[str, Any] = {"desk_record": ticket.number}
    for name in ("impact", "urgency", "priority"):
        if str(fields.get(name, "")).isdigit():
            values[name] = int(fields[name])
    for name in ("category", "assignment_group", "close_code", "close_notes"):
        if fields.get(name):
            values[name] = fields[name]
    event = "desk_update"
    state = fields.get("state")
    history = list(timeline.state_history)
    if state and state.isdigit() and state in {"1", "2", "3", "6", "7", "8"}:
        change = StateChange(state=state, at=ticket.updated_at)
        if not history or history[-1].state != change.state:
            history.append(change)
            event = f"desk_state_{change.state}"
        values["state"] = state
        values["state_history"] = history
        if state == "6" and timeline.resolved_at is None:
            values["resolved_at"] = ticket.updated_at
        if state == "7" and timeline.closed_at is None:
            values["closed_at"] = ticket.updated_at
    values.update(_desk_extras(fields, desk_fields or {}, at=ticket.updated_at, timeline=timeline))
    values["evidence"] = _cite(timeline, event, ref)
    values["audit_events"] = (timeline.audit_events or 0) + (1 if ref else 0)
    return Timeline.model_validate({**timeline.model_dump(), **values})


def from_ticket_created(timeline: Timeline | None, *, timeline_id: str, number: str, ref: str | None) -> Timeline:
    """The desk record exists (DORA-REC1): remember its number."""
    timeline = timeline or Timeline(id=timeline_id)
    return timeline.model_copy(update={"desk_record": number, "evidence": _cite(timeline, "desk_record", ref),
                                       "audit_events": (timeline.audit_events or 0) + (1 if ref else 0)})


def _desk_extras(fields: Mapping[str, str], desk_fields: Mapping[str, str], *, at: datetime,
                 timeline: Timeline) -> dict[str, Any]:
    """Values from desk fields named in ``[compliance.desk_fields]`` (timeline field = desk field)."""
    values: dict[str, Any] = {}
    for target, desk_field in desk_fields.items():
        raw = str(fields.get(desk_field, "") or "").strip()
        if not raw:
            continue
        if target == "major":
            major = raw.lower() in _TRUE
            values["major"] = major
            if major and timeline.classified_major_at is None:
                values["classified_major_at"] = at
        elif target.endswith("_at"):
            values[target] = raw.replace(" ", "T") + ("" if "+" in raw or raw.endswith("Z") else "Z")
        else:
            values[target] = raw
    return values
