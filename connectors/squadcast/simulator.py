"""A loopback stand-in for Squadcast: the token exchange, the API v3 parts the connector uses, and
outgoing webhooks (v2).

Faithful where the connector depends on it: ``GET /oauth/access-token`` with ``X-Refresh-Token``
answering ``{"data": {access_token, expires_at, issued_at, refresh_token, type}}`` (the auth host is
served here too); ``Authorization: Bearer <access token>`` on every ``/v3`` call, refused with 401 once the
token expired (``token_ttl``) or was revoked (`revoke_tokens`); errors as ``{"meta": {status,
error_message}}``; ``GET /v3/teams`` and ``/v3/services``; ``GET /v3/incidents/export`` (``type`` json|csv,
``start_time``, ``end_time``, ``owner_id`` required, selecting by creation time [!], no pagination);
``GET /v3/incidents/{id}``; ``POST .../acknowledge``, ``.../resolve`` (``resolution_reason.message``),
``.../reassign``; ``PATCH .../priority``; ``GET``/``POST .../warroom``; a per-minute request budget
(429 with ``Retry-After``; Squadcast's real limits and headers are not documented [!]). Injected faults
(`Faults`) come on top, on the API and token paths.

Webhooks are unsigned, as in Squadcast: the sender adds the additional header an admin would configure
(``X-Itsm-Bridge-Token: <webhook_secret>``) and, like Squadcast, retries any non-2xx answer up to 3 times.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bridge.model import parse_time
from connectors.pagerduty.sim_delivery import Delivery, WebhookSender
from connectors.simulator import Faults, ServerThread, free_port, install_faults
from connectors.squadcast.sim_state import SimError, SimOrg

USER_AGENT = "Squadcast-Webhooks"  # [!] the real User-Agent is not documented
CSV_COLUMNS = ("id", "title", "status", "service", "priority", "assignee", "created_at", "acknowledged_at",
               "resolved_at", "url")


class SquadcastWebhookSender(WebhookSender):
    """PagerDuty's sequential sender with Squadcast's body, the admin's additional header, and
    Squadcast's retry rule (any non-2xx, at most 3 retries)."""

    def __init__(self, *, header: str, token: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(secrets=list, subscription_id="", **kwargs)
        self.header, self.token = header, token

    def enqueue(self, envelope: dict[str, Any]) -> None:
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            self._queue.append(Delivery(envelope["event"]["id"], envelope["event"]["type"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def _attempt(self, delivery: Delivery, url: str) -> str | None:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, self.header: self.token()}
        try:
            response = self._http.post(url, data=delivery.body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"retry:{type(exc).__name__}"
        return None if 200 <= response.status_code < 300 else f"retry:HTTP {response.status_code}"


def _error(status: int) -> dict[str, Any]:
    return SimError(status, "rate limit exceeded" if status == 429 else "internal server error").body()


def _time_param(request: Request, name: str) -> datetime:
    value = request.query_params.get(name)
    if not value:
        raise SimError(400, f"{name} is required")
    try:
        moment = parse_time(value)
    except ValueError as exc:
        raise SimError(400, f"{name} must be an ISO 8601 time") from exc
    assert moment is not None
    return moment


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise SimError(400, "invalid request body") from exc
    if not isinstance(data, dict):
        raise SimError(400, "request body must be a JSON object")
    return data


def build_app(sim: SquadcastSimulator) -> FastAPI:
    app = FastAPI(title="Squadcast simulator", docs_url=None, redoc_url=None, openapi_url=None)
    org = sim.org

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.url.path.startswith("/v3/") and not sim.token_valid(request.headers.get("authorization", "")):
            return JSONResponse(SimError(401, "Unauthorized").body(), status_code=401)
        remaining = sim.take_request()
        headers = {"X-RateLimit-Limit": str(sim.rate_limit), "X-RateLimit-Remaining": str(max(0, remaining))}
        if remaining < 0:
            return JSONResponse(_error(429), status_code=429, headers={**headers, "Retry-After": "60"})
        response = await call_next(request)
        response.headers.update(headers)
        return response

    install_faults(app, sim.faults, applies=lambda path: path.startswith(("/v3/", "/oauth/")), error_body=_error)

    @app.get("/oauth/access-token")
    def access_token(request: Request) -> JSONResponse:
        given = request.headers.get("x-refresh-token", "")
        if not secrets.compare_digest(given.encode(), sim.refresh_token.encode()):
            raise SimError(401, "invalid refresh token")
        token, issued, expires = sim.issue_token()
        return JSONResponse({"data": {"access_token": token, "expires_at": expires, "issued_at": issued,
                                      "refresh_token": sim.refresh_token, "type": "bearer"}})

    @app.get("/v3/teams")
    def teams() -> JSONResponse:
        return JSONResponse({"data": [{**org.team, "slug": "default-team", "default": True}]})

    @app.get("/v3/services")
    def services() -> JSONResponse:
        with org.lock:
            return JSONResponse({"data": [{**s, "escalation_policy_id": s["escalation_policy"]["id"],
                                           "owner": {"id": org.team["id"], "type": "team"}}
                                          for s in org.services.values()]})

    @app.get("/v3/incidents/export")
    def export(request: Request) -> Response:
        kind = request.query_params.get("type")
        if kind not in ("json", "csv"):
            raise SimError(400, "type must be csv or json")
        start, end = _time_param(request, "start_time"), _time_param(request, "end_time")
        if start > end:
            raise SimError(400, "start_time must not be after end_time")
        if request.query_params.get("owner_id") != org.team["id"]:
            raise SimError(400, "owner_id must be a team id")
        with org.lock:
            # Squadcast keeps milliseconds: an incident is compared at the resolution the API has.
            items = [org.export_item(i) for i in sorted(org.incidents.values(), key=lambda i: i.created_at)
                     if start <= i.created_at.replace(microsecond=i.created_at.microsecond // 1000 * 1000) <= end]
        if kind == "json":
            return JSONResponse({"incidents": items})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(items)
        return Response(out.getvalue(), media_type="text/csv")

    @app.get("/v3/incidents/{incident_id}")
    def get_incident(incident_id: str) -> JSONResponse:
        with org.lock:
            return JSONResponse({"data": org.rest_incident(org.get(incident_id))})

    @app.post("/v3/incidents/{incident_id}/acknowledge")
    def acknowledge(incident_id: str) -> JSONResponse:
        org.acknowledge(incident_id, sim.api_user)
        return JSONResponse({"data": "Incident acknowledged successfully"})

    @app.post("/v3/incidents/{incident_id}/resolve")
    async def resolve(incident_id: str, request: Request) -> JSONResponse:
        reason = (await _json_body(request)).get("resolution_reason")
        message = reason.get("message") if isinstance(reason, dict) else None
        if sim.require_resolution_reason and not (isinstance(message, str) and message.strip()):
            raise SimError(400, "resolution_reason.message is mandatory for this organization")
        org.resolve(incident_id, sim.api_user, message if isinstance(message, str) else None)
        return JSONResponse({"data": "Incident resolved successfully"})

    @app.post("/v3/incidents/{incident_id}/reassign")
    async def reassign(incident_id: str, request: Request) -> JSONResponse:
        target = (await _json_body(request)).get("reassign_to")
        if not isinstance(target, dict) or target.get("type") not in ("user", "escalationpolicy", "squad"):
            raise SimError(400, "reassign_to must be {id, type} with type user, escalationpolicy or squad")
        inc = org.reassign(incident_id, str(target["type"]), str(target.get("id")), sim.api_user)
        with org.lock:
            return JSONResponse({"data": org.rest_incident(inc)})

    @app.patch("/v3/incidents/{incident_id}/priority")
    async def priority(incident_id: str, request: Request) -> JSONResponse:
        inc = org.set_priority(incident_id, (await _json_body(request)).get("priority"), sim.api_user)
        return JSONResponse({"data": {"id": inc.id, "priority": inc.priority or "UNSET"}})

    @app.get("/v3/incidents/{incident_id}/warroom")
    def list_notes(incident_id: str) -> JSONResponse:
        with org.lock:
            inc = org.get(incident_id)
            return JSONResponse({"data": [org.rest_note(inc, note) for note in inc.notes]})

    @app.post("/v3/incidents/{incident_id}/warroom", status_code=201)
    async def create_note(incident_id: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        if not isinstance(body.get("attachments", []), list):
            raise SimError(400, "attachments must be a list")
        note = org.add_note(incident_id, body.get("message"), sim.api_user)
        with org.lock:
            return JSONResponse({"data": org.rest_note(org.get(incident_id), note)}, status_code=201)

    return app


class SquadcastSimulator:
    """The Squadcast simulator: `start()` serves it on loopback; control methods play responders."""

    def __init__(self, *, refresh_token: str = "sim-squadcast-refresh-token",
                 webhook_secret: str = "sim-squadcast-webhook-secret", webhook_header: str = "X-Itsm-Bridge-Token",
                 webhook_url: str | None = None, faults: Faults | None = None, host: str = "127.0.0.1",
                 port: int = 0, rate_limit: int = 600, token_ttl: int = 172_800, api_user: str = "bridge",
                 require_resolution_reason: bool = False, webhook_backoff: float = 0.2,
                 webhook_max_backoff: float = 2.0, webhook_max_attempts: int | None = 4, seed: int = 1,
                 clock: Callable[[], datetime] | None = None, token_clock: Callable[[], float] = time.time) -> None:
        self.refresh_token, self.webhook_secret = refresh_token, webhook_secret
        self.faults, self.rate_limit, self.token_ttl = faults or Faults(), rate_limit, token_ttl
        self.api_user, self.require_resolution_reason, self.token_clock = api_user, require_resolution_reason, token_clock
        self.tokens: dict[str, int] = {}
        self.tokens_issued = 0
        self._lock = threading.Lock()
        self._window = (time.monotonic(), 0)
        self._host, self._port = host, port or free_port(host)
        self._server: ServerThread | None = None
        self.org = SimOrg(emit=self._emit, seed=seed, **({"clock": clock} if clock else {}))
        self.webhooks = SquadcastWebhookSender(header=webhook_header, token=lambda: self.webhook_secret,
                                               new_id=self.org.new_id, url=webhook_url, backoff=webhook_backoff,
                                               max_backoff=webhook_max_backoff, max_attempts=webhook_max_attempts)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> SquadcastSimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.stop()

    def set_webhook_url(self, url: str | None) -> None:
        self.webhooks.set_url(url)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        return self.webhooks.wait_idle(timeout)

    def _emit(self, envelope: dict[str, Any]) -> None:
        self.webhooks.enqueue(envelope)

    # -- tokens and the request budget ------------------------------------------------------------------
    def issue_token(self) -> tuple[str, int, int]:
        issued = int(self.token_clock())
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = issued + self.token_ttl
            self.tokens_issued += 1
        return token, issued, issued + self.token_ttl

    def token_valid(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            expires = self.tokens.get(token) if scheme.lower() == "bearer" else None
        return expires is not None and self.token_clock() < expires

    def revoke_tokens(self) -> None:
        """Invalidate every access token (as regenerating the refresh token does)."""
        with self._lock:
            self.tokens.clear()

    def take_request(self) -> int:
        """Count a request in this minute's budget; the budget left (negative: over it)."""
        with self._lock:
            start, count = self._window
            if time.monotonic() - start >= 60:
                start, count = time.monotonic(), 0
            self._window = (start, count + 1)
            return self.rate_limit - count - 1

    # -- control API (plays responders; each change fires its webhook) --------------------------------
    def trigger(self, service: str, title: str, *, user: str = "alice", priority: str | None = None,
                description: str = "") -> str:
        return self.org.create(title=title, service=service, user=user, priority=priority, description=description).id

    def acknowledge(self, incident_id: str, user: str) -> str:
        return self.org.acknowledge(incident_id, user).id

    def resolve(self, incident_id: str, user: str, message: str | None = None) -> str:
        return self.org.resolve(incident_id, user, message).id

    def reassign(self, incident_id: str, to_user: str, user: str) -> str:
        return self.org.reassign(incident_id, "user", self.org.user(to_user)["id"], user).id

    def add_note(self, incident_id: str, text: str, user: str) -> str:
        return self.org.add_note(incident_id, text, user).id

    def set_priority(self, incident_id: str, value: str | None, user: str) -> str:
        return self.org.set_priority(incident_id, value, user).id

    # -- readers --------------------------------------------------------------------------------------
    def incident(self, incident_id: str) -> dict[str, Any]:
        with self.org.lock:
            return self.org.rest_incident(self.org.get(incident_id))

    def incidents(self) -> list[dict[str, Any]]:
        with self.org.lock:
            return [self.org.rest_incident(i) for i in self.org.incidents.values()]

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        with self.org.lock:
            inc = self.org.get(incident_id)
            return [self.org.rest_note(inc, note) for note in inc.notes if note.type == "message"]
