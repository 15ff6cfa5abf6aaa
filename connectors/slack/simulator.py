"""A loopback stand-in for Slack: the Web API at ``/api/<method>``, and the app's Request URL called the way
Slack calls it (signed events with retries, slash commands, the message shortcut, url_verification).

Web API faithful where the connector depends on it: any method by GET or POST, arguments in the query
string, a form body or a JSON body; the token as ``Authorization: Bearer`` (or a ``token`` argument);
errors as HTTP 200 ``{"ok": false, "error": <code>}`` (not_authed, invalid_auth, token_revoked,
missing_scope...); 429 + ``Retry-After`` from injected `Faults` and from chat.postMessage's per-channel
tier when `post_rate_limit` is on. Methods and their rules: `connectors.slack.sim_api`. People act
through the control methods (create_channel, post_message, add_reaction, pin, slash_command,
message_shortcut); the app's posts are read back with `messages`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connectors.simulator import Faults, ServerThread, free_port, install_faults
from connectors.slack.sim_api import SCOPES, WebApi
from connectors.slack.sim_delivery import SlackSender
from connectors.slack.sim_state import SimWorkspace, SlackError


def _error_body(status: int) -> dict[str, Any]:
    return {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}


async def _arguments(request: Request) -> dict[str, Any]:
    """Query string, then a form or JSON body, as Slack reads them."""
    args: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return args
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            document = json.loads(body)
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(document, dict):
            raise SlackError("invalid_json")
        args.update(document)
    elif content_type == "application/x-www-form-urlencoded":
        args.update({key: values[0] for key, values in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()})
    else:
        raise SlackError("invalid_form_data")
    return args


def build_app(sim: SlackSimulator) -> FastAPI:
    app = FastAPI(title="Slack simulator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(SlackError)
    async def slack_error(_request: Request, exc: SlackError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    install_faults(app, sim.faults, applies=lambda path: path.startswith("/api/"), error_body=_error_body)

    @app.api_route("/api/{method}", methods=["GET", "POST"])
    async def web_api(method: str, request: Request) -> JSONResponse:
        args = await _arguments(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else str(args.pop("token", "") or "")
        sim.calls.append((method, {k: v for k, v in args.items() if k != "token"}))
        if not token:
            raise SlackError("not_authed")
        if token != sim.bot_token:
            raise SlackError("invalid_auth")
        if sim.revoked:
            raise SlackError("token_revoked")
        answer = sim.api.answer(method, args)
        return JSONResponse(answer, headers={"X-OAuth-Scopes": ",".join(sorted(sim.api.scopes)),
                                             "X-Slack-Req-Id": sim.ws.new_id("", 16).lower()})

    return app


class SlackSimulator:
    """The Slack simulator: `start()` serves it on loopback; control methods play the responders."""

    def __init__(self, *, bot_token: str = "xoxb-sim-bot-token", signing_secret: str = "sim-slack-signing-secret",
                 faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0, seed: int = 1,
                 clock: Callable[[], float] = time.time, signing_clock: Callable[[], float] = time.time,
                 retry_delays: tuple[float, ...] = (0.0, 1.0, 5.0), timeout: float = 3.0,
                 post_rate_limit: bool = False, scopes: tuple[str, ...] = SCOPES, command: str = "/itsm",
                 callback_id: str = "itsm_open") -> None:
        self.bot_token, self.signing_secret = bot_token, signing_secret
        self.faults, self.command, self.callback_id = faults or Faults(), command, callback_id
        self.verification_token = "sim-verification-token"
        self.revoked = False
        self.calls: deque[tuple[str, dict[str, Any]]] = deque(maxlen=10_000)  # (method, arguments), for tests
        self._host, self._port = host, port or free_port(host)
        self._server: ServerThread | None = None
        self.ws = SimWorkspace(emit=self._emit, seed=seed, clock=clock)
        self.api = WebApi(self.ws, scopes=scopes, post_rate_limit=post_rate_limit)
        self.sender = SlackSender(secret=lambda: self.signing_secret, clock=signing_clock,
                                  retry_delays=retry_delays, timeout=timeout)
        self.last_status: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def api_url(self) -> str:
        """What a connection's ``api_url`` is set to (Slack's is https://slack.com/api)."""
        return f"{self.url}/api"

    def start(self) -> SlackSimulator:
        self._server = ServerThread(build_app(self), host=self._host, port=self._port).start()
        self.sender.start()
        return self

    def stop(self) -> None:
        self.sender.stop()
        if self._server is not None:
            self._server.stop()

    # -- the Request URL ------------------------------------------------------------------------------
    def set_request_url(self, url: str) -> None:
        """Save the Request URL as the app settings page does: only after it answers url_verification."""
        challenge = self.ws.new_id("", 40).lower()
        body = json.dumps({"token": self.verification_token, "challenge": challenge,
                           "type": "url_verification"}).encode()
        self.sender.set_url(url)
        try:
            answer = self.sender.post_now(body, "application/json")
        except requests.RequestException as exc:
            self.sender.set_url(None)
            raise RuntimeError(f"Your request URL could not be reached ({type(exc).__name__})") from exc
        echoed = answer.json().get("challenge") if "json" in answer.headers.get("content-type", "") else answer.text
        if answer.status_code != 200 or echoed != challenge:
            self.sender.set_url(None)
            raise RuntimeError(f"Your URL didn't respond with the value of the challenge parameter "
                               f"(HTTP {answer.status_code})")

    def set_webhook_url(self, url: str | None) -> None:
        """Point events, commands and interactions at `url` without the handshake (capture servers)."""
        self.sender.set_url(url)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        return self.sender.wait_idle(timeout)

    def _emit(self, event: dict[str, Any]) -> None:
        ws = self.ws
        self.sender.enqueue({
            "token": self.verification_token, "team_id": ws.team["id"], "context_team_id": ws.team["id"],
            "context_enterprise_id": None, "api_app_id": ws.app_id, "event": event, "type": "event_callback",
            "event_id": ws.new_id("Ev0", 10), "event_time": int(ws.clock()),
            "authorizations": [{"enterprise_id": None, "team_id": ws.team["id"], "user_id": ws.bot["id"],
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False, "event_context": "4-" + ws.new_id("", 24)})

    def _interact(self, body: bytes, content_type: str) -> dict[str, Any]:
        """What the user sees after a synchronous request: the app's JSON answer, or Slack's error
        ([!] the error names operation_timeout / dispatch_failed / http_service_error are as users report
        them, not from Slack's reference)."""
        try:
            answer = self.sender.post_now(body, content_type)
        except requests.Timeout:
            self.last_status = None
            return {"error": "operation_timeout"}
        except requests.RequestException:
            self.last_status = None
            return {"error": "dispatch_failed"}
        self.last_status = answer.status_code
        if answer.status_code != 200:
            return {"error": "http_service_error", "status": answer.status_code}
        if not answer.content:
            return {}
        try:
            return answer.json()
        except ValueError:
            return {"response_type": "ephemeral", "text": answer.text}

    # -- people acting --------------------------------------------------------------------------------
    def create_channel(self, name: str, *, private: bool = False, members: tuple[str, ...] = ("alice", "bob", "carol", "dave"),
                       bot: bool = True, creator: str = "alice") -> str:
        return self.ws.create_channel(name, creator=creator, private=private, members=members, bot=bot).id

    def remove_bot(self, channel: str) -> None:
        with self.ws.lock:
            self.ws.channel(channel, as_bot=False).members.discard(self.ws.bot["id"])

    def archive(self, channel: str) -> None:
        with self.ws.lock:
            self.ws.channel(channel, as_bot=False).archived = True

    def user_id(self, handle: str) -> str:
        return self.ws.user(handle)["id"]

    def bot_user_id(self) -> str:
        return self.ws.bot["id"]

    def post_message(self, channel: str, text: str, user: str, *, thread_ts: str | None = None,
                     files: list[dict[str, Any]] | None = None) -> str:
        return self.ws.post(self.ws.channel(channel, as_bot=False), text=text, user=self.ws.user(user),
                            thread_ts=thread_ts, files=files)["ts"]

    def add_reaction(self, channel: str, ts: str, name: str, user: str) -> None:
        self.ws.react(self.ws.channel(channel, as_bot=False), ts, name, self.ws.user(user))

    def pin(self, channel: str, ts: str, user: str) -> None:
        self.ws.pin(self.ws.channel(channel, as_bot=False), ts, self.ws.user(user))

    def slash_command(self, channel: str, text: str, user: str, *, command: str | None = None) -> dict[str, Any]:
        """Run ``/itsm <text>`` in `channel` as `user`; the answer the user sees (ephemeral JSON)."""
        ws = self.ws
        with ws.lock:
            room, person = ws.channel(channel, as_bot=False), ws.user(user)
            form = {"token": self.verification_token, "team_id": ws.team["id"], "team_domain": ws.team["domain"],
                    "channel_id": room.id, "channel_name": "privategroup" if room.private else room.name,
                    "user_id": person["id"], "user_name": person["name"], "command": command or self.command,
                    "text": text, "api_app_id": ws.app_id, "is_enterprise_install": "false",
                    "response_url": f"https://hooks.slack.com/commands/{ws.team['id']}/{ws.new_id('', 13)}",
                    "trigger_id": ws.trigger_id()}
        return self._interact(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def message_shortcut(self, channel: str, ts: str, user: str, *, callback_id: str | None = None) -> dict[str, Any]:
        """Use the "Open a ticket" message shortcut on message `ts`; the app's answer ({} is the usual)."""
        ws = self.ws
        with ws.lock:
            room, person = ws.channel(channel, as_bot=False), ws.user(user)
            payload = {"type": "message_action", "token": self.verification_token, "action_ts": ws.next_ts(),
                       "team": {"id": ws.team["id"], "domain": ws.team["domain"]},
                       "user": {"id": person["id"], "username": person["name"], "team_id": ws.team["id"],
                                "name": person["name"]},
                       "channel": {"id": room.id, "name": room.name}, "is_enterprise_install": False,
                       "enterprise": None, "callback_id": callback_id or self.callback_id,
                       "trigger_id": ws.trigger_id(), "message_ts": ts,
                       "response_url": f"https://hooks.slack.com/app/{ws.team['id']}/{ws.new_id('', 13)}",
                       "message": ws.message_view(room, ws.find(room, ts))}
        return self._interact(urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded")

    # -- readers --------------------------------------------------------------------------------------
    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message of the channel, oldest first (thread replies included; the app's posts with blocks)."""
        with self.ws.lock:
            room = self.ws.channel(channel, as_bot=False)
            return [self.ws.message_view(room, m) for m in room.messages]

    def bot_messages(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.messages(channel) if m.get("bot_id") == self.ws.bot_id]
