"""Rootly as a source: signed webhooks in, JSON:API catch-up polls, and the way back.

Verified in the official API reference (docs.rootly.com/api-reference, rootlyhq/rootly-python):
``Authorization: Bearer``, media type ``application/vnd.api+json``, ``GET/POST /v1/incidents``,
``GET/PUT /v1/incidents/{id}``, ``PUT /v1/incidents/{id}/mitigate|resolve|cancel|restart`` (bodies
``{"data":{"type":"incidents","attributes":{...}}}``), ``GET/POST /v1/incidents/{id}/events``
(``{"data":{"type":"incident_events","attributes":{"event","visibility"}}}``), list parameters
``page[number]``, ``page[size]``, ``filter[updated_at][gte]`` and ``sort``.
[!] Not verified: the list response's ``meta`` (we read ``meta.next_page`` and fall back to
``links.next``), ``sort=updated_at``, and setting ``status: acknowledged`` through ``PUT /v1/incidents/{id}``
(Rootly has no acknowledge action endpoint).

Custom fields (Rootly's form fields) [V: docs.rootly.com/api-reference, rootlyhq/rootly-python
``models/{list_incidents_include,get_incident_include,incident_form_field_selection}.py``]:
- ``GET /v1/incidents`` and ``GET /v1/incidents/{id}`` take ``include=`` from a fixed list that names
  ``custom_field_selections`` (there is no ``form_field_selections`` value); we send it on both.
- A selection is an ``incident_form_field_selections`` resource (``GET /v1/incidents/{incident_id}/
  form_field_selections``, ``GET /v1/incident_form_field_selections/{id}``) with ``incident_id``,
  ``form_field_id``, the legacy ``custom_field_id``, ``form_field`` (``slug``, ``name``, ``input_kind``,
  ``options[{id, value}]``), ``value`` (text answers) and ``selected_option_ids`` / ``selected_*_ids``.
  The ``/v1/.../custom_field_selections`` endpoints are deprecated in favour of the form field ones.
- Webhook ``incident.*`` payloads carry ``data.form_field_selections`` inline (docs.rootly.com
  /configuration/event-payloads shows the key; its items are not shown there).
[!] Not verified: the resource type and shape that ``include=custom_field_selections`` puts in
``included`` (we accept both selection types, linked by ``relationships`` or by ``incident_id``), the
shape of the inline webhook items (read like the REST attributes), and ``selected_options`` as
``{id, value}`` objects (seen in rootlyhq/rootly-mcp-server tests, not in the OpenAPI schema).
``refetch_on_webhook = true`` re-reads each webhook's incident with the include instead (one GET per
event); a transient failure of that read answers the webhook 503, so Rootly delivers it again.

The way back: acknowledged -> ``PUT /v1/incidents/{id}`` status ``acknowledged``; resolved -> ``/resolve``;
triggered -> ``/restart`` (reopens a resolved or cancelled incident). The incident is read first so
asking for the state it is already in (canonically) is a no-op. Notes are timeline events.
The token travels per request, never on the shared session, and never appears in errors or logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from bridge.errors import ConnectorError, PermanentError
from bridge.http import call
from bridge.model import Change, Incident, TimelineEntry, format_time, parse_time
from connectors.base import CheckResult, Connector, PollResult
from connectors.rootly.webhooks import (
    INCLUDE,
    event_entry,
    incident_from_rootly,
    parse_event,
    verify_signature,
)

__all__ = ["MEDIA_TYPE", "RootlyConnector"]

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.api+json"
#: updated_at is re-read this far before the cursor (clock skew); the inbox de-duplicates repeats.
OVERLAP = timedelta(minutes=1)
MAX_PAGES = 200


def _version(incident: Incident, notes: int) -> str:
    """A digest of the tracked attributes, the custom field answers and the note count."""
    text = json.dumps([incident.tracked(), incident.raw.get("custom_fields"), notes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _next_page(page: Mapping[str, Any], current: int) -> int | None:
    meta = page.get("meta") if isinstance(page.get("meta"), Mapping) else {}
    if meta.get("next_page"):
        return int(meta["next_page"])
    if "next_page" in meta:
        return None
    links = page.get("links") if isinstance(page.get("links"), Mapping) else {}
    return current + 1 if links.get("next") else None


class RootlyConnector(Connector):
    """Rootly REST (JSON:API) + webhooks. Settings: ``api_url``, ``api_token``, ``webhook_secret``,
    ``catch_up_hours``, ``page_size``, ``signature_tolerance_seconds``, ``refetch_on_webhook``."""

    slug: ClassVar[str] = "rootly"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "https://api.rootly.com").rstrip("/")
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 24))
        self.page_size = int(settings.get("page_size") or 50)
        tolerance = settings.get("signature_tolerance_seconds")
        self.tolerance = 300 if tolerance is None else int(tolerance)
        self.refetch = bool(settings.get("refetch_on_webhook", False))

    def __repr__(self) -> str:
        return f"RootlyConnector({self.name!r}, api_url={self.api_url!r})"

    # -- transport ------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.settings['api_token']}", "Accept": MEDIA_TYPE,
                   "Content-Type": MEDIA_TYPE}
        return call(self.session, method, f"{self.api_url}{path}", connection=self.name, what=what,
                    headers=headers, **kwargs)

    def _list(self, path: str, params: dict[str, str], *, what: str,
              included: list[Any] | None = None) -> list[Mapping[str, Any]]:
        """Every page's ``data``; each page's JSON:API ``included`` is appended to `included` if given."""
        items: list[Mapping[str, Any]] = []
        number: int | None = 1
        while number is not None:
            page = self._call("GET", path, what=what,
                              params={**params, "page[number]": str(number), "page[size]": str(self.page_size)}).json()
            items += page.get("data") or []
            if included is not None and isinstance(page.get("included"), list):
                included += page["included"]
            number = _next_page(page, number)
            if number is not None and number > MAX_PAGES:
                log.warning("%s: %s has more than %d pages; the rest is left to the next poll", self.name,
                            what, MAX_PAGES)
                break
        return items

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        verify_signature(body, headers, self.settings.get("webhook_secret"), connection=self.name, now=now,
                         tolerance=self.tolerance)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        """The event's `Change`; with ``refetch_on_webhook`` its incident is re-read (custom fields included)."""
        changes = parse_event(body, connection=self.name)
        if not self.refetch:
            return changes
        fresh = []
        for change in changes:
            if change.incident is not None:
                incident = self.get_incident(change.record_id)
                if incident.updated_at < change.occurred_at:
                    incident = incident.with_attributes(updated_at=change.occurred_at)
                change = replace(change, incident=incident)
            fresh.append(change)
        return fresh

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Incidents updated since `cursor` (first poll: the catch-up window), oldest first, each with its
        timeline notes, as ``incident.polled`` changes."""
        since = parse_time(cursor) - OVERLAP if cursor else now - self.catch_up
        params = {"filter[updated_at][gte]": str(format_time(since)), "sort": "updated_at", "include": INCLUDE}
        changes = []
        included: list[Any] = []
        for data in self._list("/v1/incidents", params, what="list incidents", included=included):
            incident = incident_from_rootly(data, source=self.name, included=included)
            entries = tuple(self.list_notes(incident.id))
            changes.append(Change(
                connection=self.name, event_type="incident.polled", record_id=incident.id,
                event_id=f"poll:{incident.id}:{incident.raw.get('updated_at')}:{_version(incident, len(entries))}",
                occurred_at=incident.updated_at, incident=incident, entries=entries, via="poll"))
        return PollResult(changes=changes, cursor=format_time(now))

    # -- the way back ---------------------------------------------------------------------------------
    def transition(self, record_id: str, status: str) -> None:
        """Acknowledge, resolve or reopen (``triggered``); a no-op when already there canonically."""
        current = self.get_incident(record_id).status
        what = f"set incident {record_id} to {status}"
        if status == current:
            log.info("%s: incident %s already %s", self.name, record_id, status)
            return
        if status == "acknowledged":
            if current == "resolved":  # reopen first: Rootly cannot acknowledge a closed incident
                self._action(record_id, "restart", {}, what=what)
            self._call("PUT", f"/v1/incidents/{record_id}", what=what,
                       json={"data": {"type": "incidents", "attributes": {"status": "acknowledged"}}})
        elif status == "resolved":
            self._action(record_id, "resolve", {"resolution_message": "Resolved from the service desk"}, what=what)
        elif status == "triggered":
            if current != "resolved":
                raise PermanentError(f"{self.name}: cannot move incident {record_id} from {current} back to "
                                     "triggered (Rootly restarts only resolved or cancelled incidents)",
                                     connection=self.name)
            self._action(record_id, "restart", {}, what=what)
        else:
            raise PermanentError(f"{self.name}: unknown status {status!r} (triggered, acknowledged, resolved)",
                                 connection=self.name)

    def _action(self, record_id: str, action: str, attributes: dict[str, Any], *, what: str) -> None:
        self._call("PUT", f"/v1/incidents/{record_id}/{action}", what=what,
                   json={"data": {"type": "incidents", "attributes": attributes}})

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Set ``priority`` (a severity name, e.g. SEV1), ``title`` or ``description`` (the summary)."""
        attributes: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "priority":
                attributes["severity_id"] = self._severity_id(value)
            elif name == "title":
                attributes["title"] = value
            elif name == "description":
                attributes["summary"] = value
            else:
                raise PermanentError(f"{self.name}: cannot set {name!r} on a Rootly incident "
                                     "(priority, title and description can be set)", connection=self.name)
        self._call("PUT", f"/v1/incidents/{record_id}", what=f"update incident {record_id} ({', '.join(fields)})",
                   json={"data": {"type": "incidents", "attributes": attributes}})

    def _severity_id(self, name: str) -> str:
        if not getattr(self, "_severities", None):
            items = self._list("/v1/severities", {}, what="list severities")
            self._severities = {str(s.get("attributes", {}).get("name")): str(s["id"]) for s in items}
        if name not in self._severities:
            raise PermanentError(f"{self.name}: no Rootly severity named {name!r} (this organisation has "
                                 f"{', '.join(sorted(self._severities)) or 'none'})", connection=self.name)
        return self._severities[name]

    def add_note(self, record_id: str, text: str) -> None:
        self._call("POST", f"/v1/incidents/{record_id}/events", what=f"add a timeline event to incident {record_id}",
                   json={"data": {"type": "incident_events", "attributes": {"event": text, "visibility": "internal"}}})

    def has_note(self, record_id: str, tag: str) -> bool:
        return any(tag in entry.text for entry in self.list_notes(record_id))

    def list_notes(self, record_id: str) -> list[TimelineEntry]:
        """The incident's written timeline events (kind ``event``; Rootly's automatic trail is skipped)."""
        items = self._list(f"/v1/incidents/{record_id}/events", {}, what=f"list events of incident {record_id}")
        return [event_entry(item) for item in items
                if (item.get("attributes") or {}).get("kind", "event") == "event"]

    def get_incident(self, record_id: str) -> Incident:
        document = self._call("GET", f"/v1/incidents/{record_id}", what=f"read incident {record_id}",
                              params={"include": INCLUDE}).json()
        return incident_from_rootly(document["data"], source=self.name, included=document.get("included"))

    def check(self) -> CheckResult:
        """One authenticated read of one incident."""
        try:
            page = self._call("GET", "/v1/incidents", what="list incidents",
                              params={"page[number]": "1", "page[size]": "1"}).json()
        except ConnectorError as exc:
            kind = "token refused" if isinstance(exc, PermanentError) and exc.status in (401, 403) else "unreachable"
            return CheckResult(ok=False, message=f"Rootly {kind}: {exc}", details={"status": exc.status})
        return CheckResult(ok=True, message="token accepted; incidents readable",
                           details={"total": (page.get("meta") or {}).get("total_count")})
