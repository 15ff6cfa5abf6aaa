"""Admin commands: config validate, mappings preview/list, audit verify/export, dead-letter list/replay."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from bridge.cli_common import _config_option, _json_option, console, err_console, handle_errors, kv_table, load, print_json
from bridge.errors import ConfigError


# -- config ------------------------------------------------------------------------------------------
@click.group("config")
def config_group() -> None:
    """Check a config file."""


@config_group.command("validate")
@_config_option
@click.option("--no-secrets", is_flag=True, help="Do not check that env:/file: secrets resolve.")
@_json_option
def validate(config_path: Path, no_secrets: bool, as_json: bool) -> None:
    """Report every problem in a config at once, each with its location and a hint. Exit 2 if any.

    Checks option names and values, that routes name existing connections and presets, that every
    mapping template compiles, and (unless --no-secrets) that every secret reference resolves.
    """
    from bridge.runtime import check_secrets

    try:
        config = load(config_path)
        problems = [] if no_secrets else check_secrets(config)
    except ConfigError as exc:
        problems, config = exc.problems, None
    if as_json:
        print_json({"ok": not problems, "path": str(config_path),
                    "problems": [{"location": p.location, "message": p.message, "hint": p.hint} for p in problems]})
    elif problems:
        err_console.print(str(ConfigError(str(config_path), problems)), highlight=False, markup=False, soft_wrap=True)
    else:
        assert config is not None
        console.print(f"[green]ok[/] {config_path}: {len(config.connections)} connection(s), "
                      f"{len(config.routes)} route(s)")
    sys.exit(2 if problems else 0)


# -- mappings ----------------------------------------------------------------------------------------
@click.group("mappings")
def mappings_group() -> None:
    """See what the mappings do before going live."""


@mappings_group.command("list")
def list_presets_command() -> None:
    """List the built-in presets a route can name with preset = "..."."""
    from mappings.schema import list_presets

    for name in list_presets():
        click.echo(name)


@mappings_group.command("preview")
@_config_option
@click.option("--route", "route_name", required=True, help="Name of the route in config.")
@click.option("--payload", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A webhook body as the source tool sends it (JSON).")
@click.option("--update", is_flag=True, help="Show an update of an existing ticket (owner=target fields skipped).")
@_json_option
@handle_errors
def preview(config_path: Path, route_name: str, payload: Path, update: bool, as_json: bool) -> None:
    """Show the desk fields a payload would produce on a route, without writing anything.

    Needs no credentials: nothing is sent anywhere.
    """
    from bridge.preview import preview_payload

    config = load(config_path)
    result = preview_payload(config, route_name, payload.read_bytes(), creating=not update)
    if as_json:
        print_json(result)
        return
    table = Table(title=f"route {route_name}: {result['event_type']} -> {result['target']}", title_justify="left")
    for column in ("field", "value", "rule", "owner"):
        table.add_column(column, overflow="fold")
    for row in result["fields"]:
        table.add_row(row["field"], row["value"] if row["value"] is not None else "-", row["rule"], row["owner"])
    console.print(table)
    if result["note"]:
        console.print(f"[bold]work note[/]\n{result['note']}")
    for warning in result["warnings"]:
        err_console.print(f"[yellow]warning[/] {warning}")
    if not result["matches"]:
        err_console.print("[yellow]this incident does not pass the route's match filter: it would be skipped[/]")


# -- audit -------------------------------------------------------------------------------------------
@click.group("audit")
def audit_group() -> None:
    """Prove the audit trail untouched; export it."""


@audit_group.command("verify")
@_config_option
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Verify an exported JSONL file instead of the database.")
@click.option("--expect-head", "expect_head", metavar="SEQ:HASH",
              help="A head known from before (an export, an evidence bundle): also catch entries cut off the "
                   "end and a chain recomputed after tampering.")
@_json_option
@handle_errors
def audit_verify(config_path: Path, file: Path | None, expect_head: str | None, as_json: bool) -> None:
    """Recompute the hash chain. Exit 1 and name the first bad entry if anything was altered,
    removed, inserted or reordered (and, with --expect-head, truncated or rewritten)."""
    from bridge import audit
    from bridge.audit_verify import verify_store

    anchor = None
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter(f"{expect_head!r} is not SEQ:HASH (e.g. 1042:9f86d0...; the hash has 64 hex "
                                     "digits)", param_hint="--expect-head")
        anchor = (int(seq), digest.lower())
    if file is not None:
        result = audit.verify_entries(audit.read_jsonl(file), anchor=anchor)
    else:
        result = verify_store(_store(config_path), anchor=anchor)
    data = {"ok": result.ok, "entries": result.entries, "head_seq": result.head_seq, "head_hash": result.head_hash,
            "bad_seq": result.bad_seq, "reason": result.reason}
    if as_json:
        print_json(data)
    elif result.ok:
        console.print(f"[green]audit chain intact[/]: {result.entries} entries, head {result.head_seq} {result.head_hash}")
    else:
        err_console.print(f"[bold red]audit chain broken at entry {result.bad_seq}[/]: {result.reason} "
                          f"({result.entries} entries verified before it)")
    sys.exit(0 if result.ok else 1)


@audit_group.command("export")
@_config_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output .jsonl file.")
@handle_errors
def audit_export(config_path: Path, out: Path) -> None:
    """Write the whole trail as JSON Lines with its chain fields, verify the file, print the head."""
    from bridge import audit

    result = audit.export_jsonl(_store(config_path), out)
    console.print(f"wrote {result.entries} entries to {out}; chain head {result.head_seq} {result.head_hash}"
                  + ("" if result.ok else f" [red](NOT intact at {result.bad_seq}: {result.reason})[/]"))
    sys.exit(0 if result.ok else 1)


def _store(config_path: Path):  # type: ignore[no-untyped-def]
    from bridge.store import Store

    config = load(config_path)
    store = Store(config.database.url, base_dir=config.base_dir)
    store.create_schema()
    return store


# -- dead letters ------------------------------------------------------------------------------------
@click.group("dead-letter")
def dead_letter_group() -> None:
    """Inspect and replay what could not be processed or delivered."""


@dead_letter_group.command("list")
@_config_option
@click.option("--all", "show_all", is_flag=True, help="Include replayed and discarded ones.")
@_json_option
@handle_errors
def dead_letter_list(config_path: Path, show_all: bool, as_json: bool) -> None:
    """List dead-letters with the reason each was kept."""
    from bridge.dead_letters import list_letters

    letters = list_letters(_store(config_path), include_resolved=show_all)
    if as_json:
        print_json(letters)
        return
    table = Table(title="dead-letters", title_justify="left")
    for column in ("id", "kind", "connection", "route", "created", "state", "error"):
        table.add_column(column, overflow="fold")
    for item in letters:
        table.add_row(str(item["id"]), item["kind"], item["connection"], item["route"] or "-",
                      item["created_at"], item["resolution"] or "open", item["error"])
    console.print(table)


@dead_letter_group.command("replay")
@_config_option
@click.argument("letter_id", type=int, required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every open dead-letter.")
@handle_errors
def dead_letter_replay(config_path: Path, letter_id: int | None, replay_all: bool) -> None:
    """Put a dead-letter back in the queue (after fixing its cause); the daemon picks it up."""
    from bridge.dead_letters import replay
    from bridge.runtime import Runtime

    if letter_id is None and not replay_all:
        raise click.UsageError("name a dead-letter id or pass --all")
    runtime = Runtime.build(load(config_path))
    runtime.store.create_schema()
    replayed = replay(runtime, None if replay_all else letter_id)
    console.print(f"replayed {len(replayed)} dead-letter(s): {', '.join(map(str, replayed)) or '-'}")


@dead_letter_group.command("show")
@_config_option
@click.argument("letter_id", type=int)
@_json_option
@handle_errors
def dead_letter_show(config_path: Path, letter_id: int, as_json: bool) -> None:
    """One dead-letter in full: why it was kept and the payload it holds."""
    from bridge.dead_letters import show_letter

    letter = show_letter(_store(config_path), letter_id)
    if as_json:
        print_json(letter)
        return
    console.print(kv_table(f"dead-letter {letter_id}", {k: v for k, v in letter.items() if k != "payload"}))
    console.print(letter["payload"], markup=False, highlight=False, soft_wrap=True)


@dead_letter_group.command("discard")
@_config_option
@click.argument("letter_id", type=int)
@click.option("--reason", required=True, help="Why it is given up (kept in the audit trail).")
@handle_errors
def dead_letter_discard(config_path: Path, letter_id: int, reason: str) -> None:
    """Give up on a dead-letter on purpose; the reason is audited and the incident's queue moves on."""
    from bridge.dead_letters import discard
    from bridge.runtime import Runtime

    runtime = Runtime.build(load(config_path))
    runtime.store.create_schema()
    discard(runtime, letter_id, reason)
    console.print(f"discarded dead-letter {letter_id}: {reason}")


__all__ = ["config_group", "mappings_group", "audit_group", "dead_letter_group", "kv_table", "json"]
