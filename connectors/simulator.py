"""Shared plumbing for the loopback simulators: a real HTTP server in a thread, and fault knobs.

Each connector's `simulator.py` builds a FastAPI app reproducing the parts of the real API the connector
uses (paths, fields, status codes, pagination, rate-limit headers, auth). `ServerThread` serves it with
uvicorn on a loopback port, so the real client libraries (`pysnow`, `requests`) talk to it over real
HTTP. `Faults` injects server errors, 429 with Retry-After, connection resets and slow answers, seeded
so a failing test can be replayed.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Faults:
    """Fault injection knobs, changeable while the simulator runs.

    Rates are probabilities per request in [0, 1]. `server_error_rate` answers 500/502/503;
    `rate_limit_rate` answers 429 with ``Retry-After: retry_after`` seconds; `reset_rate` drops the
    connection without an answer; `slow_rate` delays the answer by `slow_seconds`. Only API paths are
    affected, never the simulator's own control endpoints.
    """

    server_error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    reset_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.5
    retry_after: int = 1
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=lambda: {"5xx": 0, "429": 0, "reset": 0, "slow": 0})

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def configure(self, **knobs: float) -> None:
        """Change knobs at run time (e.g. ``configure(server_error_rate=0.3)``)."""
        with self._lock:
            for name, value in knobs.items():
                if not hasattr(self, name) or name in ("injected",):
                    raise AttributeError(f"unknown fault knob {name!r}")
                setattr(self, name, value)

    def draw(self) -> str | None:
        """Decide the fault for one request: ``5xx``, ``429``, ``reset``, ``slow`` or None."""
        with self._lock:
            roll = self._random.random()
            for kind, rate in (("5xx", self.server_error_rate), ("429", self.rate_limit_rate),
                               ("reset", self.reset_rate), ("slow", self.slow_rate)):
                if roll < rate:
                    self.injected[kind] += 1
                    return kind
                roll -= rate
            return None

    def pick_status(self) -> int:
        with self._lock:
            return self._random.choice((500, 502, 503))


def basic_auth_user(request: Request, users: Mapping[str, str]) -> str | None:
    """The user a ``Basic`` Authorization header names, if its password matches `users` (constant time)."""
    import base64
    import binascii
    import hmac

    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = users.get(user)
    if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
        return None
    return user


class ConnectionReset(Exception):
    """Raised inside a handler to make the server drop the connection without an answer."""


def install_faults(app: FastAPI, faults: Faults, *, applies: Callable[[str], bool],
                   error_body: Callable[[int], dict]) -> None:
    """Add middleware to `app` injecting `faults` on paths where `applies(path)` is true.

    `error_body(status)` gives the vendor's own error JSON for the injected status, so clients parse
    the injected errors exactly as they would parse real ones.
    """

    @app.middleware("http")
    async def inject(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not applies(request.url.path):
            return await call_next(request)
        kind = faults.draw()
        if kind == "reset":
            transport = request.scope.get("transport") or _transport_of(request)
            if transport is not None:
                transport.abort()
            raise ConnectionReset()
        if kind == "429":
            return JSONResponse(error_body(429), status_code=429,
                                headers={"Retry-After": str(faults.retry_after)})
        if kind == "5xx":
            status = faults.pick_status()
            return JSONResponse(error_body(status), status_code=status)
        if kind == "slow":
            import asyncio

            await asyncio.sleep(faults.slow_seconds)
        return await call_next(request)


def _transport_of(request: Request) -> object | None:
    """The asyncio transport under a request, for aborting it (uvicorn exposes it via the receive callable)."""
    receive = request.receive
    owner = getattr(receive, "__self__", None)
    return getattr(owner, "transport", None)


class ServerThread:
    """Serve an ASGI app on a loopback port in a background thread, with a clean stop.

    >>> server = ServerThread(app).start()   # doctest: +SKIP
    >>> server.url                           # 'http://127.0.0.1:54321'
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, name=f"http-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        """Start serving and return once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Finish in-flight requests and stop."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
