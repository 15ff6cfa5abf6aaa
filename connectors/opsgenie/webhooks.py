"""Opsgenie outgoing webhooks: shared-secret verification and pure normalisation of alert payloads.

Opsgenie signs nothing (api-facts §4): the outgoing-webhook integration can only add custom headers,
so the admin adds ``X-Itsm-Bridge-Token: <secret>`` there and the bridge compares it in constant time.
There is no timestamp and no delivery id; a redelivery repeats the body, so the event id is built from
the alert id, the action and ``alert.updatedAt`` (epoch *nanoseconds*, unique per change).

The payload (``{action, alert{alertId, message, tinyId, alias, entity, tags, createdAt (ms),
updatedAt (ns), username, userId, priority, owner, note, description?, details?}, source, integration*}``)
carries no alert status. The status is therefore only known from the status actions (Create,
Acknowledge, UnAcknowledge, Close). Their payloads are not complete either: Opsgenie's documented
Acknowledge/UnAcknowledge/Close samples carry neither ``priority`` nor ``owner``, Create's sample has
``priority: 3`` (a number), and ``description``/``details`` come only when the integration adds them.
`missing_keys` names what a status webhook lacks of `INCIDENT_KEYS`; the connector then completes the
change by re-reading the alert, and works from the payload alone when nothing is missing. The field
actions (`REREAD_ACTIONS`: UpdatePriority, UpdateMessage, UpdateDescription, AddTags, RemoveTags,
AssignOwnership, TakeOwnership) change what the incident shows, so `parse_payload` gives their timeline
line and `OpsgenieConnector.parse_webhook` re-reads the alert
(``GET /v2/alerts/{id}``) for the full incident. AddNote gives the note and Escalate a line, without an
incident; any other action (AddTeam, AddRecipient, AddResponder, Delete, custom actions...) passes
through bare, for the audit.
Opsgenie notes have no id in either API, so a note's id is a digest of alert id, author and text
(the same in a webhook and in ``GET /v2/alerts/{id}/notes``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry

TOKEN_HEADER = "x-itsm-bridge-token"

#: Actions that state the alert's status, and the canonical status they leave it in.
STATUS_ACTIONS: dict[str, str] = {
    "Create": "triggered", "Acknowledge": "acknowledged", "UnAcknowledge": "triggered", "Close": "resolved",
}
#: Actions that change what the incident shows (a canonical field, or tags/description that templates
#: read from ``incident.raw``), and the kind of the timeline line each adds. The payload has no status,
#: so the connector re-reads the alert to complete the change.
REREAD_ACTIONS: dict[str, str] = {
    "UpdatePriority": "priority", "UpdateMessage": "update", "UpdateDescription": "update",
    "AddTags": "tags", "RemoveTags": "tags", "AssignOwnership": "assignment", "TakeOwnership": "assignment",
}
#: Actions worth a timeline line that change nothing the incident shows.
LINE_ACTIONS: dict[str, str] = {"Escalate": "assignment"}
NOTE_ACTION = "AddNote"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
#: The alert keys a status webhook's incident is built from: the canonical fields (title, number, created
#: time, priority, assignees, service) and what the shipped presets read from ``incident.raw`` (tags and
#: description). A status webhook lacking one is completed by re-reading the alert; without the re-read
#: a missing priority would map to the desk's default urgency and a missing description would drop the
#: alert text from the ticket, both put back by the next read: a flip-flop of desk writes.
INCIDENT_KEYS = ("message", "tinyId", "createdAt", "priority", "owner", "entity", "tags", "description")


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_token(headers: Mapping[str, str], secret: str | None, *, connection: str) -> None:
    """Raise `WebhookError(status=401)` unless ``X-Itsm-Bridge-Token`` equals `secret` (constant time)."""
    if not secret:
        raise WebhookError(f"no webhook_secret configured for connection {connection}; refusing "
                           "unauthenticated webhooks (set webhook_secret and send it in the outgoing "
                           "webhook's X-Itsm-Bridge-Token header)", status=401)
    given = lower_headers(headers).get(TOKEN_HEADER, "")
    if not given:
        raise WebhookError(f"{connection}: missing X-Itsm-Bridge-Token header", status=401)
    if not hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode("utf-8")):
        raise WebhookError(f"{connection}: X-Itsm-Bridge-Token does not match the configured "
                           "webhook_secret", status=401)


def note_id(alert_id: str, author: str | None, text: str) -> str:
    """A stable id for a note (Opsgenie gives none): digest of alert id, author and text."""
    return hashlib.sha256(f"{alert_id}\n{author or ''}\n{text}".encode()).hexdigest()[:16]


def missing_keys(alert: Mapping[str, Any]) -> list[str]:
    """The `INCIDENT_KEYS` the webhook's `alert` lacks (a priority other than P1..P5 counts as lacking)."""
    missing = [key for key in INCIDENT_KEYS if key not in alert]
    if "priority" in alert and alert["priority"] not in PRIORITIES:
        missing.append("priority")
    return missing


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{where}.{key} must be a non-empty string, got {_short(value)}", status=400)
    return value


def _epoch(value: object, where: str, *, divisor: int) -> datetime:
    """An epoch integer (ms or ns, by `divisor`) as an aware UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise WebhookError(f"{where} must be an epoch number, got {_short(value)}", status=400)
    return datetime.fromtimestamp(value / divisor, tz=timezone.utc)


def alert_url(web_url: str | None, alert_id: str) -> str | None:
    return f"{web_url.rstrip('/')}/alert/detail/{alert_id}/details" if web_url else None


def incident_from_webhook(alert: Mapping[str, Any], *, source: str, status: str, occurred_at: datetime,
                          web_url: str | None = None) -> Incident:
    """The canonical `Incident` from a webhook's ``alert`` whose status the action told us.

    Description stays empty as in `incident_from_rest`; the text is in ``incident.raw.description`` when
    the integration sends it. A priority other than P1..P5 (the Create sample's ``3``) is left unset:
    `missing_keys` has the connector re-read it.
    """
    alert_id = _require_str(alert, "alertId", "alert")
    owner = alert.get("owner")
    return Incident(
        source=source, id=alert_id, title=str(alert.get("message") or ""), status=status,
        created_at=_epoch(alert["createdAt"], "alert.createdAt", divisor=1000) if alert.get("createdAt")
        else occurred_at,
        updated_at=occurred_at,
        number=str(alert["tinyId"]) if alert.get("tinyId") is not None else None,
        priority=alert["priority"] if alert.get("priority") in PRIORITIES else None,
        service=alert.get("entity") or None,
        assignees=(str(owner),) if owner else (),
        url=alert_url(web_url, alert_id),
        resolved_at=occurred_at if status == "resolved" else None,
        raw=dict(alert),
    )


def _tag_list(value: object) -> str:
    """``addedTags``/``removedTags`` (a comma-separated string in Opsgenie's payloads, or a list)."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return ", ".join(str(item).strip() for item in items if str(item).strip()) or "?"


def describe_action(action: str, alert: Mapping[str, Any], author: str | None) -> str:
    """A sentence for the desk's timeline, e.g. "Acknowledged by alice@example.com in Opsgenie"."""
    by = f" by {author}" if author else ""
    owner = alert.get("owner") or author or "nobody"
    old_priority, priority = alert.get("oldPriority"), alert.get("priority") or "?"
    verbs = {
        "Create": f"Alert created in Opsgenie{' on ' + alert['entity'] if alert.get('entity') else ''}{by}",
        "Acknowledge": f"Acknowledged{by} in Opsgenie",
        "UnAcknowledge": f"Unacknowledged{by} in Opsgenie; triggered again",
        "Close": f"Closed{by} in Opsgenie",
        "Escalate": f"Escalated to the next level{by} in Opsgenie",
        "AssignOwnership": f"Ownership assigned to {owner}{by} in Opsgenie",
        "TakeOwnership": f"Ownership taken{by} in Opsgenie",
        "UpdatePriority": (f"Priority changed from {old_priority} to {priority}{by} in Opsgenie" if old_priority
                           else f"Priority set to {priority}{by} in Opsgenie"),
        "UpdateMessage": f"Message changed to {str(alert.get('message') or '')!r}{by} in Opsgenie",
        "UpdateDescription": f"Description updated{by} in Opsgenie",
        "AddTags": f"Tags added: {_tag_list(alert.get('addedTags'))}{by} in Opsgenie",
        "RemoveTags": f"Tags removed: {_tag_list(alert.get('removedTags'))}{by} in Opsgenie",
    }
    return verbs.get(action, f"{action}{by} in Opsgenie")


def _payload(body: bytes) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected an Opsgenie outgoing webhook", status=400) from exc
    if not isinstance(document, dict):
        raise WebhookError(f"body must be a JSON object, got {_short(document)}", status=400)
    action = _require_str(document, "action", "payload")
    alert = document.get("alert")
    if not isinstance(alert, dict):
        raise WebhookError(f"payload.alert must be an object, got {_short(alert)}", status=400)
    return action, alert, document


def parse_payload(body: bytes, *, connection: str, web_url: str | None = None) -> list[Change]:
    """The one `Change` an outgoing webhook describes.

    Status actions carry the incident as the payload shows it (the connector re-reads the alert when the
    payload lacks `INCIDENT_KEYS`); `REREAD_ACTIONS` and Escalate carry their timeline line only (the
    connector completes the former by re-reading the alert); AddNote carries the note; anything else
    passes through bare. The event id is ``{alertId}:{action}:{updatedAt}`` (a redelivery repeats it).
    """
    action, alert, _document = _payload(body)
    alert_id = _require_str(alert, "alertId", "alert")
    occurred_at = _epoch(alert.get("updatedAt"), "alert.updatedAt", divisor=1_000_000_000)
    author = alert.get("username") or None
    common = dict(connection=connection, record_id=alert_id, event_type=f"alert.{action}",
                  event_id=f"{alert_id}:{action}:{alert['updatedAt']}", occurred_at=occurred_at,
                  actor=alert.get("userId") or author, via="webhook")
    if action in STATUS_ACTIONS:
        incident = incident_from_webhook(alert, source=connection, status=STATUS_ACTIONS[action],
                                         occurred_at=occurred_at, web_url=web_url)
        entry = TimelineEntry(id=f"{common['event_id']}:status", at=occurred_at, kind="status",
                              text=describe_action(action, alert, author), author=author)
        return [Change(incident=incident, entries=(entry,), **common)]
    if action == NOTE_ACTION:
        text = alert.get("note")
        if not isinstance(text, str):
            raise WebhookError(f"alert.note must be a string on AddNote, got {_short(text)}", status=400)
        note = TimelineEntry(id=note_id(alert_id, author, text), at=occurred_at, kind="note", text=text,
                             author=author)
        return [Change(entries=(note,), **common)]
    kind = REREAD_ACTIONS.get(action) or LINE_ACTIONS.get(action)
    if kind:
        entry = TimelineEntry(id=f"{common['event_id']}:{kind}", at=occurred_at, kind=kind,
                              text=describe_action(action, alert, author), author=author)
        return [Change(entries=(entry,), **common)]
    return [Change(**common)]
