"""What a connector is: one class per external system, declaring what it can do.

A *source* (PagerDuty, Opsgenie, ...) turns webhooks and polls into `Change`s carrying an `Incident`, and
accepts the way back (`transition`, `add_note`). A *target* (ServiceNow, JSM) finds, creates and updates
tickets, adds notes, and reports desk-side changes through `poll`. A system may be both.

Connectors do I/O and normalisation only. They raise the typed errors of `bridge.errors` and never
retry or sleep (the session from `bridge.http` and the outbox do that). The pure normalisers
(vendor JSON -> canonical model) are plain functions in each connector module, tested on fixtures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import requests

from bridge.model import Change, RecordRef, Ticket

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

    @abstractmethod
    def add_note(self, record_id: str, text: str) -> None:
        """Append `text` (which already carries the bridge's marker) to the record's timeline."""

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

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Set `fields` on the ticket (only those given; journal fields append)."""
        raise NotImplementedError(f"{self.slug} is not a target")

    def get(self, record_id: str) -> Ticket:
        """The ticket as it is now (used by convergence checks and the demo)."""
        raise NotImplementedError(f"{self.slug} is not a target")
