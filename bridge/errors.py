"""The error taxonomy. Errors cross module boundaries typed, so each layer decides without reading text:

- `TransientError`  -> retry later (HTTP 429/5xx, resets, timeouts)
- `PermanentError`  -> dead-letter with an audit entry (HTTP 4xx other than 401/403/404/409/429)
- `AuthError`       -> stop that connection until an admin acts (401/403)
- `ConflictError`   -> the record changed under us; re-read and re-plan
- `MappingError`    -> a route's mapping could not produce a field; names route, field and value
- `ConfigError`     -> every config problem at once, each with its location; the CLI exits 2
- `WebhookError`    -> a webhook was refused (bad signature, stale, malformed); the server answers 4xx

Only `bridge.cli` turns these into exit codes; library code raises.
"""

from __future__ import annotations

from dataclasses import dataclass


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConnectorError(BridgeError):
    """A call to an external system failed. `status` is the HTTP status where there was one."""

    def __init__(self, message: str, *, connection: str = "", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.connection = connection
        self.status = status
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """Worth retrying: rate limited, server error, connection reset, timeout."""


class PermanentError(ConnectorError):
    """Retrying the same request cannot help: the payload or the record is wrong."""


class AuthError(PermanentError):
    """Credentials refused; the connection needs an admin."""


class NotFoundError(PermanentError):
    """The record addressed does not exist (any more)."""


class ConflictError(ConnectorError):
    """The record changed under us (HTTP 409); re-read before deciding again."""


class MappingError(BridgeError):
    """A mapping could not produce a field. The message names route, field and offending value."""

    def __init__(self, message: str, *, route: str, field: str, value: object = None) -> None:
        self.route = route
        self.field = field
        self.value = value
        super().__init__(f"route {route!r}, field {field!r} (value {value!r}): {message}")


class WebhookError(BridgeError):
    """A webhook request is refused. `status` is the HTTP status to answer with (401, 400, 413...)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config: where (``routes[0].fields.impact``), what, and what to do."""

    location: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(BridgeError):
    """Every problem found in a config file, reported together so an admin fixes them in one pass."""

    def __init__(self, path: str, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.problems = problems
        count = len(problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} in {path}:"]
        lines += [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines))
