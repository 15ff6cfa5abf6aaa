"""Jira Service Management as a target: issues through the Jira Cloud platform REST API, `jira` on the wire.

Why it looks the way it does (api-facts §3, DESIGN "Lessons"):
- The `jira` client rides on the injected `RetryingSession` (see `connectors.jsm.wire`), built lazily on
  first use so a site that is down makes calls fail typed instead of the daemon failing to start.
- The link back is the issue entity property ``itsm-bridge = {"correlation_id": ...}``, written in the
  create request itself (``properties``) so no issue ever exists without it, plus the labels
  ``itsm-bridge`` and ``itsm-bridge-<sanitised id>`` as a fallback any admin can search.
- JQL is not read-after-write: a just-created issue can be missing from search for a while. `find`
  therefore does not trust an empty search: it probes *past the index* with direct reads, which are
  consistent. Keys are sequential per project, so it reads ``<PROJECT>-<n+1>``, ``<n+2>``, ... after the
  newest key search knows, until `find_probe_misses` consecutive 404s or `find_probe_limit` reads,
  checking each issue's property and labels. No sleeping, no second chance needed after a crash.
- Status moves only through transitions, looked up by name on every move (ids differ per workflow and
  availability depends on the current status); a move to the status the issue already has is a no-op,
  so a retried op is harmless. ``resolution`` goes along only when the transition's screen has it.
- Polls use ``/rest/api/2/search/jql`` (what jira 3.10.5's `enhanced_search_issues` calls; the v2 flavour
  of the new endpoint keeps descriptions and comment bodies as strings, so what the bridge wrote reads
  back equal, where v3 would return ADF). JQL dates have minute resolution and are read in the
  integration user's time zone, so the cursor is formatted in the zone ``/myself`` reports, and each
  poll reaches back `poll_overlap_seconds` to catch issues that entered the index late; the inbox
  drops the repeats by event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from contextlib import nullcontext
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from jira import JIRA
from jira.exceptions import JIRAError

from bridge.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ConfigProblem,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
    WebhookError,
)
from bridge.model import Change, RecordRef, Ticket
from connectors.base import CheckResult, Connector, PollResult
from connectors.jsm.normalise import (
    BRIDGE_LABEL,
    PROPERTY_KEY,
    correlation_label,
    format_jira_time,
    is_bridge_label,
    issue_changes_cursor,
    normalise_poll_change,
    normalise_ticket,
    parse_jira_time,
    parse_webhook_payload,
)
from connectors.jsm.wire import connect, typed_error

log = logging.getLogger(__name__)

T = TypeVar("T")
CATCH_UP = timedelta(hours=1)
STATE_FIELDS = ("status", "state")          # the desk state; `state` is what the engine's back-path reads
NOTE_FIELDS = {"work_notes": True, "comments": False}   # name -> internal
LIST_FIELDS = ("labels", "components")
DEFAULT_POLL_QUERY = f"labels = {BRIDGE_LABEL}"
_KEY = re.compile(r"[A-Z][A-Z0-9_]*-\d+")


class JsmConnector(Connector):
    """One Jira Service Management project on a Jira Cloud site."""

    slug = "jsm"
    roles = frozenset({"target"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.url = str(settings["url"]).rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigError(f"[connections.{name}]", [ConfigProblem(
                "url", f"{self.url!r} is not a site address", hint="use https://<site>.atlassian.net")])
        self.email = str(settings["email"])
        self._token = str(settings["api_token"])
        self.project = str(settings["project"]).upper()
        self.issue_type = str(settings.get("issue_type") or "Incident")
        self.request_type = str(settings.get("request_type") or "")
        self.request_type_field = str(settings.get("request_type_field") or "customfield_10010")
        self.transition_names: dict[str, str] = dict(settings.get("transitions") or {})
        self.resolution = str(settings.get("resolution") or "Done")
        self.poll_query = str(settings.get("poll_query", DEFAULT_POLL_QUERY) or "")
        self.page_size = int(settings.get("page_size", 50))
        self.poll_overlap = timedelta(seconds=float(settings.get("poll_overlap_seconds", 120)))
        self.probe_limit = int(settings.get("find_probe_limit", 25))
        self.probe_misses = int(settings.get("find_probe_misses", 2))
        self._client: JIRA | None = None
        self._zone: ZoneInfo | None = None

    # -- plumbing ------------------------------------------------------------------------------------
    @property
    def client(self) -> JIRA:
        """The `jira` client, connected on first use (reads ``serverInfo`` through the bridge's session)."""
        if self._client is None:
            self._client = self._wire("connect to the site", lambda: connect(
                url=self.url, email=self.email, token=self._token, wire=self.session))
        return self._client

    def _wire(self, what: str, action: Callable[[], T], *, sent: Mapping[str, Any] | None = None) -> T:
        """Run one client call; every failure leaves as a typed error naming connection and operation."""
        try:
            return action()
        except JIRAError as exc:
            # `from None`: a JIRAError's text may carry request details; the typed error says what matters.
            raise typed_error(exc, connection=self.name, what=what, sent=sent) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{self.name}: {what} failed: {type(exc).__name__}", connection=self.name) from None
        except ValueError as exc:  # not JSON: a proxy or maintenance page
            raise TransientError(f"{self.name}: {what}: the answer was not JSON ({type(exc).__name__})",
                                 connection=self.name) from None

    def _rest(self, method: str, path: str, *, what: str, params: Mapping[str, Any] | None = None,
              body: Any = None, sent: Mapping[str, Any] | None = None) -> Any:
        """One call to ``/rest/api/2/<path>`` on the client's session; the JSON answer, or None for 204."""
        session = self.client._session  # jira's session: raises JIRAError for non-2xx answers

        def call() -> Any:
            response = session.request(method, f"{self.url}/rest/api/2/{path}", params=params,
                                       data=json.dumps(body) if body is not None else None)
            return response.json() if response.content else None
        return self._wire(what, call, sent=sent)

    def _checked_key(self, record_id: str) -> str:
        key = (record_id or "").strip().upper()
        if not _KEY.fullmatch(key):
            raise NotFoundError(f"{self.name}: {record_id!r} is not a Jira issue key", connection=self.name)
        return key

    def _ref(self, key: str) -> RecordRef:
        return RecordRef(id=key, number=key, url=f"{self.url}/browse/{key}")

    # -- writing fields --------------------------------------------------------------------------------
    def _jira_fields(self, fields: Mapping[str, str]) -> dict[str, Any]:
        """Flat bridge values as Jira field values (names for priority/components, account id for assignee)."""
        out: dict[str, Any] = {}
        for name, value in fields.items():
            text = "" if value is None else str(value)
            if name == "priority":
                if text:
                    out[name] = {"name": text}
            elif name == "assignee":
                out[name] = {"accountId": text} if text else None
            elif name == "labels":
                out[name] = [part.strip() for part in text.split(",") if part.strip()]
            elif name == "components":
                out[name] = [{"name": part.strip()} for part in text.split(",") if part.strip()]
            else:
                out[name] = text
        return out

    @staticmethod
    def _split(fields: Mapping[str, str]) -> tuple[dict[str, str], str | None, str | None, list[tuple[str, bool]]]:
        """(plain fields, desk state, resolution, notes as (text, internal)) out of the mapping's fields."""
        plain: dict[str, str] = {}
        state = resolution = None
        notes: list[tuple[str, bool]] = []
        for name, value in fields.items():
            if name in STATE_FIELDS:
                state = str(value) if value else state
            elif name == "resolution":
                resolution = str(value) if value else None
            elif name in NOTE_FIELDS:
                if value:
                    notes.append((str(value), NOTE_FIELDS[name]))
            elif name != "status_category":
                plain[name] = value
        return plain, state, resolution, notes

    # -- target role ---------------------------------------------------------------------------------
    def find(self, correlation_id: str) -> RecordRef | None:
        """The oldest issue carrying `correlation_id`: by JQL, then by direct reads past the search index."""
        jql = (f"project = {_quote(self.project)} AND (issue.property[{PROPERTY_KEY}].correlation_id = "
               f"{_quote(correlation_id)} OR labels = {_quote(correlation_label(correlation_id))}) "
               "ORDER BY created ASC")
        page = self._search(jql, fields=["created"], size=1, what="find issue by correlation id")
        if page["issues"]:
            return self._ref(page["issues"][0]["key"])
        return self._probe(correlation_id)

    def _probe(self, correlation_id: str) -> RecordRef | None:
        """Read the issues newer than the newest one search knows: direct reads are read-after-write."""
        if self.probe_limit <= 0:
            return None
        newest = self._search(f"project = {_quote(self.project)} ORDER BY key DESC", fields=["created"], size=1,
                              what="find the newest indexed issue")["issues"]
        number = int(newest[0]["key"].rsplit("-", 1)[1]) if newest else 0
        misses = 0
        label = correlation_label(correlation_id)
        for candidate in range(number + 1, number + 1 + self.probe_limit):
            try:
                issue = self._rest("GET", f"issue/{self.project}-{candidate}", what="probe for a new issue",
                                   params={"fields": "labels", "properties": PROPERTY_KEY})
            except NotFoundError:
                misses += 1
                if misses >= self.probe_misses:
                    return None
                continue
            misses = 0
            marker = (issue.get("properties") or {}).get(PROPERTY_KEY) or {}
            if marker.get("correlation_id") == correlation_id or label in (issue["fields"].get("labels") or []):
                log.info("%s: found %s for %s past the search index", self.name, issue["key"], correlation_id)
                return self._ref(issue["key"])
        return None

    def count_correlated(self, correlation_id: str) -> int:
        """How many issues search finds with `correlation_id` (more than one means a duplicate to report)."""
        jql = (f"project = {_quote(self.project)} AND (issue.property[{PROPERTY_KEY}].correlation_id = "
               f"{_quote(correlation_id)} OR labels = {_quote(correlation_label(correlation_id))})")
        return len(self._search_all(jql, fields=["created"], what="count issues by correlation id"))

    def create(self, fields: Mapping[str, str], *, correlation_id: str) -> RecordRef:
        """POST the issue stamped with the property and labels, then its notes, then its status if any."""
        plain, state, resolution, notes = self._split(fields)
        values = self._jira_fields(plain)
        values["labels"] = [*values.get("labels", []), BRIDGE_LABEL, correlation_label(correlation_id)]
        if self.request_type and self.request_type_field not in values:
            values[self.request_type_field] = self.request_type
        body = {"fields": {"project": {"key": self.project}, "issuetype": {"name": self.issue_type}, **values},
                "properties": [{"key": PROPERTY_KEY, "value": {"correlation_id": correlation_id}}]}
        created = self._rest("POST", "issue", body=body, what="create issue", sent=body["fields"])
        key = str(created["key"])
        log.info("%s: created %s for %s", self.name, key, correlation_id)
        for text, internal in notes:
            self._comment(key, text, internal=internal)
        if state:
            # Never reopen here: an agent who resolved the issue the moment it appeared made the newer
            # decision, and the next poll carries it back to the source.
            self._move(key, state, resolution, reopen=False)
        return self._ref(key)

    def update_if(self, record_id: str, fields: Mapping[str, str], *, expect: Mapping[str, str]) -> None:
        """`update`, but the status moves only if the issue still has the status in `expect`.

        The outbox read the issue to decide this write (last writer wins); an agent may have moved it
        since. Jira has no conditional transition, and a transition that reopens is how an open state is
        reached from a done one, so the status is read again first: changed, it is a `ConflictError` and
        the outbox decides again from a fresh read.
        """
        key = self._checked_key(record_id)
        wanted = next((expect[name] for name in STATE_FIELDS if name in expect), None)
        moving = {name: value for name, value in fields.items() if name in STATE_FIELDS or name == "resolution"}
        if wanted is None or not any(name in fields for name in STATE_FIELDS):
            self.update(record_id, fields)
            return
        rest = {name: value for name, value in fields.items() if name not in moving}
        if rest:
            self.update(record_id, rest)  # fields and comments: no race with an agent's transition
        prompt = getattr(self.session, "prompt", None)
        with prompt() if prompt is not None else nullcontext():  # check and move with no wait between
            current = self._rest("GET", f"issue/{key}", params={"fields": "status"}, what=f"read status of {key}")
            status = ((current.get("fields") or {}).get("status") or {}).get("name")
            if status != wanted:
                raise ConflictError(f"{self.name}: {key} moved to {status!r} since it was read ({wanted!r}); "
                                    "will decide again", connection=self.name, status=409)
            _, state, resolution, _ = self._split(moving)
            if state:
                self._move(key, state, resolution, expect=wanted)

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """One PUT for field edits, one POST per note, GET + POST transitions for ``status``."""
        key = self._checked_key(record_id)
        plain, state, resolution, notes = self._split(fields)
        if plain:
            values = self._jira_fields(plain)
            if "labels" in values:  # keep the bridge's marker labels: they are how `find` works
                current = self._rest("GET", f"issue/{key}", params={"fields": "labels"}, what=f"read labels of {key}")
                values["labels"] += [label for label in current["fields"].get("labels") or [] if is_bridge_label(label)]
            self._rest("PUT", f"issue/{key}", body={"fields": values}, what=f"update issue {key}", sent=values)
        for text, internal in notes:
            self._comment(key, text, internal=internal)
        if state:
            self._move(key, state, resolution)

    def _comment(self, key: str, text: str, *, internal: bool) -> None:
        self._wire(f"add {'internal' if internal else 'public'} comment to {key}",
                   lambda: self.client.add_comment(key, text, is_internal=internal))

    def _move(self, key: str, state: str, resolution: str | None, *, hops: int = 2, reopen: bool = True,
              expect: str | None = None) -> None:
        """Transition `key` to desk state `state` by the configured transition name; a no-op if already there.

        When no transition leads there from the current status (a resolved issue asked to be In
        Progress after a reopen and an acknowledge were polled together), the issue is first moved
        back to an open status (a transition to a status outside the "done" category, e.g. Reopen),
        then moved on: at most `hops` transitions. A guarded move (`expect`: the status the decision
        was made on) never reopens an issue an agent moved meanwhile: that is a `ConflictError`.
        """
        available = self._wire(f"read transitions of {key}",
                               lambda: self.client.transitions(key, expand="transitions.fields"))
        name = self.transition_names.get(state)
        chosen = next((t for t in available if name and t["name"].lower() == name.lower()), None)
        if chosen is None and name is None:
            chosen = next((t for t in available if (t.get("to") or {}).get("name", "").lower() == state.lower()), None)
        if chosen is None:
            current = self._rest("GET", f"issue/{key}", params={"fields": "status"}, what=f"read status of {key}")
            status = current["fields"]["status"]["name"]
            if status.lower() == state.lower() or not reopen:
                return
            if expect is not None and status != expect:
                raise ConflictError(f"{self.name}: {key} moved to {status!r} since it was read ({expect!r}); "
                                    "will decide again", connection=self.name, status=409)
            reopen = next((t for t in available
                           if ((t.get("to") or {}).get("statusCategory") or {}).get("key") in ("new", "indeterminate")),
                          None)
            if reopen is not None and hops > 1:
                self._take(key, reopen, resolution)
                self._move(key, state, resolution, hops=hops - 1)
                return
            names = ", ".join(repr(t["name"]) for t in available) or "none"
            raise PermanentError(
                f"{self.name}: cannot move {key} from {status!r} to {state!r}: transition "
                f"{name or '(none configured)'!r} is not available (available: {names}); check "
                f"[connections.{self.name}] transitions", connection=self.name)
        self._take(key, chosen, resolution)

    def _take(self, key: str, chosen: Mapping[str, Any], resolution: str | None) -> None:
        extra = {"resolution": {"name": resolution or self.resolution}} if "resolution" in (chosen.get("fields") or {}) else {}
        # Not `JIRA.transition_issue`: it sends the id as a number, where the API describes a string.
        try:
            self._rest("POST", f"issue/{key}/transitions", body={"transition": {"id": str(chosen["id"])},
                                                                 "fields": extra},
                       what=f"transition {key} with {chosen['name']!r}", sent=extra)
        except PermanentError as exc:
            if exc.status != 400 or isinstance(exc, (AuthError, NotFoundError)):
                raise
            # An agent moved the issue between our read of its transitions and this post: not a bad
            # request, a race. Retried, the move is planned again from the status it has now.
            now = self._wire(f"read transitions of {key}", lambda: self.client.transitions(key))
            if any(str(t["id"]) == str(chosen["id"]) for t in now):
                raise
            raise ConflictError(f"{self.name}: {key} changed status while being moved with {chosen['name']!r}; "
                                "will plan the move again", connection=self.name, status=400) from exc

    def add_note(self, record_id: str, text: str) -> None:
        """An internal comment (agents see it; the customer portal does not)."""
        self._comment(self._checked_key(record_id), text, internal=True)

    def has_note(self, record_id: str, tag: str) -> bool:
        """Whether any comment (public or internal) on the issue contains `tag`."""
        key = self._checked_key(record_id)
        start = 0
        while True:
            page = self._rest("GET", f"issue/{key}/comment", params={"startAt": start, "maxResults": 100},
                              what=f"read comments of {key}")
            comments = page.get("comments") or []
            if any(tag in str(c.get("body") or "") for c in comments):
                return True
            start += len(comments)
            if not comments or start >= int(page.get("total", 0)):
                return False

    def add_remote_link(self, record_id: str, url: str, title: str) -> None:
        """Link the issue to the source incident; the same `url` twice updates the link (``globalId``)."""
        key = self._checked_key(record_id)
        body = {"globalId": f"itsm-bridge:{url}", "relationship": "incident",
                "object": {"url": url, "title": title, "icon": {"title": "itsm-bridge"}}}
        self._rest("POST", f"issue/{key}/remotelink", body=body, what=f"link {key} to {url}", sent=body["object"])

    def stamp(self, record_id: str, correlation_id: str) -> None:
        """Mark an existing issue as linked (property + labels), as `create` marks its own: `find` then works."""
        key = self._checked_key(record_id)
        self._rest("PUT", f"issue/{key}/properties/{PROPERTY_KEY}", body={"correlation_id": correlation_id},
                   what=f"link issue {key}")
        labels = [{"add": BRIDGE_LABEL}, {"add": correlation_label(correlation_id)}]
        self._rest("PUT", f"issue/{key}", body={"update": {"labels": labels}}, what=f"label issue {key}")

    def find_number(self, number: str) -> RecordRef | None:
        """The issue a person names by key (``OPS-42``); None when it does not exist or is in another project."""
        try:
            key = self._checked_key(number)
            issue = self._rest("GET", f"issue/{key}", params={"fields": "project"}, what=f"find issue {key}")
        except NotFoundError:
            return None
        project = ((issue or {}).get("fields") or {}).get("project") or {}
        if project.get("key") and project["key"] != self.project:
            return None
        return self._ref(str(issue.get("key") or key))

    def get(self, record_id: str) -> Ticket:
        key = self._checked_key(record_id)
        issue = self._rest("GET", f"issue/{key}", params={"expand": "changelog", "properties": PROPERTY_KEY},
                           what=f"read issue {key}")
        return self._ticket(issue, what=f"read issue {key}")

    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Issues updated since `cursor` (a Jira time), each with its comments; cursor = newest ``updated``."""
        try:
            since = parse_jira_time(cursor) if cursor else now - CATCH_UP
        except ValueError:
            raise PermanentError(f"{self.name}: poll cursor {cursor!r} is not a Jira time", connection=self.name) from None
        start = (since - self.poll_overlap).astimezone(self._search_zone())
        jql = f'project = {_quote(self.project)} AND updated >= "{start:%Y-%m-%d %H:%M}"'
        jql += f" AND ({self.poll_query})" if self.poll_query else ""
        issues = self._search_all(jql + " ORDER BY updated ASC", fields=["*all"], expand="changelog",
                                  properties=PROPERTY_KEY, what="poll changed issues")
        changes: list[Change] = []
        for issue in issues:
            try:
                changes.append(normalise_poll_change(issue, connection=self.name, site_url=self.url))
            except (KeyError, ValueError, TypeError) as exc:
                raise PermanentError(f"{self.name}: poll: unreadable issue {issue.get('key')!r} "
                                     f"({type(exc).__name__}: {exc})", connection=self.name) from None
        return PollResult(changes=changes, cursor=issue_changes_cursor(issues, cursor or format_jira_time(since)))

    def _search(self, jql: str, *, fields: list[str], what: str, size: int | None = None, expand: str | None = None,
                token: str | None = None, properties: str | None = None) -> dict[str, Any]:
        return self._wire(what, lambda: self.client.enhanced_search_issues(
            jql, nextPageToken=token, maxResults=size or self.page_size, fields=list(fields), expand=expand,
            properties=properties, json_result=True))

    def _search_all(self, jql: str, *, fields: list[str], what: str, expand: str | None = None,
                    properties: str | None = None) -> list[dict[str, Any]]:
        """Every issue matching `jql`, following ``nextPageToken`` until ``isLast``."""
        issues: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._search(jql, fields=fields, what=what, expand=expand, token=token, properties=properties)
            issues.extend(page.get("issues") or [])
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return issues

    def _search_zone(self) -> ZoneInfo:
        """The time zone JQL dates are read in: the integration user's profile zone (``/myself``)."""
        if self._zone is None:
            name = str(self._rest("GET", "myself", what="read the integration user").get("timeZone") or "UTC")
            try:
                self._zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("%s: unknown time zone %r for %s; reading JQL dates as UTC", self.name, name, self.email)
                self._zone = ZoneInfo("UTC")
        return self._zone

    def check(self) -> CheckResult:
        """Sign in and read the project; say what is wrong in an admin's words."""
        details = {"url": self.url, "project": self.project, "user": self.email}
        try:
            me = self._rest("GET", "myself", what="read the integration user")
            self._rest("GET", f"project/{self.project}", what=f"read project {self.project}")
        except AuthError as exc:
            return CheckResult(False, f"{self.url} refused {self.email} (HTTP {exc.status}): check the e-mail and "
                                      "API token, and that the user may browse the project", details)
        except NotFoundError:
            return CheckResult(False, f"project {self.project!r} was not found on {self.url} (or {self.email} "
                                      "cannot see it)", details)
        except ConnectorError as exc:
            return CheckResult(False, str(exc), details)
        return CheckResult(True, f"signed in to {self.url} as {me.get('displayName') or self.email}; "
                                 f"project {self.project} is readable", details)

    # -- webhooks --------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        """``X-Hub-Signature: sha256=<hex HMAC(secret, body)>``; Jira signs no timestamp, the inbox de-duplicates."""
        secret = self.settings.get("webhook_secret")
        if not secret:
            if self.settings.get("allow_unsigned_webhooks"):
                return
            raise WebhookError(f"{self.name}: no webhook_secret is configured, so unsigned webhooks are refused "
                               "(set webhook_secret, or allow_unsigned_webhooks = true)", status=401)
        lowered = {name.lower(): value for name, value in headers.items()}
        scheme, _, signature = str(lowered.get("x-hub-signature", "")).partition("=")
        expected = hmac.new(str(secret).encode(), body, hashlib.sha256).hexdigest()
        if scheme != "sha256" or not hmac.compare_digest(signature.strip().lower(), expected):
            raise WebhookError(f"{self.name}: webhook signature missing or wrong (X-Hub-Signature)", status=401)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        return parse_webhook_payload(body, headers, connection=self.name, site_url=self.url)

    def _ticket(self, issue: Mapping[str, Any], *, what: str) -> Ticket:
        try:
            return normalise_ticket(issue, connection=self.name, site_url=self.url)
        except (KeyError, ValueError, TypeError) as exc:
            raise PermanentError(f"{self.name}: {what}: unreadable issue ({type(exc).__name__}: {exc})",
                                 connection=self.name) from None


def _quote(value: str) -> str:
    """A JQL string literal: double-quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
