"""incident.io as a source: Svix-signed webhooks in, REST v2 catch-up polls, and the way back.

From research/api-facts.md §5 (marked verified against docs.incident.io/api-reference and the OpenAPI at
`incident-io/terraform-provider-incident:internal/apischema`): ``Authorization: Bearer <key>``;
``GET /v2/incidents`` pages with ``page_size`` and ``after`` (the id ``pagination_meta.after`` names)
and filters ``updated_at[gte]``; ``POST /v2/incidents/{id}/actions/edit`` changes only the fields given
(``incident_status_id``, ``severity_id``, ``name``, ``summary``); statuses come from
``GET /v1/incident_statuses`` (``category``), severities from ``GET /v1/severities`` (``rank``).

Notes: incident updates are read-only in the public API. ``GET /v2/incident_updates`` lists them and no
create endpoint is documented; public integrations say so (one that tried ``POST /v2/incident_updates``
found it has never existed and moved to ``POST /v2/actions``). One unofficial table lists a POST there
and ``/v2/incident_timeline_items``; neither is confirmed [!]. So `add_note` raises `PermanentError` and
`has_note` is False. Set
``notes = "none"`` in the route's ``[routes.back]``. Updates that carry a message are read back by `poll`
(``GET /v2/incident_updates?incident_id=``, one request per incident changed in the window) as notes.

Delivery is unordered and retried for 24 hours, so incident.io advises re-reading the incident on each
event: ``private_incident.*`` events (``{id}`` only) are always re-read, public ones when
``refetch_on_webhook`` is set. A failed re-read raises `TransientError`: the webhook is answered 5xx and
incident.io retries it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import requests

from bridge.errors import ConnectorError, PermanentError, WebhookError
from bridge.http import call
from bridge.model import (
    Change,
    Incident,
    TimelineEntry,
    format_time,
    parse_time,
    utcnow,
)
from connectors.base import CheckResult, Connector, PollResult
from connectors.incidentio.webhooks import (
    PRIVATE_EVENTS,
    PUBLIC_EVENTS,
    STATUS_BY_CATEGORY,
    describe,
    envelope,
    incident_from_api,
    lower_headers,
    verify_signature,
)

__all__ = ["IncidentioConnector", "incident_from_api", "update_entry"]

log = logging.getLogger(__name__)

#: Re-read incidents updated this long before the cursor too (clock skew; the inbox de-duplicates).
POLL_OVERLAP = timedelta(minutes=1)
#: Which status categories the way back may pick for each canonical status.
TARGET_CATEGORIES = {"acknowledged": "live", "triggered": "live"}
NO_NOTES = ("incident.io has no API to write incident updates or notes (GET /v2/incident_updates is "
            "read-only); set notes = \"none\" in this route's [routes.back] so desk comments are not sent back")


def _version(incident: Incident, notes: int = 0) -> str:
    """A short digest of the tracked attributes (and note count): poll event ids change with them."""
    text = json.dumps([incident.tracked(), notes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def update_entry(update: Mapping[str, Any]) -> TimelineEntry:
    """One incident update (``GET /v2/incident_updates``) as a ``note`` timeline entry."""
    updater = update.get("updater") or {}
    author = (updater.get("user") or updater.get("api_key") or {}).get("name")
    text = str(update.get("message") or "")
    if update.get("new_incident_status"):
        text = f"{text} (status: {update['new_incident_status'].get('name')})"
    return TimelineEntry(id=str(update["id"]), at=parse_time(update.get("created_at")),  # type: ignore[arg-type]
                         kind="note", text=text, author=author)


def _sent_at(headers: Mapping[str, str]) -> datetime:
    """When the webhook was sent (``webhook-timestamp``), else now: events other than incidents carry no time."""
    stamp = headers.get("webhook-timestamp", "")
    return datetime.fromtimestamp(int(stamp), tz=timezone.utc) if stamp.isdigit() else utcnow()


class IncidentioConnector(Connector):
    """incident.io REST v2 + webhooks. Settings: ``api_url``, ``api_key``, ``webhook_secret``,
    ``catch_up_hours``, ``page_size``, ``service_field``, ``resolve_category``,
    ``notify_incident_channel``, ``refetch_on_webhook``."""

    slug: ClassVar[str] = "incidentio"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})
    can_add_notes: ClassVar[bool] = False  # incident.io has no API to write updates/notes (see add_note)

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "https://api.incident.io").rstrip("/")
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 168))
        self.page_size = int(settings.get("page_size") or 100)
        self.service_field = str(settings.get("service_field") or "Affected services")
        self.resolve_category = str(settings.get("resolve_category") or "closed")
        self.notify = bool(settings.get("notify_incident_channel", False))
        self.refetch = bool(settings.get("refetch_on_webhook", False))
        self._statuses: list[Mapping[str, Any]] | None = None
        self._severities: dict[str, str] | None = None

    def __repr__(self) -> str:  # never the settings: they hold the key
        return f"IncidentioConnector({self.name!r}, api_url={self.api_url!r})"

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.settings['api_key']}", "Accept": "application/json"}
        if method != "GET":
            headers["Content-Type"] = "application/json"
        return call(self.session, method, f"{self.api_url}{path}", connection=self.name, what=what,
                    headers=headers, **kwargs)

    def _normalise(self, data: Mapping[str, Any]) -> Incident:
        return incident_from_api(data, source=self.name, service_field=self.service_field)

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        verify_signature(body, headers, self.settings.get("webhook_secret"), connection=self.name, now=now)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        """One `Change` per webhook; private incidents (and all, with refetch_on_webhook) are re-read.

        Other events (follow-ups, actions, alerts, schedules) pass through without an incident, for the audit.
        """
        event_type, payload = envelope(body)
        found = lower_headers(headers)
        msg_id = found.get("webhook-id")
        private = event_type in PRIVATE_EVENTS
        if not private and event_type not in PUBLIC_EVENTS:
            record_id = payload.get("incident_id") or payload.get("id")
            if not isinstance(record_id, str) or not record_id:
                raise WebhookError(f"{event_type}.id must be a non-empty string, got {record_id!r:.60}", status=400)
            return [Change(connection=self.name, event_id=msg_id or f"{event_type}:{record_id}",
                           event_type=event_type, record_id=record_id, occurred_at=_sent_at(found), via="webhook")]
        data = payload.get("incident") if event_type.endswith("status_updated_v2") else payload
        if not isinstance(data, dict):
            raise WebhookError(f"{event_type}.incident must be an object, got {type(data).__name__}", status=400)
        if private or self.refetch:
            incident_id = data.get("id")
            if not isinstance(incident_id, str) or not incident_id:
                raise WebhookError(f"{event_type}.id must be a non-empty string, got {incident_id!r:.60}",
                                   status=400)
            data = self._fetch(incident_id)
        incident = self._normalise(data)
        event_id = msg_id or f"{event_type}:{incident.id}:{data.get('updated_at')}:{_version(incident)}"
        kind = "update" if event_type.endswith("incident_updated_v2") else "status"
        entry = TimelineEntry(id=f"{event_id}:{kind}", at=incident.updated_at, kind=kind,
                              text=describe(event_type, incident, {} if private else payload))
        return [Change(connection=self.name, event_id=event_id, event_type=event_type, record_id=incident.id,
                       occurred_at=incident.updated_at, incident=incident, entries=(entry,), via="webhook")]

    def _fetch(self, incident_id: str) -> Mapping[str, Any]:
        return self._call("GET", f"/v2/incidents/{incident_id}", what=f"read incident {incident_id}").json()["incident"]

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Incidents updated since `cursor` (or the catch-up window), every page, as ``incident.polled``."""
        since = parse_time(cursor) - POLL_OVERLAP if cursor else now - self.catch_up
        changes = []
        for data in self._list_incidents(since):
            incident = self._normalise(data)
            entries = tuple(self.list_notes(incident.id))
            changes.append(Change(
                connection=self.name, event_type="incident.polled", record_id=incident.id,
                event_id=f"poll:{incident.id}:{data.get('updated_at')}:{_version(incident, len(entries))}",
                occurred_at=incident.updated_at, incident=incident, entries=entries, via="poll"))
        return PollResult(changes=changes, cursor=format_time(now))

    def _list_incidents(self, since: datetime) -> list[Mapping[str, Any]]:
        params: dict[str, str] = {"updated_at[gte]": str(format_time(since)), "page_size": str(self.page_size)}
        incidents: list[Mapping[str, Any]] = []
        while True:
            page = self._call("GET", "/v2/incidents", what="list incidents", params=params).json()
            batch = page.get("incidents") or []
            incidents += batch
            after = (page.get("pagination_meta") or {}).get("after")
            if not batch or not after or after == params.get("after"):
                return incidents
            params["after"] = str(after)

    # -- the way back ---------------------------------------------------------------------------------
    def _edit(self, record_id: str, fields: Mapping[str, Any], *, what: str) -> None:
        self._call("POST", f"/v2/incidents/{record_id}/actions/edit", what=what,
                   json={"incident": dict(fields), "notify_incident_channel": self.notify})

    def _status_list(self) -> list[Mapping[str, Any]]:
        if self._statuses is None:
            page = self._call("GET", "/v1/incident_statuses", what="list incident statuses").json()
            self._statuses = sorted(page.get("incident_statuses") or [], key=lambda s: s.get("rank", 0))
        return self._statuses

    def _first_status(self, category: str) -> str:
        for status in self._status_list():
            if status.get("category") == category:
                return str(status["id"])
        raise PermanentError(f"{self.name}: this incident.io organisation has no status in category "
                             f"{category!r}; check Settings > Incident statuses", connection=self.name)

    def transition(self, record_id: str, status: str) -> None:
        """acknowledged: triage -> first live status; resolved: -> first status of `resolve_category`;
        triggered (reopen): a resolved incident -> first live status. Already there counts as done:
        incident.io cannot move a declared incident back to triage, so "triggered" on an open one is a no-op."""
        if status not in ("triggered", "acknowledged", "resolved"):
            raise PermanentError(f"{self.name}: cannot move an incident to {status!r} (triggered, acknowledged "
                                 "or resolved)", connection=self.name)
        current = STATUS_BY_CATEGORY.get(str((self._fetch(record_id).get("incident_status") or {}).get("category")))
        if current == status or (status == "triggered" and current == "acknowledged"):
            log.info("%s: incident %s already %s", self.name, record_id, current)
            return
        category = self.resolve_category if status == "resolved" else TARGET_CATEGORIES[status]
        self._edit(record_id, {"incident_status_id": self._first_status(category)},
                   what=f"set incident {record_id} to {status}")

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Set ``priority``/``severity`` (by severity name), ``title`` (name) or ``description`` (summary)."""
        body: dict[str, Any] = {}
        for name, value in fields.items():
            if name in ("priority", "severity"):
                body["severity_id"] = self._severity_id(value)
            elif name in ("title", "name"):
                body["name"] = value
            elif name in ("description", "summary"):
                body["summary"] = value
            else:
                raise PermanentError(f"{self.name}: cannot set {name!r} on an incident.io incident "
                                     "(priority/severity, title and description can be set)", connection=self.name)
        self._edit(record_id, body, what=f"update incident {record_id} ({', '.join(fields)})")

    def _severity_id(self, name: str) -> str:
        if self._severities is None:
            page = self._call("GET", "/v1/severities", what="list severities").json()
            self._severities = {str(s["name"]): str(s["id"]) for s in page.get("severities") or ()}
        if name not in self._severities:
            raise PermanentError(f"{self.name}: no incident.io severity named {name!r} (this organisation has "
                                 f"{', '.join(sorted(self._severities)) or 'none'})", connection=self.name)
        return self._severities[name]

    def add_note(self, record_id: str, text: str) -> None:
        raise PermanentError(f"{self.name}: cannot add a note to incident {record_id}: {NO_NOTES}",
                             connection=self.name)

    def has_note(self, record_id: str, tag: str) -> bool:
        return False  # the bridge can never have written one (see add_note)

    def list_notes(self, record_id: str) -> list[TimelineEntry]:
        """The incident's updates that carry a message, oldest first, as ``note`` entries (id = update id)."""
        params = {"incident_id": record_id, "page_size": "250"}
        updates: list[Mapping[str, Any]] = []
        while True:
            page = self._call("GET", "/v2/incident_updates", what=f"list updates of incident {record_id}",
                              params=params).json()
            updates += page.get("incident_updates") or []
            after = (page.get("pagination_meta") or {}).get("after")
            if not after or after == params.get("after") or not page.get("incident_updates"):
                break
            params["after"] = str(after)
        return sorted((update_entry(u) for u in updates if u.get("message")), key=lambda e: e.at)

    def get_incident(self, record_id: str) -> Incident:
        return self._normalise(self._fetch(record_id))

    def check(self) -> CheckResult:
        """One authenticated read: is the key accepted, and are there statuses to move incidents to?"""
        try:
            statuses = self._status_list()
        except ConnectorError as exc:
            kind = "API key refused" if isinstance(exc, PermanentError) and exc.status in (401, 403) else "unreachable"
            return CheckResult(ok=False, message=f"incident.io {kind}: {exc}", details={"status": exc.status})
        categories = {str(s.get("category")) for s in statuses}
        missing = {"live", self.resolve_category} - categories
        if missing:
            return CheckResult(ok=False, message=f"API key accepted, but no status in categor"
                                                 f"{'ies' if len(missing) > 1 else 'y'} {', '.join(sorted(missing))}: "
                                                 "transitions would fail", details={"categories": sorted(categories)})
        return CheckResult(ok=True, message=f"API key accepted; {len(statuses)} incident statuses",
                           details={"categories": sorted(categories)})
