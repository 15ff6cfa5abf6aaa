"""`itsm-bridge db`: see and migrate the database schema (Alembic revisions shipped inside itsm-bridge)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from bridge.cli_common import (
    _config_option,
    _json_option,
    console,
    err_console,
    handle_errors,
    kv_table,
    load,
    print_json,
)

WHAT_TO_DO = {
    "empty": "no schema yet: `itsm-bridge db upgrade` (or the first `itsm-bridge run`) creates it",
    "unversioned": "a database from before migrations: `itsm-bridge db upgrade` adopts it as the baseline "
                   "and migrates it, keeping every row",
    "behind": "run `itsm-bridge db upgrade` (back up the database first)",
    "current": "nothing to do",
}


@click.group("db")
def db_group() -> None:
    """See and migrate the database schema.

    \b
    itsm-bridge run (and every other command) migrates the schema on start, so a single bridge
    needs none of this. Use these to migrate as a deploy step, before restarting the daemons:
      itsm-bridge db current --config F   which revision the database is at; exit 1 if behind
      itsm-bridge db upgrade --config F   migrate it to this release's newest revision
    A migration runs in one transaction: it completes or leaves the database as it was. Still,
    back up the database before upgrading itsm-bridge. A database that a newer itsm-bridge has
    migrated is refused (exit 2): upgrade itsm-bridge rather than run an older release on it.
    """


@db_group.command("upgrade")
@_config_option
@_json_option
@handle_errors
def db_upgrade(config_path: Path, as_json: bool) -> None:
    """Migrate the database in [database] url to this release's newest revision; prints from -> to.

    \b
    An empty database gets the whole schema at once. One from before migrations (bridge tables,
    no alembic_version table) is taken as revision 0001, the baseline, and migrated from there.
    Running it again is a no-op. On PostgreSQL an advisory lock makes concurrent starts wait for
    one another instead of migrating twice. Exit 2 if the database is at a revision this release
    does not know (a newer itsm-bridge wrote it).
    """
    store = _store(config_path)
    try:
        result = store.upgrade()
    finally:
        store.dispose()
    if as_json:
        print_json(result.to_dict())
    else:
        console.print(f"[green]ok[/] {escape(result.describe())}", highlight=False)


@db_group.command("current")
@_config_option
@_json_option
@handle_errors
def db_current(config_path: Path, as_json: bool) -> None:
    """Show the database's schema revision, this release's newest, and what is pending. Changes nothing.

    Exit 0 when up to date, 1 when `itsm-bridge db upgrade` has work to do (empty, from before
    migrations, or behind), 2 when a newer itsm-bridge has migrated the database.
    """
    from bridge.migrate import UnknownRevisionError, status

    store = _store(config_path)
    try:
        state = status(store)
    finally:
        store.dispose()
    refusal = UnknownRevisionError(state.revision or "?", state.head) if state.state == "newer" else None
    if as_json:
        print_json({**state.to_dict(), **({"error": str(refusal)} if refusal else {})})
    else:
        console.print(kv_table("database schema", {
            "revision": state.revision or "(none)", "newest known": state.head,
            "up to date": "yes" if state.up_to_date else "no", "state": state.state}))
        for line in state.pending:
            console.print(f"  pending {escape(line)}", highlight=False)
        if state.state != "newer":
            console.print(WHAT_TO_DO[state.state], highlight=False)
    if refusal is not None:
        if not as_json:
            err_console.print(f"[bold red]config error[/] {escape(str(refusal))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    sys.exit(0 if state.up_to_date else 1)


@db_group.command("revision")
@click.option("-m", "--message", required=True, help='What the change is, e.g. "breaker table".')
def db_revision(message: str) -> None:
    """For developers: draft the next migration after changing the tables in code.

    Migrates a throwaway SQLite database to the newest revision, compares it with the SQLModel
    tables and writes what differs to bridge/migrations/versions/NNNN_<message>.py. Review the draft
    (autogenerate does not see renames) and run tests/test_migrations.py on SQLite and PostgreSQL.
    Exit 1 if the tables and the migrations already agree (nothing written).
    """
    from bridge.migrate import draft_revision

    path = draft_revision(message)
    if path is None:
        err_console.print("the tables in code and the migrations already agree: nothing to write")
        sys.exit(1)
    console.print(f"wrote {escape(str(path))}: review it before committing", highlight=False)


def _store(config_path: Path):  # type: ignore[no-untyped-def]
    """The configured database without connectors: migrating needs no secrets of the connected tools."""
    from bridge.store import Store

    config = load(config_path)
    return Store(config.database.url, base_dir=config.base_dir)
