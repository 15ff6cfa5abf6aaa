"""A loopback stand-in for PagerDuty: the REST v2 endpoints the connector uses, and webhooks v3 out.

Faithful where the connector depends on it: ``Authorization: Token token=...`` (401 otherwise),
``From`` required on writes (400 code 2016 when missing, 1008 when the user is unknown), error bodies
``{"error":{"message","code","errors"}}``, offset pagination ``{limit,offset,more,total}`` (``total``
null unless ``total=true``; limit 25 by default, at most 100; 400 past offset+limit 10000),
``since``/``until`` on creation time, ``ratelimit-*`` headers and 429 code 2020 without Retry-After.
Injected faults (`Faults`) come on top: 5xx, 429 *with* Retry-After, resets and slow answers.

The control API (`trigger`, `acknowledge`, ...) plays responders for the demo and the tests; every
change, whoever makes it, is sent as a signed v3 webhook when a webhook URL is set.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bridge.model import parse_time
from connectors.pagerduty.sim_delivery import WebhookSender
from connectors.pagerduty.sim_state import (
    DEFAULT_PRIORITIES, DEFAULT_SERVICES, DEFAULT_USERS, HTML_BASE, SimAccount, SimError, SimIncident,
)
from connectors.simulator import Faults, ServerThread, free_port, install_faults

SORT_KEYS: dict[str, Callable[[SimIncident], Any]] = {
    "created_at": lambda i: i.created_at, "incident_number": lambda i: i.number,
    "resolved_at": lambda i: i.resolved_at or datetime.min.replace(tzinfo=timezone.utc),
    "urgency": lambda i: i.urgency,
}


def _error(status: int) -> dict[str, Any]:
    if status == 429:
        return SimError(429, 2020, "Rate Limit Exceeded").body()
    return SimError(status, 2000, "An unexpected error occurred.").body()


class _RateWindow:
    """PagerDuty's per-minute request budget, reported in ``ratelimit-*`` headers."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.start, self.lock = limit, 0, time.monotonic(), threading.Lock()

    def take(self) -> tuple[bool, dict[str, str]]:
        with self.lock:
            now = time.monotonic()
            if now - self.start >= 60:
                self.start, self.count = now, 0
            self.count += 1
            reset = max(1, int(60 - (now - self.start)))
            headers = {"ratelimit-limit": str(self.limit), "ratelimit-remaining": str(max(0, self.limit - self.count)),
                       "ratelimit-reset": str(reset)}
            return self.count <= self.limit, headers


def _paginate(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    query = request.query_params
    try:
        limit = min(int(query.get("limit", 25)), 100)
        offset = int(query.get("offset", 0))
    except ValueError as exc:
        raise SimError(400, 2001, "Invalid Input Provided", ["limit and offset must be integers"]) from exc
    if limit < 1 or offset < 0:
        raise SimError(400, 2001, "Invalid Input Provided", ["limit must be positive and offset not negative"])
    if offset + limit > 10_000:
        raise SimError(400, 2001, "Invalid Input Provided",
                       ["Offset must be less than 10000 (offset + limit); narrow the query"])
    page = items[offset:offset + limit]
    total = len(items) if query.get("total") == "true" else None
    return {key: page, "limit": limit, "offset": offset, "more": offset + limit < len(items), "total": total}


def _since_until(request: Request, now: datetime) -> tuple[datetime | None, datetime | None]:
    query = request.query_params
    if query.get("date_range") == "all":
        return None, None
    try:
        since, until = parse_time(query.get("since")), parse_time(query.get("until"))
    except ValueError as exc:
        raise SimError(400, 2004, "Invalid 'since' or 'until' Parameter Values", [str(exc)]) from exc
    until = until or now
    since = since or until - timedelta(days=30)
    if until - since > timedelta(days=180):
        raise SimError(400, 2005, "Invalid Query Date Range", ["The date range may be at most 6 months"])
    return since, until


def build_app(sim: PagerDutySimulator) -> FastAPI:
    """The REST app over `sim.account`; auth, ``From`` and rate limits are checked in one middleware."""
    app = FastAPI(title="PagerDuty simulator", docs_url=None, redoc_url=None, openapi_url=None)
    account = sim.account
    window = _RateWindow(sim.rate_limit)

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.headers.get("authorization") != f"Token token={sim.token}":
            return JSONResponse(SimError(401, 2006, "Authentication failed").body(), status_code=401)
        allowed, headers = window.take()
        if not allowed:
            return JSONResponse(_error(429), status_code=429, headers=headers)
        if request.method in ("POST", "PUT"):
            sender = request.headers.get("from")
            if not sender:
                error = SimError(400, 2016, "You must specify a user's email address in the \"From\" header "
                                            "to perform this action")
                return JSONResponse(error.body(), status_code=400, headers=headers)
            try:
                request.state.actor = account.user_id(sender)
            except SimError as exc:
                return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        response = await call_next(request)
        response.headers.update(headers)
        return response

    install_faults(app, sim.faults, applies=lambda _path: True, error_body=_error)

    async def body_of(request: Request, key: str) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise SimError(400, 2001, "Invalid Input Provided", ["Body is not valid JSON"]) from exc
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise SimError(400, 2001, "Invalid Input Provided", [f"{key} is required"])
        return data[key]

    @app.get("/incidents")
    def list_incidents(request: Request) -> dict[str, Any]:
        query = request.query_params
        with account.lock:
            since, until = _since_until(request, account.clock())
            statuses, urgencies = query.getlist("statuses[]"), query.getlist("urgencies[]")
            services = query.getlist("service_ids[]")
            found = [i for i in account.incidents.values()
                     if (since is None or since <= i.created_at < until)  # type: ignore[operator]
                     and (not statuses or i.status in statuses) and (not urgencies or i.urgency in urgencies)
                     and (not services or i.service_id in services)
                     and (not query.get("incident_key") or i.incident_key == query.get("incident_key"))]
            field, _, order = (query.get("sort_by") or "created_at:asc").partition(":")
            if field not in SORT_KEYS:
                raise SimError(400, 2001, "Invalid Input Provided", [f"Cannot sort by {field!r}"])
            found.sort(key=SORT_KEYS[field], reverse=order == "desc")
            include_body = "body" in query.getlist("include[]")
            rendered = [account.rest_incident(i, include_body=include_body) for i in found]
        return _paginate(request, rendered, "incidents")

    @app.post("/incidents", status_code=201)
    async def create_incident(request: Request) -> dict[str, Any]:
        data = await body_of(request, "incident")
        service = data.get("service") if isinstance(data.get("service"), dict) else {}
        if data.get("type") != "incident" or not data.get("title") or not service.get("id"):
            raise SimError(400, 2001, "Invalid Input Provided", ["incident needs type 'incident', title and service"])
        details = (data.get("body") or {}).get("details") if isinstance(data.get("body"), dict) else None
        inc = account.create(service=service["id"], title=str(data["title"]), actor=request.state.actor,
                             urgency=data.get("urgency") or "high", priority=data.get("priority"),
                             incident_key=data.get("incident_key"), details=details)
        with account.lock:
            return {"incident": account.rest_incident(inc)}

    @app.get("/incidents/{incident_id}")
    def get_incident(incident_id: str, request: Request) -> dict[str, Any]:
        with account.lock:
            include_body = "body" in request.query_params.getlist("include[]")
            return {"incident": account.rest_incident(account.get(incident_id), include_body=include_body)}

    @app.put("/incidents/{incident_id}")
    async def update_incident(incident_id: str, request: Request) -> dict[str, Any]:
        changes = await body_of(request, "incident")
        if changes.get("type") not in ("incident", "incident_reference"):
            raise SimError(400, 2001, "Invalid Input Provided", ["incident.type must be incident_reference"])
        inc = account.update_fields(incident_id, changes, request.state.actor)
        with account.lock:
            return {"incident": account.rest_incident(inc)}

    @app.get("/incidents/{incident_id}/notes")
    def list_notes(incident_id: str) -> dict[str, Any]:
        with account.lock:
            return {"notes": [account.rest_note(n) for n in account.get(incident_id).notes]}

    @app.post("/incidents/{incident_id}/notes")
    async def create_note(incident_id: str, request: Request) -> dict[str, Any]:
        note = await body_of(request, "note")
        created = account.add_note(incident_id, note.get("content"), request.state.actor)  # type: ignore[arg-type]
        with account.lock:
            return {"note": account.rest_note(created)}  # 200, not 201, as PagerDuty answers

    @app.get("/users")
    def list_users(request: Request) -> dict[str, Any]:
        text = (request.query_params.get("query") or "").lower()
        users = [sim.user_json(user_id) for user_id, user in account.users.items()
                 if text in user["name"].lower() or text in user["email"].lower()]
        return _paginate(request, users, "users")

    @app.get("/services")
    def list_services(request: Request) -> dict[str, Any]:
        return _paginate(request, [sim.service_json(s) for s in account.services], "services")

    @app.get("/priorities")
    def list_priorities(request: Request) -> dict[str, Any]:
        return _paginate(request, [{**account.rest_priority(p), "html_url": f"{HTML_BASE}/account/incident_priorities"}
                                   for p in account.priorities], "priorities")

    return app


class PagerDutySimulator:
    """The PagerDuty simulator: `start()` serves it on loopback, control methods play responders.

    `webhook_secret` signs outgoing webhooks (``rotate_webhook_secret`` signs with two during a
    rotation). `wait_idle(timeout)` returns True once every queued webhook was delivered or dropped.
    """

    def __init__(self, *, token: str = "sim-pd-token", webhook_secret: str = "sim-pd-webhook-secret",
                 webhook_url: str | None = None, faults: Faults | None = None, host: str = "127.0.0.1",
                 port: int = 0, services: tuple[str, ...] = DEFAULT_SERVICES,
                 users: dict[str, tuple[str, str]] | None = None, priorities: tuple[str, ...] = DEFAULT_PRIORITIES,
                 rate_limit: int = 960, webhook_backoff: float = 0.2, webhook_max_backoff: float = 2.0,
                 webhook_max_attempts: int | None = None, seed: int = 1,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.token = token
        self.faults = faults or Faults()
        self.rate_limit = rate_limit
        self._secrets = [webhook_secret]
        self._server: ServerThread | None = None
        self._host, self._port = host, port or free_port(host)
        self.account = SimAccount(api_url=self.url, emit=self._emit, services=services,
                                  users=users or dict(DEFAULT_USERS), priorities=priorities, seed=seed,
                                  **({"clock": clock} if clock else {}))
        self.webhooks = WebhookSender(secrets=lambda: list(self._secrets), subscription_id="PSUBSIM1",
                                      new_id=self.account.new_uuid, url=webhook_url, backoff=webhook_backoff,
                                      max_backoff=webhook_max_backoff, max_attempts=webhook_max_attempts)

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> PagerDutySimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.stop()

    def set_webhook_url(self, url: str | None) -> None:
        """Start (or stop, with None) sending webhooks; events before this were not queued."""
        self.webhooks.set_url(url)

    def rotate_webhook_secret(self, new_secret: str, *, keep_old: bool = True) -> None:
        """Sign with `new_secret` too (both ``v1=`` entries sent) or, with keep_old False, only with it."""
        with self.account.lock:
            self._secrets = ([*self._secrets[-1:], new_secret] if keep_old else [new_secret])

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Block until every queued webhook was delivered or dropped; False when `timeout` ran out."""
        return self.webhooks.wait_idle(timeout)

    def _emit(self, envelope: dict[str, Any]) -> None:
        self.webhooks.enqueue(envelope)

    # -- control API (plays responders; each change fires its webhook) --------------------------------
    def trigger(self, service_name: str, title: str, *, urgency: str = "high", user: str = "alice",
                priority: str | None = None) -> str:
        return self.account.create(service=service_name, title=title, actor=self.account.user_id(user),
                                   urgency=urgency, priority=priority).id

    def acknowledge(self, incident_id: str, user: str) -> str:
        return self.account.set_status(incident_id, "acknowledged", self.account.user_id(user)).id

    def unacknowledge(self, incident_id: str, user: str | None = None) -> str:
        return self.account.unacknowledge(incident_id, self.account.user_id(user) if user else None).id

    def resolve(self, incident_id: str, user: str) -> str:
        return self.account.set_status(incident_id, "resolved", self.account.user_id(user)).id

    def reopen(self, incident_id: str, user: str) -> str:
        if self.incident(incident_id)["status"] != "resolved":
            raise SimError(400, 2001, "Invalid Input Provided", ["Only a resolved incident can be reopened"])
        return self.account.set_status(incident_id, "triggered", self.account.user_id(user)).id

    def add_note(self, incident_id: str, content: str, user: str) -> str:
        return self.account.add_note(incident_id, content, self.account.user_id(user))["id"]

    def set_priority(self, incident_id: str, priority: str | None, user: str) -> str:
        return self.account.set_priority(incident_id, priority, self.account.user_id(user)).id

    def reassign(self, incident_id: str, to_user: str, user: str) -> str:
        return self.account.reassign(incident_id, [self.account.user_id(to_user)], self.account.user_id(user)).id

    def escalate(self, incident_id: str, user: str) -> str:
        return self.account.escalate(incident_id, self.account.user_id(user)).id

    # -- readers --------------------------------------------------------------------------------------
    def incident(self, incident_id: str) -> dict[str, Any]:
        with self.account.lock:
            return self.account.rest_incident(self.account.get(incident_id))

    def incidents(self) -> list[dict[str, Any]]:
        with self.account.lock:
            return [self.account.rest_incident(i) for i in self.account.incidents.values()]

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        with self.account.lock:
            return [self.account.rest_note(n) for n in self.account.get(incident_id).notes]

    def user_json(self, user_id: str) -> dict[str, Any]:
        user = self.account.users[user_id]
        return {**self.account.user_ref(user_id), "type": "user", "name": user["name"], "email": user["email"],
                "time_zone": "Etc/UTC", "color": "green", "role": "user", "description": None,
                "invitation_sent": False, "job_title": "Site Reliability Engineer", "teams": [self.account.team],
                "contact_methods": [], "notification_rules": []}

    def service_json(self, service_id: str) -> dict[str, Any]:
        return {**self.account.service_ref(service_id), "type": "service",
                "name": self.account.services[service_id]["name"], "description": "", "status": "active",
                "escalation_policy": self.account.policy_ref(service_id), "teams": [self.account.team],
                "alert_creation": "create_alerts_and_incidents", "incident_urgency_rule": {"type": "constant",
                                                                                          "urgency": "high"}}
