"""The Slack Web API through the official client (`slack_sdk.WebClient`), with Slack's errors typed.

slack_sdk speaks urllib, not requests, so the bridge's `RetryingSession` is not on this path; instead
the client's own retry handlers are switched off (``retry_handlers=[]``) and every failure surfaces at
once as a typed error for the outbox to retry on its schedule. The connection's rate limiter still paces
every call (`bridge.ratelimit.throttle`), and a 429 rests the whole connection for its Retry-After:

- HTTP 429 (Slack's rate limits, with ``Retry-After`` seconds) -> `TransientError(retry_after=...)`;
- HTTP 5xx, connection failures and timeouts -> `TransientError`;
- ``{"ok": false, "error": <code>}`` (Slack answers most errors with HTTP 200) by code: invalid_auth,
  not_authed, token_revoked, missing_scope... -> `AuthError`; channel_not_found, message_not_found... ->
  `NotFoundError`; not_in_channel, is_archived and every other code -> `PermanentError`; ratelimited,
  internal_error, fatal_error, service_unavailable, request_timeout -> `TransientError`.

Messages name the connection, the operation and Slack's own error code, never the token.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bridge.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.ratelimit import limiter_of, note_rate_limited, throttle

log = logging.getLogger(__name__)

AUTH_ERRORS = frozenset({
    "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "no_permission",
    "missing_scope", "not_allowed_token_type", "team_access_not_granted", "ekm_access_denied",
    "org_login_required", "team_is_restricted",
})
NOT_FOUND_ERRORS = frozenset({"channel_not_found", "message_not_found", "thread_not_found", "user_not_found"})
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
})
HINTS = {
    "not_in_channel": "invite the app to the channel (/invite @<app name>) and replay",
    "channel_not_found": "the channel is gone, private without the app in it, or in another workspace",
    "is_archived": "the channel is archived; unarchive it or unlink the ticket",
    "missing_scope": "add the scope to the Slack app and reinstall it",
    "invalid_auth": "the bot token is wrong; set bot_token to the app's xoxb- token",
    "token_revoked": "the app was uninstalled or its token revoked; reinstall it",
}
#: Pages read from one paginated method before the rest is left to the next call.
MAX_PAGES = 50


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def api_error(status: int, data: Any, headers: Mapping[str, Any] | None, *, connection: str,
              what: str) -> ConnectorError:
    """The typed error for one failed Web API answer (HTTP status, parsed body, headers)."""
    code = str(data.get("error") or "") if isinstance(data, Mapping) else ""
    needed = f" (needs scope {data.get('needed')})" if isinstance(data, Mapping) and data.get("needed") else ""
    hint = f"; {HINTS[code]}" if code in HINTS else ""
    described = f"Slack error {code!r}{needed}{hint}" if code else "no Slack error code"
    message = f"{connection}: {what} failed with HTTP {status}: {described}"
    kwargs: dict[str, Any] = {"connection": connection, "status": status}
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return TransientError(message, retry_after=_seconds(_header(headers, "retry-after")), **kwargs)
    if status >= 500 or code in TRANSIENT_ERRORS:
        return TransientError(message, retry_after=_seconds(_header(headers, "retry-after")), **kwargs)
    if status in (401, 403) or code in AUTH_ERRORS:
        return AuthError(message, **kwargs)
    if status == 404 or code in NOT_FOUND_ERRORS:
        return NotFoundError(message, **kwargs)
    return PermanentError(message, **kwargs)


class SlackApi:
    """One bot token's Web API client; `call` returns the answer's JSON or raises a typed error."""

    def __init__(self, *, connection: str, token: str, api_url: str, timeout: int = 10,
                 session: object = None) -> None:
        self.connection = connection
        self.session = session  # carries the connection's rate limiter (`bridge.ratelimit`), nothing else
        self.client = WebClient(token=token, base_url=api_url.rstrip("/") + "/", timeout=timeout,
                                retry_handlers=[], logger=logging.getLogger(f"{__name__}.sdk"))

    def __repr__(self) -> str:
        return f"SlackApi({self.connection!r}, base_url={self.client.base_url!r})"

    def backlog(self) -> float:
        """Seconds the next call would wait for the connection's rate limit (0.0: it goes at once)."""
        limiter = limiter_of(self.session)
        return limiter.backlog() if limiter is not None else 0.0

    def call(self, method: str, *, what: str, **arguments: Any) -> dict[str, Any]:
        """Call Web API `method` (``conversations.history``) through the client's typed method."""
        function = getattr(self.client, method.replace(".", "_"))
        throttle(self.session)  # the connection's rate limit: slack_sdk does not send through the session
        try:
            response = function(**{k: v for k, v in arguments.items() if v is not None})
        except SlackApiError as exc:
            answer = exc.response
            error = api_error(answer.status_code, answer.data, answer.headers, connection=self.connection,
                              what=what)
            if answer.status_code == 429:
                note_rate_limited(self.session, error.retry_after)
            raise error from None
        except (URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise TransientError(f"{self.connection}: {what} failed: {type(exc).__name__} ({reason}) on "
                                 f"{method}", connection=self.connection) from None
        except SlackRequestError as exc:
            raise PermanentError(f"{self.connection}: {what} was not sent: {exc}", connection=self.connection) from None
        return dict(response.data) if isinstance(response.data, Mapping) else {}

    def pages(self, method: str, key: str, *, what: str, **arguments: Any) -> Iterator[Mapping[str, Any]]:
        """The items under `key` of every page of a cursor-paginated method (``response_metadata``)."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self.call(method, what=what, cursor=cursor, **arguments)
            yield from (item for item in page.get(key) or () if isinstance(item, Mapping))
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return
        log.warning("%s: %s has more than %d pages; the rest is left to the next call", self.connection, what,
                    MAX_PAGES)
