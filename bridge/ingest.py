"""Getting changes into the inbox: from webhooks (verified first) and from polls.

The rule that makes "nothing lost" true: a webhook is answered 2xx only after its changes are
committed to the inbox. Redeliveries are recognised by (connection, event id) and answered 2xx without
a second row. A request that passes the signature check but cannot be understood is kept as a
dead-letter (with its body) and answered 400 with the reason, so nothing authenticated is ever dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bridge import audit
from bridge.errors import TransientError, WebhookError
from bridge.model import Change
from bridge.runtime import Runtime
from bridge.store import DeadLetter, InboxEvent, dumps, is_transient, retry_transient
from connectors.base import WebhookReply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    #: The tool's expected answer (Slack's url_verification challenge, a slash command's reply), if any.
    reply: WebhookReply | None = None


def store_changes(runtime: Runtime, changes: Sequence[Change], *, cursor: tuple[str, str] | None = None,
                  observed_at: datetime | None = None) -> IngestResult:
    """Commit changes to the inbox in one transaction (and move a poll cursor in the same one).

    `observed_at` is when the state the changes carry was read (a poll's start): a snapshot read before
    the bridge's own last write to that record may be stale, and the engine treats it so.
    """
    (result,) = store_groups(runtime, [changes], cursor=cursor, observed_at=observed_at)
    return result


def store_groups(runtime: Runtime, groups: Sequence[Sequence[Change]], *, cursor: tuple[str, str] | None = None,
                 observed_at: datetime | None = None) -> list[IngestResult]:
    """Commit several requests' changes in one transaction (group commit); one result per group."""
    observed_at = observed_at or runtime.clock()
    with runtime.store.transaction() as session:
        stored: list[list[tuple[Change, str]]] = []
        for changes in groups:
            kept = []
            for change in changes:
                values = {
                    "connection": change.connection, "event_id": change.event_id, "event_type": change.event_type,
                    "record_key": f"{change.connection}:{change.record_id}", "change": dumps(change.to_dict()),
                    "status": "pending", "received_at": runtime.clock(), "observed_at": observed_at,
                }
                if runtime.store.insert_ignore(session, InboxEvent, values):
                    kept.append((change, values["record_key"]))
            stored.append(kept)
        if cursor is not None:
            runtime.store.set_cursor(session, *cursor)
        # The audit entries after every insert: an insert may wait for another transaction's insert of
        # the same event (a webhook and a poll, two replicas), and it must not wait holding the audit
        # chain's lock, which that other transaction needs to finish (a deadlock on PostgreSQL).
        for kept in stored:
            for change, record_key in kept:
                audit.append(runtime.store, session, "event.received", record_key,
                             {"event_id": change.event_id, "event_type": change.event_type, "via": change.via})
    results = []
    for changes, kept in zip(groups, stored, strict=True):
        accepted, duplicates = len(kept), len(changes) - len(kept)
        if accepted:
            runtime.metrics.events_received.labels(changes[0].connection, changes[0].via).inc(accepted)
        if duplicates:
            runtime.metrics.events_duplicate.labels(changes[0].connection).inc(duplicates)
        results.append(IngestResult(accepted, duplicates))
    return results


def ingest_webhook(runtime: Runtime, connection: str, body: bytes, headers: Mapping[str, str]) -> IngestResult:
    """Verify, parse and store one webhook request. Raises `WebhookError` with the status to answer."""
    connector = runtime.connectors.get(connection)
    if connector is None or not runtime.receives_webhooks(connection):
        raise WebhookError(f"no webhook connection named {connection!r}", status=404)
    try:
        connector.verify_webhook(body, headers, now=runtime.clock())
    except WebhookError as exc:
        runtime.metrics.webhooks_rejected.labels(connection, str(exc.status)).inc()
        log.warning("webhook for %s refused: %s", connection, exc)
        raise
    try:
        changes = connector.parse_webhook(body, headers)
    except TransientError as exc:  # parsing needed the tool's API (a reacted message) and it is away: retry
        runtime.metrics.webhooks_rejected.labels(connection, "503").inc()
        raise WebhookError(f"could not complete the event from {connection} right now ({exc}); send it again",
                           status=503) from exc
    except WebhookError as exc:
        runtime.metrics.webhooks_rejected.labels(connection, str(exc.status)).inc()
        with runtime.store.answering():
            keep_rejected(runtime, connection, body, str(exc))
        raise
    with runtime.store.answering():  # the sender waits for our 2xx: before the worker's next transaction
        try:  # with the webhooks that arrive meanwhile, in one transaction
            stored = runtime.webhook_commits.submit(
                changes, lambda groups: retry_transient(lambda: store_groups(runtime, groups)))
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise WebhookError("the store is busy right now (its transactions kept deadlocking); send it again",
                               status=503) from exc
    reply = connector.webhook_reply(body, headers)  # only after the changes are durable
    return replace(stored, reply=reply) if reply is not None else stored


def keep_rejected(runtime: Runtime, connection: str, body: bytes, reason: str) -> None:
    """A signed request we could not understand: keep it (dead-letter + audit) so it can be fixed and replayed."""
    payload = body.decode("utf-8", errors="replace")
    with runtime.store.transaction() as session:
        letter = DeadLetter(kind="webhook", connection=connection, error=reason, payload=payload)
        session.add(letter)
        session.flush()
        audit.append(runtime.store, session, "webhook.dead_lettered", connection,
                     {"dead_letter": letter.id, "reason": reason, "bytes": len(body)})
    runtime.metrics.dead_letters.labels("webhook").inc()


#: Changes of one poll stored per transaction. A catch-up poll (a daemon back after an outage) can bring
#: thousands; stored in one transaction, they would hold the write lock, and every webhook waiting for
#: it, for as long as storing all of them takes.
POLL_CHUNK = 500


def poll_connection(runtime: Runtime, connection: str, *, chunk: int = POLL_CHUNK) -> IngestResult:
    """One poll of `connection` since its cursor, stored `chunk` changes per transaction.

    The new cursor is committed with the last chunk only: should the bridge stop in between, the next
    poll reads the same changes again, and the inbox drops those already stored (by event id).
    """
    connector = runtime.connectors[connection]
    name = f"poll:{connection}"
    started = runtime.clock()
    result = connector.poll(runtime.store.get_cursor(name), now=started)
    cursor = (name, result.cursor) if result.cursor else None
    if not result.changes:
        if cursor:
            with runtime.store.transaction() as session:
                runtime.store.set_cursor(session, *cursor)
        return IngestResult(0, 0)
    changes = list(result.changes)
    accepted = duplicates = 0
    for start in range(0, len(changes), chunk):
        last = start + chunk >= len(changes)
        stored = store_changes(runtime, changes[start:start + chunk], cursor=cursor if last else None,
                               observed_at=started)
        accepted, duplicates = accepted + stored.accepted, duplicates + stored.duplicates
    return IngestResult(accepted, duplicates)


def describe(body: bytes) -> str:
    """A short, safe description of a body for logs (never the body itself, which may hold personal data)."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"{len(body)} bytes, not JSON"
    return f"{len(body)} bytes, keys {sorted(data)[:5]}" if isinstance(data, dict) else f"{len(body)} bytes"
