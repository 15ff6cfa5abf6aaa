"""The incident.io simulator's organisation: users, severities, statuses, roles, incidents and updates.

Every change goes through `SimOrg` under one lock and hands the webhook event(s) real incident.io would
send to `emit` in order. Incidents are rendered once, in the v2 shape both the REST API and the public
webhooks use (`incident_json`); private incidents emit ``private_incident.*`` events carrying ``{id}``.

Assumed where the docs are silent [!]: an incident update with only a message (no status or severity
change) bumps ``updated_at`` and fires ``public_incident.incident_updated_v2``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

APP_BASE = "https://app.incident.io/acme"
DEFAULT_USERS = {"alice": ("Alice Adams", "alice@example.com"), "bob": ("Bob Brown", "bob@example.com"),
                 "carol": ("Carol Chen", "carol@example.com"), "dave": ("Dave Diaz", "dave@example.com")}
DEFAULT_SEVERITIES = ("Minor", "Major", "Critical")  # rank 1..3: higher is more severe
DEFAULT_SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
#: (name, category) in rank order; only live and learning statuses are configurable in incident.io.
DEFAULT_STATUSES = (("Triage", "triage"), ("Investigating", "live"), ("Fixing", "live"),
                    ("Monitoring", "live"), ("Documenting", "learning"), ("Closed", "closed"),
                    ("Declined", "declined"), ("Merged", "merged"), ("Canceled", "canceled"))
T0 = "2024-01-01T00:00:00Z"


class SimError(Exception):
    """An API error answered as incident.io does: ``{type, status, request_id, errors:[{code,message}]}``."""

    TYPES: ClassVar[dict[int, str]] = {400: "bad_request", 401: "authentication_error", 403: "forbidden", 404: "not_found",
             422: "validation_error", 429: "too_many_requests", 500: "internal_error"}

    def __init__(self, status: int, code: str, message: str, *, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field_name = status, code, message, field_name

    def body(self, request_id: str = "sim-request") -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field_name:
            error["source"] = {"field": self.field_name}
        return {"type": self.TYPES.get(self.status, "error"), "status": self.status, "request_id": request_id,
                "errors": [error]}


def api_time(moment: datetime | None) -> str | None:
    """incident.io times: microseconds, UTC, ``Z`` (``2021-08-17T13:28:57.801578Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


@dataclass
class SimIncident:
    id: str
    number: int
    name: str
    created_at: datetime
    updated_at: datetime
    status_id: str
    creator: str
    visibility: str = "public"
    summary: str = ""
    severity_id: str | None = None
    lead: str | None = None
    service: str | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)


class SimOrg:
    """The organisation's data and every operation on it. `emit(event_type, payload)` gets each event."""

    def __init__(self, *, emit: Callable[[str, dict[str, Any]], None], seed: int = 1,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.emit, self.clock, self.lock = emit, clock, threading.RLock()
        self._random = random.Random(seed)
        self.users = {self.new_id(): {"handle": h, "name": n, "email": e} for h, (n, e) in DEFAULT_USERS.items()}
        self.severities = {self.new_id(): {"name": n, "rank": r} for r, n in enumerate(DEFAULT_SEVERITIES, 1)}
        self.statuses = {self.new_id(): {"name": n, "category": c, "rank": r}
                         for r, (n, c) in enumerate(DEFAULT_STATUSES)}
        self.services = {name: self.new_id() for name in DEFAULT_SERVICES}
        self.lead_role_id, self.service_field_id = self.new_id(), self.new_id()
        self.incidents: dict[str, SimIncident] = {}

    def new_id(self) -> str:
        """A ULID-looking id (26 Crockford base32 characters), seeded."""
        return "01" + "".join(self._random.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(24))

    # -- lookups --------------------------------------------------------------------------------------
    def user_id(self, who: str) -> str:
        for user_id, user in self.users.items():
            if who in (user_id, user["handle"]) or who.lower() == user["email"]:
                return user_id
        raise SimError(422, "invalid_value", f"No user found for {who!r}")

    def severity_id(self, value: str | None) -> str | None:
        if value is None:
            return None
        for severity_id, severity in self.severities.items():
            if value in (severity_id, severity["name"]):
                return severity_id
        raise SimError(422, "invalid_value", f"Severity {value!r} not found", field_name="severity_id")

    def status_id(self, value: str) -> str:
        if value in self.statuses:
            return value
        raise SimError(422, "invalid_value", f"Incident status {value!r} not found", field_name="incident_status_id")

    def first_status(self, category: str) -> str:
        return next(i for i, s in self.statuses.items() if s["category"] == category)

    def get(self, incident_id: str) -> SimIncident:
        if incident_id not in self.incidents:
            raise SimError(404, "not_found", f"Incident {incident_id} not found")
        return self.incidents[incident_id]

    # -- renderings -----------------------------------------------------------------------------------
    def user_json(self, user_id: str) -> dict[str, Any]:
        user = self.users[user_id]
        return {"id": user_id, "name": user["name"], "email": user["email"], "role": "responder",
                "slack_user_id": f"U{user_id[-8:]}"}

    def status_json(self, status_id: str) -> dict[str, Any]:
        status = self.statuses[status_id]
        return {"id": status_id, "name": status["name"], "description": f"{status['name']} incidents",
                "category": status["category"], "rank": status["rank"], "created_at": T0, "updated_at": T0}

    def severity_json(self, severity_id: str) -> dict[str, Any]:
        severity = self.severities[severity_id]
        return {"id": severity_id, "name": severity["name"], "description": f"{severity['name']} impact",
                "rank": severity["rank"], "created_at": T0, "updated_at": T0}

    def incident_json(self, inc: SimIncident) -> dict[str, Any]:
        """The v2 incident (``GET /v2/incidents/{id}`` and public webhook payloads)."""
        lead_role = {"id": self.lead_role_id, "name": "Incident Lead", "role_type": "lead", "shortform": "lead",
                     "description": "Coordinates the response", "instructions": "Take charge", "required": True,
                     "created_at": T0, "updated_at": T0}
        field_def = {"id": self.service_field_id, "name": "Affected services", "description": "Services impacted",
                     "field_type": "multi_select", "catalog_type_id": "01SERVICECATALOG"}
        values = ([{"value_catalog_entry": {"id": self.services[inc.service], "name": inc.service, "aliases": [],
                                            "external_id": inc.service.lower().replace(" ", "-")}}]
                  if inc.service else [])
        data: dict[str, Any] = {
            "id": inc.id, "reference": f"INC-{inc.number}", "name": inc.name, "summary": inc.summary or None,
            "permalink": f"{APP_BASE}/incidents/{inc.number}", "visibility": inc.visibility, "mode": "standard",
            "creator": {"user": self.user_json(inc.creator)}, "incident_status": self.status_json(inc.status_id),
            "incident_type": {"id": "01INCIDENTTYPEDEFAULT00000", "name": "Default", "description": "",
                              "is_default": True, "private_incidents_only": False, "create_in_triage": "optional",
                              "created_at": T0, "updated_at": T0},
            "incident_role_assignments": [{"role": lead_role, **({"assignee": self.user_json(inc.lead)}
                                                                 if inc.lead else {})}],
            "custom_field_entries": [{"custom_field": field_def, "values": values}],
            "incident_timestamp_values": [], "duration_metrics": [],
            "slack_team_id": "T02A1FSLE8J", "slack_channel_id": f"C{inc.id[-9:]}",
            "slack_channel_name": f"inc-{inc.number}", "call_url": None,
            "created_at": api_time(inc.created_at), "updated_at": api_time(inc.updated_at),
        }
        if inc.severity_id:
            data["severity"] = self.severity_json(inc.severity_id)
        return data

    # -- events ---------------------------------------------------------------------------------------
    def _send(self, inc: SimIncident, event: str, extra: dict[str, Any] | None = None) -> None:
        if inc.visibility == "private":
            self.emit(f"private_incident.{event}", {"id": inc.id})
        elif extra is not None:
            self.emit(f"public_incident.{event}", {"incident": self.incident_json(inc), **extra})
        else:
            self.emit(f"public_incident.{event}", self.incident_json(inc))

    def _update(self, inc: SimIncident, actor: str, *, message: str = "", status: str | None = None,
                severity: str | None = None) -> dict[str, Any]:
        now = self.clock()
        inc.updated_at = now
        update = {"id": self.new_id(), "incident_id": inc.id, "message": message or None,
                  "updater": {"user": self.user_json(actor)}, "created_at": api_time(now)}
        if status:
            update["new_incident_status"] = self.status_json(status)
        if severity:
            update["new_severity"] = self.severity_json(severity)
        inc.updates.append(update)
        return update

    # -- operations -----------------------------------------------------------------------------------
    def create(self, *, name: str, actor: str, service: str | None = None, severity: str | None = None,
               visibility: str = "public", summary: str = "") -> SimIncident:
        with self.lock:
            if service is not None and service not in self.services:
                raise SimError(422, "invalid_value", f"No catalog entry named {service!r}")
            now = self.clock()
            inc = SimIncident(id=self.new_id(), number=len(self.incidents) + 1, name=name, created_at=now,
                              updated_at=now, status_id=self.first_status("triage"), creator=actor,
                              visibility=visibility, summary=summary, severity_id=self.severity_id(severity),
                              service=service)
            self.incidents[inc.id] = inc
            self._send(inc, "incident_created_v2")
            return inc

    def set_status(self, incident_id: str, status_id: str, actor: str, *, message: str = "") -> SimIncident:
        with self.lock:
            inc, status_id = self.get(incident_id), self.status_id(status_id)
            if status_id == inc.status_id:
                return inc
            previous = self.status_json(inc.status_id)
            if self.statuses[status_id]["category"] == "triage":
                raise SimError(422, "invalid_value", "An incident cannot be moved back to triage",
                               field_name="incident_status_id")
            inc.status_id = status_id
            if self.statuses[status_id]["category"] == "live" and inc.lead is None:
                inc.lead = actor
            self._update(inc, actor, message=message, status=status_id)
            self._send(inc, "incident_status_updated_v2", {
                "message": message, "new_status": self.status_json(status_id), "previous_status": previous})
            return inc

    def edit(self, incident_id: str, changes: dict[str, Any], actor: str) -> SimIncident:
        """``POST /v2/incidents/{id}/actions/edit``: only the fields given change."""
        with self.lock:
            inc = self.get(incident_id)
            changed = False
            for key, attr in (("name", "name"), ("summary", "summary")):
                if key in changes and changes[key] != getattr(inc, attr):
                    setattr(inc, attr, str(changes[key] or ""))
                    self._update(inc, actor)
                    changed = True
            if "severity_id" in changes:
                severity = self.severity_id(changes["severity_id"])
                if severity != inc.severity_id:
                    inc.severity_id, changed = severity, True
                    self._update(inc, actor, severity=severity)
            if changed:
                self._send(inc, "incident_updated_v2")
            if changes.get("incident_status_id"):
                self.set_status(incident_id, str(changes["incident_status_id"]), actor)
            return inc

    def post_update(self, incident_id: str, message: str, actor: str) -> dict[str, Any]:
        with self.lock:
            inc = self.get(incident_id)
            if not message.strip():
                raise SimError(422, "invalid_value", "message must not be blank", field_name="message")
            update = self._update(inc, actor, message=message)
            self._send(inc, "incident_updated_v2")
            return update
