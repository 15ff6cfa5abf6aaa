"""A loopback stand-in for Rootly: the JSON:API endpoints the connector uses, and signed webhooks out.

Faithful where the connector depends on it: ``Authorization: Bearer`` (401 otherwise), JSON:API bodies
and errors (``{"errors":[{title,status,detail}]}``), ``page[number]``/``page[size]`` with ``meta``
``{current_page,next_page,prev_page,total_count,total_pages}`` and ``links``, ``filter[updated_at][gte]``,
``sort``, the PUT actions mitigate/resolve/cancel/restart, timeline events, ``/v1/severities``, and a
per-minute request budget (429 when spent; Rootly's limit is about 3000 per minute per key). Injected
faults (`Faults`) come on top. Webhooks carry ``X-Rootly-Signature: t=<unix>,v1=<hex>``.
``include=`` on ``GET /v1/incidents[/{id}]`` takes the values Rootly's OpenAPI enumerates (others are a
400, as JSON:API prescribes); ``custom_field_selections`` adds the page's form field selections to
``included`` (see `sim_state`), the other values add nothing here. Custom field answers are also listed by
``GET /v1/incidents/{id}/form_field_selections``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bridge.model import parse_time
from connectors.pagerduty.sim_delivery import Delivery, WebhookSender
from connectors.rootly.sim_state import ACTION_STATUS, SimError, SimOrg
from connectors.rootly.webhooks import signature_header
from connectors.simulator import Faults, ServerThread, free_port, install_faults

MEDIA_TYPE = "application/vnd.api+json"
#: The ``include`` values of GET /v1/incidents and /v1/incidents/{id} (rootlyhq/rootly-python's enums).
INCLUDES = frozenset({"action_items", "alerts", "causes", "custom_field_selections", "environments", "events",
                      "feedbacks", "functionalities", "groups", "incident_post_mortem", "incident_types", "roles",
                      "services", "slack_messages", "sub_statuses", "subscribers"})
MESSAGE_KEYS = {"mitigate": "mitigation_message", "resolve": "resolution_message", "cancel": "cancellation_message"}


class RootlyWebhookSender(WebhookSender):
    """PagerDuty's sequential, retrying sender with Rootly's envelope and signature header."""

    def __init__(self, *, secret: Callable[[], str], clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(secrets=lambda: [secret()], subscription_id="rootly-sim", **kwargs)
        self.clock = clock

    def enqueue(self, envelope: dict[str, Any]) -> None:
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            self._queue.append(Delivery(envelope["event"]["id"], envelope["event"]["type"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def _attempt(self, delivery: Delivery, url: str) -> str | None:
        headers = {"Content-Type": "application/json", "User-Agent": "Rootly-Webhooks",
                   "X-Rootly-Signature": signature_header(self.secrets()[0], int(self.clock()), delivery.body)}
        try:
            response = self._http.post(url, data=delivery.body, headers=headers, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - any transport failure is retried
            return f"retry:{type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"retry:HTTP {response.status_code}" if response.status_code == 429 or response.status_code >= 500 \
            else f"HTTP {response.status_code}"


def _error(status: int) -> dict[str, Any]:
    return SimError(status, "Too many requests" if status == 429 else "Internal server error").body()


def _page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        number = int(request.query_params.get("page[number]", 1))
        size = int(request.query_params.get("page[size]", 20))
    except ValueError as exc:
        raise SimError(400, "Bad request", "page[number] and page[size] must be integers") from exc
    if number < 1 or not 1 <= size <= 100:
        raise SimError(400, "Bad request", "page[number] >= 1 and 1 <= page[size] <= 100")
    pages = max(1, -(-len(items) // size))
    base = str(request.url.remove_query_params(["page[number]"]))
    link = (lambda n: f"{base}&page[number]={n}" if "?" in base else f"{base}?page[number]={n}")
    return {"data": items[(number - 1) * size: number * size],
            "links": {"self": link(number), "first": link(1), "last": link(pages),
                      "prev": link(number - 1) if number > 1 else None, "next": link(number + 1) if number < pages else None},
            "meta": {"current_page": number, "next_page": number + 1 if number < pages else None,
                     "prev_page": number - 1 if number > 1 else None, "total_count": len(items), "total_pages": pages}}


def _includes(request: Request) -> set[str]:
    names = {name.strip() for name in (request.query_params.get("include") or "").split(",") if name.strip()}
    unknown = sorted(names - INCLUDES)
    if unknown:
        raise SimError(400, "Bad request", f"invalid include {', '.join(unknown)} (allowed: {', '.join(sorted(INCLUDES))})")
    return names


async def _attributes(request: Request, kind: str) -> dict[str, Any]:
    try:
        document = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise SimError(400, "Bad request", "body is not JSON") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or data.get("type") != kind or not isinstance(data.get("attributes", {}), dict):
        raise SimError(400, "Bad request", f"body must be {{\"data\": {{\"type\": \"{kind}\", \"attributes\": {{...}}}}}}")
    return data.get("attributes") or {}


def build_app(sim: RootlySimulator) -> FastAPI:
    app = FastAPI(title="Rootly simulator", docs_url=None, redoc_url=None, openapi_url=None)
    org, window = sim.org, {"start": time.monotonic(), "count": 0, "lock": threading.Lock()}

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, media_type=MEDIA_TYPE)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.headers.get("authorization") != f"Bearer {sim.api_token}":
            return JSONResponse(SimError(401, "Unauthorized").body(), status_code=401, media_type=MEDIA_TYPE)
        with window["lock"]:  # type: ignore[attr-defined]
            if time.monotonic() - window["start"] >= 60:  # type: ignore[operator]
                window["start"], window["count"] = time.monotonic(), 0
            window["count"] += 1  # type: ignore[operator]
            remaining = sim.rate_limit - window["count"]  # type: ignore[operator]
        headers = {"X-RateLimit-Limit": str(sim.rate_limit), "X-RateLimit-Remaining": str(max(0, remaining))}
        if remaining < 0:
            return JSONResponse(_error(429), status_code=429, headers={**headers, "Retry-After": "60"},
                                media_type=MEDIA_TYPE)
        response = await call_next(request)
        response.headers.update(headers)
        return response

    install_faults(app, sim.faults, applies=lambda _path: True, error_body=_error)

    def one(inc: Any, includes: set[str] | None = None) -> JSONResponse:
        document: dict[str, Any] = {"data": org.resource(inc)}
        if includes and "custom_field_selections" in includes:
            document["included"] = org.selection_resources(inc)
        return JSONResponse(document, media_type=MEDIA_TYPE)

    @app.get("/v1/incidents")
    def list_incidents(request: Request) -> JSONResponse:
        query = request.query_params
        try:
            since = parse_time(query.get("filter[updated_at][gte]"))
        except ValueError as exc:
            raise SimError(400, "Bad request", f"filter[updated_at][gte]: {exc}") from exc
        sort = query.get("sort") or "-created_at"
        if sort.lstrip("-") not in ("created_at", "updated_at"):
            raise SimError(400, "Bad request", f"cannot sort by {sort!r}")
        includes = _includes(request)
        with org.lock:
            found = [i for i in org.incidents.values() if since is None or i.updated_at >= since]
            found.sort(key=lambda i: getattr(i, sort.lstrip("-")), reverse=sort.startswith("-"))
            page = _page(request, [org.resource(i) for i in found])
            if "custom_field_selections" in includes:
                page["included"] = [s for item in page["data"] for s in org.selection_resources(org.get(item["id"]))]
            return JSONResponse(page, media_type=MEDIA_TYPE)

    @app.post("/v1/incidents", status_code=201)
    async def create_incident(request: Request) -> JSONResponse:
        attributes = await _attributes(request, "incidents")
        services = attributes.get("service_ids") or []
        service = next((n for n, i in org.services.items() if i in services), next(iter(org.services)))
        inc = org.create(title=str(attributes.get("title") or "Untitled incident"), service=service, user="bridge",
                         severity=attributes.get("severity_id"), summary=str(attributes.get("summary") or ""))
        with org.lock:
            return JSONResponse({"data": org.resource(inc)}, status_code=201, media_type=MEDIA_TYPE)

    @app.get("/v1/incidents/{incident_id}")
    def get_incident(incident_id: str, request: Request) -> JSONResponse:
        includes = _includes(request)
        with org.lock:
            return one(org.get(incident_id), includes)

    @app.get("/v1/incidents/{incident_id}/form_field_selections")
    def list_selections(incident_id: str, request: Request) -> JSONResponse:
        with org.lock:
            selections = org.selection_resources(org.get(incident_id))
        return JSONResponse(_page(request, selections), media_type=MEDIA_TYPE)

    @app.put("/v1/incidents/{incident_id}")
    async def update_incident(incident_id: str, request: Request) -> JSONResponse:
        inc = org.update(incident_id, await _attributes(request, "incidents"))
        with org.lock:
            return one(inc)

    @app.put("/v1/incidents/{incident_id}/{action}")
    async def incident_action(incident_id: str, action: str, request: Request) -> JSONResponse:
        if action not in ACTION_STATUS:
            raise SimError(404, "Not found", f"no action {action!r}")
        attributes = await _attributes(request, "incidents")
        message = attributes.get(MESSAGE_KEYS.get(action, ""))
        inc = org.action(incident_id, action, message)
        with org.lock:
            return one(inc)

    @app.get("/v1/incidents/{incident_id}/events")
    def list_events(incident_id: str, request: Request) -> JSONResponse:
        with org.lock:
            events = [org.event_resource(e) for e in org.get(incident_id).events]
        return JSONResponse(_page(request, events), media_type=MEDIA_TYPE)

    @app.post("/v1/incidents/{incident_id}/events", status_code=201)
    async def create_event(incident_id: str, request: Request) -> JSONResponse:
        attributes = await _attributes(request, "incident_events")
        event = org.add_event(incident_id, attributes.get("event"), author="ITSM Bridge",
                              visibility=attributes.get("visibility") or "internal")
        with org.lock:
            return JSONResponse({"data": org.event_resource(event)}, status_code=201, media_type=MEDIA_TYPE)

    @app.get("/v1/severities")
    def list_severities(request: Request) -> JSONResponse:
        items = [{"id": s["id"], "type": "severities", "attributes": {k: s[k] for k in ("name", "slug", "severity")}}
                 for s in org.severities.values()]
        return JSONResponse(_page(request, items), media_type=MEDIA_TYPE)

    return app


class RootlySimulator:
    """The Rootly simulator: `start()` serves it on loopback; control methods play responders."""

    def __init__(self, *, api_token: str = "sim-rootly-token", webhook_secret: str = "sim-rootly-webhook-secret",
                 webhook_url: str | None = None, faults: Faults | None = None, host: str = "127.0.0.1",
                 port: int = 0, rate_limit: int = 3000, webhook_backoff: float = 0.2,
                 webhook_max_backoff: float = 2.0, webhook_max_attempts: int | None = None, seed: int = 1,
                 clock: Callable[[], datetime] | None = None, signing_clock: Callable[[], float] = time.time) -> None:
        self.api_token, self.webhook_secret = api_token, webhook_secret
        self.faults, self.rate_limit = faults or Faults(), rate_limit
        self._host, self._port = host, port or free_port(host)
        self._server: ServerThread | None = None
        self.org = SimOrg(emit=self._emit, seed=seed, **({"clock": clock} if clock else {}))
        self.webhooks = RootlyWebhookSender(secret=lambda: self.webhook_secret, clock=signing_clock,
                                            new_id=self.org.new_id, url=webhook_url, backoff=webhook_backoff,
                                            max_backoff=webhook_max_backoff, max_attempts=webhook_max_attempts)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> RootlySimulator:
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

    # -- control API ----------------------------------------------------------------------------------
    def trigger(self, service: str, title: str, *, user: str = "alice", priority: str | None = None) -> str:
        return self.org.create(title=title, service=service, user=user, severity=priority).id

    def acknowledge(self, incident_id: str, user: str) -> str:
        self.org.user(user)
        return self.org.set_status(incident_id, "acknowledged").id

    def mitigate(self, incident_id: str, user: str, message: str | None = None) -> str:
        self.org.user(user)
        return self.org.action(incident_id, "mitigate", message).id

    def resolve(self, incident_id: str, user: str, message: str | None = None) -> str:
        self.org.user(user)
        return self.org.action(incident_id, "resolve", message).id

    def cancel(self, incident_id: str, user: str, message: str | None = None) -> str:
        self.org.user(user)
        return self.org.action(incident_id, "cancel", message).id

    def reopen(self, incident_id: str, user: str) -> str:
        self.org.user(user)
        return self.org.action(incident_id, "restart").id

    def add_note(self, incident_id: str, text: str, user: str) -> str:
        return self.org.add_event(incident_id, text, author=self.org.user(user)["name"])["id"]

    def set_priority(self, incident_id: str, value: str | None, user: str) -> str:
        self.org.user(user)
        return self.org.update(incident_id, {"severity_id": value}).id

    def set_custom_field(self, incident_id: str, field: str, answer: str | list[str] | None, user: str) -> str:
        """Answer a custom form field (slug, id or name) as `user`; None clears it."""
        self.org.user(user)
        return self.org.set_form_field(incident_id, field, answer).id

    # -- readers --------------------------------------------------------------------------------------
    def incident(self, incident_id: str) -> dict[str, Any]:
        with self.org.lock:
            return self.org.resource(self.org.get(incident_id))

    def incidents(self) -> list[dict[str, Any]]:
        with self.org.lock:
            return [self.org.resource(i) for i in self.org.incidents.values()]

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        with self.org.lock:
            return [self.org.event_resource(e) for e in self.org.get(incident_id).events if e["kind"] == "event"]
