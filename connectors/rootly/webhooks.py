"""Rootly webhooks: signature verification and pure normalisation of incidents and events.

What the official docs say (docs.rootly.com/configuration/webhooks, read for this module):
- Each delivery is ``{"event": {...}, "data": {...}}``; ``data`` is the resource at the time of the event.
  The fields inside ``event`` are not listed there: we read ``event.id``, ``event.type`` and
  ``event.issued_at`` and fall back gracefully ([!] unverified names, kept in one place: `_envelope`).
- Incident events: incident.created, .updated, .mitigated, .resolved, .cancelled, .deleted (plus
  incident.scheduled.*, incident_post_mortem.*, alert.created, pulse.created, passed through for audit).
  There is no event for timeline notes: notes reach the bridge through `poll` only.
- ``X-Rootly-Signature: t=<unix>,v1=<hex>``; the signature is HMAC-SHA256 under the webhook secret of
  the timestamp concatenated with the raw body, with no separator. Rootly documents no timestamp
  tolerance; we enforce one (``signature_tolerance_seconds``, default 300) against replays.

Status mapping (canonical triggered / acknowledged / resolved), Rootly's own value kept in ``raw``:
in_triage, started, detected (and scheduled, in_progress) -> triggered; acknowledged, mitigated ->
acknowledged; resolved, closed, cancelled (and completed) -> resolved.
Severity: its name (e.g. ``SEV1``) is ``Incident.priority``, its level (critical/high/medium/low) is
``Incident.urgency``. Services and groups are lists of names in ``raw``; assignees are the users holding
incident roles (commander first), reachable in full as ``raw.roles``.

Custom fields (Rootly "form fields"; see the connector's docstring for the endpoints) arrive as form field
selections: inline in a webhook's ``data.form_field_selections``, and as JSON:API ``included`` resources of
REST reads made with ``include=custom_field_selections``. `incident_from_rootly` puts every selection
(flattened, ``form_field`` kept) in ``raw.form_field_selections`` and the answers by field slug in
``raw.custom_fields``: ``{"customer-impact": "Partial outage", "affected-regions": ["eu-west-1"]}``, a
list for multi-valued kinds (multi_select, checkbox, tags), else one string (None when unanswered).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry, parse_time

SIGNATURE_HEADER = "x-rootly-signature"

STATUS_MAP: dict[str, str] = {
    "in_triage": "triggered", "started": "triggered", "detected": "triggered", "scheduled": "triggered",
    "in_progress": "triggered", "acknowledged": "acknowledged", "mitigated": "acknowledged",
    "resolved": "resolved", "closed": "resolved", "cancelled": "resolved", "completed": "resolved",
}
#: The ``include=`` value of ``GET /v1/incidents[/{id}]`` that brings the incident's field selections.
INCLUDE = "custom_field_selections"
#: JSON:API types of field selections: the form-field one, and the deprecated custom-field one (a form
#: field selection carries both ``form_field_id`` and the legacy ``custom_field_id``).
SELECTION_TYPES = ("incident_form_field_selections", "incident_custom_field_selections")
#: Resolved selections a selection may carry besides its text ``value`` (each ``{id, value|name|...}``).
SELECTED_KEYS = ("selected_options", "selected_users", "selected_services", "selected_groups",
                 "selected_functionalities", "selected_environments", "selected_causes", "selected_incident_types",
                 "selected_catalog_entities")
#: Form field input kinds that hold several answers: their ``raw.custom_fields`` value is a list.
MULTI_KINDS = frozenset({"multi_select", "checkbox", "tags"})
#: Incident events carrying the incident in ``data``, and the timeline kind each one adds.
INCIDENT_EVENTS: dict[str, str] = {
    "incident.created": "status", "incident.updated": "update", "incident.mitigated": "status",
    "incident.resolved": "status", "incident.cancelled": "status",
}


# -- signatures --------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``str(timestamp) + body`` under `secret` (what follows ``v1=``)."""
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | None, *, connection: str,
                     now: datetime, tolerance: int = 300) -> None:
    """Raise `WebhookError(status=401)` unless ``X-Rootly-Signature`` signs `body` with `secret` and its
    ``t=`` lies within `tolerance` seconds of `now` (0: no time check). Constant-time compare; messages
    never contain the secret or the expected signature."""
    if not secret:
        raise WebhookError(f"no webhook_secret configured for connection {connection}; refusing unsigned "
                           "webhooks (set webhook_secret to the Rootly webhook endpoint's secret)", status=401)
    header = lower_headers(headers).get(SIGNATURE_HEADER, "").strip()
    if not header:
        raise WebhookError(f"{connection}: missing X-Rootly-Signature header", status=401)
    parts = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in parts if key == "t"]
    candidates = [value for key, _, value in parts if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not candidates:
        raise WebhookError(f"{connection}: X-Rootly-Signature must be t=<unix seconds>,v1=<hex>", status=401)
    expected = sign(secret, stamps[0], body).encode("ascii")
    matched = False
    for candidate in candidates:  # no early exit
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected)
    if not matched:
        raise WebhookError(f"{connection}: X-Rootly-Signature does not match the body; wrong secret or "
                           "altered body", status=401)
    skew = abs(now.timestamp() - int(stamps[0]))
    if tolerance and skew > tolerance:
        raise WebhookError(f"{connection}: X-Rootly-Signature timestamp is {int(skew)}s away from our clock "
                           f"(tolerance {tolerance}s); stale or replayed delivery, or clocks out of sync",
                           status=401)


# -- normalisers -------------------------------------------------------------------------------------
def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resource(value: object) -> dict[str, Any]:
    """A JSON:API resource (``{"data": {id, type, attributes}}`` or ``{id, type, attributes}``) or a
    flat object, as one flat dict with ``id``."""
    if isinstance(value, Mapping) and isinstance(value.get("data"), Mapping):
        value = value["data"]
    if not isinstance(value, Mapping):
        return {}
    flat = {key: val for key, val in value.items() if key != "attributes"}
    attributes = value.get("attributes")
    if isinstance(attributes, Mapping):
        flat.update(attributes)
    return flat


def _name(value: object) -> str | None:
    flat = resource(value)
    for key in ("name", "full_name", "title", "email"):
        if flat.get(key):
            return str(flat[key])
    return None


def _names(values: object) -> list[str]:
    if isinstance(values, Mapping) and isinstance(values.get("data"), list):
        values = values["data"]
    return [name for name in (_name(v) for v in values or ()) if name] if isinstance(values, list) else []


def role_holders(roles: object) -> tuple[str, ...]:
    """Users holding incident roles, commander first (``roles: [{role: {name}, user: {...}}]``) [!]."""
    pairs = []
    for item in roles if isinstance(roles, list) else ():
        flat = resource(item)
        role, user = _name(flat.get("incident_role") or flat.get("role")) or "", _name(flat.get("user"))
        if user:
            pairs.append((0 if "commander" in role.lower() else 1, user))
    seen: list[str] = []
    for _rank, user in sorted(pairs, key=lambda pair: pair[0]):
        if user not in seen:
            seen.append(user)
    return tuple(seen)


def _labels(value: object) -> list[str]:
    """Display values of resolved selections (one object or a list). Rootly echoes a text answer into
    every ``selected_*`` key as ``{"id": null, "value": <text>}``: entries without an id are skipped."""
    items = value if isinstance(value, list) else [value] if isinstance(value, Mapping) else []
    labels = []
    for item in items:
        flat = resource(item)
        if flat.get("id") is None:
            continue
        label = next((flat[key] for key in ("value", "name", "full_name", "title", "email") if flat.get(key)), None)
        if label is not None:
            labels.append(str(label))
    return labels


def selection_values(selection: Mapping[str, Any]) -> list[str]:
    """The answers of one form field selection as display strings: its text ``value``, the resolved
    ``selected_*`` objects, and else ``selected_option_ids`` looked up in ``form_field.options``."""
    flat = resource(selection)
    values: list[str] = []
    if flat.get("value") not in (None, ""):
        values.append(str(flat["value"]))
    options = _labels(flat.get("selected_options"))
    for key in SELECTED_KEYS:
        values += options if key == "selected_options" else _labels(flat.get(key))
    if not options and isinstance(flat.get("selected_option_ids"), list):
        known = {str(o.get("id")): o.get("value") for o in resource(flat.get("form_field")).get("options") or ()
                 if isinstance(o, Mapping)}
        values += [str(known[str(i)]) for i in flat["selected_option_ids"] if known.get(str(i)) is not None]
    return list(dict.fromkeys(values))


def selections_of(data: Mapping[str, Any], included: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The incident's field selections, flattened: inline (webhook ``form_field_selections``) and from a
    JSON:API ``included`` array (linked by ``relationships`` or by their ``incident_id``)."""
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping):
        data = data["data"]
    flat = resource(data)
    linked = set()
    for relationship in (flat.get("relationships") or {}).values() if isinstance(flat.get("relationships"), Mapping) else ():
        linkage = relationship.get("data") if isinstance(relationship, Mapping) else None
        for ref in linkage if isinstance(linkage, list) else [linkage] if isinstance(linkage, Mapping) else []:
            if isinstance(ref, Mapping) and ref.get("type") in SELECTION_TYPES:
                linked.add((ref.get("type"), str(ref.get("id"))))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    inline = flat.get("form_field_selections")
    for n, item in enumerate(inline if isinstance(inline, list) else ()):
        selection = resource(item)
        if selection:
            found[(str(selection.get("type") or SELECTION_TYPES[0]), str(selection.get("id") or f"inline-{n}"))] = selection
    for item in included if isinstance(included, (list, tuple)) else ():
        if not isinstance(item, Mapping) or item.get("type") not in SELECTION_TYPES:
            continue
        selection = resource(item)
        key = (str(item.get("type")), str(item.get("id")))
        if key in linked or (flat.get("id") is not None and selection.get("incident_id") == flat.get("id")):
            found[key] = selection
    return list(found.values())


def custom_fields(selections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Answers by form field slug (else by ``form_field_id``): a list for multi-valued input kinds, else
    one string (answers joined by ", "), None when unanswered. The first selection of a field wins."""
    fields: dict[str, Any] = {}
    for selection in selections:
        field = resource(selection.get("form_field"))
        key = field.get("slug") or selection.get("form_field_id")
        if not key or str(key) in fields:
            continue
        values = selection_values(selection)
        if str(field.get("input_kind")) in MULTI_KINDS:
            fields[str(key)] = values
        else:
            fields[str(key)] = ", ".join(values) if values else None
    return fields


def incident_from_rootly(data: Mapping[str, Any], *, source: str, occurred_at: datetime | None = None,
                         included: Sequence[Any] | None = None) -> Incident:
    """The canonical `Incident` from a Rootly incident: a REST resource (``{id, type, attributes}``, with
    the document's `included` when it was read with ``include=``) or a webhook's ``data``. Unknown
    statuses are refused (400) rather than guessed."""
    flat = resource(data)
    selections = selections_of(data, included)
    flat["form_field_selections"] = selections
    flat["custom_fields"] = custom_fields(selections)
    record_id, status = flat.get("id"), flat.get("status")
    if not isinstance(record_id, str) or not record_id:
        raise WebhookError(f"incident id must be a non-empty string, got {_short(record_id)}", status=400)
    if status not in STATUS_MAP:
        raise WebhookError(f"incident {record_id}: unknown Rootly status {_short(status)} "
                           f"(known: {', '.join(STATUS_MAP)})", status=400)
    created = parse_time(flat.get("created_at") or flat.get("started_at")) or occurred_at
    updated = occurred_at or parse_time(flat.get("updated_at")) or created
    if created is None or updated is None:
        raise WebhookError(f"incident {record_id}: created_at must be an ISO 8601 time", status=400)
    severity = resource(flat.get("severity"))
    services = _names(flat.get("services"))
    number = flat.get("sequential_id")
    return Incident(
        source=source, id=record_id, title=str(flat.get("title") or ""), status=STATUS_MAP[status],
        created_at=created, updated_at=updated, number=str(number) if number is not None else None,
        description=str(flat.get("summary") or ""), urgency=severity.get("severity"),
        priority=severity.get("name") or severity.get("slug"), service=services[0] if services else None,
        assignees=role_holders(flat.get("roles")), url=flat.get("url"),
        resolved_at=parse_time(flat.get("resolved_at") or flat.get("closed_at") or flat.get("cancelled_at")),
        raw=flat,
    )


def event_entry(event: Mapping[str, Any]) -> TimelineEntry:
    """One REST incident event (timeline line) as a note entry, id = the event's id."""
    flat = resource(event)
    return TimelineEntry(id=str(flat["id"]), at=parse_time(flat.get("occurred_at") or flat.get("created_at")),  # type: ignore[arg-type]
                         kind="note", text=str(flat.get("event_raw") or flat.get("event") or ""),
                         author=flat.get("user_display_name"), public=flat.get("visibility") == "external")


def describe_event(event_type: str, data: Mapping[str, Any]) -> str:
    """A sentence for the desk's timeline, e.g. "Mitigated in Rootly: rolled back deploy 4411"."""
    flat = resource(data)
    severity = _name(flat.get("severity"))
    verbs = {
        "incident.created": f"Declared in Rootly{f' as {severity}' if severity else ''} (status {flat.get('status')})",
        "incident.updated": f"Updated in Rootly (status {flat.get('status')}{f', severity {severity}' if severity else ''})",
        "incident.mitigated": "Mitigated in Rootly" + (f": {flat['mitigation_message']}" if flat.get("mitigation_message") else ""),
        "incident.resolved": "Resolved in Rootly" + (f": {flat['resolution_message']}" if flat.get("resolution_message") else ""),
        "incident.cancelled": "Cancelled in Rootly" + (f": {flat['cancellation_message']}" if flat.get("cancellation_message") else ""),
    }
    return verbs.get(event_type, f"{event_type} in Rootly")


def _envelope(body: bytes) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected a Rootly webhook", status=400) from exc
    event = document.get("event") if isinstance(document, dict) else None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(event, dict) or not isinstance(data, dict):
        raise WebhookError(f"body needs 'event' and 'data' objects (got {_short(document)})", status=400)
    return event, data


def parse_event(body: bytes, *, connection: str) -> list[Change]:
    """The `Change` one Rootly webhook describes (exactly one; non-incident events carry no incident)."""
    event, data = _envelope(body)
    event_type, event_id = event.get("type"), event.get("id")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookError(f"event.type must be a non-empty string, got {_short(event_type)}", status=400)
    if not isinstance(event_id, str) or not event_id:
        raise WebhookError(f"event.id must be a non-empty string, got {_short(event_id)}", status=400)
    occurred_at = parse_time(event.get("issued_at")) if isinstance(event.get("issued_at"), str) else None
    if occurred_at is None:
        raise WebhookError(f"event.issued_at must be an ISO 8601 time, got {_short(event.get('issued_at'))}",
                           status=400)
    change: dict[str, Any] = {"connection": connection, "event_id": event_id, "event_type": event_type,
                              "occurred_at": occurred_at, "via": "webhook"}
    if event_type in INCIDENT_EVENTS:
        incident = incident_from_rootly(data, source=connection, occurred_at=occurred_at)
        kind = INCIDENT_EVENTS[event_type]
        entry = TimelineEntry(id=f"{event_id}:{kind}", at=occurred_at, kind=kind,
                              text=describe_event(event_type, data))
        return [Change(record_id=incident.id, incident=incident, entries=(entry,), **change)]
    flat = resource(data)
    record_id = flat.get("incident_id") or flat.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise WebhookError(f"data.id must be a non-empty string, got {_short(record_id)}", status=400)
    return [Change(record_id=record_id, **change)]
