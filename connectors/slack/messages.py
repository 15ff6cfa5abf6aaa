"""Slack messages in the bridge's words: timestamps, plain text, which messages are captured, and the
`Change` one captured message becomes (the same from a webhook and from a poll).

A message is identified by its channel and ``ts`` (Slack's own id for it, unique per channel), so the
timeline entry id is ``<channel>:<ts>`` and the change's event id ``slack:message:<channel>:<ts>``: a
message seen through the Events API, redelivered with ``X-Slack-Retry-Num``, reacted to twice, or read
again by the catch-up poll is stored once by the inbox and noted once by the engine.

Never captured: messages a bot or app posted (``bot_id``, subtype ``bot_message``; the bridge's own posts
are among them) and any text carrying the bridge's marker, so a desk reply posted into the channel can
never come back to the desk as a work note.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, TimelineEntry
from connectors.base import has_marker

#: Message subtypes a person writes (no subtype is an ordinary message); every other subtype is noise
#: (joins, topic changes, edits, deletions) or a bot's post.
PERSON_SUBTYPES = frozenset({"thread_broadcast", "file_share", "me_message"})
_TS = re.compile(r"^(\d{1,12})\.(\d{1,6})$")
_ENTITY = re.compile(r"<([^<>]*)>")

NameOf = Callable[[str], str | None]


def ts_time(ts: object, *, field: str = "ts") -> datetime:
    """A Slack timestamp (``"1712345678.000200"``: unix seconds, a dot, microseconds) as an aware time."""
    match = _TS.match(ts) if isinstance(ts, str) else None
    if match is None:
        raise WebhookError(f"{field} must be a Slack timestamp like \"1712345678.000200\", got {ts!r:.60}",
                           status=400)
    seconds, fraction = match.groups()
    return datetime.fromtimestamp(int(seconds), tz=UTC) + timedelta(microseconds=int(fraction.ljust(6, "0")))


def time_ts(moment: datetime) -> str:
    """The Slack timestamp of a moment (for ``oldest``/``latest`` and poll cursors)."""
    seconds = moment.timestamp()
    whole = int(seconds)
    return f"{whole}.{round((seconds - whole) * 1_000_000):06d}"


def plain_text(text: str | None, *, name_of: NameOf | None = None) -> str:
    """Slack's message markup as plain text for a desk journal: ``<@U123>`` -> ``@alice``, ``<#C1|ops>``
    -> ``#ops``, ``<!here>`` -> ``@here``, ``<https://x|docs>`` -> ``docs (https://x)``, and the three
    escaped characters (``&amp; &lt; &gt;``) back to themselves."""

    def entity(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or (name_of(target[1:]) if name_of else None) or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            special = target[1:].split("^")[0]
            return label or ("@" + special if special in ("here", "channel", "everyone") else "")
        if label and label != target and not target.startswith("mailto:"):
            return f"{label} ({target})"
        return label or target

    return html.unescape(_ENTITY.sub(entity, text or "")) if text else ""


def is_bot_message(message: Mapping[str, Any]) -> bool:
    """Posted by a bot or app (the bridge's own posts included): never captured."""
    return bool(message.get("bot_id")) or message.get("subtype") == "bot_message" \
        or bool(message.get("bot_profile"))


def is_capturable(message: Mapping[str, Any]) -> bool:
    """A person's message that may become a work note: no bot, no system subtype, no bridge marker,
    some text or files."""
    subtype = message.get("subtype")
    if subtype is not None and subtype not in PERSON_SUBTYPES:
        return False
    if is_bot_message(message) or has_marker(message.get("text")):
        return False
    return bool((message.get("text") or "").strip() or message.get("files"))


def message_text(message: Mapping[str, Any], *, name_of: NameOf | None = None) -> str:
    """The plain text of a message, with the names of shared files appended."""
    text = plain_text(message.get("text"), name_of=name_of).strip()
    files = [str(f.get("name") or f.get("title") or f.get("id")) for f in message.get("files") or ()
             if isinstance(f, Mapping)]
    lines = ([text] if text else []) + [f"[file: {name}]" for name in files]
    return "\n".join(lines)


def entry_id(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def message_event_id(channel: str, ts: str) -> str:
    return f"slack:message:{channel}:{ts}"


def message_entry(channel: str, message: Mapping[str, Any], *, author: str | None,
                  name_of: NameOf | None = None) -> TimelineEntry:
    """One message as a ``note`` timeline entry (id ``<channel>:<ts>``)."""
    ts = message.get("ts")
    return TimelineEntry(id=entry_id(channel, str(ts)), at=ts_time(ts), kind="note",
                         text=message_text(message, name_of=name_of), author=author)


def message_change(connection: str, channel: str, message: Mapping[str, Any], *, author: str | None,
                   via: str, name_of: NameOf | None = None) -> Change:
    """A captured message as a ``chat.message`` change of the channel's record."""
    entry = message_entry(channel, message, author=author, name_of=name_of)
    return Change(connection=connection, event_id=message_event_id(channel, str(message["ts"])),
                  event_type="chat.message", record_id=channel, occurred_at=entry.at, entries=(entry,),
                  actor=author, via=via)


def reacted_with(message: Mapping[str, Any], emoji: str) -> bool:
    """Whether a history message carries reaction `emoji` (skin-tone variants count as the emoji)."""
    return any(isinstance(r, Mapping) and str(r.get("name", "")).split("::")[0] == emoji
               for r in message.get("reactions") or ())


def mentions(message: Mapping[str, Any], user_id: str | None) -> bool:
    """Whether a message @mentions `user_id` (the app's bot user)."""
    return bool(user_id) and f"<@{user_id}" in str(message.get("text") or "")
