"""ServiceNow as a target: incidents through the Table API, with pysnow on the wire.

Why it looks the way it does (api-facts §2):
- pysnow gets the bridge's `RetryingSession` (basic auth set on it), so 429/5xx retries and
  ``Retry-After`` live in one place; pysnow's own exceptions and ``requests.HTTPError`` are turned into
  the typed errors of `bridge.errors` by status code (`bridge.http.raise_for_status`), never by text.
- An update is ONE ``PATCH /api/now/table/<table>/<sys_id>`` through ``Resource.request``: pysnow's
  ``update()`` would first GET and then PUT, two desk calls and a race.
- The link back is ``correlation_id`` (+ ``correlation_display = "itsm-bridge"``, which polls filter on).
  Encoded queries have no escaping, so an id or tag containing ``^`` is refused rather than searched.
- Journal fields (``work_notes``, ``comments``) read back empty, so polls read ``sys_journal_field``
  once per poll and attach the new entries to the records that changed.
- Tickets are read with ``sysparm_display_value=all`` (poll, get, and the record a PATCH is answered
  with): every field comes as ``{display_value, value[, link]}``. `Ticket.fields` keeps the raw values,
  exactly as a raw read gives them (everything compared stays raw); `Ticket.display` keeps the names and
  labels people know (``assignment_group`` "Network", not its sys_id) for what the bridge tells them.
The normalisers at the bottom are pure (record JSON -> `Ticket`, journal row -> `TimelineEntry`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pysnow
import requests
from pysnow.exceptions import PysnowException, ResponseError
from requests.utils import parse_header_links

from bridge.errors import (
    AuthError,
    ConfigError,
    ConfigProblem,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.http import DEFAULT_TIMEOUT, raise_for_status
from bridge.model import Change, RecordRef, Ticket, TimelineEntry
from connectors.base import CheckResult, Connector, PollResult

log = logging.getLogger(__name__)

T = TypeVar("T")
DESK_TIME = "%Y-%m-%d %H:%M:%S"
JOURNAL_ELEMENTS: dict[str, str] = {"work_notes": "work_note", "comments": "comment"}
CORRELATION_DISPLAY = "itsm-bridge"
DEFAULT_POLL_QUERY = "correlation_displaySTARTSWITHitsm-bridge"
CATCH_UP = timedelta(hours=1)
_SYS_ID = re.compile(r"[0-9a-f]{32}")
_DESK_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


class ServiceNowConnector(Connector):
    """A ServiceNow instance's incident table (or another task table named by `settings["table"]`)."""

    slug = "servicenow"
    roles = frozenset({"target"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.instance_url = str(settings["instance_url"]).rstrip("/")
        parts = urlsplit(self.instance_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            raise ConfigError(f"[connections.{name}]", [ConfigProblem(
                "instance_url", f"{self.instance_url!r} is not an instance address",
                hint="use https://<instance>.service-now.com (no path)")])
        self.username = str(settings["username"])
        self.table = str(settings.get("table") or "incident")
        self.poll_query = str(settings.get("poll_query", DEFAULT_POLL_QUERY) or "")
        self.page_size = int(settings.get("page_size", 1000))
        # Off by default: values are stored as sent, so what the bridge wrote reads back equal (echo
        # detection). On, the instance resolves reference names ("Payments") to sys_ids on write.
        self.input_display_value = bool(settings.get("input_display_value", False))
        session.auth = (self.username, str(settings["password"]))
        self._timeout = getattr(session, "timeout", DEFAULT_TIMEOUT)
        self._client = pysnow.Client(host=parts.netloc, use_ssl=parts.scheme == "https", session=session)

    # -- plumbing ------------------------------------------------------------------------------------
    def _resource(self, table: str, *, writes: bool = False, display: bool = False) -> pysnow.Resource:
        """A fresh pysnow resource per call: pysnow keeps query state on it, so sharing one would leak.
        `display`: records come back with display values next to the raw ones (``sysparm_display_value=all``)."""
        resource = self._client.resource(api_path=f"/table/{table}", timeout=self._timeout)
        if writes and self.input_display_value:
            resource.parameters.add_custom({"sysparm_input_display_value": "true"})
        if display:
            resource.parameters.display_value = "all"
        return resource

    def _wire(self, what: str, action: Callable[[], T]) -> T:
        """Run one pysnow call; every failure leaves as a typed error naming connection and operation."""
        try:
            return action()
        except requests.HTTPError as exc:
            if exc.response is not None:
                raise_for_status(exc.response, connection=self.name, what=what)
            raise PermanentError(f"{self.name}: {what} failed: {type(exc).__name__}", connection=self.name) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{self.name}: {what} failed: {type(exc).__name__}", connection=self.name) from exc
        except ResponseError as exc:  # an error body inside a 2xx answer
            raise PermanentError(f"{self.name}: {what} failed: {exc.message}: {exc.detail}",
                                 connection=self.name) from exc
        except ValueError as exc:  # not JSON: a proxy or maintenance page (e.g. a hibernating instance)
            raise TransientError(f"{self.name}: {what}: the answer was not JSON", connection=self.name) from exc
        except PysnowException as exc:
            raise PermanentError(f"{self.name}: {what}: unexpected answer ({type(exc).__name__})",
                                 connection=self.name) from exc

    def _list(self, table: str, query: str, *, what: str, fields: Sequence[str] = (),
              limit: int | None = None, display: bool = False) -> list[dict[str, Any]]:
        """Every row matching `query`, page by page, following the ``Link: rel="next"`` header."""
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            def fetch(offset: int = offset) -> tuple[list[dict[str, Any]], str | None]:
                response = self._resource(table, display=display).get(query=query, limit=limit or self.page_size,
                                                                      offset=offset, fields=list(fields))
                return response.all(), response.headers.get("Link")
            batch, link = self._wire(what, fetch)
            rows.extend(batch)
            following = next_offset(link)
            if limit is not None or not batch or following is None or following <= offset:
                return rows[:limit] if limit is not None else rows
            offset = following

    def _patch(self, record_id: str, fields: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        sys_id = self._checked_sys_id(record_id)
        resource = self._resource(self.table, writes=True, display=True)  # the answer is read as a ticket
        return self._wire(what, lambda: resource.request("PATCH", path_append=f"/{sys_id}", json=dict(fields)).one())

    def _checked_sys_id(self, record_id: str) -> str:
        if not _SYS_ID.fullmatch(record_id or ""):
            raise NotFoundError(f"{self.name}: {record_id!r} is not a ServiceNow sys_id", connection=self.name)
        return record_id

    def _checked_term(self, what: str, value: str) -> str:
        """Encoded queries cannot escape ``^``; searching such a value would silently match the wrong rows."""
        if not value or "^" in value or "\n" in value:
            raise PermanentError(f"{self.name}: {what} {value!r} cannot be searched in ServiceNow "
                                 "(empty, or contains '^' or a line break)", connection=self.name)
        return value

    # -- target role ---------------------------------------------------------------------------------
    def find(self, correlation_id: str) -> RecordRef | None:
        """The oldest ticket carrying `correlation_id` (duplicates are counted by `count_correlated`)."""
        cid = self._checked_term("correlation id", correlation_id)
        rows = self._list(self.table, f"correlation_id={cid}^ORDERBYsys_created_on^ORDERBYnumber",
                          what="find ticket by correlation id", fields=("sys_id", "number"), limit=1)
        if not rows:
            return None
        sys_id = raw_value(rows[0].get("sys_id"))
        return RecordRef(id=sys_id, number=raw_value(rows[0].get("number")),
                         url=record_url(self.instance_url, self.table, sys_id))

    def find_number(self, number: str) -> RecordRef | None:
        """The ticket numbered `number` (``INC0012345``), as a person names it when linking from chat."""
        term = self._checked_term("ticket number", number.strip().upper())
        rows = self._list(self.table, f"number={term}", what=f"find ticket {term}", fields=("sys_id", "number"),
                          limit=1)
        if not rows:
            return None
        sys_id = raw_value(rows[0].get("sys_id"))
        return RecordRef(id=sys_id, number=raw_value(rows[0].get("number")),
                         url=record_url(self.instance_url, self.table, sys_id))

    def count_correlated(self, correlation_id: str) -> int:
        """How many tickets carry `correlation_id` (more than one means a duplicate to report)."""
        cid = self._checked_term("correlation id", correlation_id)
        return len(self._list(self.table, f"correlation_id={cid}", what="count tickets by correlation id",
                              fields=("sys_id",)))

    def create(self, fields: Mapping[str, str], *, correlation_id: str) -> RecordRef:
        """POST a new ticket stamped with `correlation_id` so `find` (and polls) recognise it."""
        cid = self._checked_term("correlation id", correlation_id)
        payload = {**fields, "correlation_id": cid, "correlation_display": CORRELATION_DISPLAY}
        resource = self._resource(self.table, writes=True)
        record = self._wire("create ticket", lambda: resource.create(payload).one())
        sys_id = raw_value(record.get("sys_id"))
        log.info("%s: created %s (%s) for %s", self.name, raw_value(record.get("number")), sys_id, cid)
        return RecordRef(id=sys_id, number=raw_value(record.get("number")),
                         url=record_url(self.instance_url, self.table, sys_id))

    def update(self, record_id: str, fields: Mapping[str, str]) -> Ticket | None:
        """One PATCH with `fields`; ``work_notes``/``comments`` among them append journal entries. The
        Table API answers with the whole record after the write: returned, it spares a read."""
        if not fields:
            return None
        return self._answer(self._patch(record_id, fields, what=f"update ticket {record_id}"))

    def stamp(self, record_id: str, correlation_id: str) -> None:
        """Mark a desk-raised ticket as linked: the bridge then finds it and reads it back like its own."""
        self._patch(record_id, {"correlation_id": correlation_id, "correlation_display": "itsm-bridge"},
                    what=f"link ticket {record_id}")

    def add_note(self, record_id: str, text: str) -> Ticket | None:
        """Append a work note (internal; visible to the desk, not to the caller); the record as answered."""
        return self._answer(self._patch(record_id, {"work_notes": text}, what=f"add work note to ticket {record_id}"))

    def has_note(self, record_id: str, tag: str) -> bool:
        """Whether the ticket's journal has an entry containing `tag` (a redelivered note is then skipped).

        Needs read access to ``sys_journal_field``; without it ServiceNow answers an empty list, which
        reads as "no note" (the note could then be written twice, never lost).
        """
        sys_id = self._checked_sys_id(record_id)
        tag = self._checked_term("note tag", tag)
        rows = self._list("sys_journal_field", f"element_id={sys_id}^valueLIKE{tag}",
                          what=f"look for note on ticket {record_id}", fields=("sys_id",), limit=1)
        return bool(rows)

    def get(self, record_id: str) -> Ticket:
        sys_id = self._checked_sys_id(record_id)
        resource = self._resource(self.table, display=True)
        record = self._wire(f"read ticket {record_id}",
                            lambda: resource.request("GET", path_append=f"/{sys_id}").one())
        return self._ticket(record, what=f"read ticket {record_id}")

    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Tickets updated since `cursor` (a desk UTC time), each with its new journal entries.

        ``>=`` re-reads the boundary second on purpose (changes in the same second as the last poll);
        the inbox drops the repeats by event id.
        """
        since = cursor or format_desk_time(now - CATCH_UP)
        if not _DESK_TIME.fullmatch(since):
            raise PermanentError(f"{self.name}: poll cursor {since!r} is not a 'YYYY-MM-DD HH:MM:SS' time",
                                 connection=self.name)
        extra = f"^{self.poll_query}" if self.poll_query else ""
        records = self._list(self.table, f"sys_updated_on>={since}{extra}^ORDERBYsys_updated_on",
                             what="poll changed tickets", display=True)
        if not records:
            return PollResult(changes=[], cursor=since)
        journal = self._list("sys_journal_field", f"sys_created_on>={since}^name={self.table}"
                             "^elementINwork_notes,comments^ORDERBYsys_created_on", what="poll journal entries")
        entries: dict[str, list[TimelineEntry]] = {}
        for row in journal:
            entries.setdefault(raw_value(row.get("element_id")), []).append(self._entry(row))
        changes = [self._change(record, entries) for record in records]
        newest = max(raw_value(record.get("sys_updated_on")) for record in records)
        return PollResult(changes=changes, cursor=max(newest, since))

    def check(self) -> CheckResult:
        """Read one ticket with the configured credentials; say what is wrong in an admin's words."""
        details = {"instance_url": self.instance_url, "table": self.table, "user": self.username}
        try:
            self._list(self.table, "", what=f"read the {self.table} table", fields=("sys_id",), limit=1)
        except AuthError as exc:
            return CheckResult(False, f"{self.instance_url} refused user {self.username!r} (HTTP {exc.status}): "
                                      f"check the credentials and that the user may read {self.table}", details)
        except ConnectorError as exc:
            return CheckResult(False, str(exc), details)
        return CheckResult(True, f"read {self.table} on {self.instance_url} as {self.username}", details)

    # -- normalising with errors named ----------------------------------------------------------------
    def _ticket(self, record: Mapping[str, Any], *, what: str) -> Ticket:
        try:
            return normalise_ticket(record, connection=self.name, instance_url=self.instance_url, table=self.table)
        except (KeyError, ValueError) as exc:
            raise PermanentError(f"{self.name}: {what}: unreadable record ({type(exc).__name__}: {exc})",
                                 connection=self.name) from exc

    def _answer(self, record: Mapping[str, Any]) -> Ticket | None:
        """The record a write was answered with, or None when it cannot be read as a ticket (fields hidden
        by ACLs, say): the write itself landed, and the bridge reads the ticket when it needs to."""
        try:
            return normalise_ticket(record, connection=self.name, instance_url=self.instance_url, table=self.table)
        except (KeyError, ValueError):
            return None

    def _entry(self, row: Mapping[str, Any]) -> TimelineEntry:
        try:
            return normalise_journal(row)
        except (KeyError, ValueError) as exc:
            raise PermanentError(f"{self.name}: poll: unreadable journal row ({type(exc).__name__}: {exc})",
                                 connection=self.name) from exc

    def _change(self, record: Mapping[str, Any], entries: Mapping[str, list[TimelineEntry]]) -> Change:
        ticket = self._ticket(record, what="poll changed tickets")
        return normalise_change(ticket, raw_value(record.get("sys_mod_count")), entries.get(ticket.id, ()))


# -- pure normalisers ---------------------------------------------------------------------------------
def raw_value(value: Any) -> str:
    """A field's raw string value: a reference ``{link, value}`` (or any ``{display_value, value}``)
    reduced to its value, null to ``""``."""
    if isinstance(value, Mapping):
        return raw_value(value.get("value"))
    return "" if value is None else str(value)


def display_value(value: Any) -> str | None:
    """How the desk shows a field read with ``sysparm_display_value=all``; None when the answer has no
    display value (a raw read)."""
    if isinstance(value, Mapping) and "display_value" in value:
        shown = value["display_value"]
        return "" if shown is None else str(shown)
    return None


def parse_desk_time(text: str) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` (the Table API's UTC form) as an aware UTC datetime."""
    return datetime.strptime(text, DESK_TIME).replace(tzinfo=timezone.utc)


def format_desk_time(moment: datetime) -> str:
    """An aware datetime in the Table API's UTC form (naive input is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(DESK_TIME)


def record_url(instance_url: str, table: str, sys_id: str) -> str:
    """The browser link to a record (the classic UI's ``nav_to.do``)."""
    return f"{instance_url.rstrip('/')}/nav_to.do?uri={table}.do?sys_id={sys_id}"


def next_offset(link_header: str | None) -> int | None:
    """The ``sysparm_offset`` of the ``rel="next"`` page in a ``Link`` header; None on the last page."""
    for link in parse_header_links(link_header or ""):
        if link.get("rel") == "next":
            offsets = parse_qs(urlsplit(link.get("url", "")).query).get("sysparm_offset")
            if offsets and offsets[0].isdigit():
                return int(offsets[0])
    return None


def normalise_ticket(record: Mapping[str, Any], *, connection: str, instance_url: str,
                     table: str = "incident") -> Ticket:
    """A Table API record (raw, or read with ``sysparm_display_value=all``) as a `Ticket`.

    `fields` are the raw values either way. `display` keeps a field's display value where it differs
    from the raw one: reference names, choice labels (dates too, in the reading user's time zone). An
    empty display value for a set field is no name (a reference to a record that does not exist) and is
    left out. Journal fields are left out: they read back empty (their display value is the whole
    journal, which polls read from ``sys_journal_field`` instead).
    """
    fields: dict[str, str] = {}
    display: dict[str, str] = {}
    for name, value in record.items():
        if name in JOURNAL_ELEMENTS:
            continue
        fields[name] = raw_value(value)
        shown = display_value(value)
        if shown and shown != fields[name]:
            display[name] = shown
    sys_id = fields["sys_id"]
    return Ticket(connection=connection, id=sys_id, number=fields.get("number", ""),
                  url=record_url(instance_url, table, sys_id), fields=fields,
                  updated_at=parse_desk_time(fields["sys_updated_on"]), updated_by=fields.get("sys_updated_by") or None,
                  display=display)


def normalise_journal(row: Mapping[str, Any]) -> TimelineEntry:
    """A ``sys_journal_field`` row as a `TimelineEntry`; comments are public, work notes internal."""
    element = raw_value(row.get("element"))
    return TimelineEntry(id=raw_value(row["sys_id"]), at=parse_desk_time(raw_value(row["sys_created_on"])),
                         kind=JOURNAL_ELEMENTS.get(element, element), text=raw_value(row.get("value")),
                         author=raw_value(row.get("sys_created_by")) or None, public=element == "comments")


def normalise_change(ticket: Ticket, mod_count: str, entries: Sequence[TimelineEntry]) -> Change:
    """One polled ticket version as a `Change`; the event id is stable per version (sys_mod_count)."""
    return Change(connection=ticket.connection, event_id=f"poll:{ticket.id}:{mod_count}",
                  event_type="ticket.updated", record_id=ticket.id, occurred_at=ticket.updated_at,
                  ticket=ticket, entries=tuple(entries), actor=ticket.updated_by, via="poll")
