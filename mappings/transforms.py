"""Named pure transforms a field rule applies to its ``from`` value before the value map.

A rule names them (``transform = "lower"``, or a chain ``transform = ["first", "lower"]``) instead of
writing a template, so the common cases stay readable in TOML and show up by name in
``itsm-bridge mappings preview``. A transform may take one argument after a colon
(``transform = "truncate:80"``).

Every transform is a pure function of one value: ``None`` stays ``None`` (so a missing value still
reaches the rule's ``default``), and none of them reads a clock, the network or the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from bridge.model import format_time, parse_time

Transform = Callable[[Any, "str | None"], Any]

#: Length `truncate` cuts to when the rule gives no argument (``transform = "truncate"``).
DEFAULT_TRUNCATE = 80
ELLIPSIS = "…"


def _text(value: Any) -> str:
    """A value as text: lists joined with ", ", booleans as ``true``/``false`` (the desks' spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(item) for item in value if item is not None)
    if isinstance(value, datetime):
        return format_time(value) or ""
    return str(value)


def _lower(value: Any, arg: str | None) -> Any:
    return None if value is None else _text(value).lower()


def _upper(value: Any, arg: str | None) -> Any:
    return None if value is None else _text(value).upper()


def _strip(value: Any, arg: str | None) -> Any:
    return None if value is None else _text(value).strip()


def _title(value: Any, arg: str | None) -> Any:
    return None if value is None else _text(value).title()


def _first(value: Any, arg: str | None) -> Any:
    """The first item of a list (first assignee); a scalar is its own first item; empty -> None."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _last(value: Any, arg: str | None) -> Any:
    if isinstance(value, (list, tuple)):
        return value[-1] if value else None
    return value


def _join(value: Any, arg: str | None) -> Any:
    """Items joined with ", " (or the argument: ``join: / ``); an empty list is missing (-> default)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [_text(item) for item in value if item is not None]
        return (", " if arg is None else arg).join(items) if items else None
    return _text(value)


def _truncate(value: Any, arg: str | None) -> Any:
    """At most N characters (default 80), the last one an ellipsis when something was cut."""
    if value is None:
        return None
    limit = DEFAULT_TRUNCATE if arg is None else int(arg)
    return truncate_text(_text(value), limit)


def _digits(value: Any, arg: str | None) -> Any:
    """Only the digits (``"P1"`` -> ``"1"``); no digits at all is missing (-> default)."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", _text(value))
    return digits or None


def _moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return parse_time(value)
    return parse_time(str(value))


def _desk_time(value: Any, arg: str | None) -> Any:
    """``YYYY-MM-DD HH:MM:SS`` in UTC: how ServiceNow's Table API reads and writes date-times."""
    moment = _moment(value)
    return None if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _date(value: Any, arg: str | None) -> Any:
    """The UTC calendar date, ``YYYY-MM-DD``."""
    moment = _moment(value)
    return None if moment is None else moment.astimezone(timezone.utc).date().isoformat()


def _iso(value: Any, arg: str | None) -> Any:
    """ISO 8601 in UTC with a ``Z`` suffix (Jira and most JSON APIs)."""
    return format_time(_moment(value))


def truncate_text(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when anything was cut."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return text[:limit]
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS


#: Every transform by the name a rule uses. Each takes the value and the optional argument after a colon.
TRANSFORMS: Mapping[str, Transform] = {
    "lower": _lower,
    "upper": _upper,
    "strip": _strip,
    "title": _title,
    "first": _first,
    "last": _last,
    "join": _join,
    "truncate": _truncate,
    "digits": _digits,
    "desk_time": _desk_time,
    "date": _date,
    "iso": _iso,
}

#: Transforms also offered to templates as Jinja filters (``{{ incident.created_at | desk_time }}``).
#: The others already exist in Jinja under the same name with Jinja's own signature.
TEMPLATE_FILTERS: tuple[str, ...] = ("digits", "desk_time", "date", "iso")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"truncate:80"`` -> ``("truncate", "80")``; ``"lower"`` -> ``("lower", None)``."""
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def check_spec(spec: str) -> None:
    """Raise ValueError saying what is wrong with a transform name (unknown, bad argument)."""
    name, arg = split_spec(spec)
    if name not in TRANSFORMS:
        known = ", ".join(sorted(TRANSFORMS))
        raise ValueError(f"unknown transform {name!r}; use one of: {known}")
    if name == "truncate" and arg is not None:
        if not arg.strip().isdigit() or int(arg) < 1:
            raise ValueError(f"transform {spec!r}: truncate takes a positive length, e.g. 'truncate:80'")
    elif arg is not None and name != "join":
        raise ValueError(f"transform {name!r} takes no argument (got {spec!r})")


def resolve(spec: str) -> Callable[[Any], Any]:
    """The one-argument function a (checked) transform spec stands for."""
    name, arg = split_spec(spec)
    function = TRANSFORMS[name]
    return lambda value: function(value, arg)


def filter_for(name: str) -> Callable[[Any], Any]:
    """A Jinja filter wrapping transform `name` (used for `TEMPLATE_FILTERS`)."""
    function = TRANSFORMS[name]
    return lambda value: function(value, None)


def as_text(value: Any) -> str:
    """The string a desk field gets for `value` (``None`` -> ``""``)."""
    return "" if value is None else _text(value)
