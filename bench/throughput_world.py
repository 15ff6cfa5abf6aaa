"""The world bench/throughput.py measures: simulators in the bench process, the daemon in its own.

The ServiceNow simulator (no faults) is the desk whose calls are counted; the PagerDuty simulator only
exists so the bridge's backlink notes (one per new ticket) land somewhere real and come back as signed
echo webhooks, as they would from PagerDuty. The daemon runs as ``python -m bridge run`` in a subprocess:
its peak RSS is then its own (``VmHWM`` in /proc/<pid>/status) and it shares no GIL with the load.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from connectors.pagerduty.simulator import PagerDutySimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import free_port

ROUTE = "pagerduty-to-servicenow"
#: High enough never to pace the bench: the most `rate_limit_per_minute` accepts (bridge/config_limits.py).
RATE_LIMIT_PER_MINUTE = 1_000_000
RATE_LIMIT_BURST = 100_000
#: No catch-up polls of PagerDuty during the run: its state is final before the first event is sent, so a
#: poll would race the webhooks. The daemon's first poll runs before any incident exists; `sync --once`
#: afterwards polls it once more (the echo check).
PAGERDUTY_POLL_SECONDS = 86_400

CONFIG = """\
# Written by bench/throughput.py.
[database]
url = "{database_url}"

[server]
host = "127.0.0.1"
port = {port}

[connections.pagerduty]
type = "pagerduty"
api_url = "{pd_url}"
token = "file:secrets/pagerduty-token"
webhook_secret = "file:secrets/pagerduty-webhook-secret"
from_email = "bridge@example.com"
poll_interval = {pd_poll}
rate_limit_per_minute = {rate}
rate_limit_burst = {burst}

[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/servicenow-user"
password = "file:secrets/servicenow-password"
rate_limit_per_minute = {rate}
rate_limit_burst = {burst}

[[routes]]
name = "{route}"
source = "pagerduty"
target = "servicenow"
preset = "pagerduty-servicenow"
"""


class WriteLog:
    """ASGI middleware keeping every ticket write the desk receives (time, method, path, body), so the
    limit can replay exactly the bridge's creates and PATCHes, and the run knows its last desk write."""

    def __init__(self, app: Callable[..., Awaitable[None]], log: list[tuple[float, str, str, bytes]]) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[None]]) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PATCH") \
                or not str(scope.get("path", "")).startswith("/api/now/table/incident"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def keep(message: Any = None) -> Any:
            message = await receive()
            if message.get("type") == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def sent(message: Any) -> None:
            if message.get("type") == "http.response.start" and 200 <= message.get("status", 500) < 300:
                query = scope.get("query_string", b"").decode()
                self.log.append((time.perf_counter(), scope["method"], scope["path"] + (f"?{query}" if query else ""),
                                 b"".join(chunks)))
            await send(message)

        await self.app(scope, keep, sent)


@dataclass
class World:
    folder: Path
    servicenow: ServiceNowSimulator
    pagerduty: PagerDutySimulator
    config_path: Path
    database_url: str
    port: int
    creds: dict[str, str]
    writes: list[tuple[float, str, str, bytes]] = field(default_factory=list)
    daemon: subprocess.Popen[bytes] | None = None
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    _sampling: threading.Event = field(default_factory=threading.Event)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/pagerduty"

    @property
    def daemon_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def build_world(folder: Path, database_url: str | None) -> World:
    """Simulators started, secrets and config written (daemon not started yet)."""
    if database_url:
        require_empty(database_url)
    creds = {"pagerduty-token": secrets.token_urlsafe(20), "pagerduty-webhook-secret": secrets.token_urlsafe(24),
             "servicenow-user": "itsm.bridge", "servicenow-password": secrets.token_urlsafe(16)}
    (folder / "secrets").mkdir(exist_ok=True)
    for name, value in creds.items():
        path = folder / "secrets" / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
    writes: list[tuple[float, str, str, bytes]] = []
    servicenow = ServiceNowSimulator(users={creds["servicenow-user"]: creds["servicenow-password"]})
    servicenow.app.add_middleware(WriteLog, log=writes)
    servicenow.start()
    pagerduty = PagerDutySimulator(token=creds["pagerduty-token"], webhook_secret=creds["pagerduty-webhook-secret"],
                                   rate_limit=10**9).start()
    url = database_url or f"sqlite:///{(folder / 'itsm-bridge.db').as_posix()}"
    port = free_port()
    config_path = folder / "config.toml"
    config_path.write_text(CONFIG.format(database_url=url, port=port, pd_url=pagerduty.url, sn_url=servicenow.url,
                                         pd_poll=PAGERDUTY_POLL_SECONDS, rate=RATE_LIMIT_PER_MINUTE,
                                         burst=RATE_LIMIT_BURST, route=ROUTE), encoding="utf-8")
    config_path.chmod(0o600)  # --database-url may carry a password
    return World(folder, servicenow, pagerduty, config_path, url, port, creds, writes)


def start_daemon(world: World, *, profile: Path | None = None, timeout: float = 60.0) -> None:
    """`python -m bridge run` in a subprocess; returns once /healthz answers and both first polls are done.
    With `profile`, the daemon runs under bench/throughput_profile.py and leaves its profiles there."""
    log = (world.folder / "daemon.log").open("ab")
    command = [sys.executable, "-m", "bridge", "run", "--config", str(world.config_path)]
    if profile is not None:
        command = [sys.executable, str(Path(__file__).with_name("throughput_profile.py")), str(world.config_path),
                   str(profile)]
    world.daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=world.folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if world.daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {world.daemon.returncode}; see {world.folder / 'daemon.log'}")
        try:
            health = requests.get(f"{world.daemon_url}/healthz", timeout=2)
            if health.ok and _first_polls_done(world):
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError(f"the daemon did not come up in {timeout:.0f}s; see {world.folder / 'daemon.log'}")
    threading.Thread(target=_sample_rss, args=(world,), name="rss-sampler", daemon=True).start()


def reader(url: str) -> Engine:
    """An engine for the bench's own reads of the daemon's store. Not `bridge.store.Store`: that begins
    every SQLite transaction IMMEDIATE (taking the write lock), and watching must not slow the daemon."""
    return create_engine(url)


def require_empty(url: str) -> None:
    """Refuse a database that already holds a bridge's data: its links would point at tickets this run's
    fresh simulator does not have, and its rows would be counted as this run's."""
    engine = reader(url)
    try:
        if inspect(engine).has_table("inbox"):
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT COUNT(*) FROM inbox")).scalar_one()
            if rows:
                raise SystemExit(f"bench/throughput.py: the database at --database-url already holds {rows} inbox "
                                 "events; give it an empty database (drop and create it again)")
    finally:
        engine.dispose()


def _first_polls_done(world: World) -> bool:
    from bridge.store import Cursor

    engine = reader(world.database_url)
    try:
        with Session(engine) as session:
            return all(session.get(Cursor, f"poll:{name}") for name in ("pagerduty", "servicenow"))
    except SQLAlchemyError:  # the schema is still being created
        return False
    finally:
        engine.dispose()


def proc_status_kb(pid: int, key: str) -> int:
    """A ``kB`` figure of /proc/<pid>/status (``VmHWM`` peak resident set, ``VmRSS`` now); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat), 0.0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sample_rss(world: World) -> None:
    started = time.perf_counter()
    while world.daemon is not None and world.daemon.poll() is None and not world._sampling.is_set():
        world.rss_samples.append((time.perf_counter() - started, proc_status_kb(world.daemon.pid, "VmRSS")))
        world._sampling.wait(1.0)


def stop_daemon(world: World) -> tuple[int, float]:
    """SIGTERM the daemon (it finishes the op in hand); returns its peak RSS in kB and the CPU seconds it
    used, both read just before."""
    assert world.daemon is not None
    peak, cpu = proc_status_kb(world.daemon.pid, "VmHWM"), cpu_seconds(world.daemon.pid)
    world._sampling.set()
    world.daemon.send_signal(signal.SIGTERM)
    try:
        world.daemon.wait(timeout=90)
    except subprocess.TimeoutExpired:
        world.daemon.kill()
        world.daemon.wait()
    return peak, cpu


def sync_once(world: World) -> tuple[int, str]:
    """`itsm-bridge sync --once --json` against the same store and simulators: (exit code, output)."""
    done = subprocess.run([sys.executable, "-m", "bridge", "sync", "--once", "--json", "--config",
                           str(world.config_path)], check=False, capture_output=True, cwd=world.folder,
                          timeout=1800)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def shut_down(world: World) -> None:
    if world.daemon is not None and world.daemon.poll() is None:
        stop_daemon(world)
    world.pagerduty.stop()
    world.servicenow.stop()
