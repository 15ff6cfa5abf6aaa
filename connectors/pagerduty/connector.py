"""PagerDuty as a source: webhooks v3 in, REST v2 catch-up polls, and the way back (status, notes).

Webhooks are the change feed; `poll` only catches up on what was missed (PagerDuty's ``since``/``until``
filter on creation time, so the poll re-reads every incident created in the catch-up window and lets the
inbox de-duplicate unchanged ones by ``poll:{id}:{updated_at}:{status}``).

Credentials go on each request, never on the shared session: the session is injected and may be reused,
and headers left on it would travel to whatever it calls next. The token never appears in logs or errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from bridge.errors import ConnectorError, PermanentError, TransientError
from bridge.http import call, raise_for_status, redact_url
from bridge.model import Change, Incident, RecordRef, TimelineEntry, format_time, parse_time
from connectors.base import CheckResult, Connector, PollResult
from connectors.pagerduty.webhooks import (
    describe_event,
    incident_from_webhook,
    parse_event,
    sign,
    signature_header,
    verify_signature,
)

__all__ = [
    "PagerDutyConnector", "incident_from_rest", "note_entry", "incident_from_webhook", "describe_event",
    "parse_event", "sign", "signature_header", "verify_signature",
]

log = logging.getLogger(__name__)

ACCEPT = "application/vnd.pagerduty+json;version=2"
PAGE_LIMIT = 100
MAX_OFFSET_WINDOW = 10_000  # PagerDuty answers 400 when offset + limit exceeds this
POLLED_STATUSES = ("triggered", "acknowledged", "resolved")
#: Notes are re-read for incidents updated this long before the cursor too: PagerDuty's ``updated_at`` has
#: second resolution and its clock is not ours. Re-reading is harmless (entries de-duplicate by note id).
NOTES_OVERLAP = timedelta(minutes=1)
HISTORY_WINDOW = timedelta(days=1)   # backfill walks the period a day at a time
#: PUT /incidents/{id} error codes meaning "already in the state you asked for", by that state.
ALREADY_IN_STATE = {"resolved": 1001, "acknowledged": 1002}


# -- pure normalisers (REST shape) -------------------------------------------------------------------
def _summary(reference: object, *keys: str) -> str | None:
    if not isinstance(reference, Mapping):
        return None
    for key in keys or ("summary",):
        if reference.get(key):
            return str(reference[key])
    return None


def _description(incident: Mapping[str, Any]) -> str:
    """The body details when the API returned them (``include[]=body``), else a description that says more
    than the title. Webhooks never carry either, so this stays empty unless the account sends details."""
    body = incident.get("body")
    details = body.get("details") if isinstance(body, Mapping) else None
    if isinstance(details, str):
        return details
    if details:
        return json.dumps(details, sort_keys=True)
    description = incident.get("description")
    if isinstance(description, str) and description not in (incident.get("title"), incident.get("summary")):
        return description
    return ""


def incident_from_rest(incident: Mapping[str, Any], *, source: str) -> Incident:
    """The canonical `Incident` from a REST v2 incident (``GET /incidents`` or ``/incidents/{id}``)."""
    created = parse_time(incident.get("created_at"))
    updated = parse_time(incident.get("updated_at") or incident.get("last_status_change_at")) or created
    number = incident.get("incident_number")
    assignees = (_summary(item.get("assignee")) for item in incident.get("assignments") or ()
                 if isinstance(item, Mapping))
    return Incident(
        source=source,
        id=str(incident["id"]),
        title=str(incident.get("title") or ""),
        status=str(incident.get("status")),
        created_at=created,  # type: ignore[arg-type]
        updated_at=updated,  # type: ignore[arg-type]
        number=str(number) if number is not None else None,
        description=_description(incident),
        urgency=incident.get("urgency"),
        priority=_summary(incident.get("priority"), "name", "summary"),
        service=_summary(incident.get("service")),
        assignees=tuple(name for name in assignees if name),
        url=incident.get("html_url"),
        resolved_at=parse_time(incident.get("resolved_at")),
        raw=dict(incident),
    )


def note_entry(note: Mapping[str, Any]) -> TimelineEntry:
    """One REST incident note as a timeline entry (same id as the ``incident.annotated`` webhook's)."""
    return TimelineEntry(id=str(note["id"]), at=parse_time(note.get("created_at")),  # type: ignore[arg-type]
                         kind="note", text=str(note.get("content") or ""), author=_summary(note.get("user")))


def _error_code(response: requests.Response) -> int | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def _version(incident: Incident, notes: int) -> str:
    """A short digest of the incident's tracked attributes and note count, for poll event ids."""
    text = json.dumps([incident.tracked(), notes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class PagerDutyConnector(Connector):
    """PagerDuty REST v2 + webhooks v3. Settings: ``api_url``, ``token``, ``webhook_secret``,
    ``from_email`` (the integration user every write is made as) and ``catch_up_hours``."""

    slug: ClassVar[str] = "pagerduty"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "https://api.pagerduty.com").rstrip("/")
        self.from_email = str(settings.get("from_email") or "")
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 168))

    def __repr__(self) -> str:  # never the settings: they hold the token
        return f"PagerDutyConnector({self.name!r}, api_url={self.api_url!r})"

    # -- transport ------------------------------------------------------------------------------------
    def _headers(self, *, write: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Token token={self.settings['token']}", "Accept": ACCEPT,
                   "Content-Type": "application/json"}
        if write:
            headers["From"] = self.from_email
        return headers

    def _call(self, method: str, path: str, *, what: str, write: bool = False, **kwargs: Any) -> requests.Response:
        return call(self.session, method, f"{self.api_url}{path}", connection=self.name, what=what,
                    headers=self._headers(write=write), **kwargs)

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        """PagerDuty signs no timestamp, so `now` is unused: replays are caught by ``X-Webhook-Id``."""
        verify_signature(body, headers, self.settings.get("webhook_secret"), connection=self.name)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        return parse_event(body, headers, connection=self.name)

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Every incident created in the catch-up window, as ``incident.polled`` changes; notes are read
        only for incidents updated since the previous poll (`cursor`), to keep the request count low."""
        since = parse_time(cursor) - NOTES_OVERLAP if cursor else None
        changes = [self._polled(incident, notes_since=since) for incident in self._list_incidents(now - self.catch_up, now)]
        return PollResult(changes=changes, cursor=format_time(now))

    def history(self, since: datetime, *, until: datetime) -> Iterator[PollResult]:
        """Backfill a day of created incidents at a time: PagerDuty filters the list by creation time and
        caps offset pagination, so a long period is walked in windows, each complete before the next."""
        start = since
        while start < until:
            end = min(start + HISTORY_WINDOW, until)
            yield PollResult(changes=[self._polled(incident, notes_since=None)
                                      for incident in self._list_incidents(start, end)], cursor=format_time(end))
            start = end

    def _polled(self, incident: Mapping[str, Any], *, notes_since: datetime | None) -> Change:
        canonical = incident_from_rest(incident, source=self.name)
        entries: tuple[TimelineEntry, ...] = ()
        if notes_since is None or canonical.updated_at >= notes_since:
            entries = tuple(self.list_notes(canonical.id))
        return Change(
            connection=self.name, event_type="incident.polled", record_id=canonical.id,
            # updated_at has one-second resolution: a digest of what the bridge tracks (and the note
            # count) tells a change made within the same second apart from the version already polled.
            event_id=f"poll:{canonical.id}:{incident.get('updated_at')}:{_version(canonical, len(entries))}",
            occurred_at=canonical.updated_at, incident=canonical, entries=entries, via="poll")

    def _list_incidents(self, start: datetime, end: datetime) -> list[Mapping[str, Any]]:
        params = [("since", str(format_time(start))), ("until", str(format_time(end))),
                  ("sort_by", "created_at:asc"), ("limit", str(PAGE_LIMIT))]
        params += [("statuses[]", status) for status in POLLED_STATUSES]
        incidents: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            page = self._call("GET", "/incidents", what="list incidents",
                              params=params + [("offset", str(offset))]).json()
            incidents += page.get("incidents") or []
            offset += int(page.get("limit") or PAGE_LIMIT)
            if not page.get("more"):
                return incidents
            if offset + PAGE_LIMIT > MAX_OFFSET_WINDOW:
                log.warning("%s: more than %d incidents created in the catch-up window; the rest are "
                            "left to webhooks (lower catch_up_hours to poll them all)", self.name, offset)
                return incidents

    # -- the way back ---------------------------------------------------------------------------------
    def transition(self, record_id: str, status: str) -> None:
        """Set the incident's status as the integration user. ``triggered`` on a resolved incident reopens
        it. Asking for the state it is already in counts as done (a redelivered op must not dead-letter)."""
        what = f"set incident {record_id} to {status}"
        url = f"{self.api_url}/incidents/{record_id}"
        body = {"incident": {"type": "incident_reference", "status": status}}
        try:
            response = self.session.request("PUT", url, json=body, headers=self._headers(write=True))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{self.name}: {what} failed: {type(exc).__name__} on {redact_url(url)}",
                                 connection=self.name) from exc
        if response.status_code == 400 and _error_code(response) == ALREADY_IN_STATE.get(status):
            log.info("%s: incident %s already %s", self.name, record_id, status)
            return
        raise_for_status(response, connection=self.name, what=what)

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Change what the desk may own on an incident: ``priority`` (by name, e.g. P1), ``title``, ``urgency``.

        PagerDuty takes a priority as a reference, so the name is looked up once in ``GET /priorities``.
        """
        body: dict[str, Any] = {"type": "incident_reference"}
        for name, value in fields.items():
            if name == "priority":
                body["priority"] = {"id": self._priority_id(value), "type": "priority_reference"}
            elif name in ("title", "urgency"):
                body[name] = value
            else:
                raise PermanentError(f"{self.name}: cannot set {name!r} on a PagerDuty incident "
                                     "(priority, title and urgency can be set)", connection=self.name)
        self._call("PUT", f"/incidents/{record_id}", what=f"update incident {record_id} ({', '.join(fields)})",
                   write=True, json={"incident": body})

    def escalate(self, record_id: str) -> None:
        """Move the incident to the next escalation level (a desk reassignment asked for more help).

        The REST incident read here does not carry its current level, so unless it does the next level
        is taken to be 2 (one step past the first responders).
        """
        level = self.get_incident(record_id).escalation_level or 1
        self._call("PUT", f"/incidents/{record_id}", what=f"escalate incident {record_id}", write=True,
                   json={"incident": {"type": "incident_reference", "escalation_level": level + 1}})

    def _priority_id(self, name: str) -> str:
        if not getattr(self, "_priorities", None):
            page = self._call("GET", "/priorities", what="list priorities", params={"limit": "100"}).json()
            self._priorities = {str(p.get("name") or p.get("summary")): str(p["id"]) for p in page.get("priorities") or ()}
        if name not in self._priorities:
            raise PermanentError(f"{self.name}: no PagerDuty priority named {name!r} "
                                 f"(this account has {', '.join(sorted(self._priorities)) or 'none'})",
                                 connection=self.name)
        return self._priorities[name]

    def find_incident(self, incident_key: str) -> RecordRef | None:
        """The open or recent incident carrying `incident_key` (searched before every create)."""
        page = self._call("GET", "/incidents", what=f"find the incident with key {incident_key}",
                          params=[("incident_key", incident_key), ("date_range", "all")]).json()
        found = [i for i in page.get("incidents") or () if i.get("incident_key") == incident_key]
        if not found:
            return None
        data = found[0]
        return RecordRef(id=str(data["id"]), number=str(data.get("incident_number") or data["id"]),
                         url=str(data.get("html_url") or ""))

    def create_incident(self, *, title: str, service_id: str, urgency: str = "high", details: str = "",
                        incident_key: str | None = None) -> RecordRef:
        """Open an incident (a desk-raised ticket paging the responders); `incident_key` de-duplicates."""
        incident: dict[str, Any] = {"type": "incident", "title": title, "urgency": urgency,
                                    "service": {"id": service_id, "type": "service_reference"}}
        if details:
            incident["body"] = {"type": "incident_body", "details": details}
        if incident_key:
            incident["incident_key"] = incident_key
        data = self._call("POST", "/incidents", what=f"open an incident on service {service_id}", write=True,
                          json={"incident": incident}).json()["incident"]
        return RecordRef(id=str(data["id"]), number=str(data.get("incident_number") or data["id"]),
                         url=str(data.get("html_url") or ""))

    def add_note(self, record_id: str, text: str) -> None:
        self._call("POST", f"/incidents/{record_id}/notes", what=f"add a note to incident {record_id}",
                   write=True, json={"note": {"content": text}})

    def has_note(self, record_id: str, tag: str) -> bool:
        return any(tag in entry.text for entry in self.list_notes(record_id))

    def list_notes(self, record_id: str) -> list[TimelineEntry]:
        """The incident's notes, oldest first, as timeline entries (kind ``note``, id = note id)."""
        page = self._call("GET", f"/incidents/{record_id}/notes", what=f"list notes of incident {record_id}").json()
        return [note_entry(note) for note in page.get("notes") or ()]

    def get_incident(self, record_id: str) -> Incident:
        """The incident as PagerDuty has it now (convergence checks, re-reads before a write)."""
        data = self._call("GET", f"/incidents/{record_id}", what=f"read incident {record_id}").json()
        return incident_from_rest(data["incident"], source=self.name)

    def check(self) -> CheckResult:
        """One authenticated read: is the token accepted, and does the ``From`` user exist?"""
        try:
            users = self._call("GET", "/users", what="look up the From user",
                               params={"query": self.from_email}).json().get("users") or []
        except ConnectorError as exc:
            kind = "token refused" if isinstance(exc, PermanentError) and exc.status in (401, 403) else "unreachable"
            return CheckResult(ok=False, message=f"PagerDuty {kind}: {exc}", details={"status": exc.status})
        match = next((u for u in users if str(u.get("email", "")).lower() == self.from_email.lower()), None)
        if match is None:
            return CheckResult(ok=False, message=f"token accepted, but no PagerDuty user has the from_email "
                                                 f"{self.from_email!r}: writes would fail with error 1008",
                               details={"users_found": len(users)})
        return CheckResult(ok=True, message=f"token accepted; writes are made as {match.get('name')} "
                                            f"<{match.get('email')}>", details={"user_id": match.get("id")})
