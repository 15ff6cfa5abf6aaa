"""The simulated Jira site's data and rules, shared by the REST handlers and the desk control API.

A desk agent's action through the control API has exactly the effects of the same REST call by that
user. What it reproduces (api-facts §3): issue keys ``<PROJECT>-<n>``; ``updated`` moving on every change
(edits, transitions, comments, property writes do not count, as on Jira); status only through
transitions; a changelog entry per edit or transition; comments public unless marked internal with the
``sd.public.comment`` property; entity properties; remote links keyed by ``globalId``; and search lag:
an issue younger than `search_lag_seconds` is invisible to JQL while a direct GET already finds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.jsm import sim_catalog as cat
from connectors.jsm.jql import Query, select
from connectors.jsm.normalise import format_jira_time

jira_time = format_jira_time


class BadRequest(Exception):
    """Answered 400 with Jira's ``{"errorMessages": [...], "errors": {field: message}}``."""

    def __init__(self, errors: Mapping[str, str] | None = None, messages: list[str] | None = None) -> None:
        super().__init__("; ".join([*(messages or []), *(errors or {}).values()]))
        self.errors = dict(errors or {})
        self.messages = list(messages or [])


class IssueNotFound(KeyError):
    """Answered 404 ``Issue does not exist or you do not have permission to see it.``"""


class SiteState:
    """All issues of the simulated site behind one lock."""

    def __init__(self, *, base: Callable[[], str], project: str, users: list[str],
                 clock: Callable[[], datetime] | None = None, search_lag_seconds: float = 0.0) -> None:
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._last = datetime.min.replace(tzinfo=timezone.utc)
        self._base = base
        self.project = project
        self.search_lag_seconds = search_lag_seconds
        self.users: dict[str, dict[str, Any]] = {}
        self.issues: dict[str, dict[str, Any]] = {}
        self._next_number = 1
        self._next_comment = 10000
        self._next_history = 20000
        self._next_link = 30000
        for email in users:
            self.add_user(email)

    # -- users and time --------------------------------------------------------------------------------
    def add_user(self, email: str) -> None:
        with self._lock:
            self.users.setdefault(email, {"accountId": cat.account_id(email), "emailAddress": email,
                                          "displayName": cat.display_name(email), "timeZone": "UTC"})

    def user_json(self, email: str) -> dict[str, Any]:
        user = self.users[email]
        return {"self": f"{self._base()}/rest/api/2/user?accountId={user['accountId']}", **user,
                "avatarUrls": {"48x48": f"{self._base()}/avatar/{user['accountId']}.png"},
                "active": True, "accountType": "atlassian"}

    def _user_by_account(self, account: str) -> str | None:
        return next((email for email, user in self.users.items() if user["accountId"] == account), None)

    def now(self) -> datetime:
        """Now, strictly later than the last stamp handed out (Jira times have millisecond resolution)."""
        with self._lock:
            moment = self._clock().astimezone(timezone.utc)
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
            if moment <= self._last:
                moment = self._last + timedelta(milliseconds=1)
            self._last = moment
            return moment

    # -- reads -----------------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any]:
        with self._lock:
            issue = self.issues.get(key.upper()) or next(
                (i for i in self.issues.values() if i["id"] == key), None)
            if issue is None:
                raise IssueNotFound(key)
            return issue

    def search(self, query: Query) -> list[dict[str, Any]]:
        """JQL over the *indexed* issues: those older than the search lag."""
        with self._lock:
            horizon = self._clock() - timedelta(seconds=self.search_lag_seconds)
            indexed = [i for i in self.issues.values() if self.search_lag_seconds <= 0 or i["_created"] <= horizon]
            return select(query, indexed, self.value_of)

    def value_of(self, issue: Mapping[str, Any], name: str) -> Any:
        """A JQL field's value on `issue` (see `connectors.jsm.jql`)."""
        fields = issue["fields"]
        if name.startswith("issue.property["):
            key, _, path = name[len("issue.property["):].partition("]")
            value: Any = issue["properties"].get(key)
            for part in [p for p in path.split(".") if p]:
                value = value.get(part) if isinstance(value, Mapping) else None
            return None if value is None else str(value)
        simple = {"project": [self.project, fields["project"]["id"]], "key": issue["key"], "issuekey": issue["key"],
                  "labels": fields["labels"], "status": fields["status"]["name"],
                  "statuscategory": fields["status"]["statusCategory"]["key"],
                  "priority": fields["priority"]["name"] if fields["priority"] else None}
        if name in ("updated", "created"):
            return issue[f"_{name}"]
        return simple[name]

    # -- writes ----------------------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any], *, user: str) -> dict[str, Any]:
        fields = body.get("fields")
        if not isinstance(fields, Mapping):
            raise BadRequest(messages=["Issue must be created with fields."])
        errors: dict[str, str] = {}
        project = fields.get("project") or {}
        if not isinstance(project, Mapping) or project.get("key", project.get("id")) not in (self.project, "10000"):
            errors["project"] = "Specify a valid project ID or key"
        type_id = cat.lookup(cat.ISSUE_TYPES, fields.get("issuetype"))
        if type_id is None:
            errors["issuetype"] = "Specify a valid issue type"
        if not str(fields.get("summary") or "").strip():
            errors["summary"] = "You must specify a summary of the issue."
        edits = {k: v for k, v in fields.items() if k not in ("project", "issuetype")}
        with self._lock:
            values = self._validate(edits, errors)
            if errors:
                raise BadRequest(errors)
            now = self.now()
            base = self._base()
            number = self._next_number
            self._next_number += 1
            key = f"{self.project}-{number}"
            reporter = self.user_json(user)
            issue_fields: dict[str, Any] = {
                "summary": "", "description": None, "labels": [], "components": [], "assignee": None,
                "priority": cat.priority_json(base, cat.DEFAULT_PRIORITY), **{f: None for f in cat.CUSTOM_FIELDS},
                "issuetype": cat.issue_type_json(base, type_id or ""), "reporter": reporter, "creator": reporter,
                "project": {"self": f"{base}/rest/api/2/project/10000", "id": "10000", "key": self.project,
                            "name": "Operations"},
                "status": cat.status_json(base, cat.INITIAL_STATUS), "resolution": None, "resolutiondate": None,
                "created": jira_time(now), "updated": jira_time(now), "statuscategorychangedate": jira_time(now),
            }
            issue_fields.update(values)
            issue = {"id": str(10000 + number), "key": key, "fields": issue_fields, "properties": {},
                     "comments": [], "remotelinks": [], "changelog": [], "_created": now, "_updated": now}
            for prop in body.get("properties") or []:
                issue["properties"][str(prop["key"])] = prop.get("value")
            self.issues[key] = issue
            return issue

    def edit(self, key: str, body: Mapping[str, Any], *, user: str) -> None:
        """``PUT /issue/{key}``: set fields (``fields``) and label operations (``update.labels``)."""
        fields = dict(body.get("fields") or {})
        for op in (body.get("update") or {}).get("labels", []):
            current = list(fields.get("labels", self.get(key)["fields"]["labels"]))
            for verb, label in op.items():
                if verb == "add" and label not in current:
                    current.append(label)
                elif verb == "remove" and label in current:
                    current.remove(label)
                elif verb == "set":
                    current = list(label)
            fields["labels"] = current
        unknown = set((body.get("update") or {})) - {"labels"}
        errors: dict[str, str] = {name: f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                                        "or unknown." for name in unknown}
        with self._lock:
            issue = self.get(key)
            values = self._validate(fields, errors)
            if errors:
                raise BadRequest(errors)
            self._apply(issue, values, user=user)

    def _validate(self, fields: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
        """Field values as Jira stores them; problems go into `errors` keyed by field id."""
        base = self._base()
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in cat.EDITABLE:
                errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
            elif name == "priority":
                pid = cat.lookup(cat.PRIORITIES, value)
                if pid is None:
                    errors[name] = "The priority selected is invalid."
                else:
                    values[name] = cat.priority_json(base, pid)
            elif name == "labels":
                if not isinstance(value, list) or any(not isinstance(v, str) or not v or " " in v for v in value):
                    errors[name] = "Labels must be a list of words without spaces."
                else:
                    values[name] = list(dict.fromkeys(value))
            elif name == "components":
                ids = [cat.lookup(cat.COMPONENTS, v) for v in value] if isinstance(value, list) else [None]
                if None in ids:
                    errors[name] = "Component name is not valid."
                else:
                    values[name] = [cat.component_json(base, cid) for cid in ids if cid]
            elif name == "assignee":
                email = self._user_by_account(value.get("accountId", "")) if isinstance(value, Mapping) else None
                if value is not None and email is None:
                    errors[name] = "Specified user does not exist or you do not have required permissions"
                else:
                    values[name] = self.user_json(email) if email else None
            elif name == cat.REQUEST_TYPE_FIELD:
                rid = cat.lookup(cat.REQUEST_TYPES, value)
                if rid is None:
                    errors[name] = "The request type you specified is not valid."
                else:
                    values[name] = cat.request_type_json(rid)
            elif value is not None and not isinstance(value, str):
                errors[name] = "Operation value must be a string"
            elif name == "summary" and len(value or "") > 255:
                errors[name] = "Summary must be less than 255 characters."
            else:
                values[name] = value
        return values

    def _apply(self, issue: dict[str, Any], values: Mapping[str, Any], *, user: str) -> None:
        items = []
        for name, value in values.items():
            before = issue["fields"].get(name)
            if before != value:
                items.append(_change_item(name, before, value))
                issue["fields"][name] = value
        if items:
            self._touch(issue, user=user, items=items)

    def _touch(self, issue: dict[str, Any], *, user: str, items: list[dict[str, Any]] | None = None,
               at: datetime | None = None) -> None:
        now = at or self.now()
        issue["_updated"] = now
        issue["fields"]["updated"] = jira_time(now)
        if items:
            self._next_history += 1
            issue["changelog"].append({"id": str(self._next_history), "author": self.user_json(user),
                                       "created": jira_time(now), "items": items})

    def transitions(self, key: str) -> list[dict[str, Any]]:
        """The transitions available from the issue's current status."""
        status = self.get(key)["fields"]["status"]["name"]
        return [t for t in cat.TRANSITIONS if status in t["from"]]

    def transition(self, key: str, body: Mapping[str, Any], *, user: str) -> None:
        wanted = str((body.get("transition") or {}).get("id", ""))
        with self._lock:
            issue = self.get(key)
            chosen = next((t for t in self.transitions(key) if t["id"] == wanted), None)
            if chosen is None:
                raise BadRequest(messages=[f"Transition id '{wanted}' is not valid for this issue."])
            fields = dict(body.get("fields") or {})
            resolution = fields.pop("resolution", None)
            errors = {name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                      for name in fields}
            if resolution is not None and not chosen["resolution"]:
                errors["resolution"] = ("Field 'resolution' cannot be set. It is not on the appropriate screen, "
                                        "or unknown.")
            rid = cat.lookup(cat.RESOLUTIONS, resolution) if resolution is not None else None
            if chosen["resolution"] and rid is None:
                errors["resolution"] = "Resolution is required." if resolution is None else "Resolution is invalid."
            if errors:
                raise BadRequest(errors)
            base = self._base()
            before_status = issue["fields"]["status"]
            after = cat.status_json(base, chosen["to"])
            items = [{"field": "status", "fieldtype": "jira", "fieldId": "status", "from": before_status["id"],
                      "fromString": before_status["name"], "to": after["id"], "toString": after["name"]}]
            if before_status["statusCategory"]["key"] != after["statusCategory"]["key"]:
                issue["fields"]["statuscategorychangedate"] = jira_time(self.now())
            issue["fields"]["status"] = after
            new_resolution = cat.resolution_json(base, rid) if rid else (
                issue["fields"]["resolution"] if after["statusCategory"]["key"] == "done" else None)
            if new_resolution != issue["fields"]["resolution"]:
                items.append(_change_item("resolution", issue["fields"]["resolution"], new_resolution))
                issue["fields"]["resolution"] = new_resolution
                issue["fields"]["resolutiondate"] = jira_time(self.now()) if new_resolution else None
            self._touch(issue, user=user, items=items)
            for op in (body.get("update") or {}).get("comment", []):
                if "add" in op:
                    self.add_comment(key, op["add"], user=user)

    def add_comment(self, key: str, body: Mapping[str, Any], *, user: str) -> dict[str, Any]:
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest({"comment": "Comment body can not be empty!"})
        properties = list(body.get("properties") or [])
        internal = any(p.get("key") == "sd.public.comment" and (p.get("value") or {}).get("internal") is True
                       for p in properties)
        with self._lock:
            issue = self.get(key)
            self._next_comment += 1
            now = self.now()
            comment = {"id": str(self._next_comment), "author": user, "body": text, "created": jira_time(now),
                       "updated": jira_time(now), "internal": internal, "properties": properties}
            issue["comments"].append(comment)
            self._touch(issue, user=user, at=now)
            return comment

    def add_remote_link(self, key: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        obj = body.get("object")
        if not isinstance(obj, Mapping) or not obj.get("url") or not obj.get("title"):
            raise BadRequest({"title": "'title' is required."} if isinstance(obj, Mapping) and obj.get("url")
                             else {"url": "'url' is required."})
        with self._lock:
            issue = self.get(key)
            global_id = body.get("globalId")
            existing = next((link for link in issue["remotelinks"]
                             if global_id and link.get("globalId") == global_id), None)
            if existing is not None:
                existing.update({k: v for k, v in body.items()})
                return existing, False
            self._next_link += 1
            link = {"id": self._next_link, **{k: v for k, v in body.items()}}
            issue["remotelinks"].append(link)
            return link, True


def _change_item(name: str, before: Any, after: Any) -> dict[str, Any]:
    def shown(value: Any) -> tuple[str | None, str | None]:
        if value is None or value == []:
            return None, None
        if isinstance(value, list):
            return None, " ".join(str(v.get("name", v) if isinstance(v, Mapping) else v) for v in value)
        if isinstance(value, Mapping):
            if "requestType" in value:
                return value["requestType"]["id"], value["requestType"]["name"]
            return value.get("id") or value.get("accountId"), value.get("name") or value.get("displayName")
        return None, str(value)

    (old_id, old_text), (new_id, new_text) = shown(before), shown(after)
    return {"field": name, "fieldtype": "custom" if name.startswith("customfield_") else "jira", "fieldId": name,
            "from": old_id, "fromString": old_text, "to": new_id, "toString": new_text}
