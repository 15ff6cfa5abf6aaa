"""Secret references: config never holds a secret, only where to read it (``env:NAME`` or ``file:PATH``).

A reference is resolved when a connector is built, not when the config is parsed, so `mappings preview`
works without credentials. The resolved value is wrapped in `SecretStr` until the connector needs the
plain text, so it never shows in a repr, a log line or an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import SecretStr

SECRET_REF = re.compile(r"^(env|file):(.+)$")
SECRET_HINT = "write env:VARIABLE_NAME or file:/path/to/secret; secrets are never inline in config"


class SecretResolutionError(Exception):
    """The reference is well-formed but points at nothing (unset variable, unreadable file)."""


def is_secret_ref(value: str) -> bool:
    return bool(SECRET_REF.match(value))


def resolve_secret(reference: str, *, base_dir: Path | None = None) -> SecretStr:
    """Read the secret a reference points at. Relative ``file:`` paths are relative to the config file."""
    match = SECRET_REF.match(reference)
    if not match:
        raise SecretResolutionError(f"not a secret reference ({SECRET_HINT})")
    scheme, target = match.groups()
    if scheme == "env":
        value = os.environ.get(target)
        if value is None or value == "":
            raise SecretResolutionError(f"environment variable {target} is not set")
        return SecretStr(value)
    path = Path(target)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretResolutionError(f"cannot read secret file {path}: {exc.strerror}") from None
    if not value:
        raise SecretResolutionError(f"secret file {path} is empty")
    return SecretStr(value)


def require_secret_ref(value: str | None) -> str | None:
    """A pydantic field validator: a secret option must hold a reference, never the secret itself."""
    if value is not None and not is_secret_ref(value):
        raise ValueError(f"must be a secret reference, got an inline value ({SECRET_HINT})")
    return value
