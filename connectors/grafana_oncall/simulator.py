"""A loopback stand-in for Grafana OnCall: the public API v1 parts the connector uses, and outgoing webhooks.

Faithful where the connector depends on it: ``Authorization: <token>`` with no scheme (403 ``{"detail":
"Invalid token."}`` otherwise), DRF error bodies, page-number pagination (``page``, ``perpage`` up to 100,
``{count, next, previous, results, page_size, current_page_number, total_pages}``, 404 "Invalid page."),
the alert group filters (``state`` new|acknowledged|resolved|silenced, ``started_at`` range, ids),
newest first, the six state actions with their 400 refusals, resolution notes, integrations, users,
direct paging, and 300 requests per minute (429 with ``Retry-After`` and ``RateLimit-Reset``).
Paths answer with and without the trailing slash. Injected faults (`Faults`) come on top.

Webhooks go out as OnCall's "Forward All" body with the configured Authorization Header (the bare
secret, or ``<auth_scheme> <secret>``). Like OnCall, a delivery is retried only when the request
fails (connection error, timeout), up to three more times; any HTTP answer, even 5xx, ends it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connectors.grafana_oncall.sim_state import TOKEN_USER, SimError, SimOrg, select
from connectors.pagerduty.sim_delivery import Delivery, WebhookSender
from connectors.simulator import Faults, ServerThread, free_port, install_faults

ACTIONS = ("acknowledge", "unacknowledge", "resolve", "unresolve", "silence", "unsilence")


class OncallWebhookSender(WebhookSender):
    """The shared sequential sender with OnCall's body, Authorization header and retry rule."""

    def __init__(self, *, authorization: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(secrets=list, subscription_id="", **kwargs)
        self.authorization = authorization

    def enqueue(self, envelope: dict[str, Any]) -> None:
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            self._queue.append(Delivery(self.new_id(), envelope["event"]["type"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def _attempt(self, delivery: Delivery, url: str) -> str | None:
        headers = {"Content-Type": "application/json", "Authorization": self.authorization()}
        try:
            response = self._http.post(url, data=delivery.body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"retry:{type(exc).__name__}"
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _page(request: Request, items: list[Any]) -> dict[str, Any]:
    """DRF PageNumberPagination as OnCall extends it."""
    query = request.query_params
    size = min(max(_int(query.get("perpage"), 50), 1), 100)
    if not (query.get("page") or "1").isdigit() or int(query.get("page") or 1) < 1:
        raise SimError(404, "Invalid page.")
    number, pages = int(query.get("page") or 1), max(1, -(-len(items) // size))
    if number > pages:
        raise SimError(404, "Invalid page.")
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
    link = lambda n: f"{base}?{urlencode({**query, 'page': n})}"
    return {"count": len(items), "next": link(number + 1) if number < pages else None,
            "previous": link(number - 1) if number > 1 else None, "results": items[(number - 1) * size: number * size],
            "current_page_number": number, "page_size": size, "total_pages": pages}


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise SimError(400, f"JSON parse error - {exc}") from exc
    if not isinstance(data, dict):
        raise SimError(400, "Invalid data. Expected a dictionary.")
    return data


def build_app(sim: GrafanaOncallSimulator) -> FastAPI:
    app = FastAPI(title="Grafana OnCall simulator", docs_url=None, redoc_url=None, openapi_url=None)
    org = sim.org

    def route(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            for variant in {path.rstrip("/"), path.rstrip("/") + "/"}:
                app.add_api_route(variant, handler, methods=[method])
            return handler
        return register

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.headers.get("authorization") != sim.api_token:
            return JSONResponse({"detail": "Invalid token."}, status_code=403)
        wait = sim.take_token()
        if wait:
            return JSONResponse({"detail": f"Request was throttled. Expected available in {wait} seconds."},
                                status_code=429, headers={"Retry-After": str(wait), "RateLimit-Reset": str(wait)})
        return await call_next(request)

    install_faults(app, sim.faults, applies=lambda path: path.startswith("/api/"),
                   error_body=lambda status: {"detail": "Request was throttled." if status == 429 else "A server error occurred."})

    @route("GET", "/api/v1/alert_groups/")
    def list_groups(request: Request) -> JSONResponse:
        with org.lock:
            return JSONResponse(_page(request, [org.rest(g) for g in select(org, request.query_params)]))

    @route("GET", "/api/v1/alert_groups/{group_id}/")
    def get_group(group_id: str) -> JSONResponse:
        with org.lock:
            return JSONResponse(org.rest(org.get(group_id)))

    @route("POST", "/api/v1/alert_groups/{group_id}/{action}/")
    async def group_action(group_id: str, action: str, request: Request) -> Response:
        if action not in ACTIONS:
            raise SimError(404, "Not found.")
        data = await _json(request)
        delay = data.get("delay")
        if action == "silence" and delay is not None and not isinstance(delay, int):
            raise SimError(400, "invalid delay value")
        org.act(group_id, action, TOKEN_USER, delay=delay)
        return Response(status_code=200)

    @route("GET", "/api/v1/resolution_notes/")
    def list_notes(request: Request) -> JSONResponse:
        wanted = request.query_params.get("alert_group_id")
        with org.lock:
            groups = sorted(org.groups.values(), key=lambda g: g.created_at)
            notes = [org.note_rest(n) for g in groups if not wanted or g.id == wanted for n in g.notes]
            return JSONResponse(_page(request, notes))

    @route("POST", "/api/v1/resolution_notes/")
    async def create_note(request: Request) -> JSONResponse:
        data = await _json(request)
        if not data.get("alert_group_id"):
            raise SimError(400, {"alert_group_id": ["This field is required."]})
        note = org.add_note(str(data["alert_group_id"]), data.get("text"), TOKEN_USER)
        with org.lock:
            return JSONResponse(org.note_rest(note), status_code=201)

    @route("GET", "/api/v1/resolution_notes/{note_id}/")
    def get_note(note_id: str) -> JSONResponse:
        with org.lock:
            group = org.get(org.note_index.get(note_id, ""))
            return JSONResponse(org.note_rest(next(n for n in group.notes if n["id"] == note_id)))

    @route("GET", "/api/v1/integrations/{integration_id}/")
    def get_integration(integration_id: str) -> JSONResponse:
        with org.lock:
            found = next((i for i in org.integrations.values() if i["id"] == integration_id), None)
            if found is None:
                raise SimError(404, "Not found.")
            return JSONResponse({"id": found["id"], "name": found["name"], "description_short": None,
                                 "team_id": found["team_id"], "type": found["type"],
                                 "link": f"https://oncall.example.com/integrations/v1/{found['type']}/x/"})

    @route("GET", "/api/v1/users/{user_id}/")
    def get_user(user_id: str) -> JSONResponse:
        with org.lock:
            handle = org.handle_of(user_id)
            if handle is None:
                raise SimError(404, "Not found.")
            user = org.users[handle]
            return JSONResponse({**user, "slack": [], "teams": [org.team["id"]], "timezone": "UTC",
                                 "is_phone_number_verified": False})

    @route("POST", "/api/v1/escalation/")
    async def escalation(request: Request) -> JSONResponse:
        data = await _json(request)
        users = data.get("users") if isinstance(data.get("users"), list) else []
        if not data.get("alert_group_id"):
            raise SimError(400, "The simulator pages existing alert groups only (alert_group_id)")
        group = org.page(str(data["alert_group_id"]), [str(u.get("id")) for u in users if isinstance(u, dict)])
        with org.lock:
            return JSONResponse({k: v for k, v in org.rest(group).items() if k not in ("labels", "last_alert")})

    return app


class GrafanaOncallSimulator:
    """The Grafana OnCall simulator: `start()` serves it on loopback; control methods play responders."""

    def __init__(self, *, api_token: str = "sim-oncall-token", webhook_secret: str = "sim-oncall-webhook-secret",
                 auth_scheme: str = "", webhook_url: str | None = None, faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, rate_limit: int = 300, webhook_backoff: float = 0.2,
                 webhook_max_backoff: float = 2.0, webhook_max_attempts: int | None = 4, seed: int = 1,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api_token, self.webhook_secret, self.auth_scheme = api_token, webhook_secret, auth_scheme
        self.faults, self.rate_limit = faults or Faults(), rate_limit
        self._window, self._rate_lock = (time.monotonic(), 0), threading.Lock()
        self._host, self._port = host, port or free_port(host)
        self._server: ServerThread | None = None
        self.org = SimOrg(emit=self._emit, seed=seed, **({"clock": clock} if clock else {}))
        self.webhooks = OncallWebhookSender(authorization=self._authorization, new_id=lambda: self.org.new_key("W"),
                                            url=webhook_url, backoff=webhook_backoff,
                                            max_backoff=webhook_max_backoff, max_attempts=webhook_max_attempts)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> GrafanaOncallSimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.stop()

    def _authorization(self) -> str:
        return f"{self.auth_scheme} {self.webhook_secret}" if self.auth_scheme else self.webhook_secret

    def take_token(self) -> int:
        """0 when the request fits this minute's budget, else the seconds until the window resets."""
        with self._rate_lock:
            start, count = self._window
            if time.monotonic() - start >= 60:
                start, count = time.monotonic(), 0
            self._window = (start, count + 1)
            return 0 if count + 1 <= self.rate_limit else max(1, int(60 - (time.monotonic() - start)))

    def set_webhook_url(self, url: str | None) -> None:
        self.webhooks.set_url(url)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        return self.webhooks.wait_idle(timeout)

    def _emit(self, body: dict[str, Any]) -> None:
        self.webhooks.enqueue(body)

    # -- control API (plays responders and alert sources; each change fires its webhook) ---------------
    def trigger(self, service: str, title: str, *, user: str = "alice", priority: str | None = None) -> str:
        """An alert from the integration named `service` opens an alert group; `priority` becomes its
        ``severity`` label. `user` (who raised it) is only checked: an integration alert has no user."""
        self.org.user(user)
        labels = {"severity": priority} if priority else {}
        return self.org.create(title=title, integration=service, labels=labels, payload=_payload(title, service, labels)).id

    def acknowledge(self, group_id: str, user: str) -> str:
        return self.org.act(group_id, "acknowledge", self._handle(user)).id

    def unacknowledge(self, group_id: str, user: str) -> str:
        return self.org.act(group_id, "unacknowledge", self._handle(user)).id

    def resolve(self, group_id: str, user: str) -> str:
        return self.org.act(group_id, "resolve", self._handle(user)).id

    def unresolve(self, group_id: str, user: str) -> str:
        return self.org.act(group_id, "unresolve", self._handle(user)).id

    def silence(self, group_id: str, user: str, delay: int = -1) -> str:
        return self.org.act(group_id, "silence", self._handle(user), delay=delay).id

    def unsilence(self, group_id: str, user: str) -> str:
        return self.org.act(group_id, "unsilence", self._handle(user)).id

    def escalate(self, group_id: str) -> str:
        return self.org.escalation_step(group_id).id

    def notify(self, group_id: str, user: str) -> str:
        return self.org.notify(group_id, user).id

    def add_note(self, group_id: str, text: str, user: str) -> str:
        return self.org.add_note(group_id, text, self._handle(user))["id"]

    def set_priority(self, group_id: str, value: str, user: str) -> str:
        """A new alert with severity `value` joins the group and updates its label (no webhook, as in
        OnCall: labels are not an event; the poll sees the change)."""
        self._handle(user)
        with self.org.lock:
            group = self.org.get(group_id)
            labels = {"severity": value}
            self.org.add_alert(group_id, _payload(group.title, group.integration, labels), labels)
        return group_id

    def _handle(self, user: str) -> str:
        self.org.user(user)
        return user

    # -- readers --------------------------------------------------------------------------------------
    def incident(self, group_id: str) -> dict[str, Any]:
        with self.org.lock:
            return self.org.rest(self.org.get(group_id))

    def incidents(self) -> list[dict[str, Any]]:
        with self.org.lock:
            return [self.org.rest(g) for g in self.org.groups.values()]

    def notes(self, group_id: str) -> list[dict[str, Any]]:
        with self.org.lock:
            return [self.org.note_rest(n) for n in self.org.get(group_id).notes]

    def user_id(self, handle: str) -> str:
        return str(self.org.user(handle)["id"])


def _payload(title: str, service: str, labels: dict[str, str]) -> dict[str, Any]:
    """An Alertmanager-style alert payload, as the integration received it."""
    return {"status": "firing", "labels": {"alertname": title, "service": service, **labels},
            "annotations": {"summary": title}, "generatorURL": "", "startsAt": "", "endsAt": "0001-01-01T00:00:00Z"}
