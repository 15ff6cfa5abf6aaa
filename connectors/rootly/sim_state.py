"""The Rootly simulator's organisation: users, severities, services, incidents and timeline events.

Every change goes through `SimOrg` under one lock and hands the webhook envelope(s) Rootly would send
to `emit` (``{"event": {id, type, issued_at}, "data": <incident>}``). Timeline events fire no webhook,
as in Rootly (there is no event type for them). Errors are JSON:API ``{"errors": [{title, status, detail}]}``.

Custom fields are Rootly form fields (`DEFAULT_FORM_FIELDS`); an incident's answers are
``incident_form_field_selections`` resources shaped like Rootly's documented ones (``incident_id``,
``custom_field_id``, ``form_field_id``, ``form_field{id, slug, name, input_kind, options}``, ``value``,
``selected_option_ids`` and the other ``selected_*_ids``, ``selected_options``). They are served for
``include=custom_field_selections`` (``included`` plus ``relationships.custom_field_selections``), by
``GET /v1/incidents/{id}/form_field_selections``, and inline as ``form_field_selections`` in webhook data.
[!] Assumed: that ``include=custom_field_selections`` returns this type, the relationship's name, the
inline webhook item shape, and that changing an answer fires ``incident.updated``.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

APP_BASE = "https://rootly.com/account/incidents"
DEFAULT_SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
DEFAULT_USERS = {"alice": "Alice Adams", "bob": "Bob Brown", "carol": "Carol Chen", "dave": "Dave Diaz",
                 "bridge": "ITSM Bridge"}
DEFAULT_SEVERITIES = (("SEV0", "critical"), ("SEV1", "high"), ("SEV2", "medium"), ("SEV3", "low"))
#: (slug, name, input_kind, options) of the organisation's custom form fields.
DEFAULT_FORM_FIELDS = (
    ("customer-impact", "Customer impact", "select", ("None", "Degraded performance", "Partial outage", "Full outage")),
    ("affected-regions", "Affected regions", "multi_select", ("eu-west-1", "us-east-1", "ap-south-1")),
    ("change-ticket", "Change ticket", "text", ()),
)
SELECTION_TYPE = "incident_form_field_selections"
#: The ``selected_*_ids`` lists every selection carries (empty unless the field selects those things).
SELECTED_ID_KEYS = ("selected_catalog_entity_ids", "selected_group_ids", "selected_service_ids",
                    "selected_functionality_ids", "selected_user_ids", "selected_environment_ids",
                    "selected_cause_ids", "selected_incident_type_ids")
ACTION_STATUS = {"mitigate": "mitigated", "resolve": "resolved", "cancel": "cancelled", "restart": "started"}
ACTION_EVENT = {"mitigate": "incident.mitigated", "resolve": "incident.resolved", "cancel": "incident.cancelled",
                "restart": "incident.updated"}
CLOSED = ("resolved", "closed", "cancelled")


class SimError(Exception):
    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail

    def body(self) -> dict[str, Any]:
        return {"errors": [{"title": self.title, "status": str(self.status), "detail": self.detail or None}]}


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


@dataclass
class SimIncident:
    id: str
    sequential_id: int
    title: str
    service: str
    severity: str | None
    created_at: datetime
    creator: str
    status: str = "started"
    summary: str = ""
    updated_at: datetime | None = None
    stamps: dict[str, datetime] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: form field slug -> {"id": selection id, "value": text or None, "option_ids": [option ids]}
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)


class SimOrg:
    def __init__(self, *, emit: Callable[[dict[str, Any]], None], seed: int = 1,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.emit, self.clock, self.lock = emit, clock, threading.RLock()
        self._random = random.Random(seed)
        self.users = {handle: {"id": str(n), "name": name, "email": f"{handle}@example.com"}
                      for n, (handle, name) in enumerate(DEFAULT_USERS.items(), start=101)}
        self.severities = {name: {"id": self.new_id(), "name": name, "slug": name.lower(), "severity": level}
                           for name, level in DEFAULT_SEVERITIES}
        self.services = {name: self.new_id() for name in DEFAULT_SERVICES}
        self.incidents: dict[str, SimIncident] = {}
        self.form_fields: dict[str, dict[str, Any]] = {}
        for n, (slug, name, kind, values) in enumerate(DEFAULT_FORM_FIELDS, start=180):
            field_id = self.new_id()
            self.form_fields[slug] = {
                "id": field_id, "custom_field_id": n, "slug": slug, "name": name, "kind": "custom", "input_kind": kind,
                "options": [{"id": self.new_id(), "form_field_id": field_id, "value": value, "position": position}
                            for position, value in enumerate(values, start=1)]}

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def user(self, handle: str) -> dict[str, Any]:
        if handle not in self.users:
            raise SimError(422, "Validation failed", f"unknown user {handle!r}")
        return self.users[handle]

    def severity(self, value: str | None) -> str | None:
        if value is None:
            return None
        for name, severity in self.severities.items():
            if value in (name, severity["id"], severity["slug"]):
                return name
        raise SimError(422, "Validation failed", f"severity {value!r} not found")

    def form_field(self, value: str) -> dict[str, Any]:
        for slug, form_field in self.form_fields.items():
            if value in (slug, form_field["id"], form_field["name"]):
                return form_field
        raise SimError(422, "Validation failed", f"form field {value!r} not found")

    def get(self, incident_id: str) -> SimIncident:
        if incident_id not in self.incidents:
            raise SimError(404, "Record not found", f"incident {incident_id} not found")
        return self.incidents[incident_id]

    # -- renderings -----------------------------------------------------------------------------------
    def attributes(self, inc: SimIncident) -> dict[str, Any]:
        severity = self.severities[inc.severity] if inc.severity else None
        creator = self.users[inc.creator]
        return {
            "sequential_id": inc.sequential_id, "title": inc.title, "slug": inc.title.lower().replace(" ", "-")[:40],
            "kind": "normal", "private": False, "summary": inc.summary, "status": inc.status, "source": "api",
            "url": f"{APP_BASE}/{inc.sequential_id}", "short_url": None,
            "severity": {"data": {"id": severity["id"], "type": "severities",
                                  "attributes": {k: severity[k] for k in ("name", "slug", "severity")}}} if severity else None,
            "user": {"data": {"id": creator["id"], "type": "users", "attributes": {"name": creator["name"],
                                                                                  "email": creator["email"]}}},
            "services": [{"id": self.services[inc.service], "name": inc.service, "slug": inc.service.lower()}],
            "groups": [{"id": "grp-sre", "name": "Site Reliability", "slug": "sre"}],
            "labels": {"platform": "k8s"},
            "roles": [{"id": f"{inc.id}-commander", "role": {"name": "Commander"},
                       "user": {"name": creator["name"], "email": creator["email"]}}],
            "mitigation_message": inc.messages.get("mitigate"), "resolution_message": inc.messages.get("resolve"),
            "cancellation_message": inc.messages.get("cancel"),
            "created_at": iso(inc.created_at), "updated_at": iso(inc.updated_at), "started_at": iso(inc.created_at),
            **{f"{name}_at": iso(inc.stamps.get(name)) for name in
               ("detected", "acknowledged", "mitigated", "resolved", "closed", "cancelled")},
        }

    def resource(self, inc: SimIncident) -> dict[str, Any]:
        linkage = [{"id": inc.selections[slug]["id"], "type": SELECTION_TYPE} for slug in inc.selections]
        return {"id": inc.id, "type": "incidents", "attributes": self.attributes(inc),
                "relationships": {"custom_field_selections": {"data": linkage}}}

    def form_field_resource(self, form_field: dict[str, Any]) -> dict[str, Any]:
        return {"id": form_field["id"], "slug": form_field["slug"], "kind": form_field["kind"],
                "input_kind": form_field["input_kind"], "value_kind": "inherit", "name": form_field["name"],
                "description": None, "shown": ["web_new_incident_form", "web_update_incident_form"], "required": [],
                "enabled": True, "options": [dict(option) for option in form_field["options"]]}

    def selection_attributes(self, inc: SimIncident, slug: str) -> dict[str, Any]:
        form_field, selection = self.form_fields[slug], inc.selections[slug]
        chosen = [o for o in form_field["options"] if o["id"] in selection["option_ids"]]
        options = [{"id": o["id"], "value": o["value"]} for o in chosen]
        return {"incident_id": inc.id, "custom_field_id": form_field["custom_field_id"],
                "form_field_id": form_field["id"], "form_field": self.form_field_resource(form_field),
                "value": selection["value"], "selected_option_ids": [o["id"] for o in chosen],
                **{key: [] for key in SELECTED_ID_KEYS},
                "selected_options": options if form_field["input_kind"] == "multi_select"
                else (options[0] if options else None)}

    def selection_resources(self, inc: SimIncident) -> list[dict[str, Any]]:
        return [{"id": inc.selections[slug]["id"], "type": SELECTION_TYPE,
                 "attributes": self.selection_attributes(inc, slug)} for slug in inc.selections]

    def event_resource(self, event: dict[str, Any]) -> dict[str, Any]:
        return {"id": event["id"], "type": "incident_events", "attributes": {
            "event": event["text"], "event_raw": event["text"], "kind": event["kind"], "source": event["source"],
            "visibility": event["visibility"], "user_display_name": event["author"],
            "occurred_at": iso(event["at"]), "starred_at": None, "created_at": iso(event["at"]),
            "updated_at": iso(event["at"])}}

    # -- changes --------------------------------------------------------------------------------------
    def _fire(self, event_type: str, inc: SimIncident, at: datetime) -> None:
        selections = [{"id": inc.selections[slug]["id"], **self.selection_attributes(inc, slug)} for slug in inc.selections]
        self.emit({"event": {"id": self.new_id(), "type": event_type, "issued_at": iso(at)},
                   "data": {"id": inc.id, **self.attributes(inc), "form_field_selections": selections}})

    def _trail(self, inc: SimIncident, text: str, at: datetime) -> None:
        inc.events.append({"id": self.new_id(), "text": text, "kind": "trail", "source": "system",
                           "visibility": "internal", "author": None, "at": at})

    def create(self, *, title: str, service: str, user: str, severity: str | None = None, summary: str = "") -> SimIncident:
        with self.lock:
            if service not in self.services:
                raise SimError(422, "Validation failed", f"service {service!r} not found")
            self.user(user)
            now = self.clock()
            inc = SimIncident(id=self.new_id(), sequential_id=len(self.incidents) + 1, title=title, service=service,
                              severity=self.severity(severity), created_at=now, creator=user,
                              summary=summary, updated_at=now)
            self.incidents[inc.id] = inc
            self._trail(inc, f"Incident started by {self.users[user]['name']}", now)
            self._fire("incident.created", inc, now)
            return inc

    def set_status(self, incident_id: str, status: str) -> SimIncident:
        """``PUT /v1/incidents/{id}`` with a status (used for acknowledged)."""
        with self.lock:
            inc = self.get(incident_id)
            if status not in ("in_triage", "started", "detected", "acknowledged", "mitigated"):
                raise SimError(422, "Validation failed", f"status cannot be set to {status!r} here; use the action")
            if inc.status in CLOSED:
                raise SimError(422, "Validation failed", f"incident is {inc.status}; restart it first")
            if status != inc.status:
                now = self.clock()
                inc.status, inc.updated_at = status, now
                inc.stamps.setdefault(status, now)
                self._trail(inc, f"Status changed to {status}", now)
                self._fire("incident.updated", inc, now)
            return inc

    def action(self, incident_id: str, action: str, message: str | None = None) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            target = ACTION_STATUS[action]
            if action == "restart" and inc.status not in CLOSED + ("mitigated",):
                raise SimError(422, "Validation failed", f"incident is {inc.status}; only a mitigated, resolved "
                                                         "or cancelled incident can be restarted")
            if action != "restart" and inc.status in CLOSED:
                raise SimError(422, "Validation failed", f"incident is already {inc.status}")
            now = self.clock()
            inc.status, inc.updated_at = target, now
            if action == "restart":
                for name in ("mitigated", "resolved", "closed", "cancelled"):
                    inc.stamps.pop(name, None)
            else:
                inc.stamps[target] = now
            if message:
                inc.messages[action] = message
            self._trail(inc, f"Status changed to {target}", now)
            self._fire(ACTION_EVENT[action], inc, now)
            return inc

    def update(self, incident_id: str, attributes: dict[str, Any]) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if "status" in attributes:
                self.set_status(incident_id, str(attributes["status"]))
            changed = False
            if "severity_id" in attributes and self.severity(attributes["severity_id"]) != inc.severity:
                inc.severity, changed = self.severity(attributes["severity_id"]), True
            for name in ("title", "summary"):
                if name in attributes and attributes[name] != getattr(inc, name):
                    setattr(inc, name, str(attributes[name]))
                    changed = True
            if changed:
                now = self.clock()
                inc.updated_at = now
                self._fire("incident.updated", inc, now)
            return inc

    def set_form_field(self, incident_id: str, which: str, answer: str | list[str] | None) -> SimIncident:
        """Answer a custom form field (slug, id or name): text for text fields, an option value for select,
        a list of option values for multi_select; None or [] clears it. Fires ``incident.updated``."""
        with self.lock:
            inc, form_field = self.get(incident_id), self.form_field(which)
            slug, kind = form_field["slug"], form_field["input_kind"]
            values = [] if answer is None else [answer] if isinstance(answer, str) else list(answer)
            if kind != "multi_select" and len(values) > 1:
                raise SimError(422, "Validation failed", f"{form_field['name']} takes one value")
            by_value = {o["value"]: o["id"] for o in form_field["options"]}
            if kind == "text":
                option_ids, text = [], (values[0] if values else None)
            else:
                unknown = [v for v in values if v not in by_value]
                if unknown:
                    raise SimError(422, "Validation failed", f"{form_field['name']} has no option {unknown[0]!r}")
                option_ids, text = [by_value[v] for v in values], None
            current = inc.selections.get(slug)
            if not values:
                changed = inc.selections.pop(slug, None) is not None
            else:
                changed = current is None or (current["value"], current["option_ids"]) != (text, option_ids)
                inc.selections[slug] = {"id": current["id"] if current else self.new_id(), "value": text,
                                        "option_ids": option_ids}
            if changed:
                now = self.clock()
                inc.updated_at = now
                self._fire("incident.updated", inc, now)
            return inc

    def add_event(self, incident_id: str, text: Any, *, author: str, visibility: str = "internal") -> dict[str, Any]:
        with self.lock:
            inc = self.get(incident_id)
            if not isinstance(text, str) or not text.strip():
                raise SimError(422, "Validation failed", "event can't be blank")
            if visibility not in ("internal", "external"):
                raise SimError(422, "Validation failed", "visibility must be internal or external")
            now = self.clock()
            event = {"id": self.new_id(), "text": text, "kind": "event", "source": "api", "visibility": visibility,
                     "author": author, "at": now}
            inc.events.append(event)
            inc.updated_at = now  # [!] assumed: a timeline event touches the incident's updated_at
            return event
