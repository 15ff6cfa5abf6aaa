"""What the shared contract suite needs from each connector: a `Harness` per connector type.

A harness starts the connector's own simulator with known credentials and webhook secret, builds the
connector against it with a real `bridge.http` session (real HTTP on loopback, the client library the
connector uses on the wire), makes the tool act the way a responder or a desk agent would, and captures
what the tool sends to the bridge. The suite (`test_connector_contract.py` and its siblings) only talks
to this interface, so a new connector joins by writing one harness class and listing it in
`tests/contract/harnesses.py`.

What a connector *cannot* do is never declared here: the suite reads it from the connector class itself
(`roles`, `can_add_notes`, `is_chat`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from bridge.http import RetryingSession, build_session
from connectors.base import Connector
from connectors.simulator import Faults, ServerThread

T = TypeVar("T")
#: Replies a capture endpoint gives: (status, JSON body) or None for a bare 200 ``{}``.
Reply = Callable[[bytes, Mapping[str, str]], tuple[int, dict[str, Any]] | None]


def contract_session(attempts: int = 3) -> RetryingSession:
    """The bridge's own session with short waits: retries stay real, the suite stays fast."""
    return build_session(attempts=attempts, initial_wait=0.01, max_wait=0.05)


@dataclass(frozen=True)
class Delivery:
    """One request a tool sent to its webhook URL, exactly as it arrived."""

    body: bytes
    headers: dict[str, str]  # lower-cased names, as the bridge's server sees them
    received_at: datetime    # aware UTC; what `verify_webhook(now=...)` is given for a live delivery


class CaptureServer:
    """A webhook endpoint on loopback recording every delivery's raw body and headers.

    `reply` answers what a tool insists on (Slack's url_verification challenge); everything else gets
    200 ``{}``. Nothing is verified here: verification is what the suite tests, on the recorded bytes.
    """

    def __init__(self, reply: Reply | None = None) -> None:
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            delivery = Delivery(body, {k.lower(): v for k, v in request.headers.items()},
                                datetime.now(UTC))
            with self._lock:
                self._deliveries.append(delivery)
            answer = reply(body, delivery.headers) if reply else None
            status, payload = answer or (200, {})
            return JSONResponse(payload, status_code=status)

        self._server = ServerThread(app)

    @property
    def url(self) -> str:
        return f"{self._server.url}/hook"

    def start(self) -> CaptureServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def take(self) -> list[Delivery]:
        """Every delivery recorded since the last `take`, oldest first."""
        with self._lock:
            taken, self._deliveries = self._deliveries, []
        return taken


class Harness(ABC):
    """Any connector: its simulator, its settings with right and wrong credentials, and its fault knobs.

    `faults` is handed to the simulator at start, so the suite can switch 5xx/429 on and off while one
    simulator serves a whole module. `secrets()` lists every value that must never appear in an error,
    a check message or a repr.
    """

    slug: ClassVar[str]
    connector_class: ClassVar[type[Connector]]
    #: An id in the tool's own format that names no record (a 404 from the API, not a malformed id).
    unknown_id: ClassVar[str]

    def __init__(self) -> None:
        self.faults = Faults(seed=7)
        # Deliberately not the slug: the suite checks connectors use the connection's name everywhere.
        self.name = f"contract-{self.slug.replace('_', '-')}"

    @abstractmethod
    def start(self) -> None:
        """Start the simulator (with `self.faults`) and anything else the connector talks to."""

    @abstractmethod
    def stop(self) -> None:
        """Stop everything `start` started."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Connection settings with the right credentials, pointing at the running simulator."""

    @abstractmethod
    def wrong_credentials(self) -> dict[str, Any]:
        """Overrides of `settings()` with credentials the simulator refuses."""

    @abstractmethod
    def secrets(self) -> tuple[str, ...]:
        """Every credential and webhook secret in play, right and wrong."""

    def build(self, *, attempts: int = 3, **overrides: Any) -> Connector:
        """The connector on a fresh session (ServiceNow puts basic auth on it, so never share one)."""
        return self.connector_class(self.name, {**self.settings(), **overrides},
                                    session=contract_session(attempts))

    def reset_faults(self) -> None:
        self.faults.configure(server_error_rate=0.0, rate_limit_rate=0.0, reset_rate=0.0, slow_rate=0.0,
                              retry_after=1)


class SourceHarness(Harness):
    """An on-call tool: a responder triggers, acknowledges, resolves and writes notes; webhooks go out.

    `act(action)` runs one responder action and returns what the tool delivered because of it, so a
    test gets a real, signed delivery for a known change.
    """

    webhook_secret: ClassVar[str]
    #: The settings key holding it (Slack calls it signing_secret, Teams security_token).
    webhook_secret_key: ClassVar[str] = "webhook_secret"
    #: Another secret in the tool's own format (incident.io wants ``whsec_<base64>``).
    wrong_webhook_secret: ClassVar[str]
    responder: ClassVar[str] = "alice"

    def start(self) -> None:
        self.capture = CaptureServer(reply=self.reply).start()
        self.start_tool(self.capture.url)

    def stop(self) -> None:
        self.stop_tool()
        self.capture.stop()

    def reply(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
        """What the capture endpoint answers (a bare 200 unless the tool needs a handshake)."""
        return None

    @abstractmethod
    def start_tool(self, webhook_url: str) -> None:
        """Start the simulator sending its signed webhooks to `webhook_url`."""

    @abstractmethod
    def stop_tool(self) -> None: ...

    @abstractmethod
    def wait_idle(self) -> bool:
        """Every webhook queued so far was delivered (the simulator's own `wait_idle`)."""

    @abstractmethod
    def trigger(self, title: str) -> str:
        """Open an incident as a responder would; its id as the connector names it."""

    @abstractmethod
    def acknowledge(self, record_id: str) -> None: ...

    @abstractmethod
    def resolve(self, record_id: str) -> None: ...

    @abstractmethod
    def add_note(self, record_id: str, text: str) -> None:
        """A responder writes a note on the incident in the tool."""

    @abstractmethod
    def tool_status(self, record_id: str) -> str:
        """The incident's status as the simulator holds it, in canonical words (from the tool's own)."""

    @abstractmethod
    def tool_notes(self, record_id: str) -> list[str]:
        """The texts of the incident's notes as the simulator holds them."""

    def act(self, action: Callable[[], T]) -> tuple[T, list[Delivery]]:
        """Run `action` and return its result with the deliveries it caused (earlier ones are drained)."""
        assert self.wait_idle(), f"{self.slug}: webhooks still pending before the action"
        self.capture.take()
        result = action()
        assert self.wait_idle(), f"{self.slug}: webhooks still pending after the action"
        return result, self.capture.take()


class TargetHarness(Harness):
    """A service desk: the bridge creates and updates tickets; a desk agent edits them in the desk."""

    #: The desk field holding a ticket's one-line title (ServiceNow short_description, Jira summary).
    title_field: ClassVar[str]
    #: A ticket number in the desk's format that no ticket has (for `find_number`).
    unknown_number: ClassVar[str]

    @abstractmethod
    def ticket_fields(self, title: str) -> dict[str, str]:
        """Fields a route would send for a new ticket titled `title`."""

    @abstractmethod
    def desk_value(self, record_id: str, field: str) -> str:
        """A field of the ticket as the simulator holds it (not through the connector)."""

    @abstractmethod
    def desk_edit(self, record_id: str, field: str, value: str) -> None:
        """A desk agent changes `field` in the desk's own UI (the simulator's desk helpers)."""


class ChatHarness(SourceHarness):
    """A chat tool: an incident is a channel; people post messages and type the open command there.

    The on-call verbs (`acknowledge`, `resolve`, `tool_status`) do not exist in chat; the suite never
    calls them for a connector declaring `is_chat`.
    """

    def acknowledge(self, record_id: str) -> None:
        raise NotImplementedError("chat has no incident status")

    def resolve(self, record_id: str) -> None:
        raise NotImplementedError("chat has no incident status")

    def tool_status(self, record_id: str) -> str:
        raise NotImplementedError("chat has no incident status")

    def trigger(self, title: str) -> str:
        """A new channel where someone types the open command: the channel is the record."""
        channel = self.create_channel(title)
        self.open_command(channel, title)
        return channel

    def add_note(self, record_id: str, text: str) -> None:
        self.post_message(record_id, text)

    def tool_notes(self, record_id: str) -> list[str]:
        return self.channel_texts(record_id)

    @abstractmethod
    def create_channel(self, name: str) -> str:
        """A channel the bot is a member of; its id."""

    @abstractmethod
    def post_message(self, channel: str, text: str) -> None:
        """A person posts `text` in `channel` in a way the connection captures."""

    @abstractmethod
    def open_command(self, channel: str, title: str) -> None:
        """A person types the open command with `title` in `channel`."""

    @abstractmethod
    def channel_texts(self, channel: str) -> list[str]:
        """Every message text in the channel as the simulator holds it, the bot's posts included."""
