"""Grafana OnCall outgoing webhooks: shared-secret check and pure normalisation of alert groups.

What the sources say (grafana/oncall, read for this module: ``engine/apps/webhooks/utils.py``,
``engine/apps/webhooks/tasks/trigger_webhook.py``, ``engine/apps/webhooks/models/webhook.py``,
``docs/sources/configure/integrations/outgoing-webhooks/index.md``):
- With "Forward All" (the default) the body is ``{event{type, time?, until?}, user{id, username, email}|null,
  alert_group{id, integration_id, route_id, alerts_count, state, created_at, resolved_at, acknowledged_at,
  title, permalinks, labels{key: value}}, alert_group_id, alert_payload (the FIRST alert's payload),
  integration{id, type, name, team, labels}, notified_users, users_to_be_notified,
  alert_group_acknowledged_by, alert_group_resolved_by, responses, webhook}``.
- ``event.type`` is one of ``alert group created``, ``acknowledge``, ``resolve``, ``silence``,
  ``unsilence``, ``unresolve``, ``unacknowledge``, ``escalation``, ``personal notification``; a
  "Status change" webhook sends the type of the action that fired it. ``event.time`` is set only for
  created (started_at), acknowledge, resolve and silence (which adds ``until``); the others carry none.
- Nothing is signed. The webhook's "Authorization Header" field is sent verbatim as ``Authorization``;
  the admin sets it to the connection's `webhook_secret` (bare or ``Bearer <secret>``). Resolution notes
  fire no webhook: notes reach the bridge through `poll` only.
- The REST alert group (``GET /api/v1/alert_groups``) has the same core fields plus ``team_id``,
  ``acknowledged_by``/``resolved_by`` (user ids), ``silenced_at``, ``last_alert`` and labels as a list of
  ``{key: {id, name}, value: {id, name}}``; both shapes normalise alike here (labels become a dict).

Replays: OnCall re-sends only after a timeout or connection error, with a body rebuilt from the
same state. Event ids are stable per (alert group, event type, event time); for the types without a
time, the "time" is a digest of the body (minus other webhooks' responses), so a replay is absorbed.
[!] Consequence: an unacknowledge (unresolve, unsilence) repeated with nothing visible changed in
between reads as a replay; the catch-up poll corrects the state when it saw the state in between.
Events without a time are dated when received (`received_at`), so an unacknowledge is never taken
for older than the acknowledge it undoes.

Status (canonical triggered / acknowledged / resolved; OnCall's own state stays in ``raw["state"]``):
firing -> triggered; acknowledged, silenced -> acknowledged (silencing stops the paging, as an
acknowledge does); resolved -> resolved. Alert groups have no priority: it is read from a label.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry, format_time, parse_time

AUTH_HEADER = "authorization"

STATE_MAP: dict[str, str] = {
    "firing": "triggered", "acknowledged": "acknowledged", "silenced": "acknowledged", "resolved": "resolved",
}
#: Event types that change the alert group's state.
STATUS_EVENTS = ("alert group created", "acknowledge", "resolve", "silence", "unsilence", "unresolve",
                 "unacknowledge", "status change")
#: Informational event types, and the timeline kind each adds. They carry no incident: OnCall builds
#: the body when the task runs, so its state may predate a status event that arrived first.
INFO_EVENTS: dict[str, str] = {"escalation": "escalation", "personal notification": "notification"}
#: Body keys left out of the digest that stands in for a missing event time (they vary between replays).
UNSTABLE_KEYS = ("responses", "webhook")


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_token(headers: Mapping[str, str], secret: str | None, *, connection: str) -> None:
    """Raise `WebhookError(status=401)` unless ``Authorization`` is `secret` or ``Bearer <secret>``.

    Both forms are compared in constant time, with no early exit; messages never contain either value.
    """
    if not secret:
        raise WebhookError(f"no webhook_secret configured for connection {connection}; refusing "
                           "unauthenticated webhooks (set webhook_secret and put the same value in the "
                           "OnCall outgoing webhook's Authorization Header field)", status=401)
    given = lower_headers(headers).get(AUTH_HEADER, "").strip()
    if not given:
        raise WebhookError(f"{connection}: missing Authorization header (set the OnCall outgoing webhook's "
                           "Authorization Header to the connection's webhook_secret)", status=401)
    scheme, _, rest = given.partition(" ")
    bearer = rest.strip() if scheme.lower() == "bearer" else ""
    expected = secret.encode("utf-8")
    matched = hmac.compare_digest(given.encode("utf-8", "replace"), expected)
    matched |= hmac.compare_digest(bearer.encode("utf-8", "replace"), expected)
    if not matched:
        raise WebhookError(f"{connection}: the Authorization header does not match the configured "
                           "webhook_secret", status=401)


# -- normalisers -------------------------------------------------------------------------------------
def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalise_labels(labels: object) -> dict[str, str]:
    """Labels as ``{key: value}`` from either shape: the webhook's dict or the REST list of
    ``{key: {id, name}, value: {id, name}}``."""
    if isinstance(labels, Mapping):
        return {str(key): str(value) for key, value in labels.items()}
    result: dict[str, str] = {}
    for item in labels if isinstance(labels, list) else ():
        if isinstance(item, Mapping):
            key, value = item.get("key"), item.get("value")
            key = key.get("name") if isinstance(key, Mapping) else key
            value = value.get("name") if isinstance(value, Mapping) else value
            if key is not None:
                result[str(key)] = "" if value is None else str(value)
    return result


def payload_label(payload: object, name: str) -> str | None:
    """A label of an alert payload: Alertmanager ``labels``, Grafana Alerting ``commonLabels``."""
    if not isinstance(payload, Mapping):
        return None
    for key in ("labels", "commonLabels"):
        labels = payload.get(key)
        if isinstance(labels, Mapping) and labels.get(name) not in (None, ""):
            return str(labels[name])
    return None


def _time(group: Mapping[str, Any], key: str) -> datetime | None:
    value = group.get(key)
    if value in (None, ""):
        return None
    try:
        moment = parse_time(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise WebhookError(f"alert_group.{key} must be an ISO 8601 time, got {_short(value)}", status=400)
    return moment


def latest_time(group: Mapping[str, Any]) -> datetime | None:
    """The newest of the alert group's own timestamps (created, acknowledged, silenced, resolved)."""
    stamps = [_time(group, key) for key in ("created_at", "acknowledged_at", "silenced_at", "resolved_at")]
    present = [stamp for stamp in stamps if stamp is not None]
    return max(present) if present else None


def incident_from_alert_group(group: Mapping[str, Any], *, source: str, occurred_at: datetime | None = None,
                              severity_label: str = "severity", service: str | None = None,
                              acknowledged_by: str | None = None, payload: object = None,
                              extra: Mapping[str, Any] | None = None) -> Incident:
    """The canonical `Incident` from an alert group (REST item or a webhook's ``alert_group``).

    `service` is the integration's name, `acknowledged_by` the acknowledging user's username (the
    callers look them up: the REST shape carries ids only). Unknown states are refused (400).
    """
    record_id, state = group.get("id"), group.get("state")
    if not isinstance(record_id, str) or not record_id:
        raise WebhookError(f"alert_group.id must be a non-empty string, got {_short(record_id)}", status=400)
    if state not in STATE_MAP:
        raise WebhookError(f"alert group {record_id}: alert_group.state {_short(state)} is not a Grafana OnCall "
                           f"state (known: {', '.join(STATE_MAP)})", status=400)
    created = _time(group, "created_at")
    if created is None:
        raise WebhookError(f"alert group {record_id}: alert_group.created_at must be an ISO 8601 time, "
                           f"got {_short(group.get('created_at'))}", status=400)
    latest = latest_time(group)  # also checks every timestamp's shape
    labels = normalise_labels(group.get("labels"))
    permalinks = group.get("permalinks") if isinstance(group.get("permalinks"), Mapping) else {}
    name = service or group.get("integration_id")
    raw = {**group, "labels": labels, "integration_name": name, "payload": payload, **(extra or {})}
    return Incident(
        source=source, id=record_id, title=str(group.get("title") or ""), status=STATE_MAP[state],
        created_at=created, updated_at=occurred_at or latest or created,
        priority=labels.get(severity_label) or payload_label(payload, severity_label),
        urgency=labels.get("urgency") or None, service=str(name) if name else None,
        assignees=(acknowledged_by,) if acknowledged_by else (), url=permalinks.get("web") or None,
        resolved_at=_time(group, "resolved_at") if state == "resolved" else None, raw=raw,
    )


def note_entry(note: Mapping[str, Any], *, author: str | None = None) -> TimelineEntry:
    """One resolution note (``GET /api/v1/resolution_notes``) as a timeline note; id = the note's id."""
    return TimelineEntry(id=str(note["id"]), at=parse_time(note.get("created_at")),  # type: ignore[arg-type]
                         kind="note", text=str(note.get("text") or ""), author=author or note.get("author"))


def _username(value: object) -> str | None:
    if isinstance(value, Mapping):
        name = value.get("username") or value.get("email") or value.get("id")
        return str(name) if name else None
    return None


def describe_event(event: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    """A sentence for the desk's timeline, e.g. "Acknowledged by alice in Grafana OnCall"."""
    kind = str(event.get("type"))
    who = _username(document.get("user"))
    by = f" by {who}" if who else ""
    integration = document.get("integration") if isinstance(document.get("integration"), Mapping) else {}
    until = event.get("until")
    upcoming = [name for name in (_username(u) for u in document.get("users_to_be_notified") or []) if name]
    verbs = {
        "alert group created": f"Alert group created in Grafana OnCall"
                               f"{' via ' + str(integration['name']) if integration.get('name') else ''}",
        "acknowledge": f"Acknowledged{by} in Grafana OnCall",
        "resolve": f"Resolved{by} in Grafana OnCall",
        "silence": f"Silenced{by} in Grafana OnCall {'until ' + str(until) if until else 'until unsilenced'}",
        "unsilence": f"Unsilenced{by} in Grafana OnCall; firing again",
        "unresolve": f"Unresolved{by} in Grafana OnCall; firing again",
        "unacknowledge": f"Unacknowledged{by} in Grafana OnCall; firing again",
        "escalation": "Escalation step reached in Grafana OnCall"
                      + (f" (next: {', '.join(upcoming)})" if upcoming else ""),
        "personal notification": f"{who or 'A responder'} was notified by Grafana OnCall",
    }
    return verbs.get(kind, f"{kind}{by} in Grafana OnCall")


def _document(body: bytes) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected a Grafana OnCall outgoing webhook with "
                           "Forward All enabled", status=400) from exc
    if not isinstance(document, dict):
        raise WebhookError(f"body must be a JSON object, got {_short(document)}", status=400)
    event, group = document.get("event"), document.get("alert_group")
    if not isinstance(event, dict):
        raise WebhookError(f"event must be an object, got {_short(event)} (is Forward All enabled on the "
                           "outgoing webhook?)", status=400)
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise WebhookError(f"event.type must be a non-empty string, got {_short(event.get('type'))}", status=400)
    if not isinstance(group, dict):
        raise WebhookError(f"alert_group must be an object, got {_short(group)}", status=400)
    return document, event, group


def event_time(event: Mapping[str, Any]) -> datetime | None:
    value = event.get("time")
    if value is None:
        return None
    try:
        moment = parse_time(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise WebhookError(f"event.time must be an ISO 8601 time or absent, got {_short(value)}", status=400)
    return moment


def body_digest(document: Mapping[str, Any]) -> str:
    stable = {key: value for key, value in document.items() if key not in UNSTABLE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_payload(body: bytes, *, connection: str, received_at: datetime,
                  severity_label: str = "severity") -> list[Change]:
    """The one `Change` an outgoing webhook describes: for status events the alert group as it is now and a
    timeline line; for escalation and personal notification the line only; other types pass through."""
    document, event, group = _document(body)
    kind = event["type"]
    group = {"id": document.get("alert_group_id"), **group} if not group.get("id") else group
    record_id = group.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise WebhookError(f"alert_group.id must be a non-empty string, got {_short(record_id)}", status=400)
    moment = event_time(event)
    stamp = format_time(moment) if moment else body_digest(document)
    occurred_at = moment or received_at
    event_id = f"{record_id}:{kind}:{stamp}"
    common: dict[str, Any] = {"connection": connection, "record_id": record_id, "event_id": event_id,
                              "event_type": kind, "occurred_at": occurred_at, "via": "webhook",
                              "actor": _username(document.get("user"))}
    if kind not in STATUS_EVENTS and kind not in INFO_EVENTS:
        return [Change(**common)]
    author = _username(document.get("user"))
    if kind in INFO_EVENTS:  # the state they carry may be older than a status event already received
        entry = TimelineEntry(id=f"{event_id}:{INFO_EVENTS[kind]}", at=occurred_at, kind=INFO_EVENTS[kind],
                              text=describe_event(event, document), author=author)
        return [Change(entries=(entry,), **common)]
    integration = document.get("integration") if isinstance(document.get("integration"), Mapping) else {}
    acknowledger = _username(document.get("alert_group_acknowledged_by"))
    if acknowledger is None and kind == "acknowledge":
        acknowledger = _username(document.get("user"))
    extra = {key: document.get(key) for key in ("event", "user", "integration", "alert_group_acknowledged_by",
                                                "alert_group_resolved_by") if key in document}
    incident = incident_from_alert_group(
        group, source=connection, occurred_at=occurred_at, severity_label=severity_label,
        service=integration.get("name") or None, acknowledged_by=acknowledger,
        payload=document.get("alert_payload"), extra=extra)
    entry = TimelineEntry(id=f"{event_id}:status", at=occurred_at, kind="status",
                          text=describe_event(event, document), author=author)
    return [Change(incident=incident, entries=(entry,), **common)]
