"""incident.io webhooks: Svix signatures and pure normalisation of incidents (webhook and REST alike).

Signatures (Svix, as incident.io documents and `svix/svix-webhooks:python/svix/webhooks.py` implements):
headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``, a space-separated
list of ``v1,<base64 HMAC-SHA256>`` entries (several during a secret rotation). The signed content is
``{id}.{timestamp}.{body}``, keyed with the base64-decoded part of the ``whsec_...`` secret. Timestamps
more than five minutes from our clock are refused (replays); every ``v1`` entry is compared in constant
time. Redeliveries repeat ``webhook-id``, which is therefore the inbox de-duplication key.

The envelope is ``{"event_type": T, T: payload}``. For ``public_incident.incident_created_v2`` and
``..._updated_v2`` the payload is the incident itself (the REST v2 shape); for
``..._incident_status_updated_v2`` it is ``{incident, message, new_status, previous_status}``;
``private_incident.*`` payloads are ``{id}`` only and the connector re-reads the incident.

Status categories map onto the canonical three:
- ``triage`` -> triggered (reported, nobody has accepted it yet);
- ``live``, ``paused`` -> acknowledged (declared: a lead owns it and responders are on it);
- ``learning``, ``closed``, ``declined``, ``merged``, ``canceled`` -> resolved (no more response work).
Severity (a per-organisation name, higher ``rank`` = more severe) becomes `Incident.priority` by name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Incident, parse_time

TOLERANCE = timedelta(minutes=5)
SECRET_PREFIX = "whsec_"

STATUS_BY_CATEGORY: dict[str, str] = {
    "triage": "triggered", "live": "acknowledged", "paused": "acknowledged", "learning": "resolved",
    "closed": "resolved", "declined": "resolved", "merged": "resolved", "canceled": "resolved",
}
CREATED, UPDATED = "public_incident.incident_created_v2", "public_incident.incident_updated_v2"
STATUS_UPDATED = "public_incident.incident_status_updated_v2"
PUBLIC_EVENTS = (CREATED, UPDATED, STATUS_UPDATED)
PRIVATE_PREFIX = "private_incident."
PRIVATE_EVENTS = tuple(PRIVATE_PREFIX + name.split(".", 1)[1] for name in PUBLIC_EVENTS)


# -- signatures --------------------------------------------------------------------------------------
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (its base64 part, decoded)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded)


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """One signature entry, ``v1,<base64>``, for `body` sent as `msg_id` at `timestamp`."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), content, hashlib.sha256).digest()).decode()


def signed_headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Svix headers for `body`, one ``v1`` entry per active secret."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets)}


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | None, *, connection: str,
                     now: datetime) -> None:
    """Raise `WebhookError(status=401)` unless the request is signed with `secret` within ±5 minutes.

    Messages never contain the secret or the expected signature.
    """
    if not secret:
        raise WebhookError(f"no webhook_secret configured for connection {connection}; refusing unsigned "
                           "webhooks (set webhook_secret to the endpoint's whsec_... signing secret)", status=401)
    found = lower_headers(headers)
    msg_id, stamp, header = (found.get(k, "").strip() for k in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    missing = [name for name, value in (("webhook-id", msg_id), ("webhook-timestamp", stamp),
                                        ("webhook-signature", header)) if not value]
    if missing:
        raise WebhookError(f"{connection}: missing {', '.join(missing)} header(s)", status=401)
    try:
        sent_at = datetime.fromtimestamp(int(stamp), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise WebhookError(f"{connection}: webhook-timestamp is not Unix seconds", status=401) from None
    if abs(now - sent_at) > TOLERANCE:
        raise WebhookError(f"{connection}: webhook-timestamp is {int((now - sent_at).total_seconds())} s from "
                           "our clock (more than 5 minutes): stale or replayed, or a clock is wrong", status=401)
    candidates = [part[3:] for part in header.split() if part.startswith("v1,")]
    if not candidates:
        raise WebhookError(f"{connection}: webhook-signature has no v1 signature", status=401)
    try:
        expected = sign(secret, msg_id, stamp, body)[3:].encode()
    except (binascii.Error, ValueError):
        raise WebhookError(f"{connection}: webhook_secret is not a whsec_<base64> secret; copy it again "
                           "from incident.io Settings > Webhooks", status=401) from None
    matched = False
    for candidate in candidates:  # no early exit: every entry costs the same
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected)
    if not matched:
        raise WebhookError(f"{connection}: webhook-signature does not match ({len(candidates)} signature(s) "
                           "checked); wrong secret or altered body", status=401)


# -- normalisation -----------------------------------------------------------------------------------
def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field_value(value: Mapping[str, Any]) -> str | None:
    for key, inner in (("value_catalog_entry", "name"), ("value_option", "value")):
        if isinstance(value.get(key), Mapping) and value[key].get(inner):
            return str(value[key][inner])
    for key in ("value_text", "value_link", "value_numeric"):
        if value.get(key):
            return str(value[key])
    return None


def custom_field(incident: Mapping[str, Any], name: str) -> list[str]:
    """The values of the custom field called `name` (case-insensitive), as display strings."""
    for entry in incident.get("custom_field_entries") or ():
        field = entry.get("custom_field") if isinstance(entry, Mapping) else None
        if isinstance(field, Mapping) and str(field.get("name", "")).lower() == name.lower():
            return [v for v in (_field_value(x) for x in entry.get("values") or () if isinstance(x, Mapping)) if v]
    return []


def role_holders(incident: Mapping[str, Any], role_type: str = "lead") -> tuple[str, ...]:
    """Names of the users holding roles of `role_type` (``lead`` is the incident lead)."""
    names = []
    for item in incident.get("incident_role_assignments") or ():
        role, assignee = item.get("role") or {}, item.get("assignee") or {}
        if role.get("role_type") == role_type and assignee.get("name"):
            names.append(str(assignee["name"]))
    return tuple(names)


def _timestamp(incident: Mapping[str, Any], *names: str) -> datetime | None:
    for item in incident.get("incident_timestamp_values") or ():
        label = str((item.get("incident_timestamp") or {}).get("name", "")).lower()
        value = (item.get("value") or {}).get("value")
        if label in names and value:
            return parse_time(value)
    return None


def canonical_status(incident: Mapping[str, Any]) -> str:
    status = incident.get("incident_status")
    category = status.get("category") if isinstance(status, Mapping) else None
    if category not in STATUS_BY_CATEGORY:
        raise WebhookError(f"incident.incident_status.category must be one of {', '.join(STATUS_BY_CATEGORY)}, "
                           f"got {_short(category)}", status=400)
    return STATUS_BY_CATEGORY[category]


def incident_from_api(incident: Mapping[str, Any], *, source: str, service_field: str = "Affected services") -> Incident:
    """The canonical `Incident` from an incident.io v2 incident (webhook payload or REST, same shape)."""
    incident_id = incident.get("id")
    if not isinstance(incident_id, str) or not incident_id:
        raise WebhookError(f"incident.id must be a non-empty string, got {_short(incident_id)}", status=400)
    try:
        created, updated = parse_time(incident.get("created_at")), parse_time(incident.get("updated_at"))
    except (TypeError, ValueError):
        raise WebhookError(f"incident.created_at/updated_at must be ISO 8601 times, got "
                           f"{_short(incident.get('updated_at'))}", status=400) from None
    if created is None:
        raise WebhookError("incident.created_at is missing", status=400)
    status = canonical_status(incident)
    severity = incident.get("severity")
    services = custom_field(incident, service_field)
    resolved_at = None
    if status == "resolved":
        resolved_at = _timestamp(incident, "resolved at", "closed at", "resolved", "closed") or updated or created
    return Incident(
        source=source, id=incident_id, title=str(incident.get("name") or ""), status=status,
        created_at=created, updated_at=updated or created, number=incident.get("reference"),
        description=str(incident.get("summary") or ""),
        priority=str(severity["name"]) if isinstance(severity, Mapping) and severity.get("name") else None,
        service=services[0] if services else None, assignees=role_holders(incident),
        url=incident.get("permalink"), resolved_at=resolved_at, raw=dict(incident),
    )


def envelope(body: bytes) -> tuple[str, Mapping[str, Any]]:
    """The event type and its payload; `WebhookError(400)` naming what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected an incident.io webhook", status=400) from exc
    event_type = document.get("event_type") if isinstance(document, dict) else None
    if not isinstance(event_type, str) or not event_type:
        raise WebhookError(f"body has no event_type (got {_short(document)}); is this an incident.io webhook?",
                           status=400)
    payload = document.get(event_type)
    if not isinstance(payload, dict):
        raise WebhookError(f"body has no {event_type!r} object, got {_short(payload)}", status=400)
    return event_type, payload


def describe(event_type: str, incident: Incident, payload: Mapping[str, Any]) -> str:
    """A sentence for the desk's timeline, e.g. "Status changed from Investigating to Fixing: <message>"."""
    if event_type.endswith("incident_created_v2"):
        severity = f" ({incident.priority})" if incident.priority else ""
        return f"Declared in incident.io as {incident.number or incident.id}{severity}: {incident.title}"
    if event_type.endswith("incident_status_updated_v2"):
        old = (payload.get("previous_status") or {}).get("name") or "?"
        new = (payload.get("new_status") or {}).get("name") or (incident.raw.get("incident_status") or {}).get("name")
        message = str(payload.get("message") or "").strip()
        return f"Status changed from {old} to {new} in incident.io" + (f": {message}" if message else "")
    status = (incident.raw.get("incident_status") or {}).get("name") or incident.status
    return f"Updated in incident.io (status {status}, severity {incident.priority or 'none'})"
