"""The `jira` client on the bridge's own transport, and Jira failures turned into the bridge's typed errors.

Why a session subclass and not ``jira._session = our_session``: pycontribs/jira 3.10.5 builds a
`ResilientSession` inside ``JIRA.__init__`` and immediately calls ``serverInfo`` through it, and every
client method relies on that session's ``request()`` raising `JIRAError` for non-2xx answers
(``raise_on_error``). Replacing the attribute after construction would leave the first call outside our
retry layer and the rest without Jira's error handling. So:

- `BridgeJiraSession` *is* a `ResilientSession` (jira's error handling and headers intact) whose
  ``send()`` hands the prepared request to the injected `bridge.http.RetryingSession`. With
  ``max_retries=0`` jira's own retry loop runs once and never sleeps: retries, ``Retry-After`` and the
  retry metrics live in the RetryingSession only.
- `BridgeJIRA` installs that session in ``_create_http_basic_session``, the hook ``JIRA.__init__`` calls
  right before ``serverInfo``, so even construction goes through the bridge's transport.

Failures are classified by ``JIRAError.status_code`` and ``Retry-After``, never by message text. The
messages carry Jira's own ``errorMessages``/``errors`` and the values we sent for the failing fields,
never request headers (which hold the API token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
from jira import JIRA
from jira.exceptions import JIRAError
from jira.resilientsession import ResilientSession

from bridge.errors import (
    AuthError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.http import RETRY_STATUSES, retry_after_seconds


class BridgeJiraSession(ResilientSession):
    """jira's session type, sending every prepared request through the bridge's `wire` session."""

    def __init__(self, wire: requests.Session) -> None:
        super().__init__(timeout=None, max_retries=0)
        self._wire = wire
        # Share what the wire session was configured with (TLS, proxies, and response hooks, which
        # tests use to capture exchanges); auth and jira's headers are set on this session by JIRA.
        self.hooks = wire.hooks
        self.verify = wire.verify
        self.cert = wire.cert
        self.proxies = wire.proxies
        self.trust_env = wire.trust_env

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return self._wire.send(request, **kwargs)


class BridgeJIRA(JIRA):
    """`jira.JIRA` whose session is a `BridgeJiraSession` over `wire` from the very first request."""

    def __init__(self, *, wire: requests.Session, **kwargs: Any) -> None:
        self._bridge_wire = wire
        super().__init__(**kwargs)

    def _create_http_basic_session(self, username: str, password: str) -> None:
        built = self._session
        session = BridgeJiraSession(self._bridge_wire)
        session.headers.update(built.headers)
        session.cookies.update(built.cookies)
        self._session = session
        super()._create_http_basic_session(username, password)


def connect(*, url: str, email: str, token: str, wire: requests.Session) -> JIRA:
    """A Cloud client on `wire` (``serverInfo`` read at once: the client needs ``deploymentType``)."""
    return BridgeJIRA(wire=wire, server=url, basic_auth=(email, token), max_retries=0, get_server_info=True,
                      options={"rest_api_version": "2", "check_update": False,
                               "headers": {"User-Agent": "itsm-bridge"}})


def typed_error(exc: JIRAError, *, connection: str, what: str,
                sent: Mapping[str, Any] | None = None) -> ConnectorError:
    """The bridge error for a `JIRAError`, chosen by status code; the message names fields and values."""
    status = exc.status_code
    response = exc.response if isinstance(exc.response, requests.Response) else None
    detail = error_detail(response, sent) if response is not None else (exc.text or "")
    message = f"{connection}: {what} failed" + (f" with HTTP {status}" if status else "") + (
        f": {detail}" if detail else "")
    kwargs: dict[str, Any] = {"connection": connection, "status": status}
    if status is None:
        return PermanentError(message, **kwargs)
    if status in RETRY_STATUSES:
        hint = retry_after_seconds(response) if response is not None else None
        return TransientError(message, retry_after=hint, **kwargs)
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status == 409:
        return ConflictError(message, **kwargs)
    return PermanentError(message, **kwargs)


def error_detail(response: requests.Response, sent: Mapping[str, Any] | None = None) -> str:
    """Jira's ``errorMessages`` and ``errors``, each field error with the value we sent for it."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(m) for m in body.get("errorMessages") or []]
    for field, message in (body.get("errors") or {}).items():
        value = (sent or {}).get(field)
        shown = f" {_shown(value)}" if value is not None else ""
        parts.append(f"{field}{shown}: {message}")
    return "; ".join(parts)[:500]


def _shown(value: Any) -> str:
    """A sent value as an admin recognises it: ``'Urgent'`` for ``{"name": "Urgent"}``."""
    if isinstance(value, Mapping):
        value = value.get("name", value.get("accountId", value.get("id", value.get("value", value))))
    if isinstance(value, list):
        return repr([_shown(v).strip("'") for v in value])
    return repr(value) if isinstance(value, str) else json.dumps(value)[:100]
