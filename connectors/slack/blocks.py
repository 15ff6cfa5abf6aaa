"""What the bridge posts into a channel, as Block Kit plus the plain ``text`` Slack shows in notifications.

Text that comes from the desk is escaped (``& < >`` as Slack's formatting rules require), so a desk
comment can never ping ``<!channel>``, fake a link or mention a user. The ``text`` fallback keeps the
bridge's marker (``[itsm-bridge:<op>]``): it is what `has_note` searches and what tells the bridge its own
posts apart; the blocks show the note without it. Limits honoured (api.slack.com/reference/block-kit):
a section's text holds 3000 characters, a section at most 10 fields of 2000, a message at most 50 blocks.
"""

from __future__ import annotations

import re
from typing import Any

from connectors.base import MARKER_PREFIX, Announcement, marker

SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
FIELDS_PER_SECTION = 10
MAX_BLOCKS = 50
_TRAILING_MARKER = re.compile(r"\s*" + re.escape(MARKER_PREFIX) + r"[^\]]*\]\s*$")


def escape(text: str) -> str:
    """Slack's three control characters escaped (api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_target(url: str) -> str:
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_marker(text: str) -> str:
    """The note as people read it: the bridge's trailing marker removed."""
    return _TRAILING_MARKER.sub("", text)


def note_message(text: str) -> dict[str, Any]:
    """``chat.postMessage`` arguments for a note (a desk reply, the ticket link): `text` keeps the marker."""
    body = escape(without_marker(text)) or " "
    chunks = [body[i: i + SECTION_LIMIT] for i in range(0, len(body), SECTION_LIMIT)][: MAX_BLOCKS - 1]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
                                    for chunk in chunks]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "via itsm-bridge"}]})
    return {"text": escape(text), "blocks": blocks}


def announcement_message(announcement: Announcement) -> dict[str, Any]:
    """``chat.postMessage`` arguments for a desk change: the ticket number linked, one field per change
    (``*State*`` / ``In Progress → Resolved``), who changed it; the text fallback carries a marker."""
    number = escape(announcement.number)
    ticket = f"<{_link_target(announcement.url)}|{number}>" if announcement.url else number
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {
        "type": "mrkdwn", "text": f":ticket: *{escape(announcement.desk)} {ticket}* was updated"}}]
    fields = [{"type": "mrkdwn", "text": _clip(
        f"*{escape(change.label)}*\n{escape(change.old or '(none)')} → {escape(change.new or '(none)')}", FIELD_LIMIT)}
        for change in announcement.changes]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start: start + FIELDS_PER_SECTION]})
    who = f"Changed by {escape(announcement.actor)} in {escape(announcement.desk)}" if announcement.actor \
        else f"Changed in {escape(announcement.desk)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{who} · via itsm-bridge"}]})
    if announcement.tag:  # the outbox's marker: a retried post is found by it (has_note) and never echoes
        return {"text": escape(announcement.text()), "blocks": blocks[:MAX_BLOCKS]}
    tag = marker(f"announce:{announcement.number}")
    return {"text": f"{escape(announcement.text())} {tag}", "blocks": blocks[:MAX_BLOCKS]}
