"""Squadcast as a source: v2 outgoing webhooks in, API v3 catch-up polls, and the way back.

What the API offers, as read in the v3 reference (developers.incidents.cloud.solarwinds.com, the former
developers.squadcast.com), the official SDK solarwinds/squadcast-sdk-python (operations, wire names and
its ``AccessTokenHook``) and the Faros Airbyte source (a reader of the export):

- Auth: ``GET {auth}/oauth/access-token`` with ``X-Refresh-Token: <refresh token>`` answers ``{"data":
  {access_token, expires_at (unix seconds), issued_at, refresh_token, type: "bearer"}}``; API calls carry
  ``Authorization: Bearer <access token>``. The auth host is ``auth.squadcast.com`` (EU
  ``auth.eu.squadcast.com``); like the SDK we derive it from the API host (``api.X`` -> ``auth.X``). The
  token is cached and renewed `REFRESH_MARGIN` seconds before ``expires_at``, and once more when the
  API answers 401 (revoked early, or clocks apart). Errors are ``{"meta": {status, error_message}}``.
- ``GET /v3/incidents/{id}``; ``POST /v3/incidents/{id}/acknowledge``; ``POST /v3/incidents/{id}/resolve``
  with ``{"resolution_reason": {"message"}}`` (mandatory on some plans); ``PATCH /v3/incidents/{id}/priority``
  with ``{"priority": "P1".."P5"}``; ``POST /v3/incidents/{id}/reassign`` with ``{"reassign_to": {id, type}}``;
  notes are the incident's "warroom": ``GET``/``POST /v3/incidents/{id}/warroom`` (``{"message",
  "attachments": []}``).
- There is no list endpoint with pagination: ``GET /v3/incidents/export?type=json&start_time&end_time
  &owner_id`` (a team id, required) answers every incident of the window at once. The window is taken
  to select by creation time [!], so a poll reads the whole catch-up window, in windows of
  ``export_window_hours`` (its pages), for every team (``GET /v3/teams``) unless ``team_id`` is set, and
  keeps the incidents whose latest activity is past the cursor plus every open one (a new note does not
  show in the export's times, so open incidents are re-read with their notes; the version in the event
  id lets the inbox drop what did not change).

Differences from the usual sketch: notes live under ``/warroom`` (not ``/notes``); API v3 cannot reopen,
unacknowledge, or edit an incident's title or description, so ``transition(id, "triggered")`` and
`update` of anything but ``priority`` are `PermanentError`; "escalate" is a reassignment to the
configured ``escalate_to``. The refresh token and access tokens never reach an error, a log or ``repr``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import requests

from bridge.errors import AuthError, ConnectorError, PermanentError, WebhookError
from bridge.http import call
from bridge.model import Change, Incident, TimelineEntry, format_time, parse_time
from connectors.base import CheckResult, Connector, PollResult
from connectors.squadcast.records import (
    incident_from_export,
    incident_from_rest,
    note_entry,
)
from connectors.squadcast.webhooks import (
    DEFAULT_TOKEN_HEADER,
    PRIORITIES,
    STATUS_MAP,
    parse_event,
    verify_token,
)

__all__ = ["SquadcastConnector", "auth_url_for"]

log = logging.getLogger(__name__)

REFRESH_MARGIN = 60.0  # renew the access token this many seconds before it expires
OVERLAP = timedelta(minutes=1)  # re-read a little before the cursor; the inbox de-duplicates repeats
TERMINAL = ("resolved", "suppressed")


def auth_url_for(api_url: str) -> str:
    """The token host for an API host: ``https://api.eu.squadcast.com`` -> ``https://auth.eu.squadcast.com``;
    any other host (a proxy, the simulator) is taken to serve ``/oauth/access-token`` itself."""
    parts = urlsplit(api_url)
    host = parts.netloc
    if host.lower().startswith("api."):
        return urlunsplit((parts.scheme, "auth." + host[4:], "", "", "")).rstrip("/")
    return api_url.rstrip("/")


def _version(incident: Incident, notes: int) -> str:
    text = json.dumps([incident.tracked(), notes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _stamp(moment: datetime) -> str:
    """The export's time format, e.g. ``2023-02-02T07:53:59.590Z`` (UTC, milliseconds)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SquadcastConnector(Connector):
    """Squadcast API v3 + v2 outgoing webhooks. Settings: see `SquadcastConnection`."""

    slug: ClassVar[str] = "squadcast"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "https://api.squadcast.com").rstrip("/")
        self.auth_url = str(settings.get("auth_url") or auth_url_for(self.api_url)).rstrip("/")
        self.web_url = settings.get("web_url") or "https://app.squadcast.com"
        self.team_id = settings.get("team_id") or None
        self.header = str(settings.get("webhook_header") or DEFAULT_TOKEN_HEADER)
        self.resolution_message = str(settings.get("resolution_message") or "Resolved from the service desk")
        self.escalate_to = settings.get("escalate_to") or None
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 168))
        self.window = timedelta(hours=int(settings.get("export_window_hours") or 24))
        self.clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, expires_at)
        self._services: dict[str, str] | None = None

    def __repr__(self) -> str:  # never the settings or the token: they are secrets
        return f"SquadcastConnector({self.name!r}, api_url={self.api_url!r})"

    # -- transport ------------------------------------------------------------------------------------
    def _access_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self.clock() >= self._token[1] - REFRESH_MARGIN:
                self._token = self._fetch_token()
            return self._token[0]

    def _fetch_token(self) -> tuple[str, float]:
        response = call(self.session, "GET", f"{self.auth_url}/oauth/access-token", connection=self.name,
                        what="exchange the refresh token for an access token",
                        headers={"X-Refresh-Token": self.settings["refresh_token"], "Accept": "application/json"})
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            data = None
        token = data.get("access_token") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise PermanentError(f"{self.name}: the access-token answer carries no data.access_token",
                                 connection=self.name, status=response.status_code)
        expires = data.get("expires_at")
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            expires = self.clock() + 600  # no expiry given: treat it as short-lived
        return token, float(expires)

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        """One API call with a cached access token; on 401 the token is renewed and the call made once more."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._access_token(renew=attempt == 2)}",
                       "Accept": "application/json"}
            try:
                return call(self.session, method, f"{self.api_url}{path}", connection=self.name, what=what,
                            headers=headers, **kwargs)
            except AuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                log.info("%s: access token refused with HTTP 401; renewing it once", self.name)
        raise AssertionError("unreachable")  # pragma: no cover

    def _data(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        try:
            return self._call(method, path, what=what, **kwargs).json().get("data")
        except (ValueError, AttributeError) as exc:
            raise PermanentError(f"{self.name}: {what}: the answer is not a JSON object with 'data'",
                                 connection=self.name) from exc

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        """A shared secret in the configured header; Squadcast signs nothing, so `now` is unused."""
        verify_token(headers, self.settings.get("webhook_secret"), connection=self.name, header=self.header)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        return parse_event(body, connection=self.name)

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Incidents with activity since `cursor` and every open one, oldest first, each with its notes,
        as ``incident.polled`` changes. The next cursor is the newest activity seen."""
        floor = now - self.catch_up
        since = parse_time(cursor) - OVERLAP if cursor else floor
        newest = parse_time(cursor) if cursor else floor
        changes = []
        for item in self._export_all(floor, now):
            try:
                incident = incident_from_export(item, source=self.name)
            except WebhookError as exc:
                log.warning("%s: skipping an export record: %s", self.name, exc)
                continue
            if incident.updated_at < since and item.get("status") in TERMINAL:
                continue
            entries = tuple(self.list_notes(incident.id))
            changes.append(Change(
                connection=self.name, event_type="incident.polled", record_id=incident.id,
                event_id=f"poll:{incident.id}:{format_time(incident.updated_at)}:{_version(incident, len(entries))}",
                occurred_at=incident.updated_at, incident=incident, entries=entries, via="poll"))
            newest = max(newest, incident.updated_at)  # type: ignore[type-var]
        changes.sort(key=lambda change: change.occurred_at)
        return PollResult(changes=changes, cursor=format_time(newest))

    def _export_all(self, start: datetime, end: datetime) -> list[Mapping[str, Any]]:
        """Every exported incident created in [start, end], for every polled team, without repeats."""
        found: dict[str, Mapping[str, Any]] = {}
        for team in self._teams():
            for low, high in self._windows(start, end):
                params = {"type": "json", "start_time": _stamp(low), "end_time": _stamp(high), "owner_id": team}
                page = self._call("GET", "/v3/incidents/export", what="export incidents", params=params)
                try:
                    items = page.json().get("incidents") or []
                except (ValueError, AttributeError) as exc:
                    raise PermanentError(f"{self.name}: export incidents: the answer is not a JSON object "
                                         "with 'incidents'", connection=self.name) from exc
                for item in items if isinstance(items, list) else ():
                    if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                        found.setdefault(item["id"], item)
        return list(found.values())

    def _windows(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        low = start
        while low < end:
            high = min(low + self.window, end)
            yield low, high
            low = high

    def _teams(self) -> list[str]:
        if self.team_id:
            return [str(self.team_id)]
        teams = self._data("GET", "/v3/teams", what="list teams") or []
        return [str(team["id"]) for team in teams if isinstance(team, Mapping) and team.get("id")]

    # -- the way back ---------------------------------------------------------------------------------
    def transition(self, record_id: str, status: str) -> None:
        """Acknowledge or resolve; a no-op when already there canonically. API v3 has no reopen and no
        unacknowledge, so moving back to ``triggered`` is refused for good (`PermanentError`)."""
        if status not in ("triggered", "acknowledged", "resolved"):
            raise PermanentError(f"{self.name}: unknown status {status!r} (triggered, acknowledged, resolved)",
                                 connection=self.name)
        current = STATUS_MAP.get(str(self._incident(record_id).get("status")))
        what = f"set incident {record_id} to {status}"
        if status == current:
            log.info("%s: incident %s already %s", self.name, record_id, status)
        elif status == "resolved":
            self._call("POST", f"/v3/incidents/{record_id}/resolve", what=what,
                       json={"resolution_reason": {"message": self.resolution_message}})
        elif current == "resolved" or status == "triggered":
            raise PermanentError(f"{self.name}: cannot {what}: it is {current}, and the Squadcast API can "
                                 "neither reopen nor unacknowledge an incident", connection=self.name)
        else:
            self._call("POST", f"/v3/incidents/{record_id}/acknowledge", what=what)

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Set ``priority`` (P1..P5): the only incident attribute API v3 lets us change."""
        for name, value in fields.items():
            if name != "priority":
                raise PermanentError(f"{self.name}: cannot set {name!r} on a Squadcast incident (only "
                                     "priority can be set through the API)", connection=self.name)
            if value not in PRIORITIES:
                raise PermanentError(f"{self.name}: Squadcast priorities are P1..P5, not {value!r}",
                                     connection=self.name)
        if "priority" in fields:
            self._call("PATCH", f"/v3/incidents/{record_id}/priority", what=f"set the priority of incident {record_id}",
                       json={"priority": fields["priority"]})

    def escalate(self, record_id: str) -> None:
        """Reassign the incident to ``escalate_to`` (Squadcast has no "next level" action to call)."""
        if not self.escalate_to:
            raise PermanentError(f"{self.name}: cannot escalate incident {record_id}: set escalate_to "
                                 "('escalationpolicy:<id>', 'squad:<id>' or 'user:<id>') on the connection",
                                 connection=self.name)
        kind, _, ident = str(self.escalate_to).partition(":")
        self._call("POST", f"/v3/incidents/{record_id}/reassign", what=f"reassign incident {record_id}",
                   json={"reassign_to": {"id": ident, "type": kind}})

    def add_note(self, record_id: str, text: str) -> None:
        self._call("POST", f"/v3/incidents/{record_id}/warroom", what=f"add a note to incident {record_id}",
                   json={"message": text, "attachments": []})

    def has_note(self, record_id: str, tag: str) -> bool:
        return any(tag in entry.text for entry in self.list_notes(record_id))

    def list_notes(self, record_id: str) -> list[TimelineEntry]:
        """The incident's warroom notes people wrote, oldest first (the list has no pagination)."""
        notes = self._data("GET", f"/v3/incidents/{record_id}/warroom", what=f"list notes of incident {record_id}")
        entries = []
        for note in notes if isinstance(notes, list) else ():
            try:
                entry = note_entry(note) if isinstance(note, Mapping) else None
            except WebhookError as exc:
                log.warning("%s: skipping a note of incident %s: %s", self.name, record_id, exc)
                continue
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda entry: entry.at)

    def _incident(self, record_id: str) -> Mapping[str, Any]:
        data = self._data("GET", f"/v3/incidents/{record_id}", what=f"read incident {record_id}")
        if not isinstance(data, Mapping):
            raise PermanentError(f"{self.name}: read incident {record_id}: no incident in the answer",
                                 connection=self.name)
        return data

    def get_incident(self, record_id: str) -> Incident:
        return incident_from_rest(self._incident(record_id), source=self.name, web_url=self.web_url,
                                  services=self._service_names())

    def _service_names(self) -> dict[str, str]:
        if self._services is None:
            services = self._data("GET", "/v3/services", what="list services") or []
            self._services = {str(s["id"]): str(s.get("name") or s["id"]) for s in services
                              if isinstance(s, Mapping) and s.get("id")}
        return self._services

    def check(self) -> CheckResult:
        """Exchange the refresh token, then list the teams the token can read (and find ``team_id``)."""
        try:
            self._access_token(renew=True)
            teams = self._data("GET", "/v3/teams", what="list teams") or []
        except ConnectorError as exc:
            kind = "refresh token refused" if exc.status in (401, 403) else "unreachable"
            return CheckResult(ok=False, message=f"Squadcast {kind}: {exc}", details={"status": exc.status})
        ids = [str(team.get("id")) for team in teams if isinstance(team, Mapping)]
        if self.team_id and str(self.team_id) not in ids:
            return CheckResult(ok=False, message=f"team_id {self.team_id} is not among the {len(ids)} team(s) "
                                                 "this token can read", details={"teams": len(ids)})
        return CheckResult(ok=True, message=f"refresh token accepted; {len(ids)} team(s) readable",
                           details={"teams": len(ids)})
