"""What every command shares: consoles, the --config and --json options, error handling, tables.

Kept apart from `bridge.cli` so command groups in other packages (compliance) can use it without
importing the command tree they are part of.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bridge.config import Config, load_config
from bridge.errors import BridgeError, ConfigError

console = Console()
err_console = Console(stderr=True)

CONFIG_HELP = "Path of config.toml (default: $ITSM_BRIDGE_CONFIG or ./config.toml)."


def _config_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        default=lambda: os.environ.get("ITSM_BRIDGE_CONFIG", "config.toml"),
                        show_default="config.toml", help=CONFIG_HELP)(function)


def _json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")(function)


def handle_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Config errors exit 2 with every problem listed; other bridge errors exit 1 with their message."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[bold red]config error[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except BridgeError as exc:
            err_console.print(f"[bold red]error[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_json_stream(head: dict[str, Any], key: str, items: Iterable[Any], *, batch: int = 1000) -> None:
    """Print the JSON document ``{**head, key: list(items)}`` piece by piece, one item a line.

    For outputs too big for `print_json` (millions of compliance findings): only one item is encoded at a
    time, so memory does not grow with the output. Same data as `print_json` (keys sorted, ``default=str``),
    compact separators.
    """
    if key in head:
        raise ValueError(f"{key!r} is both in head and the streamed key")
    encode = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":")).encode
    out = sys.stdout
    names = sorted([*head, key])
    parts = ["{"]
    for number, name in enumerate(names):
        parts.append(("," if number else "") + encode(name) + ":")
        if name != key:
            parts.append(encode(head[name]))
            continue
        parts.append("[")
        out.write("".join(parts))
        parts = []
        for count, item in enumerate(items):
            parts.append((",\n" if count else "\n") + encode(item))
            if len(parts) >= batch:
                out.write("".join(parts))
                parts = []
        parts.append("\n]")
    parts.append("}\n")
    out.write("".join(parts))
    out.flush()


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def load(config_path: Path) -> Config:
    return load_config(config_path)
