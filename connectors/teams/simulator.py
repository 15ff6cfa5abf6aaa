"""A loopback stand-in for Microsoft Teams: the outgoing webhook that calls the bridge, and the Workflows
webhooks the bridge posts Adaptive Cards to.

Outgoing webhook (Teams -> bridge): `post_message` plays a user writing in a channel. Only a message
that @mentions the webhook is delivered (as in Teams), as a Bot Framework activity signed
``Authorization: HMAC <base64 HMAC-SHA256(base64decode(token), body)>``. Teams waits 5 s; a failed or
late answer shows the user an error instead of a reply, raised here as `DidNotRespond`. Teams documents
no retry of outgoing webhooks [!]: `delivery_attempts` (default 1) lets tests model a user resending.

Workflows (bridge -> Teams): ``POST /workflows/<channel>/triggers/manual/paths/invoke?api-version=
2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=<secret>`` as the "Post to a channel when a webhook
request is received" template. Errors use Logic Apps' ``{"error": {"code", "message"}}``: missing
``sp``/``sv``/``sig`` -> 401 ``AuthorizationFailed``, wrong ``sig`` -> 401
``DirectApiInvalidAuthorizationSignature`` [!], unknown workflow -> 404 ``WorkflowNotFound`` [!], a spent
per-workflow budget -> 429 with ``Retry-After`` [!: Power Automate limits vary by plan]. Accepted -> 202,
no body, and the flow runs afterwards (a background "flow run" posts the card; `wait_idle` waits for it).
Deviation, on purpose: a body that is not an Adaptive Card message is refused at once with 400
``TriggerInputSchemaMismatch`` (a trigger with schema validation on), where the stock template answers 202
and fails in its run history ("'attachments' is of type 'Null'"), invisible to the caller.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connectors.simulator import Faults, ServerThread, free_port, install_faults
from connectors.teams.connector import CARD_TYPE
from connectors.teams.sim_state import SimChannel, SimError, SimTenant
from connectors.teams.webhooks import sign

INVOKE = "/triggers/manual/paths/invoke"
USER_AGENT = "Microsoft-SkypeBotApi (Microsoft-BotFramework/3.0)"


class DidNotRespond(Exception):
    """What the user sees instead of a reply: the webhook failed, refused, or took longer than 5 s."""


def _error(status: int) -> dict[str, Any]:
    codes = {429: ("WorkflowRequestsThrottled", "Rate limit is exceeded. Try again later."),
             500: ("InternalServerError", "Encountered an internal server error."),
             502: ("BadGateway", "The gateway did not receive a response within the specified time period."),
             503: ("ServiceUnavailable", "The service is temporarily unavailable.")}
    code, message = codes.get(status, ("Error", "Error"))
    return {"error": {"code": code, "message": message}}


def schema_problem(payload: Any) -> str | None:
    """Why a Workflows body is not an Adaptive Card message (None: it is one)."""
    if not isinstance(payload, dict):
        return "Invalid type. Expected Object."
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "Required property 'attachments' not found or empty; the body must be a message with Adaptive Card attachments."
    for number, attachment in enumerate(attachments):
        if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_TYPE:
            return f"attachments[{number}].contentType must be '{CARD_TYPE}'."
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            return f"attachments[{number}].content: Property 'type' must be 'AdaptiveCard'."
        if not isinstance(content.get("body"), list):
            return f"attachments[{number}].content.body must be an array of card elements."
    return None


def build_app(sim: TeamsSimulator) -> FastAPI:
    app = FastAPI(title="Teams Workflows simulator", docs_url=None, redoc_url=None, openapi_url=None)
    window: dict[str, Any] = {"lock": threading.Lock(), "counts": {}}

    @app.exception_handler(SimError)
    async def sim_error(_request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    install_faults(app, sim.faults, applies=lambda path: path.startswith("/workflows/"), error_body=_error)

    @app.post("/workflows/{key}" + INVOKE)
    async def invoke(key: str, request: Request) -> Response:
        query = request.query_params
        if not all(query.get(name) for name in ("sp", "sv", "sig")):
            raise SimError(401, "AuthorizationFailed", "Required parameters for shared access URL are "
                                                       "permissions ('sp'), version ('sv'), and signature ('sig').")
        channel = sim.tenant.channels.get(key)
        if channel is None:
            raise SimError(404, "WorkflowNotFound", f"The workflow '{key}' could not be found.")
        if not _same(query["sig"], channel.sig):
            raise SimError(401, "DirectApiInvalidAuthorizationSignature",
                           "The provided authorization signature is not valid for the workflow trigger.")
        with window["lock"]:
            start, count = window["counts"].get(key, (time.monotonic(), 0))
            if time.monotonic() - start >= sim.rate_window:
                start, count = time.monotonic(), 0
            window["counts"][key] = (start, count + 1)
        if count + 1 > sim.rate_limit:
            return JSONResponse(_error(429), status_code=429, headers={"Retry-After": str(sim.retry_after)})
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            raise SimError(400, "InvalidRequestContent", "The request content is not valid JSON.") from None
        problem = schema_problem(payload)
        if problem:
            raise SimError(400, "TriggerInputSchemaMismatch", "The input body for trigger 'manual' of type "
                                                              f"'Request' did not match its schema definition. Error details: '{problem}'.")
        sim.enqueue_run(channel, payload)
        return Response(status_code=202)

    return app


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))


class TeamsSimulator:
    """The Teams simulator: `start()` serves the Workflows endpoints; `post_message` plays a user."""

    def __init__(self, *, security_token: str | None = None, webhook_name: str = "itsm-bridge",
                 webhook_url: str | None = None, faults: Faults | None = None, host: str = "127.0.0.1",
                 port: int = 0, timeout: float = 5.0, delivery_attempts: int = 1, rate_limit: int = 100,
                 rate_window: float = 60.0, retry_after: int = 1, seed: int = 1,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.security_token = security_token or base64.b64encode(os.urandom(32)).decode("ascii")
        self.webhook = {"id": "28:f3c1b6a2-8f0e-4a57-9a1c-5b2d7e6c4d10", "name": webhook_name}  # a bot id
        self.webhook_url, self.timeout, self.delivery_attempts = webhook_url, timeout, delivery_attempts
        self.faults, self.rate_limit, self.rate_window, self.retry_after = faults or Faults(), rate_limit, rate_window, retry_after
        self.tenant = SimTenant(seed=seed, **({"clock": clock} if clock else {}))
        self.deliveries: list[dict[str, Any]] = []   # every POST to the outgoing webhook: status, reason
        self.runs: list[dict[str, Any]] = []         # flow runs: channel, status
        self._host, self._port = host, port or free_port(host)
        self._server: ServerThread | None = None
        self._runs: deque[tuple[SimChannel, dict[str, Any]]] = deque()
        self._busy, self._stopping = False, False
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._run_flows, name="teams-sim-flows", daemon=True)
        self._http = requests.Session()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> TeamsSimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self._worker.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(timeout=5)
        if self._server is not None:
            self._server.stop()
        self._http.close()

    def set_webhook_url(self, url: str | None) -> None:
        """The outgoing webhook's callback URL (the bridge's ``/webhooks/<connection>``)."""
        self.webhook_url = url

    # -- flow runs ----------------------------------------------------------------------------------
    def enqueue_run(self, channel: SimChannel, payload: dict[str, Any]) -> None:
        with self._cond:
            self._runs.append((channel, payload))
            self._cond.notify_all()

    def _run_flows(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._runs)
                if self._stopping:
                    return
                channel, payload = self._runs.popleft()
                self._busy = True
            for attachment in payload["attachments"]:
                self.tenant.post(channel, kind="card", author={"id": "28:workflows", "name": "Workflows"},
                                 card=attachment["content"])
            with self._cond:
                self.runs.append({"channel": channel.key, "status": "Succeeded"})
                self._busy = False
                self._cond.notify_all()

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Block until every accepted workflow request has run (its card is in the channel)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._runs and not self._busy, timeout=timeout)

    # -- a user in a channel --------------------------------------------------------------------------
    def post_message(self, channel: str, text: str, user: str = "alice", mention: bool = True) -> dict[str, Any] | None:
        """`user` writes `text` in `channel`. With `mention` the outgoing webhook is called and the reply the
        user sees is returned (and kept in the thread); without it Teams calls nobody and None is returned.
        Raises `DidNotRespond` when the webhook fails, refuses or exceeds the timeout."""
        target = self.tenant.channel(channel)
        author = self.tenant.user(user)
        message = self.tenant.post(target, kind="user", author=author, text=text)
        if not mention:
            return None
        with self.tenant.lock:
            activity = self.tenant.activity(target, message, webhook=self.webhook, mentioned=True)
        reply = self.deliver(activity)
        if reply is not None:
            card = (reply.get("attachments") or [{}])[0].get("content")
            self.tenant.post(target, kind="reply", author=self.webhook, text=reply.get("text"), card=card,
                             root=message["root"])
        return reply

    def deliver(self, activity: dict[str, Any]) -> dict[str, Any] | None:
        """POST one signed activity (again, up to `delivery_attempts` times): the reply message, None when
        the answer is a 2xx without a message, or `DidNotRespond`."""
        if not self.webhook_url:
            raise DidNotRespond(f"{self.webhook['name']} has no callback URL")
        body = json.dumps(activity, separators=(",", ":")).encode("utf-8")
        headers = {"Authorization": f"HMAC {sign(self.security_token, body)}", "User-Agent": USER_AGENT,
                   "Content-Type": "application/json; charset=utf-8"}
        reason = ""
        for _attempt in range(max(1, self.delivery_attempts)):
            try:
                answer = self._http.post(self.webhook_url, data=body, headers=headers, timeout=self.timeout)
            except requests.Timeout:
                reason, status = f"no answer within {self.timeout:g}s", None
            except requests.RequestException as exc:
                reason, status = type(exc).__name__, None
            else:
                reason, status = f"HTTP {answer.status_code}", answer.status_code
            self.deliveries.append({"id": activity["id"], "status": status, "reason": reason})
            if status is not None and 200 <= status < 300:
                return _reply(answer)
        raise DidNotRespond(f"{self.webhook['name']} did not respond ({reason})")

    # -- readers ------------------------------------------------------------------------------------
    def channel_id(self, channel: str) -> str:
        return self.tenant.channel(channel).id

    def workflow_url(self, channel: str, *, sig: str | None = None) -> str:
        """The channel's workflow URL as Teams shows it (with its secret ``sig``; `sig` overrides it)."""
        target = self.tenant.channel(channel)
        return (f"{self.url}/workflows/{target.key}{INVOKE}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun"
                f"&sv=1.0&sig={sig if sig is not None else target.sig}")

    def cards(self, channel: str) -> list[dict[str, Any]]:
        """The Adaptive Cards the workflows posted into `channel`, oldest first."""
        with self.tenant.lock:
            return [m["card"] for m in self.tenant.channel(channel).messages if m["kind"] == "card"]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Everything in `channel`: users' posts, the webhook's replies, the workflows' cards."""
        with self.tenant.lock:
            return [dict(m) for m in self.tenant.channel(channel).messages]


def _reply(answer: requests.Response) -> dict[str, Any] | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("type") == "message" else None
