"""Squadcast outgoing webhooks (v2): shared-secret verification and pure normalisation of the payloads.

Authentication. Squadcast's outgoing webhooks sign nothing: the configuration offers URLs, filters,
retries and "Additional headers" that are attached to every call, and no secret or signature scheme
(developers.squadcast.com/outgoing-webhooks, support.squadcast.com "Outgoing Webhooks", and the
``header`` field of ``POST /v3/extensions/event-webhooks`` in the v3 API reference). So the admin adds the
header ``X-Itsm-Bridge-Token: <secret>`` (name configurable) and the bridge compares it with the
connection's ``webhook_secret`` in constant time, refusing a missing or wrong one with 401. No timestamp
is signed, so there is no replay window to enforce; a redelivery repeats ``event.id``, which the inbox
de-duplicates.

The v2 payload (developers.squadcast.com/outgoing-webhooks/payload/v2/*)::

    {"version": "v2",
     "event": {"id", "type", "resource": "incident" | "incident_notes" | ..., "timestamp": RFC 3339 (ns)},
     "data": {"resource_data": {...}, "resource_type", "organization": {id, name}, "team": {id, name},
              "incident": {...}  # for events about something inside an incident (notes, tasks, ...)}}

An incident (``resource_data`` of incident events, ``data.incident`` of the others) has ``id, message
(the title), description, url, alert_source{id,type,short_name}, service{id,name,slug}, status, created_at,
assigned_to{id,name,type,assigned_at}, tags{key: {value,color}} | null, event_payload, timeline[{action,
assigned_to, name, time}], event_count, owner{id,name,type}, manually_created_by{id,name,email}``. The
examples show no ``priority``; we read it when present (P1..P5) [!]. Handled events: incident.triggered,
.acknowledged, .resolved, .reassigned (status/assignment lines) and incident.incident_notes_created (a
note); every other event that carries an incident (notes updated/deleted/starred, tags, tasks,
communication channels, SLO marks) refreshes the incident without a timeline line; the rest pass
through for the audit trail. v1 (legacy) payloads are refused: switch the webhook to v2 events.

Status mapping: triggered -> triggered, acknowledged -> acknowledged, resolved and suppressed -> resolved
(a suppressed incident never pages anyone); Squadcast's own value stays in ``raw.status``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry, parse_time

DEFAULT_TOKEN_HEADER = "X-Itsm-Bridge-Token"
STATUS_MAP: dict[str, str] = {"triggered": "triggered", "acknowledged": "acknowledged", "resolved": "resolved",
                              "suppressed": "resolved"}
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
#: Incident events, and the kind of timeline line each adds.
INCIDENT_EVENTS: dict[str, str] = {"incident.triggered": "status", "incident.acknowledged": "status",
                                   "incident.resolved": "status", "incident.reassigned": "assignment"}
NOTE_CREATED = "incident.incident_notes_created"


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_token(headers: Mapping[str, str], secret: str | None, *, connection: str,
                 header: str = DEFAULT_TOKEN_HEADER) -> None:
    """Raise `WebhookError(status=401)` unless `header` equals `secret` (constant-time compare).

    Messages name the header, never the secret or what was sent.
    """
    if not secret:
        raise WebhookError(f"no webhook_secret configured for connection {connection}; refusing "
                           f"unauthenticated webhooks (set webhook_secret and add it to the Squadcast "
                           f"webhook's additional headers as {header})", status=401)
    given = lower_headers(headers).get(header.lower(), "")
    if not given:
        raise WebhookError(f"{connection}: missing {header} header", status=401)
    if not hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode("utf-8")):
        raise WebhookError(f"{connection}: {header} does not match the configured webhook_secret", status=401)


# -- small readers -----------------------------------------------------------------------------------
def short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{where}.{key} must be a non-empty string, got {short(value)}", status=400)
    return value


def read_time(value: object, where: str) -> datetime | None:
    """An RFC 3339 time (Squadcast sends up to nanoseconds); None for absent, empty or the zero time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebhookError(f"{where} must be an RFC 3339 time, got {short(value)}", status=400)
    try:
        moment = parse_time(value)
    except ValueError as exc:
        raise WebhookError(f"{where} must be an RFC 3339 time, got {short(value)}", status=400) from exc
    return None if moment is None or moment.year <= 1 else moment  # Go's zero time means "never"


def name_of(value: object) -> str | None:
    """The display name of a reference (``{id, name, ...}``) or a plain string."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        for key in ("name", "email", "email_id", "id"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
    return None


def priority_of(value: object) -> str | None:
    """P1..P5, or None when unset (Squadcast leaves it out, empty, or ``UNSET``)."""
    return value if isinstance(value, str) and value in PRIORITIES else None


def canonical_status(value: object, record_id: str) -> str:
    if not isinstance(value, str) or value not in STATUS_MAP:
        raise WebhookError(f"incident {record_id}: unknown Squadcast status {short(value)} "
                           f"(known: {', '.join(STATUS_MAP)})", status=400)
    return STATUS_MAP[value]


# -- normalisers -------------------------------------------------------------------------------------
def _last_action(timeline: object, action: str) -> Mapping[str, Any] | None:
    found = None
    for item in timeline if isinstance(timeline, list) else ():
        if isinstance(item, Mapping) and item.get("action") == action:
            found = item
    return found


def incident_from_webhook(resource: Mapping[str, Any], *, source: str, occurred_at: datetime,
                          where: str = "data.resource_data") -> Incident:
    """The canonical `Incident` from a webhook incident (``resource_data`` or ``data.incident``)."""
    record_id = require_str(resource, "id", where)
    status = canonical_status(resource.get("status"), record_id)
    created = read_time(resource.get("created_at"), f"{where}.created_at") or occurred_at
    resolved_at = None
    if status == "resolved":
        last = _last_action(resource.get("timeline"), "resolved")
        resolved_at = (read_time(last.get("time"), f"{where}.timeline.time") if last else None) or occurred_at
    assignee = name_of(resource.get("assigned_to"))
    return Incident(
        source=source, id=record_id, title=str(resource.get("message") or ""), status=status,
        created_at=created, updated_at=occurred_at, description=str(resource.get("description") or ""),
        priority=priority_of(resource.get("priority")), service=name_of(resource.get("service")),
        assignees=(assignee,) if assignee else (), url=resource.get("url") if isinstance(resource.get("url"), str) else None,
        resolved_at=resolved_at, raw=dict(resource),
    )


def note_from_webhook(resource: Mapping[str, Any], *, occurred_at: datetime) -> TimelineEntry | None:
    """A written note (``type`` message) as a timeline entry whose id is the note's id (as in the REST
    list, so a note seen by webhook and poll is one entry). Other note types give None."""
    note_id = require_str(resource, "id", "data.resource_data")
    if resource.get("type") not in (None, "message"):
        return None
    message = resource.get("message")
    text = message.get("message") or message.get("raw_message") if isinstance(message, Mapping) else message
    if not isinstance(text, str):
        raise WebhookError(f"data.resource_data.message.message must be a string, got {short(text)}", status=400)
    at = read_time(resource.get("created_at"), "data.resource_data.created_at") or occurred_at
    return TimelineEntry(id=note_id, at=at, kind="note", text=text, author=name_of(resource.get("created_by")))


def describe(event_type: str, incident: Mapping[str, Any]) -> str:
    """A sentence for the desk's timeline, e.g. "Acknowledged by Yash Jain in Squadcast"."""
    action = event_type.removeprefix("incident.")
    last = _last_action(incident.get("timeline"), action)
    who = name_of(last.get("name")) if last else None
    by = f" by {who}" if who else ""
    assignee = name_of(incident.get("assigned_to")) or "nobody"
    service = name_of(incident.get("service"))
    verbs = {
        "incident.triggered": f"Triggered in Squadcast{' on ' + service if service else ''} (assigned to {assignee})",
        "incident.acknowledged": f"Acknowledged{by} in Squadcast",
        "incident.resolved": f"Resolved{by} in Squadcast",
        "incident.reassigned": f"Reassigned to {assignee} in Squadcast",
    }
    return verbs.get(event_type, f"{event_type} in Squadcast")


def _envelope(body: bytes) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected a Squadcast outgoing webhook", status=400) from exc
    if not isinstance(document, dict):
        raise WebhookError(f"body must be a JSON object, got {short(document)}", status=400)
    if document.get("version") != "v2":
        raise WebhookError(f"version must be 'v2', got {short(document.get('version'))}: legacy (v1) payloads "
                           "are not supported; choose v2 events on the Squadcast webhook", status=400)
    event, data = document.get("event"), document.get("data")
    if not isinstance(event, dict) or not isinstance(data, dict):
        raise WebhookError("body needs 'event' and 'data' objects", status=400)
    if not isinstance(data.get("resource_data"), dict):
        raise WebhookError(f"data.resource_data must be an object, got {short(data.get('resource_data'))}", status=400)
    return event, data


def parse_event(body: bytes, *, connection: str) -> list[Change]:
    """The one `Change` a Squadcast v2 webhook describes."""
    event, data = _envelope(body)
    event_type = require_str(event, "type", "event")
    event_id = require_str(event, "id", "event")
    occurred_at = read_time(event.get("timestamp"), "event.timestamp")
    if occurred_at is None:
        raise WebhookError(f"event.timestamp must be an RFC 3339 time, got {short(event.get('timestamp'))}",
                           status=400)
    resource = data["resource_data"]
    if event.get("resource") == "incident" or data.get("resource_type") == "incident":
        inner, where = resource, "data.resource_data"
    elif isinstance(data.get("incident"), dict):
        inner, where = data["incident"], "data.incident"
    else:
        inner, where = None, ""
    common: dict[str, Any] = {"connection": connection, "event_id": event_id, "event_type": event_type,
                              "occurred_at": occurred_at, "via": "webhook"}
    if inner is None:
        record_id = require_str(resource, "id", "data.resource_data")
        return [Change(record_id=record_id, **common)]
    incident = incident_from_webhook(inner, source=connection, occurred_at=occurred_at, where=where)
    entries: tuple[TimelineEntry, ...] = ()
    actor = None
    if event_type in INCIDENT_EVENTS:
        kind = INCIDENT_EVENTS[event_type]
        entries = (TimelineEntry(id=f"{event_id}:{kind}", at=occurred_at, kind=kind, text=describe(event_type, inner)),)
    elif event_type == NOTE_CREATED:
        note = note_from_webhook(resource, occurred_at=occurred_at)
        entries = (note,) if note else ()
        creator = resource.get("created_by")
        actor = creator.get("id") if isinstance(creator, Mapping) and isinstance(creator.get("id"), str) else None
    return [Change(record_id=incident.id, incident=incident, entries=entries, actor=actor, **common)]
