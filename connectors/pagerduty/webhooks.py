"""PagerDuty webhooks v3: signature verification and pure normalisation of event payloads.

PagerDuty signs the raw body only (no timestamp), ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256>``; during
a secret rotation the header carries several comma-separated ``v1=`` entries and any match is enough.
Redeliveries repeat the ``X-Webhook-Id`` header, which is therefore the inbox de-duplication key.

The ``data`` of an incident event is *not* the REST incident: it has ``number`` (not ``incident_number``),
``assignees[]`` (not ``assignments[].assignee``) and ``priority.summary`` (no ``name``). Everything here
is a pure function of its arguments so it can be tested on recorded fixtures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry, parse_time

SIGNATURE_HEADER = "x-pagerduty-signature"
WEBHOOK_ID_HEADER = "x-webhook-id"

#: Incident events whose ``data`` is an incident object, and the timeline kind each one adds.
INCIDENT_EVENTS: dict[str, str] = {
    "incident.triggered": "status",
    "incident.acknowledged": "status",
    "incident.unacknowledged": "status",
    "incident.resolved": "status",
    "incident.reopened": "status",
    "incident.reassigned": "assignment",
    "incident.escalated": "assignment",
    "incident.delegated": "assignment",
    "incident.priority_updated": "priority",
    "incident.service_updated": "service",
}
NOTE_EVENT = "incident.annotated"


# -- signatures --------------------------------------------------------------------------------------
def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` under `secret`: what follows ``v1=`` in the signature header."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value for `body`, one ``v1=`` entry per active secret."""
    return ",".join(f"v1={sign(secret, body)}" for secret in secrets)


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers with lower-cased names, so a plain dict and a server's mapping are looked up alike."""
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | None, *, connection: str) -> None:
    """Raise `WebhookError(status=401)` unless one ``v1=`` signature of the header matches `body`.

    Every entry is compared in constant time (`hmac.compare_digest`), and the messages never contain the
    secret or the expected signature: a caller probing the endpoint learns nothing but "refused".
    """
    if not secret:
        raise WebhookError(f"no webhook_secret configured for connection {connection}; refusing unsigned "
                           "webhooks (set webhook_secret to the subscription's signing secret)", status=401)
    header = lower_headers(headers).get(SIGNATURE_HEADER, "").strip()
    if not header:
        raise WebhookError(f"{connection}: missing X-PagerDuty-Signature header", status=401)
    candidates = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    if not candidates:
        raise WebhookError(f"{connection}: X-PagerDuty-Signature has no v1= signature", status=401)
    expected = sign(secret, body)
    matched = False
    for candidate in candidates:  # no early exit: every entry costs the same
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected.encode("ascii"))
    if not matched:
        raise WebhookError(f"{connection}: X-PagerDuty-Signature does not match the body "
                           f"({len(candidates)} signature(s) checked); wrong secret or altered body",
                           status=401)


# -- parsing -----------------------------------------------------------------------------------------
def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{where}.{key} must be a non-empty string, got {_short(value)}", status=400)
    return value


def _time(value: object, where: str) -> datetime:
    try:
        moment = parse_time(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        moment = None
    if moment is None:
        raise WebhookError(f"{where} must be an ISO 8601 time, got {_short(value)}", status=400)
    return moment


def _summary(reference: object) -> str | None:
    return reference.get("summary") if isinstance(reference, Mapping) else None


def incident_from_webhook(data: Mapping[str, Any], *, source: str, occurred_at: datetime,
                          event_type: str = "") -> Incident:
    """The canonical `Incident` from a v3 event's ``data`` (webhook shape, not REST).

    `updated_at` is the event's own time: the webhook data carries no ``updated_at``. ``resolved_at`` is
    known only from the resolving event itself. Description stays empty, as in `incident_from_rest`
    (neither shape carries the body unless asked), so a poll and a webhook never disagree about it.
    """
    status = _require_str(data, "status", "event.data")
    number = data.get("number")
    return Incident(
        source=source,
        id=_require_str(data, "id", "event.data"),
        title=str(data.get("title") or ""),
        status=status,
        created_at=_time(data.get("created_at"), "event.data.created_at") if data.get("created_at") else occurred_at,
        updated_at=occurred_at,
        number=str(number) if number is not None else None,
        urgency=data.get("urgency"),
        priority=_summary(data.get("priority")),
        service=_summary(data.get("service")),
        assignees=tuple(s for s in (_summary(a) for a in data.get("assignees") or ()) if s),
        url=data.get("html_url"),
        resolved_at=occurred_at if event_type == "incident.resolved" else None,
        raw=dict(data),
    )


def describe_event(event_type: str, data: Mapping[str, Any], agent: str | None) -> str:
    """A sentence for the desk's timeline saying what responders did, e.g. "Acknowledged by Alice Adams"."""
    by = f" by {agent}" if agent else ""
    assignees = ", ".join(s for s in (_summary(a) for a in data.get("assignees") or ()) if s) or "nobody"
    verbs = {
        "incident.triggered": f"Triggered in PagerDuty on {_summary(data.get('service')) or 'its service'}{by}",
        "incident.acknowledged": f"Acknowledged{by} in PagerDuty",
        "incident.unacknowledged": (f"Unacknowledged{by} in PagerDuty" if agent
                                    else "Acknowledgement timed out in PagerDuty; triggered again"),
        "incident.resolved": f"Resolved{by} in PagerDuty",
        "incident.reopened": f"Reopened{by} in PagerDuty",
        "incident.reassigned": f"Reassigned to {assignees}{by} in PagerDuty",
        "incident.escalated": f"Escalated to {assignees}{by} in PagerDuty",
        "incident.delegated": (f"Delegated to escalation policy "
                               f"{_summary(data.get('escalation_policy')) or '?'}{by} in PagerDuty"),
        "incident.priority_updated": (f"Priority set to {_summary(data.get('priority'))}{by} in PagerDuty"
                                      if _summary(data.get("priority")) else f"Priority removed{by} in PagerDuty"),
        "incident.service_updated": (f"Moved to service {_summary(data.get('service')) or '?'}{by} "
                                     "in PagerDuty"),
    }
    return verbs.get(event_type, f"{event_type}{by} in PagerDuty")


def _envelope(body: bytes) -> Mapping[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected a PagerDuty v3 event", status=400) from exc
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict):
        raise WebhookError(f"body has no 'event' object (got {_short(document)}); is this a v3 webhook?",
                           status=400)
    return event


def parse_event(body: bytes, headers: Mapping[str, str] | None, *, connection: str) -> list[Change]:
    """The `Change` one v3 webhook describes (always exactly one; unknown types carry no incident).

    Malformed input raises `WebhookError(status=400)` naming the field and the offending value.
    """
    event = _envelope(body)
    event_type = _require_str(event, "event_type", "event")
    event_id = lower_headers(headers).get(WEBHOOK_ID_HEADER) or _require_str(event, "id", "event")
    occurred_at = _time(event.get("occurred_at"), "event.occurred_at")
    data = event.get("data")
    if not isinstance(data, dict):
        raise WebhookError(f"event.data must be an object, got {_short(data)}", status=400)
    agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
    actor, author = agent.get("id"), agent.get("summary")
    change = dict(connection=connection, event_id=event_id, event_type=event_type, occurred_at=occurred_at,
                  actor=actor, via="webhook")
    if event_type in INCIDENT_EVENTS and data.get("type", "incident") == "incident":
        incident = incident_from_webhook(data, source=connection, occurred_at=occurred_at, event_type=event_type)
        entry = TimelineEntry(id=f"{event_id}:{INCIDENT_EVENTS[event_type]}", at=occurred_at,
                              kind=INCIDENT_EVENTS[event_type], text=describe_event(event_type, data, author),
                              author=author)
        return [Change(record_id=incident.id, incident=incident, entries=(entry,), **change)]
    if event_type == NOTE_EVENT:
        reference = data.get("incident")
        if not isinstance(reference, dict):
            raise WebhookError(f"event.data.incident must be an incident reference, got {_short(reference)}",
                               status=400)
        record_id = _require_str(reference, "id", "event.data.incident")
        note = TimelineEntry(id=_require_str(data, "id", "event.data"), at=occurred_at, kind="note",
                             text=str(data.get("content") or ""), author=author)
        return [Change(record_id=record_id, entries=(note,), **change)]
    return [Change(record_id=_other_record_id(data), **change)]


def _other_record_id(data: Mapping[str, Any]) -> str:
    """The incident an unhandled event belongs to (for ordering and audit), else the resource's own id."""
    reference = data.get("incident")
    if isinstance(reference, Mapping) and isinstance(reference.get("id"), str):
        return reference["id"]
    value = data.get("id")
    if not isinstance(value, str) or not value:
        raise WebhookError(f"event.data.id must be a non-empty string, got {_short(value)}", status=400)
    return value
