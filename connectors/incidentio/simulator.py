"""A loopback stand-in for incident.io: the REST endpoints the connector uses, and Svix-signed webhooks out.

Faithful where the connector depends on it: ``Authorization: Bearer <key>`` (401 otherwise), error bodies
``{type, status, request_id, errors:[{code, message, source}]}``, cursor pagination (``page_size`` 25 by
default, 422 above 250; ``after`` = the last id of the previous page; ``pagination_meta{after, page_size,
total_record_count}``), ``updated_at[gte]``, a 1200/min budget answered with 429
``{type:"too_many_requests", rate_limit:{limit, remaining, retry_after}}``. Injected `Faults` come on top.
Webhooks: one event per POST, ``{"event_type": T, T: payload}``, headers ``webhook-id``/``-timestamp``/
``-signature``; Svix retries every non-2xx answer with the same ``webhook-id``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bridge.model import parse_time
from connectors.incidentio.sim_state import SimError, SimIncident, SimOrg
from connectors.incidentio.webhooks import signed_headers
from connectors.pagerduty.sim_delivery import Delivery, WebhookSender
from connectors.simulator import Faults, ServerThread, free_port, install_faults

MAX_PAGE = 250


class SvixSender(WebhookSender):
    """PagerDuty's sequential sender, speaking Svix: signed ``id.timestamp.body``, every non-2xx retried."""

    def enqueue(self, envelope: dict[str, Any]) -> None:  # type: ignore[override]
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            self._queue.append(Delivery("msg_" + self.new_id(), envelope["event_type"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def _attempt(self, delivery: Delivery, url: str) -> str | None:
        headers = {"Content-Type": "application/json", "User-Agent": "Svix-Webhooks/1.0",
                   **signed_headers(self.secrets(), delivery.webhook_id, int(time.time()), delivery.body)}
        try:
            response = self._http.post(url, data=delivery.body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"retry:{type(exc).__name__}"
        return None if 200 <= response.status_code < 300 else f"retry:HTTP {response.status_code}"


def _rate_limited(limit: int) -> dict[str, Any]:
    retry_at = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    return {**SimError(429, "too_many_requests", "Rate limit exceeded").body(),
            "rate_limit": {"limit": limit, "remaining": 0, "retry_after": retry_at}}


def _page(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    query = request.query_params
    try:
        size = int(query.get("page_size", 25))
    except ValueError as exc:
        raise SimError(422, "invalid_value", "page_size must be an integer", field_name="page_size") from exc
    if not 1 <= size <= MAX_PAGE:
        raise SimError(422, "invalid_value", f"page_size must be between 1 and {MAX_PAGE}", field_name="page_size")
    start = 0
    if query.get("after"):
        ids = [item["id"] for item in items]
        if query["after"] not in ids:
            raise SimError(422, "invalid_value", "after must be the id of a listed item", field_name="after")
        start = ids.index(query["after"]) + 1
    page = items[start:start + size]
    more = start + size < len(items)
    return {key: page, "pagination_meta": {"after": page[-1]["id"] if page and more else None,
                                           "page_size": size, "total_record_count": len(items)}}


def build_app(sim: IncidentioSimulator) -> FastAPI:
    app = FastAPI(title="incident.io simulator", docs_url=None, redoc_url=None, openapi_url=None)
    org = sim.org
    window = {"start": time.monotonic(), "count": 0}
    lock = threading.Lock()

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.headers.get("authorization") != f"Bearer {sim.api_key}":
            error = SimError(401, "unauthenticated", "Authentication failed: provide a valid API key as Bearer")
            return JSONResponse(error.body(), status_code=401)
        with lock:
            if time.monotonic() - window["start"] >= 60:
                window["start"], window["count"] = time.monotonic(), 0
            window["count"] += 1
            over = window["count"] > sim.rate_limit
        if over:
            return JSONResponse(_rate_limited(sim.rate_limit), status_code=429)
        return await call_next(request)

    install_faults(app, sim.faults, applies=lambda _path: True,
                   error_body=lambda status: _rate_limited(sim.rate_limit) if status == 429
                   else SimError(status, "internal_error", "Something went wrong").body())

    @app.get("/v2/incidents")
    def list_incidents(request: Request) -> dict[str, Any]:
        try:
            since = parse_time(request.query_params.get("updated_at[gte]"))
        except ValueError as exc:
            raise SimError(422, "invalid_value", "updated_at[gte] must be a date-time",
                           field_name="updated_at[gte]") from exc
        with org.lock:
            found = sorted((i for i in org.incidents.values() if since is None or i.updated_at >= since),
                           key=lambda i: i.created_at, reverse=True)  # newest first, as incident.io lists
            return _page(request, [org.incident_json(i) for i in found], "incidents")

    @app.get("/v2/incidents/{incident_id}")
    def get_incident(incident_id: str) -> dict[str, Any]:
        with org.lock:
            return {"incident": org.incident_json(org.get(incident_id))}

    @app.post("/v2/incidents/{incident_id}/actions/edit")
    async def edit_incident(incident_id: str, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise SimError(400, "bad_request", "Body is not valid JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("incident"), dict):
            raise SimError(422, "missing_field", "incident is required", field_name="incident")
        if not isinstance(data.get("notify_incident_channel"), bool):
            raise SimError(422, "missing_field", "notify_incident_channel is required",
                           field_name="notify_incident_channel")
        inc = org.edit(incident_id, data["incident"], sim.api_key_actor)
        with org.lock:
            return {"incident": org.incident_json(inc)}

    @app.get("/v1/incident_statuses")
    def statuses() -> dict[str, Any]:
        return {"incident_statuses": [org.status_json(i) for i in org.statuses]}

    @app.get("/v1/severities")
    def severities() -> dict[str, Any]:
        return {"severities": [org.severity_json(i) for i in org.severities]}

    @app.get("/v2/incident_updates")
    def incident_updates(request: Request) -> dict[str, Any]:
        wanted = request.query_params.get("incident_id")
        with org.lock:
            updates = [u for i in org.incidents.values() if not wanted or i.id == wanted for u in i.updates]
            return _page(request, sorted(updates, key=lambda u: u["created_at"], reverse=True), "incident_updates")

    return app


class IncidentioSimulator:
    """The incident.io simulator: `start()` serves it on loopback; control methods play responders."""

    def __init__(self, *, api_key: str = "sim-incidentio-key",
                 webhook_secret: str = "whsec_c2ltLWluY2lkZW50aW8td2ViaG9vay1zZWNyZXQ=",
                 webhook_url: str | None = None, faults: Faults | None = None, host: str = "127.0.0.1",
                 port: int = 0, rate_limit: int = 1200, webhook_backoff: float = 0.2,
                 webhook_max_backoff: float = 2.0, webhook_max_attempts: int | None = None, seed: int = 1,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api_key, self.faults, self.rate_limit = api_key, faults or Faults(), rate_limit
        self._secrets = [webhook_secret]
        self._host, self._port = host, port or free_port(host)
        self._server: ServerThread | None = None
        self.org = SimOrg(emit=self._emit, seed=seed, **({"clock": clock} if clock else {}))
        self.api_key_actor = self.org.user_id("alice")  # writes made with the key are shown as its owner
        self.webhooks = SvixSender(secrets=lambda: list(self._secrets), subscription_id="ep_sim",
                                   new_id=self.org.new_id, url=webhook_url, backoff=webhook_backoff,
                                   max_backoff=webhook_max_backoff, max_attempts=webhook_max_attempts)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> IncidentioSimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.stop()

    def set_webhook_url(self, url: str | None) -> None:
        self.webhooks.set_url(url)

    def rotate_webhook_secret(self, new_secret: str, *, keep_old: bool = True) -> None:
        with self.org.lock:
            self._secrets = [*self._secrets[-1:], new_secret] if keep_old else [new_secret]

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        return self.webhooks.wait_idle(timeout)

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self.webhooks.enqueue({"event_type": event_type, event_type: payload})

    # -- control API ----------------------------------------------------------------------------------
    def trigger(self, service: str, title: str, *, user: str = "alice", priority: str | None = None,
                private: bool = False) -> str:
        """Report an incident in triage; `priority` is a severity name (Minor, Major, Critical)."""
        return self.org.create(name=title, actor=self.org.user_id(user), service=service, severity=priority,
                               visibility="private" if private else "public").id

    def acknowledge(self, incident_id: str, user: str) -> str:
        """Accept it: first live status, `user` becomes incident lead if there is none."""
        return self.org.set_status(incident_id, self.org.first_status("live"), self.org.user_id(user)).id

    def set_status(self, incident_id: str, status_name: str, user: str, *, message: str = "") -> str:
        status = next(i for i, s in self.org.statuses.items() if s["name"] == status_name)
        return self.org.set_status(incident_id, status, self.org.user_id(user), message=message).id

    def add_note(self, incident_id: str, text: str, user: str) -> str:
        """Post an incident update with a message only; returns the update's id."""
        return str(self.org.post_update(incident_id, text, self.org.user_id(user))["id"])

    def set_priority(self, incident_id: str, value: str, user: str) -> str:
        return self.org.edit(incident_id, {"severity_id": value}, self.org.user_id(user)).id

    def resolve(self, incident_id: str, user: str) -> str:
        return self.org.set_status(incident_id, self.org.first_status("closed"), self.org.user_id(user)).id

    def reopen(self, incident_id: str, user: str) -> str:
        return self.org.set_status(incident_id, self.org.first_status("live"), self.org.user_id(user)).id

    # -- readers --------------------------------------------------------------------------------------
    def incident(self, incident_id: str) -> dict[str, Any]:
        with self.org.lock:
            return self.org.incident_json(self.org.get(incident_id))

    def incidents(self) -> list[dict[str, Any]]:
        with self.org.lock:
            return [self.org.incident_json(i) for i in self.org.incidents.values()]

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's updates that carry a message, oldest first."""
        with self.org.lock:
            return [dict(u) for u in self.org.get(incident_id).updates if u.get("message")]


__all__ = ["IncidentioSimulator", "SimIncident", "SvixSender", "build_app"]
