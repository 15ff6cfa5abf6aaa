"""The simulated instance's data: incidents, their journal, users and groups, and the business rules.

Kept apart from the HTTP layer so the REST handlers and the desk control API (the demo and tests playing
the service desk) share one set of rules: a desk agent's edit has exactly the side effects of a PATCH by
that user. What it reproduces, after api-facts §2: every value a string; dates ``YYYY-MM-DD HH:MM:SS``
UTC at second resolution; priority computed from impact x urgency; ``sys_mod_count`` counting updates
(journal writes included; a write that changes nothing is no update, as on a real instance); journal
fields appending ``sys_journal_field`` rows and reading back empty; the Resolved data policy.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from connectors.servicenow.query import Query, parse_query, select

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Reference fields of ``incident`` and the table each one points into.
REFERENCES: dict[str, str] = {
    "assignment_group": "sys_user_group", "assigned_to": "sys_user", "caller_id": "sys_user",
    "cmdb_ci": "cmdb_ci", "opened_by": "sys_user", "resolved_by": "sys_user", "closed_by": "sys_user",
    "business_service": "cmdb_ci_service",
}
JOURNAL_FIELDS: dict[str, str] = {"work_notes": "Work notes", "comments": "Additional comments"}
STATE_LABELS = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
LEVEL_LABELS = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
PRIORITY_LABELS = {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"}
CHOICES: dict[str, dict[str, str]] = {
    "state": STATE_LABELS, "incident_state": STATE_LABELS, "impact": LEVEL_LABELS, "urgency": LEVEL_LABELS,
    "priority": PRIORITY_LABELS,
}
#: ServiceNow's default priority lookup for incidents (impact, urgency) -> priority. Low/Low is 4 Low as
#: in the incident documentation's lookup rules (the problem table's gives 5 Planning; compliance-spec §5),
#: the same matrix the compliance pack's ITIL-I2 checks against by default.
PRIORITY_MATRIX: dict[tuple[str, str], str] = {
    ("1", "1"): "1", ("1", "2"): "2", ("2", "1"): "2", ("1", "3"): "3", ("2", "2"): "3", ("3", "1"): "3",
    ("2", "3"): "4", ("3", "2"): "4", ("3", "3"): "4",
}
INCIDENT_FIELDS: tuple[str, ...] = (
    "sys_id", "number", "short_description", "description", "state", "incident_state", "hold_reason",
    "impact", "urgency", "priority", "category", "subcategory", "contact_type", "correlation_id",
    "correlation_display", "close_code", "close_notes", "opened_at", "resolved_at", "closed_at", "active",
    "reassignment_count", "work_notes", "comments", "sys_class_name", "sys_created_on", "sys_created_by",
    "sys_updated_on", "sys_updated_by", "sys_mod_count", *REFERENCES,
)
JOURNAL_COLUMNS: tuple[str, ...] = (
    "sys_id", "element", "element_id", "name", "value", "sys_created_on", "sys_created_by",
)
#: Set by the instance itself; a client's value for them is ignored, as on a real instance.
SYSTEM_FIELDS = frozenset({"sys_id", "number", "sys_created_on", "sys_created_by", "sys_updated_on",
                           "sys_updated_by", "sys_mod_count", "priority", "sys_class_name"})
POLICY_DETAIL = "Data Policy Exception: \n The following fields are mandatory: Resolution code, Resolution notes"
#: Looked up by equality on every create (find by correlation id) and link (find by number): kept in an
#: index so the simulator answers in constant time, as an instance's database does, however many
#: tickets a long test or a benchmark has made.
INDEXED_FIELDS: tuple[str, ...] = ("correlation_id", "number")
DEFAULT_GROUPS = ("Service Desk", "Payments", "Web Storefront", "Search Platform", "Identity & Access",
                  "Data Platform", "Network")


class DataPolicyError(Exception):
    """A write broke a data policy; answered 403 with ServiceNow's own detail text."""

    def __init__(self, detail: str = POLICY_DETAIL) -> None:
        super().__init__(detail)
        self.detail = detail


class RecordNotFound(KeyError):
    """No incident with that sys_id (answered 404 "No Record found")."""


def new_sys_id() -> str:
    return secrets.token_hex(16)


def display_name(user_name: str) -> str:
    """``jane.doe`` -> ``Jane Doe``: the name journal blocks and reference display values show."""
    return " ".join(part.capitalize() for part in user_name.replace("_", ".").split(".") if part)


def to_text(value: Any) -> str:
    """A JSON value as ServiceNow stores it: strings as-is, null empty, booleans lower-case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return to_text(value.get("value"))
    return str(value)


class DeskState:
    """All data of the simulated instance behind one lock (REST handlers and desk calls share it)."""

    def __init__(self, user_names: list[str], *, clock: Callable[[], datetime] | None = None) -> None:
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._last_stamp = ""
        self._next_number = 10001
        self.incidents: dict[str, dict[str, str]] = {}
        self.journal_rows: list[dict[str, str]] = []
        #: The same rows by record: every rendered record shows its journal, so this lookup must not
        #: scan the whole journal (it would make each request slower the longer the instance runs).
        self._journal_by_record: dict[str, list[dict[str, str]]] = {}
        self._index: dict[str, dict[str, dict[str, None]]] = {name: {} for name in INDEXED_FIELDS}
        self._created: dict[str, int] = {}  # sys_id -> creation order, to answer index hits in table order
        self.refs: dict[str, dict[str, str]] = {table: {} for table in set(REFERENCES.values())}
        self.user_ids: dict[str, str] = {}
        for user in user_names:
            self.add_user(user)
        for group in DEFAULT_GROUPS:
            self.refs["sys_user_group"][new_sys_id()] = group

    # -- reference data ------------------------------------------------------------------------------
    def add_user(self, user_name: str) -> str:
        with self._lock:
            if user_name not in self.user_ids:
                sys_id = new_sys_id()
                self.user_ids[user_name] = sys_id
                self.refs["sys_user"][sys_id] = display_name(user_name)
            return self.user_ids[user_name]

    def reference_display(self, field: str, value: str) -> str:
        return self.refs.get(REFERENCES.get(field, ""), {}).get(value, "")

    def _resolve_reference(self, field: str, value: str, by_display: bool) -> str:
        table = self.refs[REFERENCES[field]]
        if value in table or not by_display:
            return value
        if REFERENCES[field] == "sys_user" and value in self.user_ids:
            return self.user_ids[value]
        return next((sys_id for sys_id, name in table.items() if name == value), value)

    # -- time ----------------------------------------------------------------------------------------
    def stamp(self) -> str:
        """Now at second resolution, never earlier than the last stamp handed out."""
        now = self._clock().astimezone(timezone.utc).strftime(TIME_FORMAT)
        self._last_stamp = max(now, self._last_stamp)
        return self._last_stamp

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, sys_id: str) -> dict[str, str]:
        with self._lock:
            if sys_id not in self.incidents:
                raise RecordNotFound(sys_id)
            return dict(self.incidents[sys_id])

    def query(self, table: str, text: str | None) -> list[dict[str, str]]:
        """Matching rows (copies) of ``incident`` or ``sys_journal_field`` for an encoded query."""
        with self._lock:
            if table == "incident":
                parsed = parse_query(text, INCIDENT_FIELDS)
                return [dict(row) for row in select(parsed, self._candidates(parsed))]
            return [dict(row) for row in select(parse_query(text, JOURNAL_COLUMNS), self.journal_rows)]

    def _candidates(self, parsed: Query) -> list[dict[str, str]]:
        """The incidents a query can match: an index bucket when it requires ``<indexed field>=<value>``."""
        for group in parsed.groups:
            if len(group) == 1 and group[0].op == "=" and group[0].field in self._index:
                bucket = self._index[group[0].field].get(group[0].value, {})
                return [self.incidents[sys_id] for sys_id in sorted(bucket, key=self._created.__getitem__)]
        return list(self.incidents.values())

    def _reindex(self, sys_id: str, before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> None:
        for name, index in self._index.items():
            old, new = (before or {}).get(name), (after or {}).get(name)
            if old == new:
                continue
            if old is not None:
                index.get(old, {}).pop(sys_id, None)
            if new is not None:
                index.setdefault(new, {})[sys_id] = None

    def journal_of(self, sys_id: str) -> list[dict[str, str]]:
        """Journal rows of one record, oldest first."""
        with self._lock:
            return [dict(row) for row in self._journal_by_record.get(sys_id, ())]

    # -- writes --------------------------------------------------------------------------------------
    def insert(self, fields: Mapping[str, Any], *, user: str, by_display: bool = False) -> dict[str, str]:
        """Create an incident as `user` would through POST; returns the stored record."""
        with self._lock:
            now, user_id = self.stamp(), self.add_user(user)
            record = {name: "" for name in INCIDENT_FIELDS}
            record.update(sys_id=new_sys_id(), number=f"INC{self._next_number:07d}", state="1",
                          incident_state="1", impact="3", urgency="3", active="true", opened_at=now,
                          opened_by=user_id, reassignment_count="0", sys_class_name="incident",
                          sys_created_on=now, sys_created_by=user, sys_updated_on=now, sys_updated_by=user,
                          sys_mod_count="0")
            notes = self._apply({}, record, fields, user=user, now=now, by_display=by_display)
            self._next_number += 1
            self.incidents[record["sys_id"]] = record
            self._created[record["sys_id"]] = len(self._created)
            self._reindex(record["sys_id"], None, record)
            self._append_journal(record["sys_id"], notes, user=user, now=now)
            return dict(record)

    def update(self, sys_id: str, fields: Mapping[str, Any], *, user: str,
               by_display: bool = False) -> dict[str, str]:
        """Change an incident as `user` would through PATCH/PUT; returns the stored record."""
        with self._lock:
            if sys_id not in self.incidents:
                raise RecordNotFound(sys_id)
            before = self.incidents[sys_id]
            after = dict(before)
            now = self.stamp()
            notes = self._apply(before, after, fields, user=user, now=now, by_display=by_display)
            if after == before and not notes:
                return dict(before)  # nothing changed: no update happens, as on a real instance
            after.update(sys_updated_on=now, sys_updated_by=user, sys_mod_count=str(int(before["sys_mod_count"]) + 1))
            self.incidents[sys_id] = after
            self._reindex(sys_id, before, after)
            self._append_journal(sys_id, notes, user=user, now=now)
            return dict(after)

    def delete(self, sys_id: str) -> None:
        with self._lock:
            record = self.incidents.pop(sys_id, None)
            if record is None:
                raise RecordNotFound(sys_id)
            self._reindex(sys_id, record, None)

    def _apply(self, before: Mapping[str, str], record: dict[str, str], fields: Mapping[str, Any], *,
               user: str, now: str, by_display: bool) -> list[tuple[str, str]]:
        """Write `fields` into `record` with the business rules; returns journal entries to append.

        Raises `DataPolicyError` before anything is stored, so a refused write leaves no trace.
        """
        notes: list[tuple[str, str]] = []
        for name, raw in fields.items():
            value = to_text(raw)
            if name in JOURNAL_FIELDS:
                if value.strip():
                    notes.append((name, value))
            elif name.startswith("u_"):  # an instance's custom field (u_dora_major, ...): stored as given
                record[name] = value
            elif name in INCIDENT_FIELDS and name not in SYSTEM_FIELDS:
                if name in REFERENCES:
                    value = self._resolve_reference(name, value, by_display)
                elif by_display and name in CHOICES:
                    value = next((code for code, label in CHOICES[name].items() if label == value), value)
                record[name] = value
        if "incident_state" in fields and "state" not in fields:
            record["state"] = record["incident_state"]
        record["incident_state"] = record["state"]
        record["priority"] = PRIORITY_MATRIX.get((record["impact"], record["urgency"]), record["priority"] or "5")
        self._state_rules(before, record, user=user, now=now)
        if before.get("assignment_group") and record["assignment_group"] != before["assignment_group"]:
            record["reassignment_count"] = str(int(record["reassignment_count"] or "0") + 1)
        if record["state"] in ("6", "7") and not (record["close_code"] and record["close_notes"]):
            raise DataPolicyError()
        return notes

    def _state_rules(self, before: Mapping[str, str], record: dict[str, str], *, user: str, now: str) -> None:
        """Resolve, close, cancel and reopen stamp and clear what the incident business rules do."""
        state, was = record["state"], before.get("state", "")
        if state == was:
            return
        user_id = self.add_user(user)
        if state == "6":
            record.update(resolved_at=record["resolved_at"] if was == "6" else now, resolved_by=user_id,
                          active="true")
        elif state == "7":
            record.update(closed_at=now, closed_by=user_id, active="false",
                          resolved_at=record["resolved_at"] or now, resolved_by=record["resolved_by"] or user_id)
        elif state == "8":
            record.update(active="false")
        else:
            record.update(resolved_at="", resolved_by="", closed_at="", closed_by="", active="true")

    def _append_journal(self, sys_id: str, notes: list[tuple[str, str]], *, user: str, now: str) -> None:
        for element, value in notes:
            row = {"sys_id": new_sys_id(), "element": element, "element_id": sys_id, "name": "incident",
                   "value": value, "sys_created_on": now, "sys_created_by": user}
            self.journal_rows.append(row)
            self._journal_by_record.setdefault(sys_id, []).append(row)
