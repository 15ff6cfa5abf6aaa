"""Pure normalisers of Squadcast API v3 records (the incident export, one incident, warroom notes).

Shapes, from the v3 API reference (developers.incidents.cloud.solarwinds.com/api-reference, the official
SDK solarwinds/squadcast-sdk-python, whose models give the wire names) and the Faros Airbyte source
(faros-ai/airbyte-connectors ``sources/squadcast-source``, a reader of the export):

- ``GET /v3/incidents/export?type=json`` answers ``{"incidents": [{id, title, description, status,
  service (name), alert_source, assignee, created_at, acknowledged_at, resolved_at, tags, event_count,
  "tta (ms)", "ttr (ms)", logs[{action, assignedTo, id, time, reason, additionalInfo}], url}]}``.
  ``priority`` is read when present [!]; ``assignee`` is taken to be a display name [!].
- ``GET /v3/incidents/{id}`` answers ``{"data": {id, service_id, alert_source_id, organization_id,
  incidentNumber, message, assignedTo[{id, type, timeOfAssignment, reason}], description, status,
  timeOfCreation, updated_at, last_acknowledged_at, tags, logs, owner{id, type}, priority?, has_priority,
  ...}}`` (ids only: the service name comes from ``GET /v3/services``).
- ``GET /v3/incidents/{id}/warroom`` answers ``{"data": [{id, created_at, updated_at, incident_id,
  user_id, message, type, attachments, user{id, first_name, last_name}, replaced_message}]}``; only
  ``type: message`` entries are notes people wrote.

Malformed records raise `WebhookError(400)` naming the field, like the webhook normalisers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Incident, TimelineEntry
from connectors.squadcast.webhooks import (
    canonical_status,
    name_of,
    priority_of,
    read_time,
    require_str,
    short,
)


def incident_url(web_url: str | None, incident_id: str) -> str | None:
    return f"{web_url.rstrip('/')}/incident/{incident_id}" if web_url else None


def last_activity(item: Mapping[str, Any], where: str = "incident") -> datetime | None:
    """The latest moment an export record shows: its creation, acknowledgement, resolution or any log line.

    The export has no ``updated_at``; this is what the poll compares with its cursor.
    """
    moments = [read_time(item.get(key), f"{where}.{key}") for key in ("created_at", "acknowledged_at", "resolved_at")]
    logs = item.get("logs") if isinstance(item.get("logs"), list) else []
    for log in logs:
        if isinstance(log, Mapping):
            moments.append(read_time(log.get("time"), f"{where}.logs.time"))
    found = [moment for moment in moments if moment is not None]
    return max(found) if found else None


def incident_from_export(item: Mapping[str, Any], *, source: str) -> Incident:
    """The canonical `Incident` from one ``incidents`` item of the JSON export."""
    record_id = require_str(item, "id", "incident")
    status = canonical_status(item.get("status"), record_id)
    created = read_time(item.get("created_at"), "incident.created_at")
    if created is None:
        raise WebhookError(f"incident {record_id}: created_at must be an RFC 3339 time, got "
                           f"{short(item.get('created_at'))}", status=400)
    assignee = name_of(item.get("assignee"))
    resolved_at = read_time(item.get("resolved_at"), "incident.resolved_at") if status == "resolved" else None
    return Incident(
        source=source, id=record_id, title=str(item.get("title") or item.get("message") or ""), status=status,
        created_at=created, updated_at=last_activity(item) or created,
        description=str(item.get("description") or ""), priority=priority_of(item.get("priority")),
        service=name_of(item.get("service")), assignees=(assignee,) if assignee else (),
        url=item.get("url") if isinstance(item.get("url"), str) else None,
        resolved_at=resolved_at or (created if status == "resolved" else None), raw=dict(item),
    )


def incident_from_rest(data: Mapping[str, Any], *, source: str, web_url: str | None = None,
                       services: Mapping[str, str] | None = None) -> Incident:
    """The canonical `Incident` from ``GET /v3/incidents/{id}`` (``data``). Assignees are ids here."""
    record_id = require_str(data, "id", "data")
    status = canonical_status(data.get("status"), record_id)
    created = read_time(data.get("timeOfCreation"), "data.timeOfCreation")
    if created is None:
        raise WebhookError(f"incident {record_id}: timeOfCreation must be an RFC 3339 time", status=400)
    logs = [log for log in data.get("logs") or () if isinstance(log, Mapping)] if isinstance(data.get("logs"), list) else []
    resolved = [read_time(log.get("time"), "data.logs.time") for log in logs if log.get("action") == "resolved"]
    assigned = data.get("assignedTo") if isinstance(data.get("assignedTo"), list) else []
    service_id = data.get("service_id")
    number = data.get("incidentNumber")
    return Incident(
        source=source, id=record_id, title=str(data.get("message") or ""), status=status, created_at=created,
        updated_at=read_time(data.get("updated_at"), "data.updated_at") or created,
        number=str(number) if number is not None else None, description=str(data.get("description") or ""),
        priority=priority_of(data.get("priority")),
        service=(services or {}).get(str(service_id), str(service_id)) if service_id else None,
        assignees=tuple(name for name in (name_of(a) for a in assigned) if name),
        url=incident_url(web_url, record_id),
        resolved_at=(resolved[-1] or created) if status == "resolved" and resolved else None, raw=dict(data),
    )


def user_name(user: object) -> str | None:
    if not isinstance(user, Mapping):
        return None
    full = " ".join(str(user.get(key) or "") for key in ("first_name", "last_name")).strip()
    return full or name_of(user)


def note_entry(note: Mapping[str, Any]) -> TimelineEntry | None:
    """A warroom note people wrote (``type`` message) as a timeline entry; other types give None."""
    if note.get("type", "message") != "message":
        return None
    note_id = require_str(note, "id", "note")
    at = read_time(note.get("created_at"), "note.created_at")
    if at is None:
        raise WebhookError(f"note {note_id}: created_at must be an RFC 3339 time", status=400)
    return TimelineEntry(id=note_id, at=at, kind="note", text=str(note.get("message") or ""),
                         author=user_name(note.get("user")))
