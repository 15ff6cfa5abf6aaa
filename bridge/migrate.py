"""Schema versions: bring any database to this release's head revision, or refuse one a newer release wrote.

A database reaches `upgrade` in one of these states:

- empty: ``create_all`` and stamp head (Alembic's recipe for new databases; fast, and the test suite
  builds hundreds of stores);
- from before migrations (our tables, no ``alembic_version``): it holds the 0001 baseline, so it is
  stamped 0001 and migrated from there;
- behind: migrated from its revision to head; current: nothing to do;
- newer (a revision this code does not know): refused with `UnknownRevisionError`, because running
  old code on a schema it does not understand corrupts data quietly.

It all happens in one transaction: on PostgreSQL under an advisory lock, so daemons starting together
migrate once; on SQLite under ``BEGIN IMMEDIATE`` (see `bridge.store`). A failure leaves the database
as it was. Alembic runs on that connection; no alembic.ini is read (`alembic_config` builds it).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

import bridge.store  # noqa: F401  (registers every table, the compliance timeline's too, on SQLModel.metadata)
from bridge.errors import BridgeError, ConfigError, ConfigProblem

if TYPE_CHECKING:
    from bridge.store import Store

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
#: The tables of the last release without migrations (commit aa0c6a1), i.e. of revision 0001.
BASELINE_TABLES = frozenset({"inbox", "link", "outbox", "dead_letter", "cursor", "audit", "incident_timeline"})
#: pg_advisory_xact_lock key held while the schema is checked and migrated (the audit chain uses ...431).
SCHEMA_LOCK = 7428190432

State = Literal["empty", "unversioned", "behind", "current", "newer"]


class UnknownRevisionError(ConfigError):
    """The database is at a revision this release does not ship: a newer itsm-bridge migrated it."""

    def __init__(self, revision: str, head: str) -> None:
        self.revision, self.head = revision, head
        super().__init__("the database", [ConfigProblem(
            "schema revision",
            f"the database is at revision {revision}, which this itsm-bridge ({_version()}) does not know; "
            f"its newest revision is {head}. A newer release of itsm-bridge has migrated this database",
            f"upgrade itsm-bridge to the release that wrote revision {revision} (or later) on every host "
            "that uses this database; an older release must not run against it")])


class MigrationFailed(BridgeError):
    """A migration failed; its transaction was rolled back, so the database is as it was before."""

    def __init__(self, revision: str | None, head: str, error: Exception) -> None:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        where = f"revision {revision}" if revision else "its schema from before migrations (no alembic_version)"
        super().__init__(f"migrating the database to revision {head} failed: {reason}. Nothing was changed: "
                         f"the database is still at {where}. Fix the cause and run `itsm-bridge db upgrade` again")


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands, for `itsm-bridge db current` and for deciding what `upgrade` does."""

    state: State
    revision: str | None  # what alembic_version holds (None: no version table or no row)
    head: str  # the newest revision this release ships
    pending: tuple[str, ...] = ()  # "0002: what it does", oldest first

    @property
    def up_to_date(self) -> bool:
        return self.state == "current"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "revision": self.revision, "head": self.head,
                "up_to_date": self.up_to_date, "pending": list(self.pending)}


@dataclass(frozen=True)
class UpgradeResult:
    """What `upgrade` did: created (empty database), adopted (pre-migration), upgraded, or nothing (current)."""

    action: Literal["created", "adopted", "upgraded", "current"]
    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        return self.action != "current"

    def describe(self) -> str:
        if self.action == "created":
            return f"created the database schema at revision {self.to_revision} (head)"
        if self.action == "adopted":
            return (f"found a database from before migrations (no alembic_version table): took it as revision "
                    f"{BASELINE} (baseline) and upgraded it to {self.to_revision} (head)")
        if self.action == "upgraded":
            return f"upgraded the database schema from revision {self.from_revision} to {self.to_revision} (head)"
        return f"the database schema is at revision {self.to_revision} (head); nothing to do"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "from": self.from_revision, "to": self.to_revision}


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's config built in code: the shipped migrations, run on `connection` (see migrations/env.py)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def migration_options(dialect: str) -> dict[str, Any]:
    """`context.configure` options, shared by env.py and the metadata-vs-migrations test."""
    return {"target_metadata": SQLModel.metadata, "compare_type": True,
            "render_as_batch": dialect == "sqlite",  # SQLite ALTERs by copying the table
            "render_item": _render_item}


def _render_item(kind: str, obj: Any, _context: Any) -> str | bool:
    """Draft sqlmodel's column types (AutoString, UTCDateTime) as the plain SQLAlchemy types they wrap."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


@functools.cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()  # raises when the revisions branch: keep history linear
    assert head is not None, "no migrations shipped"
    return head


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in script_directory().walk_revisions())


def _pending(since: str | None) -> tuple[str, ...]:
    """Revisions after `since` (all of them when None), oldest first, with the first line of their doc."""
    scripts = list(script_directory().iterate_revisions("heads", since or "base"))
    return tuple(f"{script.revision}: {script.doc}" for script in reversed(scripts) if script.revision != since)


def read_status(connection: Connection) -> SchemaStatus:
    """Classify the database on `connection`, without changing it."""
    revisions = MigrationContext.configure(connection).get_current_heads()
    # Empty means none of the baseline tables, whatever else is left: a stray newer table or a stale
    # version row (tables dropped by hand, as the PostgreSQL test fixtures do) holds no data to keep.
    tables = set(inspect(connection).get_table_names()) & BASELINE_TABLES
    revision = ", ".join(revisions) or None
    head = head_revision()
    unknown = [name for name in revisions if name not in _known_revisions()]
    if unknown:
        return SchemaStatus("newer", revision, head)
    if not tables:
        return SchemaStatus("empty", revision, head, _pending(None))
    if not revisions:
        return SchemaStatus("unversioned", None, head, _pending(BASELINE))
    if revisions == (head,):
        return SchemaStatus("current", revision, head)
    return SchemaStatus("behind", revision, head, _pending(revisions[0]))


def status(store: Store) -> SchemaStatus:
    """Where the store's database stands; a SQLite file that does not exist is reported empty, not created."""
    database = store.engine.url.database
    if store.is_sqlite and database not in (None, "", ":memory:") and not Path(database).exists():
        return SchemaStatus("empty", None, head_revision(), _pending(None))
    with store.engine.connect() as connection:
        return read_status(connection)


def upgrade(store: Store) -> UpgradeResult:
    """Create, adopt or migrate the schema to head in one transaction; refuse a newer database."""
    with store.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        state = read_status(connection)
        if state.state == "newer":
            raise UnknownRevisionError(state.revision or "?", state.head)
        if state.state == "current":
            return UpgradeResult("current", state.revision, state.head)
        if state.state == "empty":
            SQLModel.metadata.create_all(connection)
            _stamp(connection, state.head, purge=state.revision is not None)  # a stale version row goes
            return UpgradeResult("created", None, state.head)
        if state.state == "unversioned":
            _require_baseline(connection)
            _stamp(connection, BASELINE)
        try:
            command.upgrade(alembic_config(connection), "head")
        except (SQLAlchemyError, CommandError) as exc:  # raised inside the transaction: it rolls back
            raise MigrationFailed(state.revision, state.head, exc) from exc
        return UpgradeResult("adopted" if state.state == "unversioned" else "upgraded",
                             state.revision or BASELINE, state.head)


def _stamp(connection: Connection, revision: str, *, purge: bool = False) -> None:
    context = MigrationContext.configure(connection)
    if purge:
        connection.execute(text("DELETE FROM alembic_version"))
    context.stamp(script_directory(), revision)


def _require_baseline(connection: Connection) -> None:
    """Refuse to adopt a database that holds only some of the baseline tables: it is not ours, or damaged."""
    present = set(inspect(connection).get_table_names())
    missing = sorted(BASELINE_TABLES - present)
    if missing:
        found = ", ".join(sorted(BASELINE_TABLES & present))
        raise ConfigError("the database", [ConfigProblem(
            "schema", f"it has itsm-bridge tables ({found}) but not {', '.join(missing)}, and no alembic_version "
            "table, so it is not a schema this release can adopt",
            "check [database] url points at the bridge's database, or restore it from a backup")])


def draft_revision(message: str) -> Path | None:
    """Write the next revision from what the tables in code have that the migrations do not (for developers).

    Migrates a throwaway SQLite database to head and autogenerates the difference; None when there is
    none. The draft needs review: autogenerate cannot see renames, and SQLite hides some types.
    """
    from bridge.store import Store

    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'draft.db'}")
        try:
            with store.engine.begin() as connection:
                command.upgrade(alembic_config(connection), "head")
                script = command.revision(alembic_config(connection), message=message, autogenerate=True,
                                          rev_id=f"{int(head_revision()) + 1:04d}",
                                          process_revision_directives=_skip_empty)
        finally:
            store.dispose()
    script_directory.cache_clear()
    _known_revisions.cache_clear()
    path = getattr(script, "path", None)
    return Path(path) if path else None


def _skip_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
    if directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []


def _version() -> str:
    try:
        return f"version {metadata.version('itsm-bridge')}"
    except metadata.PackageNotFoundError:
        return "this version"
