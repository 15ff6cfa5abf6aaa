"""What a connector is: one class per external system, declaring what it can do.

A *source* (PagerDuty, Opsgenie, ...) turns webhooks and polls into `Change`s carrying an `Incident`, and
accepts the way back (`transition`, `add_note`). A *target* (ServiceNow, JSM) finds, creates and updates
tickets, adds notes, and reports desk-side changes through `poll`. A system may be both.

Connectors do I/O and normalisation only. They raise the typed errors of `bridge.errors` and never
retry or sleep (the session from `bridge.http` and the outbox do that). The pure normalisers
(vendor JSON -> canonical model) are plain functions in each connector module, tested on fixtures.

Rate limits and circuit breakers are not a connector's business either, with one duty for connectors
that bypass `self.session`: every request sent through `self.session` already waits for the
connection's rate limit (``rate_limit_per_minute``, `bridge.ratelimit`), and the outbox and the poller
consult the connection's circuit breaker before calling any connector method. A connector whose vendor
SDK sends its own requests (slack_sdk's `WebClient`, an MS Graph client) must take the same token
before each SDK call and report the SDK's 429s, so its connection keeps one shared pace::

    from bridge.ratelimit import note_rate_limited, throttle

    throttle(self.session)                  # = self.session.limiter.acquire(); may raise RateLimited
    try:
        response = self.client.chat_postMessage(channel=channel, text=text)
    except SlackApiError as exc:
        if exc.response.status_code == 429:
            note_rate_limited(self.session, float(exc.response.headers.get("Retry-After", 1)))
        raise TransientError(...) from None  # as usual: typed errors, no retry, no sleep here

`throttle` may raise `bridge.ratelimit.RateLimited` (a `TransientError`) instead of waiting for long;
let it propagate, the outbox reschedules the op without counting the attempt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import requests

from bridge.model import Change, RecordRef, Ticket, format_time

#: Marker appended to every note the bridge writes, so the way back recognises its own writes.
MARKER_PREFIX = "[itsm-bridge:"


def marker(op_id: str) -> str:
    """The tag appended to a note written by outbox op `op_id`, e.g. ``[itsm-bridge:42]``."""
    return f"{MARKER_PREFIX}{op_id}]"


def has_marker(text: str | None) -> bool:
    """Whether a note or comment was written by the bridge (carries its marker)."""
    return bool(text) and MARKER_PREFIX in text  # type: ignore[operator]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of `Connector.check()`: can we reach and use this system with this config?"""

    ok: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookReply:
    """What to answer a verified webhook with, when the tool expects more than a bare 2xx: Slack's
    url_verification challenge, the immediate (ephemeral) answer to a slash command, a Teams reply."""

    body: Mapping[str, Any]
    status: int = 200


@dataclass(frozen=True)
class FieldChange:
    """One desk field that changed, in words a responder reads (``State: In Progress -> Resolved``)."""

    field: str
    label: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Announcement:
    """A desk change told to an incident channel: which ticket, who changed it, what changed.

    Chat connectors render it for their tool (Slack Block Kit, a Teams Adaptive Card); the text form is
    the fallback shown in notifications and kept in the audit trail.
    """

    desk: str            # the desk's label, e.g. "ServiceNow"
    number: str          # INC0012345 / OPS-42
    url: str
    changes: tuple[FieldChange, ...]
    actor: str | None = None
    #: The bridge's marker for this post (`marker(op id)`): kept in the text so a retry finds it (`has_note`).
    tag: str = ""

    def text(self) -> str:
        parts = [f"{change.label}: {change.old or '(none)'} -> {change.new or '(none)'}" for change in self.changes]
        who = f" by {self.actor}" if self.actor else ""
        return f"{self.desk} {self.number} changed{who}: " + "; ".join(parts) + (f" {self.tag}" if self.tag else "")


@dataclass(frozen=True)
class PollResult:
    """What a poll found, and the cursor to resume from next time (opaque to the engine)."""

    changes: Sequence[Change]
    cursor: str | None


class Connector(ABC):
    """Base of every connector. Subclasses set `slug`, `roles` and implement the methods of their roles.

    `name` is the connection's name in config (``[connections.<name>]``); it appears in every error and
    audit entry. `settings` is the connection's validated config (secrets resolved). `session` is built
    by `bridge.http.build_session` and injected so tests and the daemon control retries.
    """

    slug: ClassVar[str]
    roles: ClassVar[frozenset[str]]  # {"source"}, {"target"} or both
    #: False where the API has no way to write a note (incident.io): no backlink note is queued there.
    can_add_notes: ClassVar[bool] = True
    #: True for chat tools (`ChatConnector`): desk changes reach them as announcements.
    is_chat: ClassVar[bool] = False

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        self.name = name
        self.settings = settings
        self.session = session

    # -- both roles ---------------------------------------------------------------------------------
    def check(self) -> CheckResult:
        """Reach the system with the configured credentials and say whether it works."""
        return CheckResult(ok=True, message="no check implemented")

    @abstractmethod
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Changes since `cursor` (None: since `now` minus the connector's catch-up window)."""

    def history(self, since: datetime, *, until: datetime) -> Iterator[PollResult]:
        """Backfill: the records changed between `since` and `until`, a batch at a time, each batch's
        `cursor` the ISO time up to which it is complete (where a resumed backfill starts again).

        The default is one poll from a cursor at `since`, which suits tools whose poll lists "updated
        since"; a tool whose listing is windowed or capped (PagerDuty) walks the period itself.
        """
        result = self.poll(format_time(since), now=until)
        yield PollResult(changes=result.changes, cursor=format_time(until))

    @abstractmethod
    def add_note(self, record_id: str, text: str) -> Ticket | None:
        """Append `text` (which already carries the bridge's marker) to the record's timeline.

        A desk that answers a write with the whole record (ServiceNow) returns it as a `Ticket`: the
        bridge keeps it as a read made right after its write, and a refresh then needs no call."""

    @abstractmethod
    def has_note(self, record_id: str, tag: str) -> bool:
        """Whether the record already has a note containing `tag`: makes a redelivered note a no-op."""

    # -- sources ------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        """Raise `WebhookError(status=401)` unless the request is signed by the configured secret."""
        raise NotImplementedError(f"{self.slug} does not receive webhooks")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        """The changes one verified webhook describes; `WebhookError(status=400)` if malformed."""
        raise NotImplementedError(f"{self.slug} does not receive webhooks")

    def webhook_reply(self, body: bytes, headers: Mapping[str, str]) -> WebhookReply | None:
        """The answer a verified request needs beyond "stored" (None: the usual 202/200)."""
        return None

    def transition(self, record_id: str, status: str) -> None:
        """Move a source incident to canonical `status` (``acknowledged``, ``resolved``, ``triggered``)."""
        raise NotImplementedError(f"{self.slug} cannot change status")

    # -- targets ------------------------------------------------------------------------------------
    def find(self, correlation_id: str) -> RecordRef | None:
        """The ticket already carrying `correlation_id`, if any: searched before every create."""
        raise NotImplementedError(f"{self.slug} is not a target")

    def create(self, fields: Mapping[str, str], *, correlation_id: str) -> RecordRef:
        """Create a ticket with `fields`, stamped with `correlation_id`."""
        raise NotImplementedError(f"{self.slug} is not a target")

    def update(self, record_id: str, fields: Mapping[str, str]) -> Ticket | None:
        """Set `fields` on the ticket (only those given; journal fields append); the ticket as the desk
        answered the write when it answers with the record (see `add_note`), else None."""
        raise NotImplementedError(f"{self.slug} is not a target")

    def get(self, record_id: str) -> Ticket:
        """The ticket as it is now (used by convergence checks and the demo)."""
        raise NotImplementedError(f"{self.slug} is not a target")

    def find_number(self, number: str) -> RecordRef | None:
        """The ticket a person knows by its number (INC0012345, OPS-42): ``/itsm link`` from chat."""
        raise NotImplementedError(f"{self.slug} is not a target")


class ChatConnector(Connector):
    """A chat tool (Slack, Teams): one incident channel is one source record.

    What it turns into `Change`s: ``/itsm open <title>`` (an `Incident` whose id is the channel id;
    ``raw["command"] == "open"``), ``/itsm link <number>`` (the same, with ``raw["link_ticket"]`` set:
    the engine links the existing ticket instead of creating one), and channel messages chosen by the
    connection's ``capture`` setting (a `Change` with no incident and one ``note`` `TimelineEntry` whose
    id is stable across webhook and poll, so a message is never noted twice). Messages the bridge posted
    itself carry the marker and are never turned into changes.

    The way back: `add_note` posts a message into the channel (desk replies, the ticket link), and
    `announce` posts a desk change formatted for the tool. Chat has no incident status to move, so the
    engine never asks a chat connector to `transition`; desk state changes arrive as announcements.
    """

    roles = frozenset({"source"})
    is_chat: ClassVar[bool] = True

    @abstractmethod
    def announce(self, record_id: str, announcement: Announcement) -> None:
        """Post `announcement` into channel `record_id` (a Block Kit message, an Adaptive Card)."""

    def transition(self, record_id: str, status: str) -> None:
        """Chat has no status; a desk state change reaches the channel through `announce`."""
