"""A loopback stand-in for Opsgenie: the Alert API v2 parts the connector uses, and outgoing webhooks.

Faithful where the connector depends on it: ``Authorization: GenieKey <key>`` (401 "Could not
authenticate" otherwise), error bodies ``{message, took, requestId}`` (422 adds ``errors``), writes
answered 202 ``{result: "Request will be processed", took, requestId}`` with their outcome at
``GET /v2/alerts/requests/{id}`` (an action Opsgenie refuses, such as acknowledging a closed alert, still
answers 202 and fails there), ``GET /v2/alerts`` with ``query`` (``updatedAt>=N``/``>N`` epoch ms,
``status=open|closed``), ``sort``/``order`` and ``offset``/``limit`` (20 by default, at most 100) answering
``{data, paging{first,last,next?}, took, requestId}``, 429 with ``X-RateLimit-State: THROTTLED``.
Injected faults (`Faults`) come on top.

The outgoing webhook is unsigned; the sender adds the custom header ``X-Itsm-Bridge-Token`` an admin
would configure on the integration.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connectors.opsgenie.sim_state import (
    DEFAULT_USERS,
    SimAccount,
    SimAlert,
    SimError,
    epoch_ms,
)
from connectors.opsgenie.webhooks import note_id
from connectors.pagerduty.sim_delivery import Delivery, WebhookSender
from connectors.simulator import Faults, ServerThread, free_port, install_faults

QUERY = re.compile(r"^\s*(updatedAt|createdAt)\s*(>=|>|<=|<)\s*(\d+)\s*$|^\s*status\s*[=:]\s*(open|closed)\s*$")
SORT_KEYS: dict[str, Callable[[SimAlert], Any]] = {
    "createdAt": lambda a: a.created_at, "updatedAt": lambda a: a.updated_ns, "tinyId": lambda a: a.tiny_id,
}
ACTIONS = {"acknowledge": "Acknowledge", "unacknowledge": "UnAcknowledge", "close": "Close",
           "notes": "AddNote", "escalate": "Escalate", "assign": "AssignOwnership"}


class OpsgenieWebhookSender(WebhookSender):
    """PagerDuty's sequential, retrying sender with Opsgenie's body and the bridge's token header."""

    def __init__(self, *, token: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(secrets=list, subscription_id="", **kwargs)
        self.token = token

    def enqueue(self, envelope: dict[str, Any]) -> None:
        with self._cond:
            if not self.url:
                return
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
            self._queue.append(Delivery(self.new_id(), envelope["action"], body))
            self.stats["queued"] += 1
            self._cond.notify_all()

    def _attempt(self, delivery: Delivery, url: str) -> str | None:
        headers = {"Content-Type": "application/json", "X-Itsm-Bridge-Token": self.token()}
        try:
            response = self._http.post(url, data=delivery.body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"retry:{type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"retry:HTTP {response.status_code}" if response.status_code == 429 or response.status_code >= 500 \
            else f"HTTP {response.status_code}"


def _filter(query: str, alerts: list[SimAlert]) -> list[SimAlert]:
    if not query.strip():
        return alerts
    match = QUERY.match(query)
    if not match:
        raise SimError(422, f"Invalid query: {query[:100]}")
    if match.group(4):
        return [a for a in alerts if a.status == match.group(4)]
    field, op, value = match.group(1), match.group(2), int(match.group(3))
    moment = (lambda a: epoch_ms(a.updated_at)) if field == "updatedAt" else (lambda a: epoch_ms(a.created_at))
    tests = {">=": lambda a: moment(a) >= value, ">": lambda a: moment(a) > value,
             "<=": lambda a: moment(a) <= value, "<": lambda a: moment(a) < value}
    return [a for a in alerts if tests[op](a)]


def _page(request: Request, items: list[Any], *, default: int = 20) -> tuple[list[Any], dict[str, str]]:
    query = request.query_params
    try:
        limit, offset = min(int(query.get("limit", default)), 100), int(query.get("offset", 0))
    except ValueError as exc:
        raise SimError(422, "limit and offset must be integers") from exc
    if limit < 1 or offset < 0 or offset + limit > 20_000:
        raise SimError(422, "offset must be at least 0, limit between 1 and 100, offset + limit at most 20000")
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
    link = lambda at: f"{base}?{urlencode({**query, 'offset': at, 'limit': limit})}"
    paging = {"first": link(0), "last": link(max(0, (len(items) - 1) // limit * limit))}
    if offset + limit < len(items):
        paging["next"] = link(offset + limit)
    return items[offset:offset + limit], paging


def build_app(sim: OpsgenieSimulator) -> FastAPI:
    app = FastAPI(title="Opsgenie simulator", docs_url=None, redoc_url=None, openapi_url=None)
    account = sim.account

    def answer(body: dict[str, Any], status: int = 200) -> JSONResponse:
        return JSONResponse({**body, "took": 0.004, "requestId": account.new_uuid()}, status_code=status)

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(account.new_uuid()), status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.headers.get("authorization") != f"GenieKey {sim.api_key}":
            return JSONResponse(SimError(401, "Could not authenticate").body(account.new_uuid()), status_code=401)
        if not sim.take_token():
            return JSONResponse(SimError(429, "You are making too many requests! To avoid errors, we "
                                              "recommend you limit requests.").body(account.new_uuid()),
                                status_code=429, headers={"X-RateLimit-State": "THROTTLED",
                                                          "X-RateLimit-Reason": "INTEGRATION",
                                                          "X-RateLimit-Period-In-Sec": "60"})
        response = await call_next(request)
        response.headers["X-RateLimit-State"] = "OK"
        return response

    install_faults(app, sim.faults, applies=lambda _path: True,
                   error_body=lambda status: SimError(status, "Internal Server Error" if status != 429 else
                                                      "You are making too many requests!").body(account.new_uuid()))

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise SimError(400, "Could not parse request body") from exc
        if not isinstance(data, dict):
            raise SimError(400, "Request body must be a JSON object")
        return data

    def check_id_type(request: Request) -> None:
        if request.query_params.get("identifierType", "id") != "id":
            raise SimError(422, "The simulator resolves identifierType=id only")

    @app.get("/v2/alerts")
    def list_alerts(request: Request) -> JSONResponse:
        query = request.query_params
        with account.lock:
            found = _filter(query.get("query", ""), list(account.alerts.values()))
            sort = query.get("sort", "createdAt")
            if sort not in SORT_KEYS:
                raise SimError(422, f"Invalid sort field {sort!r}")
            found.sort(key=SORT_KEYS[sort], reverse=query.get("order", "desc") != "asc")
            page, paging = _page(request, found)
            return answer({"data": [account.rest_alert(a, full=False) for a in page], "paging": paging})

    @app.post("/v2/alerts")
    async def create_alert(request: Request) -> JSONResponse:
        data = await body_of(request)
        if not isinstance(data.get("message"), str) or not data["message"]:
            raise SimError(422, "Request body is not processable. Please check the errors.",
                           {"message": "Message can not be empty."})
        alert = account.create(message=data["message"][:130], username=str(data.get("user") or "System"),
                               priority=data.get("priority"), entity=str(data.get("entity") or ""),
                               alias=data.get("alias"), description=str(data.get("description") or ""),
                               source=str(data.get("source") or ""))
        return accepted("Create", alert.id, lambda: alert)

    @app.get("/v2/alerts/requests/{request_id}")
    def request_status(request_id: str) -> JSONResponse:
        with account.lock:
            if request_id not in account.requests:
                raise SimError(404, "Request not found. It might not be processed yet.")
            return answer({"data": account.requests[request_id]})

    @app.get("/v2/alerts/{alert_id}")
    def get_alert(alert_id: str, request: Request) -> JSONResponse:
        check_id_type(request)
        with account.lock:
            return answer({"data": account.rest_alert(account.get(alert_id))})

    @app.get("/v2/alerts/{alert_id}/notes")
    def list_notes(alert_id: str, request: Request) -> JSONResponse:
        check_id_type(request)
        query = request.query_params
        with account.lock:
            notes = list(account.get(alert_id).notes)
        if query.get("order", "desc") != "asc":
            notes.reverse()
        after = query.get("offset")
        if after:
            notes = [n for n in notes if (n["offset"] > after if query.get("order") == "asc" else n["offset"] < after)]
        try:
            limit = min(int(query.get("limit", 20)), 100)
        except ValueError as exc:
            raise SimError(422, "limit must be an integer") from exc
        page = notes[:limit]
        paging = {"next": f"{request.url.path}?offset={page[-1]['offset']}"} if len(notes) > limit else {}
        return answer({"data": page, "paging": paging})

    @app.post("/v2/alerts/{alert_id}/{verb}")
    async def alert_action(alert_id: str, verb: str, request: Request) -> JSONResponse:
        check_id_type(request)
        if verb not in ACTIONS:
            raise SimError(404, f"No such action: {verb}")
        data = await body_of(request)
        user = str(data.get("user") or "System")
        if verb == "notes" and not data.get("note"):
            raise SimError(422, "Request body is not processable. Please check the errors.",
                           {"note": "must not be blank"})
        with account.lock:
            account.get(alert_id)  # an unknown alert is refused at once (404), like Opsgenie's validation
        return accepted(ACTIONS[verb], alert_id, lambda: account.act(
            alert_id, ACTIONS[verb], user, note=data.get("note"), owner=(data.get("owner") or {}).get("username")))

    @app.put("/v2/alerts/{alert_id}/priority")
    async def update_priority(alert_id: str, request: Request) -> JSONResponse:
        check_id_type(request)
        data = await body_of(request)
        if data.get("priority") not in ("P1", "P2", "P3", "P4", "P5"):
            raise SimError(422, "Request body is not processable. Please check the errors.",
                           {"priority": "should be one of [P1, P2, P3, P4, P5]"})
        with account.lock:
            account.get(alert_id)
        return accepted("UpdatePriority", alert_id,
                        lambda: account.act(alert_id, "UpdatePriority", "System", priority=data["priority"]))

    def accepted(action: str, alert_id: str, apply: Callable[[], SimAlert]) -> JSONResponse:
        request_id = account.new_uuid()
        try:
            alert, error = apply(), None
        except SimError as exc:  # asynchronous in Opsgenie: the failure shows in the request status only
            with account.lock:
                alert, error = account.alerts.get(alert_id), exc.message
        account.record_request(request_id, action, alert, error)
        return JSONResponse({"result": "Request will be processed", "took": 0.01, "requestId": request_id},
                            status_code=202)

    return app


class OpsgenieSimulator:
    """The Opsgenie simulator: `start()` serves it on loopback, control methods play responders."""

    def __init__(self, *, api_key: str = "sim-opsgenie-key", webhook_secret: str = "sim-opsgenie-webhook-secret",
                 webhook_url: str | None = None, faults: Faults | None = None, host: str = "127.0.0.1",
                 port: int = 0, users: dict[str, tuple[str, str]] | None = None, rate_limit: int = 600,
                 webhook_backoff: float = 0.2, webhook_max_backoff: float = 2.0,
                 webhook_max_attempts: int | None = None, seed: int = 1,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.faults = faults or Faults()
        self.rate_limit = rate_limit
        self._window = (time.monotonic(), 0)
        self._rate_lock = threading.Lock()
        self._server: ServerThread | None = None
        self._host, self._port = host, port or free_port(host)
        self.account = SimAccount(emit=self._emit, users=users or dict(DEFAULT_USERS), seed=seed,
                                  **({"clock": clock} if clock else {}))
        self.webhooks = OpsgenieWebhookSender(token=lambda: self.webhook_secret, new_id=self.account.new_uuid,
                                              url=webhook_url, backoff=webhook_backoff,
                                              max_backoff=webhook_max_backoff, max_attempts=webhook_max_attempts)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> OpsgenieSimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.stop()

    def take_token(self) -> bool:
        """Per-minute request budget (Opsgenie's is a token bucket per domain; one window is enough here)."""
        with self._rate_lock:
            start, count = self._window
            if time.monotonic() - start >= 60:
                start, count = time.monotonic(), 0
            self._window = (start, count + 1)
            return count + 1 <= self.rate_limit

    def set_webhook_url(self, url: str | None) -> None:
        self.webhooks.set_url(url)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        return self.webhooks.wait_idle(timeout)

    def _emit(self, payload: dict[str, Any]) -> None:
        self.webhooks.enqueue(payload)

    # -- control API (plays responders; each change fires its webhook) --------------------------------
    def trigger(self, service: str, title: str, *, user: str = "alice", priority: str | None = None,
                alias: str | None = None, description: str = "") -> str:
        """Create an alert; `service` becomes the alert's ``entity``."""
        return self.account.create(message=title, username=self.account.username(user), priority=priority,
                                   entity=service, alias=alias, description=description).id

    def _act(self, alert_id: str, action: str, user: str, **kwargs: Any) -> str:
        return self.account.act(alert_id, action, self.account.username(user), **kwargs).id

    def acknowledge(self, alert_id: str, user: str) -> str:
        return self._act(alert_id, "Acknowledge", user)

    def unacknowledge(self, alert_id: str, user: str) -> str:
        return self._act(alert_id, "UnAcknowledge", user)

    def resolve(self, alert_id: str, user: str) -> str:
        return self._act(alert_id, "Close", user)

    def add_note(self, alert_id: str, text: str, user: str) -> str:
        """Add a note; returns its id as the connector derives it (Opsgenie notes have none)."""
        self._act(alert_id, "AddNote", user, note=text)
        return note_id(alert_id, self.account.username(user), text)

    def set_priority(self, alert_id: str, value: str, user: str) -> str:
        return self._act(alert_id, "UpdatePriority", user, priority=value)

    def escalate(self, alert_id: str, user: str) -> str:
        return self._act(alert_id, "Escalate", user)

    def assign(self, alert_id: str, to_user: str, user: str) -> str:
        return self._act(alert_id, "AssignOwnership", user, owner=self.account.username(to_user))

    def take_ownership(self, alert_id: str, user: str) -> str:
        return self._act(alert_id, "TakeOwnership", user)

    # -- readers --------------------------------------------------------------------------------------
    def incident(self, alert_id: str) -> dict[str, Any]:
        with self.account.lock:
            return self.account.rest_alert(self.account.get(alert_id))

    def incidents(self) -> list[dict[str, Any]]:
        with self.account.lock:
            return [self.account.rest_alert(a) for a in self.account.alerts.values()]

    def notes(self, alert_id: str) -> list[dict[str, Any]]:
        with self.account.lock:
            return [dict(n) for n in self.account.get(alert_id).notes]
