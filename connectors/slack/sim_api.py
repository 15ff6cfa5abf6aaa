"""The Web API methods of the Slack simulator, as Slack answers them (api.slack.com/methods/<method>).

`WebApi.answer(method, args)` returns the success JSON or raises `SlackError`. Reproduced: scopes per
method (``missing_scope`` with ``needed``/``provided``), ``not_in_channel``/``channel_not_found``/
``is_archived``, conversations.history (newest first, ``oldest``/``latest``/``inclusive``, top-level
messages only, ``has_more`` + ``response_metadata.next_cursor``), conversations.replies (parent first),
cursor pagination of users.conversations, chat.postMessage checks (``no_text``, ``msg_too_long`` over
40,000 characters, ``invalid_blocks`` against Block Kit's limits) and its per-channel rate tier (about one
message per second; 429 with ``Retry-After``) when enabled.
[!] Not verified against Slack: cursors are opaque base64 here as there (``next_ts:<ts>``, ``team:<id>``),
conversations.replies leads every page with the parent, and unknown methods answer HTTP 200.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from connectors.slack.sim_state import SimChannel, SimWorkspace, SlackError

SCOPES = ("chat:write", "channels:history", "groups:history", "channels:read", "groups:read", "users:read",
          "reactions:read", "pins:read", "commands")
BLOCK_TYPES = {"section", "context", "header", "divider", "actions", "image", "rich_text", "input", "markdown"}


def flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _uncursor(kind: str, cursor: Any) -> str | None:
    if not cursor:
        return None
    try:
        prefix, _, value = base64.b64decode(str(cursor), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    if prefix != kind or not value:
        raise SlackError("invalid_cursor")
    return value


def _limit(args: dict[str, Any], default: int, maximum: int) -> int:
    try:
        value = int(args.get("limit") or default)
    except ValueError:
        raise SlackError("invalid_limit") from None
    return max(1, min(value, maximum))


def _ts(args: dict[str, Any], name: str, default: float) -> float:
    value = args.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        raise SlackError(f"invalid_ts_{name}") from None


def block_errors(blocks: Any) -> list[str]:
    """What Slack would refuse in a ``blocks`` array (a subset of Block Kit's rules that matters here)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors = [] if len(blocks) <= 50 else ["no more than 50 items allowed [json-pointer:/blocks]"]
    for index, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            errors.append(f"unknown block type {kind!r} {where}")
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                errors.append(f"must provide text or fields {where}")
            if text is not None and not (isinstance(text, dict) and 0 < len(str(text.get("text") or "")) <= 3000):
                errors.append(f"text must be 1..3000 characters {where}/text")
            if fields is not None and (not isinstance(fields, list) or len(fields) > 10
                                       or any(len(str(f.get("text", ""))) > 2000 for f in fields)):
                errors.append(f"fields: at most 10, each at most 2000 characters {where}/fields")
        elif kind == "context" and not (isinstance(block.get("elements"), list) and 0 < len(block["elements"]) <= 10):
            errors.append(f"elements must hold 1..10 items {where}/elements")
        elif kind == "header" and len(str((block.get("text") or {}).get("text") or "")) > 150:
            errors.append(f"header text must be at most 150 characters {where}/text")
    return errors


class WebApi:
    """The methods, over one workspace. `scopes` are the bot token's; `post_rate_limit` enables the tier."""

    def __init__(self, ws: SimWorkspace, *, scopes: tuple[str, ...] = SCOPES, post_rate_limit: bool = False,
                 posts_per_second: int = 1, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ws, self.scopes, self.post_rate_limit = ws, set(scopes), post_rate_limit
        self.posts_per_second, self.monotonic = posts_per_second, monotonic
        self._posts: dict[str, deque[float]] = defaultdict(deque)
        self._tier_lock = threading.Lock()
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self.auth_test, "chat.postMessage": self.post_message,
            "chat.getPermalink": self.get_permalink, "conversations.history": self.history,
            "conversations.replies": self.replies, "conversations.info": self.info,
            "users.conversations": self.user_conversations, "users.info": self.users_info, "pins.list": self.pins,
        }

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method not in self.methods:
            raise SlackError("unknown_method", req_method=method)
        with self.ws.lock:
            return {"ok": True, **self.methods[method](args)}

    def need(self, *scopes: str) -> None:
        """Any of `scopes` will do (history of a public or a private channel)."""
        if not self.scopes & set(scopes):
            raise SlackError("missing_scope", needed=",".join(scopes), provided=",".join(sorted(self.scopes)))

    def _history_scope(self, channel: SimChannel) -> None:
        self.need("groups:history" if channel.private else "channels:history")

    # -- methods --------------------------------------------------------------------------------------
    def auth_test(self, _args: dict[str, Any]) -> dict[str, Any]:
        ws = self.ws
        return {"url": f"https://{ws.team['domain']}.slack.com/", "team": ws.team["name"], "user": ws.bot["name"],
                "team_id": ws.team["id"], "user_id": ws.bot["id"], "bot_id": ws.bot_id, "is_enterprise_install": False}

    def post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        self.need("chat:write")
        channel = self.ws.channel(args.get("channel"))
        if self.ws.bot["id"] not in channel.members:
            raise SlackError("not_in_channel")
        if channel.archived:
            raise SlackError("is_archived")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                raise SlackError("invalid_blocks_format") from None
        if blocks is not None and (errors := block_errors(blocks)):
            raise SlackError("invalid_blocks", errors=errors, response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})
        text = str(args.get("text") or "")
        if not text.strip() and not blocks:
            raise SlackError("no_text")
        if len(text) > 40_000:
            raise SlackError("msg_too_long")
        self._tier(channel)
        message = self.ws.post(channel, text=text, user=self.ws.bot, blocks=blocks, thread_ts=args.get("thread_ts"))
        return {"channel": channel.id, "ts": message["ts"], "message": self.ws.message_view(channel, message)}

    def _tier(self, channel: SimChannel) -> None:
        if not self.post_rate_limit:
            return
        with self._tier_lock:
            now, recent = self.monotonic(), self._posts[channel.id]
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            if len(recent) >= self.posts_per_second:
                raise SlackError("ratelimited", status=429, headers={"Retry-After": "1"})
            recent.append(now)

    def get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(args.get("channel"))
        message = self.ws.find(channel, args.get("message_ts"))
        return {"channel": channel.id, "permalink": self.ws.permalink(channel, message["ts"])}

    def history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.readable(args.get("channel"))
        self._history_scope(channel)
        oldest, latest = _ts(args, "oldest", 0.0), _ts(args, "latest", float("inf"))
        inclusive = flag(args.get("inclusive"))
        top = [m for m in channel.messages if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"]
        found = [m for m in reversed(top) if (oldest <= float(m["ts"]) <= latest if inclusive
                                              else oldest < float(m["ts"]) < latest)]
        after = _uncursor("next_ts", args.get("cursor"))
        if after is not None:
            found = [m for m in found if float(m["ts"]) <= float(after)]
        limit = _limit(args, 100, 999)
        page, rest = found[:limit], found[limit:]
        answer: dict[str, Any] = {"messages": [self.ws.message_view(channel, m) for m in page], "has_more": bool(rest),
                                  "pin_count": len(channel.pins), "channel_actions_ts": None, "channel_actions_count": 0}
        if rest:
            answer["response_metadata"] = {"next_cursor": _cursor("next_ts", rest[0]["ts"])}
        return answer

    def replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.readable(args.get("channel"))
        self._history_scope(channel)
        try:
            message = self.ws.find(channel, args.get("ts"))
        except SlackError:
            raise SlackError("thread_not_found") from None
        root = self.ws.find(channel, message.get("thread_ts") or message["ts"])
        oldest, latest = _ts(args, "oldest", 0.0), _ts(args, "latest", float("inf"))
        inclusive = flag(args.get("inclusive"))
        thread = [m for m in channel.messages if m.get("thread_ts") == root["ts"] and m["ts"] != root["ts"]
                  and (oldest <= float(m["ts"]) <= latest if inclusive else oldest < float(m["ts"]) < latest)]
        after = _uncursor("next_ts", args.get("cursor"))
        if after is not None:
            thread = [m for m in thread if float(m["ts"]) >= float(after)]
        size = max(_limit(args, 1000, 1000) - 1, 1)  # the parent leads every page
        page, rest = thread[:size], thread[size:]
        answer: dict[str, Any] = {"messages": [self.ws.message_view(channel, m) for m in [root, *page]],
                                  "has_more": bool(rest)}
        if rest:
            answer["response_metadata"] = {"next_cursor": _cursor("next_ts", rest[0]["ts"])}
        return answer

    def info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(args.get("channel"))
        self.need("groups:read" if channel.private else "channels:read")
        return {"channel": self.ws.conversation(channel)}

    def user_conversations(self, args: dict[str, Any]) -> dict[str, Any]:
        types = {t.strip() for t in str(args.get("types") or "public_channel").split(",") if t.strip()}
        if types - {"public_channel", "private_channel", "im", "mpim"}:
            raise SlackError("invalid_types")
        self.need(*(("channels:read",) if "public_channel" in types else ()),
                  *(("groups:read",) if "private_channel" in types else ()))
        member = self.ws.user(args.get("user") or self.ws.bot["id"])["id"]
        wanted = {"public_channel": False, "private_channel": True}
        found = sorted((c for c in self.ws.channels.values() if member in c.members
                        and any(wanted.get(t) == c.private for t in types)
                        and not (flag(args.get("exclude_archived")) and c.archived)), key=lambda c: c.id)
        after = _uncursor("team", args.get("cursor"))
        if after is not None:
            found = [c for c in found if c.id >= after]
        limit = _limit(args, 100, 1000)
        page, rest = found[:limit], found[limit:]
        return {"channels": [self.ws.conversation(c) for c in page],
                "response_metadata": {"next_cursor": _cursor("team", rest[0].id) if rest else ""}}

    def users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        self.need("users:read")
        return {"user": self.ws.user_view(self.ws.user(str(args.get("user") or "")))}

    def pins(self, args: dict[str, Any]) -> dict[str, Any]:
        self.need("pins:read")
        channel = self.ws.readable(args.get("channel"))
        items = []
        for pin in sorted(channel.pins, key=lambda p: p["created"], reverse=True):
            message = self.ws.find(channel, pin["ts"])
            items.append({"type": "message", "created": pin["created"], "created_by": pin["created_by"],
                          "channel": channel.id, "message": {**self.ws.message_view(channel, message),
                                                              "permalink": self.ws.permalink(channel, pin["ts"])}})
        return {"items": items}
