"""The simulated Jira site's configuration: statuses, the workflow, priorities, fields, request types.

Kept as data so tests and the simulator share one picture of the site, shaped as api-facts §3 describes:
status categories ``new`` (id 2), ``indeterminate`` (4) and ``done`` (3); the default priority scheme
Highest 1 .. Lowest 5; transitions with per-workflow ids that clients must look up by name; a JSM
"Request Type" custom field (``customfield_10010``).
"""

from __future__ import annotations

import hashlib
from typing import Any

CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
#: Status name -> (id, category key).
STATUSES: dict[str, tuple[str, str]] = {
    "To Do": ("10000", "new"), "In Progress": ("3", "indeterminate"),
    "Resolved": ("10001", "done"), "Done": ("10002", "done"),
}
INITIAL_STATUS = "To Do"
#: The workflow. Ids are deliberately not small consecutive numbers: clients must look them up by name.
TRANSITIONS: tuple[dict[str, Any], ...] = (
    {"id": "11", "name": "Start progress", "from": ("To Do",), "to": "In Progress", "resolution": False},
    {"id": "21", "name": "Stop progress", "from": ("In Progress",), "to": "To Do", "resolution": False},
    {"id": "761", "name": "Resolve", "from": ("To Do", "In Progress"), "to": "Resolved", "resolution": True},
    {"id": "801", "name": "Close", "from": ("Resolved",), "to": "Done", "resolution": False},
    {"id": "851", "name": "Reopen", "from": ("Resolved", "Done"), "to": "To Do", "resolution": False},
)
PRIORITIES: tuple[tuple[str, str, str], ...] = (  # id, name, colour
    ("1", "Highest", "#d04437"), ("2", "High", "#f15C75"), ("3", "Medium", "#f79232"),
    ("4", "Low", "#707070"), ("5", "Lowest", "#999999"),
)
DEFAULT_PRIORITY = "3"
RESOLUTIONS: tuple[tuple[str, str], ...] = (
    ("10000", "Done"), ("10001", "Won't Do"), ("10002", "Duplicate"), ("10003", "Cannot Reproduce"),
)
ISSUE_TYPES: tuple[tuple[str, str], ...] = (("10004", "Incident"), ("10005", "Service request"), ("10006", "Task"))
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("10100", "Payments"), ("10101", "Web Storefront"), ("10102", "Search Platform"),
    ("10103", "Identity & Access"), ("10104", "Data Platform"), ("10105", "Network"),
)
REQUEST_TYPE_FIELD = "customfield_10010"
REQUEST_TYPES: tuple[tuple[str, str], ...] = (("10", "Report an incident"), ("11", "Report a system problem"))
#: Custom fields of the site: id -> name. All take strings except the request type.
CUSTOM_FIELDS: dict[str, str] = {
    "customfield_10001": "PagerDuty incident", "customfield_10002": "Severity",
    REQUEST_TYPE_FIELD: "Request Type",
}
#: System fields an edit may set (status and resolution only move through transitions).
EDITABLE = frozenset({"summary", "description", "priority", "labels", "components", "assignee",
                      *CUSTOM_FIELDS})
SYSTEM_FIELDS: tuple[tuple[str, str, str], ...] = (  # id, name, schema type
    ("summary", "Summary", "string"), ("description", "Description", "string"),
    ("priority", "Priority", "priority"), ("status", "Status", "status"), ("labels", "Labels", "array"),
    ("components", "Component/s", "array"), ("assignee", "Assignee", "user"), ("reporter", "Reporter", "user"),
    ("creator", "Creator", "user"), ("resolution", "Resolution", "resolution"),
    ("resolutiondate", "Resolved", "datetime"), ("created", "Created", "datetime"),
    ("updated", "Updated", "datetime"), ("issuetype", "Issue Type", "issuetype"),
    ("project", "Project", "project"), ("comment", "Comment", "comments-page"),
    ("statuscategorychangedate", "Status Category Changed", "datetime"),
)


def account_id(email: str) -> str:
    """A stable, opaque Atlassian-style account id for a simulated user."""
    return "5b10" + hashlib.sha1(email.encode()).hexdigest()[:20]


def display_name(email: str) -> str:
    """``jane.doe@example.com`` -> ``Jane Doe``."""
    local = email.split("@", 1)[0]
    return " ".join(part.capitalize() for part in local.replace("_", ".").split(".") if part)


def field_list() -> list[dict[str, Any]]:
    """``GET /rest/api/2/field``: system and custom fields with their JQL clause names."""
    fields = [{"id": fid, "key": fid, "name": name, "custom": False, "orderable": True, "navigable": True,
               "searchable": True, "clauseNames": [fid], "schema": {"type": kind, "system": fid}}
              for fid, name, kind in SYSTEM_FIELDS]
    for fid, name in CUSTOM_FIELDS.items():
        number = fid.rsplit("_", 1)[1]
        fields.append({"id": fid, "key": fid, "name": name, "custom": True, "orderable": True, "navigable": True,
                       "searchable": True, "clauseNames": [f"cf[{number}]", name],
                       "schema": {"type": "any" if fid == REQUEST_TYPE_FIELD else "string",
                                  "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
                                  "customId": int(number)}})
    return fields


def status_json(base: str, name: str) -> dict[str, Any]:
    sid, category = STATUSES[name]
    cat = CATEGORIES[category]
    return {"self": f"{base}/rest/api/2/status/{sid}", "description": "", "iconUrl": f"{base}/images/icons/status.png",
            "name": name, "id": sid, "statusCategory": {"self": f"{base}/rest/api/2/statuscategory/{cat['id']}", **cat}}


def priority_json(base: str, pid: str) -> dict[str, Any]:
    _, name, colour = next(p for p in PRIORITIES if p[0] == pid)
    return {"self": f"{base}/rest/api/2/priority/{pid}", "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
            "name": name, "id": pid, "statusColor": colour, "description": name}


def resolution_json(base: str, rid: str) -> dict[str, Any]:
    name = dict(RESOLUTIONS)[rid]
    return {"self": f"{base}/rest/api/2/resolution/{rid}", "id": rid, "description": name, "name": name}


def issue_type_json(base: str, tid: str) -> dict[str, Any]:
    name = dict(ISSUE_TYPES)[tid]
    return {"self": f"{base}/rest/api/2/issuetype/{tid}", "id": tid, "description": name, "name": name,
            "subtask": False, "iconUrl": f"{base}/images/icons/issuetypes/{tid}.svg"}


def component_json(base: str, cid: str) -> dict[str, Any]:
    return {"self": f"{base}/rest/api/2/component/{cid}", "id": cid, "name": dict(COMPONENTS)[cid]}


def request_type_json(rid: str) -> dict[str, Any]:
    return {"requestType": {"id": rid, "name": dict(REQUEST_TYPES)[rid]},
            "currentStatus": {"status": "Waiting for support"}}


def lookup(table: tuple[tuple[str, ...], ...], value: Any) -> str | None:
    """The id of a ``{"id"}`` / ``{"name"}`` reference (or a bare string) in `table`, else None."""
    if isinstance(value, dict):
        wanted_id, wanted_name = value.get("id"), value.get("name")
    else:
        wanted_id, wanted_name = value, value
    for row in table:
        if (wanted_id is not None and row[0] == str(wanted_id)) or (wanted_name is not None and row[1] == wanted_name):
            return row[0]
    return None


def to_adf(text: str | None) -> dict[str, Any] | None:
    """v3 renders string bodies as Atlassian Document Format, one paragraph per line."""
    if text is None:
        return None
    paragraphs = [{"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
                  for line in text.split("\n")]
    return {"type": "doc", "version": 1, "content": paragraphs}
