"""A loopback stand-in for a ServiceNow instance's Table API, for the demo and the end-to-end tests.

It answers what pysnow and the connector use, shaped as api-facts §2 says the real API answers: basic
auth on every ``/api/now`` path; ``{"result": ...}`` bodies; raw string values with ``{link, value}``
references; ``sysparm_query``/``fields``/``limit``/``offset``/``display_value``/
``exclude_reference_link``; ``Link`` and ``X-Total-Count`` headers on lists; ServiceNow's error bodies;
the Resolved data policy; 429 with ``Retry-After`` and the ``X-RateLimit-*`` headers from `Faults`.

The desk control API (`desk_update`, `desk_comment`, `records`, `record`, `journal`,
`find_by_correlation`) lets tests play a service-desk agent with the same rules as a PATCH by that user.
`calls` counts the Table API requests received (`RequestCounter`), so a test or a benchmark can say
what a change cost the desk.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from connectors.servicenow.sim_state import (
    CHOICES,
    JOURNAL_FIELDS,
    REFERENCES,
    DataPolicyError,
    DeskState,
    RecordNotFound,
    display_name,
)
from connectors.simulator import basic_auth_user, Faults, ServerThread, install_faults

DEFAULT_USERS: dict[str, str] = {"itsm.bridge": "sim-sn-password"}
DESK_USER, DESK_PASSWORD = "jane.doe", "sim-desk-password"
TABLES = ("incident", "sys_journal_field")
DEFAULT_LIMIT = 10000
_QUERY_FIELD = re.compile(r"[a-z0-9_.]+")
_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("User Not Authenticated", "Required to provide Auth information"),
    404: ("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
    429: ("Rate limit exceeded", "Rate limit of 1000 requests per hour exceeded for rule 'itsm-bridge'"),
    500: ("Internal server error", None),
    502: ("Bad gateway", None),
    503: ("Service unavailable", None),
}


def error_body(status: int, message: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """ServiceNow's error shape: ``{"error": {"message", "detail"}, "status": "failure"}``."""
    default_message, default_detail = _ERRORS.get(status, ("Error", None))
    return {"error": {"message": message or default_message, "detail": detail or default_detail},
            "status": "failure"}


def _failure(status: int, message: str | None = None, detail: str | None = None,
             headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, detail), status_code=status, headers=dict(headers or {}))


class RequestCounter:
    """Table API requests received, by kind: ``METHOD path`` with the record's sys_id as ``{sys_id}``,
    and for list reads the first field of ``sysparm_query`` (``GET /api/now/table/incident?correlation_id``
    is a find, ``...?sys_updated_on`` a poll). Every request under ``/api/now`` counts, refused ones too,
    because a desk's API quota counts them. Thread-safe; `reset` between the phases of a test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, method: str, path: str, query: str | None = None) -> None:
        key = call_kind(method, path, query)
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """Counts so far by kind (a copy)."""
        with self._lock:
            return dict(self._counts)

    def total(self, *methods: str) -> int:
        """Requests so far, only of `methods` (e.g. ``"POST", "PATCH"``) when given."""
        with self._lock:
            return sum(n for key, n in self._counts.items() if not methods or key.split(" ", 1)[0] in methods)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


def call_kind(method: str, path: str, query: str | None = None) -> str:
    """``GET /api/now/table/incident/{sys_id}``, ``GET /api/now/table/incident?correlation_id``, ..."""
    parts = path.rstrip("/").split("/")
    if len(parts) == 6 and parts[1:4] == ["api", "now", "table"]:
        parts[5] = "{sys_id}"
    kind = f"{method.upper()} {'/'.join(parts)}"
    if len(parts) == 5 and method.upper() == "GET":
        first = _QUERY_FIELD.match(query or "")
        kind += f"?{first.group(0)}" if first else ""
    return kind


class ServiceNowSimulator:
    """A simulated instance on a loopback port. `users` maps user name -> password for basic auth."""

    def __init__(self, *, users: Mapping[str, str] | None = None, faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, clock: Callable[[], datetime] | None = None) -> None:
        self.users = dict(users if users is not None else DEFAULT_USERS)
        self.users.setdefault(DESK_USER, DESK_PASSWORD)
        self.faults = faults or Faults()
        self.state = DeskState(list(self.users), clock=clock)
        self.calls = RequestCounter()
        self.app = self._build_app()
        self._server = ServerThread(self.app, host=host, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> ServiceNowSimulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # -- desk control API (thread-safe; same rules as the REST API) ----------------------------------
    def desk_update(self, sys_id: str, fields: Mapping[str, Any], user: str = DESK_USER) -> dict[str, str]:
        """Edit a ticket as desk agent `user` (journal fields append); raises `DataPolicyError` like a 403."""
        return self.state.update(sys_id, fields, user=user)

    def desk_comment(self, sys_id: str, text: str, user: str = DESK_USER, work_note: bool = False) -> dict[str, str]:
        """Add a customer-visible comment (or an internal work note) as desk agent `user`."""
        return self.state.update(sys_id, {"work_notes" if work_note else "comments": text}, user=user)

    def records(self) -> list[dict[str, str]]:
        """Every incident, raw (references as sys_ids), in creation order."""
        return self.state.query("incident", "")

    def record(self, sys_id: str) -> dict[str, str]:
        """One incident, raw; `KeyError` when there is none."""
        return self.state.get(sys_id)

    def journal(self, sys_id: str) -> list[dict[str, str]]:
        """The ``sys_journal_field`` rows of one incident, oldest first."""
        return self.state.journal_of(sys_id)

    def find_by_correlation(self, correlation_id: str) -> list[dict[str, str]]:
        """Incidents whose ``correlation_id`` equals `correlation_id`, oldest first."""
        return [r for r in self.records() if r["correlation_id"] == correlation_id]

    # -- HTTP ----------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="ServiceNow simulator", openapi_url=None, docs_url=None, redoc_url=None)
        install_faults(app, self.faults, applies=lambda path: path.startswith("/api/now"), error_body=error_body)

        @app.middleware("http")
        async def rate_limit_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            response = await call_next(request)
            if response.status_code == 429:  # what an instance with a rate limit rule sends along
                response.headers["X-RateLimit-Limit"] = "1000"
                response.headers["X-RateLimit-Reset"] = str(int(time.time()) + 3600)
                response.headers["X-RateLimit-Rule"] = "b6a9a3d1c0a8016401ec7ad6c1b7a0f2"
            return response

        @app.middleware("http")  # added last, so outermost: faults and refusals are counted too
        async def count_calls(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if request.url.path.startswith("/api/now"):
                self.calls.record(request.method, request.url.path, request.query_params.get("sysparm_query"))
            return await call_next(request)

        @app.api_route("/api/now/table/{table}", methods=["GET", "POST"])
        async def collection(table: str, request: Request) -> Response:
            return await self._handle(request, table, None)

        @app.api_route("/api/now/table/{table}/{sys_id}", methods=["GET", "PUT", "PATCH", "DELETE"])
        async def single(table: str, sys_id: str, request: Request) -> Response:
            return await self._handle(request, table, sys_id)

        @app.api_route("/api/now/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def unknown(rest: str, request: Request) -> Response:
            return self._refuse(request) or _failure(400, "Requested URI does not represent any resource")

        return app

    def _authenticated_user(self, request: Request) -> str | None:
        return basic_auth_user(request, self.users)

    def _refuse(self, request: Request) -> JSONResponse | None:
        if self._authenticated_user(request) is None:
            return _failure(401, headers={"WWW-Authenticate": 'BASIC realm="Service-now"'})
        return None

    async def _handle(self, request: Request, table: str, sys_id: str | None) -> Response:
        user = self._authenticated_user(request)
        if user is None:
            return _failure(401, headers={"WWW-Authenticate": 'BASIC realm="Service-now"'})
        if table not in TABLES:
            return _failure(400, f"Invalid table {table}")
        method = request.method
        if method in ("POST", "PUT", "PATCH"):
            if "application/json" not in request.headers.get("content-type", ""):
                return _failure(400, "Request body is not JSON", "Content-Type must be application/json")
            accept = request.headers.get("accept", "*/*")
            if "application/json" not in accept and "*/*" not in accept:
                return _failure(400, "Invalid Accept header", "Accept must allow application/json")
        if table == "sys_journal_field" and method != "GET":
            return _failure(403, "Operation Failed", "ACL Exception Insert Failed due to security constraints")
        params = request.query_params
        try:
            if method == "GET" and sys_id is None:
                return self._list(request, table)
            if method == "GET":
                rows = self.state.query(table, f"sys_id={sys_id}") if table != "incident" else [self.state.get(sys_id)]
                if not rows:
                    raise RecordNotFound(sys_id)
                return JSONResponse({"result": self._render(rows[0], table, params)})
            if method == "DELETE":
                self.state.delete(sys_id or "")
                return Response(status_code=204)
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return _failure(400, "Exception while reading request", "The payload is not valid JSON.")
            if not isinstance(body, dict):
                return _failure(400, "Exception while reading request", "The payload must be a JSON object.")
            by_display = params.get("sysparm_input_display_value", "false").lower() == "true"
            if method == "POST":
                record = self.state.insert(body, user=user, by_display=by_display)
                return JSONResponse({"result": self._render(record, table, params)}, status_code=201)
            record = self.state.update(sys_id or "", body, user=user, by_display=by_display)
            return JSONResponse({"result": self._render(record, table, params)})
        except RecordNotFound:
            return _failure(404)
        except DataPolicyError as exc:
            return _failure(403, "Operation Failed", exc.detail)

    def _list(self, request: Request, table: str) -> Response:
        params = request.query_params
        rows = self.state.query(table, params.get("sysparm_query"))
        limit = _int(params.get("sysparm_limit"), DEFAULT_LIMIT, minimum=1)
        offset = _int(params.get("sysparm_offset"), 0, minimum=0)
        page = rows[offset:offset + limit]
        headers = {"X-Total-Count": str(len(rows))}
        links = _page_links(str(request.url).split("?", 1)[0], params, total=len(rows), offset=offset, limit=limit)
        if links:
            headers["Link"] = links
        return JSONResponse({"result": [self._render(row, table, params) for row in page]}, headers=headers)

    def _render(self, row: Mapping[str, str], table: str, params: Mapping[str, str]) -> dict[str, Any]:
        """A row as the API shows it, honouring sysparm_fields, display_value and exclude_reference_link."""
        wanted = [name.strip() for name in params.get("sysparm_fields", "").split(",") if name.strip()]
        mode = params.get("sysparm_display_value", "false").lower()
        no_links = params.get("sysparm_exclude_reference_link", "false").lower() == "true"
        names = [name for name in wanted if name in row] if wanted else list(row)
        if table != "incident":
            return {name: row[name] for name in names}
        return {name: self._value(row, name, mode=mode, no_links=no_links) for name in names}

    def _value(self, row: Mapping[str, str], name: str, *, mode: str, no_links: bool) -> Any:
        raw = row[name]
        if name in JOURNAL_FIELDS:
            shown = self._journal_display(row["sys_id"], name)
            raw = ""
        elif name in CHOICES:
            shown = CHOICES[name].get(raw, raw)
        elif name in REFERENCES:
            shown = self.state.reference_display(name, raw)
        else:
            shown = raw
        link = f"{self.url}/api/now/table/{REFERENCES[name]}/{raw}" if name in REFERENCES and raw else None
        if mode == "true":
            return {"display_value": shown, "link": link} if link and not no_links else shown
        if mode == "all":
            value: dict[str, str] = {"display_value": shown, "value": raw}
            if link and not no_links:
                value["link"] = link
            return value
        return {"link": link, "value": raw} if link and not no_links else raw

    def _journal_display(self, sys_id: str, element: str) -> str:
        """Journal entries as the form shows them: ``<when> - <name> (<label>)\\n<text>\\n\\n``, newest first."""
        rows = [row for row in self.state.journal_of(sys_id) if row["element"] == element]
        label = JOURNAL_FIELDS[element]
        return "".join(f"{row['sys_created_on']} - {display_name(row['sys_created_by'])} ({label})\n{row['value']}\n\n"
                       for row in reversed(rows))


def _int(text: str | None, default: int, *, minimum: int) -> int:
    try:
        return max(minimum, int(text)) if text is not None else default
    except ValueError:
        return default


def _page_links(base: str, params: Mapping[str, str], *, total: int, offset: int, limit: int) -> str:
    """The ``Link`` header: first, prev, next and last pages, each keeping the request's other params."""
    def link(page_offset: int, rel: str) -> str:
        query = {**dict(params), "sysparm_offset": str(page_offset), "sysparm_limit": str(limit)}
        return f'<{base}?{urlencode(query)}>;rel="{rel}"'

    parts = [link(0, "first")]
    if offset > 0:
        parts.append(link(max(0, offset - limit), "prev"))
    if offset + limit < total:
        parts.append(link(offset + limit, "next"))
    parts.append(link(max(0, (total - 1) // limit * limit), "last"))
    return ",".join(parts)
