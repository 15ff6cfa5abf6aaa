"""A scripted Slack Web API on loopback for the Slack connector's unit tests.

slack_sdk's WebClient speaks urllib, which `responses` cannot intercept; this fake answers over real HTTP
instead: each method gets the answers a test scripts (status, JSON body, headers), in order, and every
call is recorded (method, arguments, headers) so tests assert exactly what the connector sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connectors.simulator import ServerThread

FIXTURES = Path(__file__).parent / "fixtures" / "slack"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeSlackApi:
    """`script("chat.postMessage", {"ok": True, ...})` queues answers; `calls` records requests."""

    def __init__(self) -> None:
        self.answers: dict[str, deque[tuple[int, Any, dict[str, str], float]]] = defaultdict(deque)
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.api_route("/api/{method}", methods=["GET", "POST"])
        async def answer(method: str, request: Request) -> Response:
            body = await request.body()
            args: dict[str, Any] = dict(request.query_params)
            if request.headers.get("content-type", "").startswith("application/json") and body:
                args.update(json.loads(body))
            elif body:
                args.update({k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()})
            with self.lock:
                self.calls.append((method, args, dict(request.headers)))
                queued = self.answers[method].popleft() if self.answers[method] else None
            if queued is None:
                return JSONResponse({"ok": False, "error": f"fake_not_scripted:{method}"})
            status, payload, headers, delay = queued
            if delay:
                await asyncio.sleep(delay)
            if isinstance(payload, str):
                return Response(payload, status_code=status, headers=headers, media_type="text/html")
            return JSONResponse(payload, status_code=status, headers=headers)

        self.server = ServerThread(app).start()
        self.api_url = f"{self.server.url}/api"

    def script(self, method: str, *answers: Any, status: int = 200, headers: dict[str, str] | None = None,
               delay: float = 0.0) -> None:
        with self.lock:
            for answer in answers:
                self.answers[method].append((status, fixture(answer) if isinstance(answer, str) and answer.endswith(".json")
                                             else answer, headers or {}, delay))

    def called(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for name, args, _headers in self.calls if name == method]

    def stop(self) -> None:
        self.server.stop()
