"""The daemons bench/chaos.py torments: replicas as real processes, a load balancer, and the killer.

Each replica is ``python -m bridge run --config X --port P`` in its own process, on its own port, all on
one store. The source tool's simulator knows one webhook URL, so it is given the `Balancer`'s: a small
HTTP proxy in the bench process that hands each delivery to the next replica in turn, as a load balancer
in front of the replicas would. A delivery to a dead replica fails with 502, and the simulator retries it
later with the same webhook id, as the real tool does. The `Killer` SIGKILLs a random live replica at
random moments and restarts it on the same port after a short random pause.
"""

from __future__ import annotations

import http.client
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

#: Headers a proxy does not pass on (hop-by-hop, or recomputed for the new connection).
HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass
class Replica:
    """One ``itsm-bridge run`` process; `start` again after a kill reuses its port and appends to its log."""

    index: int
    port: int
    config_path: Path
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.folder / f"replica-{self.index}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the process and return once its /healthz answers (it has migrated and serves webhooks)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "--config", str(self.config_path), "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.index} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"replica {self.index} did not answer /healthz in {timeout:.0f}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when the machine or the OOM killer takes it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, *, timeout: float = 90.0) -> int | None:
        """SIGTERM and wait for the clean stop; the exit code (None if it had to be killed after all)."""
        if not self.alive:
            return self.process.returncode if self.process is not None else None
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


class Balancer:
    """Round-robin HTTP proxy over the replicas' ports: what the source tool's webhooks are sent to."""

    def __init__(self, replicas: list[Replica], *, timeout: float = 30.0) -> None:
        self.replicas = replicas
        self.forwarded = 0
        self.failed = 0
        self._turn = itertools.count()
        self._lock = threading.Lock()
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls do_<METHOD>
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_HEADERS}
                status, answer, kind = balancer.forward(self.path, body, headers, timeout)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender timed out waiting (a slow replica): it retries, with the same webhook id

            def log_message(self, *_args: object) -> None:  # the bench prints figures, not access lines
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="balancer", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Balancer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, path: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes, str]:
        """POST the raw bytes (signatures are over them) to the next replica; 502 when it does not answer."""
        with self._lock:
            replica = self.replicas[next(self._turn) % len(self.replicas)]
        connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            with self._lock:
                self.forwarded += 1
            return response.status, answer, response.getheader("Content-Type") or "application/json"
        except OSError as exc:  # refused (dead), reset or cut off mid-answer (killed while handling it)
            with self._lock:
                self.failed += 1
            return 502, f'{{"error":"replica {replica.index}: {type(exc).__name__}"}}'.encode(), "application/json"
        finally:
            connection.close()


@dataclass
class Killer:
    """A thread that SIGKILLs a random live replica `kills` times, `gap` seconds apart on average.

    After each kill the replica is restarted on its port after a pause of up to `max_pause` seconds
    (`start` waits for its health check, so kills never pile up on a replica still starting).
    """

    replicas: list[Replica]
    kills: int
    gap: float
    seed: int
    max_pause: float = 2.0
    done_kills: int = 0
    restarts: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Killer:
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)
        self._thread.start()
        return self

    def finished(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for all kills (and restarts) to be done (at once if never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """No more kills; a replica down right now is still restarted before this returns."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        while self.done_kills < self.kills:
            if self._stop.wait(rng.uniform(0.2, 1.8) * self.gap):
                return
            victim = rng.choice([replica for replica in self.replicas if replica.alive] or self.replicas)
            if victim.alive:
                victim.kill()
                self.done_kills += 1
            time.sleep(rng.uniform(0.1, self.max_pause))  # the pause is the workload, not a synchronisation
            try:
                victim.start()
                self.restarts += 1
            except RuntimeError as exc:  # reported by the bench; the other replicas (if any) go on
                self.errors.append(str(exc))
                return
