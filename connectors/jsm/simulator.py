"""A loopback stand-in for a Jira Cloud site with Jira Service Management, for the demo and the tests.

It answers what the `jira` client and the connector use, shaped as api-facts §3 says Jira Cloud answers:
basic auth (e-mail + API token) on every ``/rest`` path; ``serverInfo`` with ``deploymentType: Cloud``;
v2 bodies as strings and v3 bodies as ADF; ``{"errorMessages": [...], "errors": {...}}`` error bodies;
``POST .../transitions`` answering 204; ``/search/jql`` with ``nextPageToken``/``isLast`` (the old
``/search`` answers 410 Gone, as on Cloud since 2025); 429 with ``Retry-After`` and ``X-RateLimit-*``.
The search lag knob (`search_lag_seconds`) hides young issues from JQL only, never from a direct GET.

The desk control API (`desk_transition`, `desk_comment`, `desk_update`, `issues`, `issue`, `comments`,
`properties`, `remote_links`, `find_by_correlation`) plays a service-desk agent with the REST rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from connectors.jsm import sim_catalog as cat
from connectors.jsm.jql import JqlError, parse_jql
from connectors.jsm.sim_state import BadRequest, IssueNotFound, SiteState, jira_time
from connectors.simulator import basic_auth_user, Faults, ServerThread, install_faults

DEFAULT_USERS: dict[str, str] = {"bridge@example.com": "sim-jira-token"}
AGENT, AGENT_TOKEN = "agent@example.com", "sim-agent-token"
MAX_PAGE = 100
_MESSAGES = {
    401: "You are not authenticated. Authentication required to perform this operation.",
    404: "Issue does not exist or you do not have permission to see it.",
    429: "Rate limit exceeded.", 500: "Internal server error", 502: "Bad gateway", 503: "Service Unavailable",
}


def error_body(status: int, message: str | None = None, errors: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Jira's error shape: ``{"errorMessages": [...], "errors": {field: message}}``."""
    messages = [message or _MESSAGES.get(status, "Error")] if message or not errors else []
    return {"errorMessages": messages, "errors": dict(errors or {})}


def _failure(status: int, message: str | None = None, errors: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, errors), status_code=status)


class JsmSimulator:
    """A simulated Jira Cloud site on a loopback port. `users` maps e-mail -> API token for basic auth."""

    def __init__(self, *, users: Mapping[str, str] | None = None, faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, project: str = "OPS", search_lag_seconds: float = 0.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.users = dict(users if users is not None else DEFAULT_USERS)
        self.users.setdefault(AGENT, AGENT_TOKEN)
        self.faults = faults or Faults()
        self._server = ServerThread(self._build_app(), host=host, port=port)
        self.state = SiteState(base=lambda: self.url, project=project, users=list(self.users), clock=clock,
                               search_lag_seconds=search_lag_seconds)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def search_lag_seconds(self) -> float:
        return self.state.search_lag_seconds

    @search_lag_seconds.setter
    def search_lag_seconds(self, value: float) -> None:
        self.state.search_lag_seconds = value

    def start(self) -> JsmSimulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # -- desk control API (thread-safe; same rules as the REST calls) ------------------------------------
    def desk_transition(self, key: str, transition_name: str, user: str = AGENT,
                        resolution: str | None = None) -> dict[str, Any]:
        """Move an issue through the workflow by transition name, as agent `user`; `BadRequest` if unavailable."""
        chosen = next((t for t in self.state.transitions(key) if t["name"] == transition_name), None)
        if chosen is None:
            raise BadRequest(messages=[f"Transition '{transition_name}' is not available for {key}."])
        fields = {"resolution": {"name": resolution or "Done"}} if chosen["resolution"] else {}
        self.state.transition(key, {"transition": {"id": chosen["id"]}, "fields": fields}, user=user)
        return self.issue(key)

    def desk_comment(self, key: str, text: str, user: str = AGENT, internal: bool = False) -> dict[str, Any]:
        """Comment as agent `user`: public (shown on the portal) unless `internal`."""
        properties = [{"key": "sd.public.comment", "value": {"internal": True}}] if internal else []
        return self._comment_json(self.state.add_comment(key, {"body": text, "properties": properties}, user=user))

    def desk_update(self, key: str, fields: Mapping[str, Any], user: str = AGENT) -> dict[str, Any]:
        """Edit fields as agent `user`, with REST values (``{"priority": {"name": "High"}}``)."""
        self.state.edit(key, {"fields": dict(fields)}, user=user)
        return self.issue(key)

    def issues(self) -> list[dict[str, Any]]:
        """Every issue as ``GET /rest/api/2/issue/{key}`` shows it, in creation order."""
        with self.state._lock:
            keys = list(self.state.issues)
        return [self.issue(key) for key in keys]

    def issue(self, key: str) -> dict[str, Any]:
        """One issue as the v2 API shows it (all fields, entity properties); `IssueNotFound` when absent."""
        with self.state._lock:
            return json.loads(json.dumps(self.render(self.state.get(key), properties=["*all"])))

    def comments(self, key: str) -> list[dict[str, Any]]:
        """The issue's comments as the v2 API shows them (``jsdPublic``), oldest first."""
        with self.state._lock:
            return [self._comment_json(c, with_properties=True) for c in self.state.get(key)["comments"]]

    def properties(self, key: str) -> dict[str, Any]:
        with self.state._lock:
            return json.loads(json.dumps(self.state.get(key)["properties"]))

    def remote_links(self, key: str) -> list[dict[str, Any]]:
        with self.state._lock:
            return json.loads(json.dumps(self.state.get(key)["remotelinks"]))

    def find_by_correlation(self, correlation_id: str) -> list[dict[str, Any]]:
        """Issues whose ``itsm-bridge`` entity property carries `correlation_id` (no search lag), oldest first."""
        return [i for i in self.issues()
                if (i.get("properties", {}).get("itsm-bridge") or {}).get("correlation_id") == correlation_id]

    # -- rendering -----------------------------------------------------------------------------------------
    def _comment_json(self, comment: Mapping[str, Any], *, v3: bool = False,
                      with_properties: bool = False) -> dict[str, Any]:
        author = self.state.user_json(comment["author"])
        data = {"self": f"{self.url}/rest/api/2/issue/comment/{comment['id']}", "id": comment["id"],
                "author": author, "body": cat.to_adf(comment["body"]) if v3 else comment["body"],
                "updateAuthor": author, "created": comment["created"], "updated": comment["updated"],
                "jsdPublic": not comment["internal"], "jsdAuthorCanSeeRequest": False}
        if with_properties:
            data["properties"] = comment["properties"]
        return data

    def render(self, issue: Mapping[str, Any], *, fields: list[str] | None = None, expand: str = "",
               properties: list[str] | None = None, v3: bool = False) -> dict[str, Any]:
        """An issue as ``GET /issue/{key}`` answers, honouring ``fields``, ``expand`` and ``properties``."""
        wanted = [f for f in (fields or ["*all"]) if f]
        everything = any(f in ("*all", "*navigable") for f in wanted)
        shown: dict[str, Any] = {}
        for name, value in issue["fields"].items():
            if everything or name in wanted:
                shown[name] = cat.to_adf(value) if v3 and name == "description" else value
        if everything or "comment" in wanted:
            comments = [self._comment_json(c, v3=v3) for c in issue["comments"]]
            shown["comment"] = {"comments": comments, "self": f"{self.url}/rest/api/2/issue/{issue['id']}/comment",
                                "maxResults": len(comments), "total": len(comments), "startAt": 0}
        data: dict[str, Any] = {"expand": "renderedFields,names,schema,operations,editmeta,changelog",
                                "id": issue["id"], "self": f"{self.url}/rest/api/{3 if v3 else 2}/issue/{issue['id']}",
                                "key": issue["key"], "fields": shown}
        if properties:
            keys = issue["properties"] if "*all" in properties else [p for p in properties if p in issue["properties"]]
            data["properties"] = {key: issue["properties"][key] for key in keys}
        if "changelog" in expand:
            histories = issue["changelog"]
            data["changelog"] = {"startAt": 0, "maxResults": len(histories), "total": len(histories),
                                 "histories": histories}
        return data

    def _transition_json(self, transition: Mapping[str, Any], *, with_fields: bool) -> dict[str, Any]:
        data = {"id": transition["id"], "name": transition["name"], "to": cat.status_json(self.url, transition["to"]),
                "hasScreen": transition["resolution"], "isGlobal": False, "isInitial": False, "isAvailable": True,
                "isConditional": False, "isLooped": False}
        if with_fields:
            data["fields"] = {"resolution": {
                "required": True, "schema": {"type": "resolution", "system": "resolution"}, "name": "Resolution",
                "key": "resolution", "operations": ["set"],
                "allowedValues": [cat.resolution_json(self.url, rid) for rid, _ in cat.RESOLUTIONS]},
            } if transition["resolution"] else {}
        return data

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Jira simulator", openapi_url=None, docs_url=None, redoc_url=None)
        install_faults(app, self.faults, applies=lambda path: path.startswith("/rest/"), error_body=error_body)

        @app.middleware("http")
        async def rate_limit_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            response = await call_next(request)
            if response.status_code == 429:  # what Jira Cloud sends with a burst limit
                reset = datetime.now(timezone.utc) + timedelta(seconds=int(response.headers.get("Retry-After", "1")))
                response.headers.update({
                    "X-RateLimit-Limit": "350", "X-RateLimit-Remaining": "0", "X-RateLimit-FillRate": "35",
                    "X-RateLimit-Interval-Seconds": "1", "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                    "RateLimit-Reason": "jira-burst-based"})
            return response

        @app.api_route("/rest/api/{version}/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
        async def api(version: str, rest: str, request: Request) -> Response:
            user = self._authenticated_user(request)
            if user is None:
                return _failure(401)
            if version not in ("2", "3"):
                return _failure(404, "null for uri: " + str(request.url.path))
            try:
                body: Any = {}
                if request.method in ("POST", "PUT"):
                    raw = await request.body()
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        return _failure(400, "Unexpected character in the request body: not JSON.")
                return self._route(request, rest.strip("/").split("/"), body, user=user, v3=version == "3")
            except IssueNotFound:
                return _failure(404)
            except BadRequest as exc:
                return JSONResponse({"errorMessages": exc.messages, "errors": exc.errors}, status_code=400)
            except JqlError as exc:
                return _failure(400, str(exc))

        return app

    def _authenticated_user(self, request: Request) -> str | None:
        return basic_auth_user(request, self.users)

    def _route(self, request: Request, parts: list[str], body: Any, *, user: str, v3: bool) -> Response:
        method, params = request.method, request.query_params
        head = parts[0]
        if (method, parts) == ("GET", ["serverInfo"]):
            return JSONResponse({"baseUrl": self.url, "version": "1001.0.0-SNAPSHOT", "versionNumbers": [1001, 0, 0],
                                 "deploymentType": "Cloud", "buildNumber": 100280, "buildDate": "2025-03-10T00:00:00.000+0000",
                                 "serverTime": jira_time(datetime.now(timezone.utc)), "scmInfo": "sim",
                                 "serverTitle": "Jira"})
        if (method, parts) == ("GET", ["field"]):
            return JSONResponse(cat.field_list())
        if (method, parts) == ("GET", ["myself"]):
            return JSONResponse(self.state.user_json(user))
        if (method, parts) == ("GET", ["priority"]):
            return JSONResponse([cat.priority_json(self.url, pid) for pid, _, _ in cat.PRIORITIES])
        if method == "GET" and head == "project" and len(parts) == 2:
            if parts[1] not in (self.state.project, "10000"):
                return _failure(404, f"No project could be found with key '{parts[1]}'.")
            return JSONResponse({"self": f"{self.url}/rest/api/2/project/10000", "id": "10000",
                                 "key": self.state.project, "name": "Operations", "projectTypeKey": "service_desk",
                                 "simplified": False, "style": "classic", "isPrivate": False,
                                 "issueTypes": [cat.issue_type_json(self.url, tid) for tid, _ in cat.ISSUE_TYPES],
                                 "components": [cat.component_json(self.url, cid) for cid, _ in cat.COMPONENTS]})
        if head == "search" and len(parts) == 1:
            return _failure(410, "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.")
        if head == "search" and parts[1:] == ["jql"] and method in ("GET", "POST"):
            return self._search(dict(body) if method == "POST" else _query_dict(request), v3=v3)
        if head == "issue" and len(parts) == 1 and method == "POST":
            issue = self.state.create(body, user=user)
            return JSONResponse({"id": issue["id"], "key": issue["key"],
                                 "self": f"{self.url}/rest/api/2/issue/{issue['id']}"}, status_code=201)
        if head == "issue" and len(parts) >= 2:
            return self._issue_route(method, parts[1], parts[2:], body, params, user=user, v3=v3)
        return _failure(404, f"null for uri: {request.url.path}")

    def _issue_route(self, method: str, key: str, rest: list[str], body: Any, params: Mapping[str, str], *,
                     user: str, v3: bool) -> Response:
        issue = self.state.get(key)
        key = issue["key"]
        if not rest and method == "GET":
            return JSONResponse(self.render(issue, fields=_split(params.get("fields")), expand=params.get("expand", ""),
                                            properties=_split(params.get("properties")), v3=v3))
        if not rest and method == "PUT":
            self.state.edit(key, body, user=user)
            return Response(status_code=204)
        if rest == ["transitions"] and method == "GET":
            with_fields = "transitions.fields" in params.get("expand", "")
            return JSONResponse({"expand": "transitions", "transitions": [
                self._transition_json(t, with_fields=with_fields) for t in self.state.transitions(key)]})
        if rest == ["transitions"] and method == "POST":
            self.state.transition(key, body, user=user)
            return Response(status_code=204)
        if rest == ["comment"] and method == "GET":
            comments = [self._comment_json(c, v3=v3, with_properties="properties" in params.get("expand", ""))
                        for c in issue["comments"]]
            return JSONResponse({"startAt": 0, "maxResults": 5000, "total": len(comments), "comments": comments})
        if rest == ["comment"] and method == "POST":
            comment = self.state.add_comment(key, body, user=user)
            return JSONResponse(self._comment_json(comment, v3=v3), status_code=201)
        if rest == ["properties"] and method == "GET":
            return JSONResponse({"keys": [{"self": f"{self.url}/rest/api/2/issue/{issue['id']}/properties/{name}",
                                           "key": name} for name in issue["properties"]]})
        if len(rest) == 2 and rest[0] == "properties":
            return self._property(issue, rest[1], method, body)
        if rest == ["remotelink"] and method == "GET":
            return JSONResponse(issue["remotelinks"])
        if rest == ["remotelink"] and method == "POST":
            link, created = self.state.add_remote_link(key, body)
            return JSONResponse({"id": link["id"], "self": f"{self.url}/rest/api/2/issue/{key}/remotelink/{link['id']}"},
                                status_code=201 if created else 200)
        return _failure(405, f"Method {method} is not allowed here.")

    def _property(self, issue: dict[str, Any], name: str, method: str, body: Any) -> Response:
        if method == "GET":
            if name not in issue["properties"]:
                return _failure(404, f"The property with key '{name}' does not exist.")
            return JSONResponse({"key": name, "value": issue["properties"][name]})
        if method == "PUT":
            with self.state._lock:
                created = name not in issue["properties"]
                issue["properties"][name] = body
            return Response(status_code=201 if created else 200)
        return _failure(405, f"Method {method} is not allowed here.")

    def _search(self, request: Mapping[str, Any], *, v3: bool) -> Response:
        """``/search/jql``: a page of matching issues, and an opaque ``nextPageToken`` unless it is the last."""
        jql = str(request.get("jql") or "")
        if not jql.strip():
            return _failure(400, "Unbounded JQL queries are not allowed here. Please add a search restriction.")
        query = parse_jql(jql)
        try:
            size = max(1, min(MAX_PAGE, int(request.get("maxResults") or 50)))
        except (TypeError, ValueError):
            return _failure(400, "maxResults must be a number.")
        offset = 0
        token = request.get("nextPageToken")
        if token:
            offset = _read_token(str(token), jql)
            if offset is None:
                return _failure(400, "The provided next page token is invalid or expired.")
        found = self.state.search(query)
        page = found[offset:offset + size]
        fields = request.get("fields") or ["id"]
        fields = _split(fields) if isinstance(fields, str) else [f for v in fields for f in _split(v)]
        expand = request.get("expand") or ""
        expand = ",".join(expand) if isinstance(expand, list) else str(expand)
        props = request.get("properties") or []
        props = _split(props) if isinstance(props, str) else list(props)
        issues = [self.render(issue, fields=fields, expand=expand, properties=props, v3=v3) for issue in page]
        result: dict[str, Any] = {"issues": issues, "isLast": offset + size >= len(found)}
        if not result["isLast"]:
            result["nextPageToken"] = _make_token(offset + size, jql)
        return JSONResponse(result)


def _query_dict(request: Request) -> dict[str, Any]:
    params = request.query_params
    data: dict[str, Any] = {key: params.get(key) for key in params}
    data["fields"] = params.getlist("fields")
    data["properties"] = params.getlist("properties")
    return data


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _make_token(offset: int, jql: str) -> str:
    digest = hashlib.sha256(jql.encode()).hexdigest()[:12]
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": digest}).encode()).decode().rstrip("=")


def _read_token(token: str, jql: str) -> int | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return offset if data.get("q") == hashlib.sha256(jql.encode()).hexdigest()[:12] and offset >= 0 else None
