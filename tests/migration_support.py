"""Helpers of tests/test_migrations.py: private databases, schema snapshots and frozen baseline rows.

Kept free of `bridge` imports: `snapshot` also ran against commit aa0c6a1's own code to write
tests/fixtures/migrations/aa0c6a1_schema.json (see `write_baseline_fixture`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, MetaData, String, Text, create_engine, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.types import DateTime

BASELINE_FIXTURE = Path(__file__).parent / "fixtures" / "migrations" / "aa0c6a1_schema.json"


@contextmanager
def private_databases(base_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of empty databases: SQLite files, or PostgreSQL databases on `base_url`'s server.

    On PostgreSQL each test gets databases of its own, so it never drops tables other tests (or
    other engineers' test runs sharing the server) are using; they are dropped afterwards.
    """
    if base_url.startswith("sqlite"):
        counter = iter(range(1000))
        yield lambda: f"sqlite:///{tmp_path / f'db{next(counter)}.sqlite'}"
        return
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def create() -> str:
        name = f"itsm_migrations_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return make_url(base_url).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def snapshot(connection: Connection) -> dict[str, Any]:
    """The schema as the database reports it: columns (type, nullability, server default), keys, indexes."""
    inspector = inspect(connection)
    dialect = connection.dialect
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        if name == "alembic_version":
            continue
        columns = [{"name": column["name"], "type": column["type"].compile(dialect=dialect),
                    "nullable": column["nullable"], "default": column.get("default")}
                   for column in inspector.get_columns(name)]
        primary = inspector.get_pk_constraint(name)
        uniques = sorted((unique["name"] or "", unique["column_names"])
                         for unique in inspector.get_unique_constraints(name))
        indexes = sorted((index["name"] or "", index["column_names"], bool(index["unique"]))
                         for index in inspector.get_indexes(name) if not index.get("duplicates_constraint"))
        tables[name] = {"columns": columns,
                        "primary_key": {"name": primary.get("name"), "columns": primary["constrained_columns"]},
                        "unique": [list(item) for item in uniques], "indexes": [list(item) for item in indexes]}
    return json.loads(json.dumps(tables))  # tuples as lists, as in the stored fixture


#: A revision that fails half-way (after creating a table and adding a column), to test the rollback.
BROKEN_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"


def upgrade():
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    op.add_column("link", sa.Column("half_done", sa.Integer(), nullable=True))
    op.execute("SELECT * FROM no_such_table")


def downgrade():
    pass
"""


# -- rows in every table, written through the database's own (reflected) tables ----------------------
WHEN = datetime(2026, 3, 14, 9, 30, 15, tzinfo=UTC)


def seed_rows(connection: Connection, tables: frozenset[str]) -> None:
    """Two rows per table: one with every column set, one with every nullable column NULL."""
    metadata = MetaData()
    metadata.reflect(connection, only=sorted(tables))
    for table in metadata.sorted_tables:
        for number in (1, 2):
            row = {}
            for column in table.columns:
                if column.nullable and number == 2:
                    row[column.name] = None
                else:
                    row[column.name] = _value(table.name, column.name, column.type, number)
            connection.execute(table.insert().values(**row))


def read_rows(connection: Connection, tables: frozenset[str], columns: dict[str, list[str]]) -> dict[str, Any]:
    """Every row of `tables`, ordered by primary key, restricted to `columns` (the baseline's columns)."""
    metadata = MetaData()
    metadata.reflect(connection, only=sorted(tables))
    out: dict[str, Any] = {}
    for name in sorted(tables):
        table = metadata.tables[name]
        selected = [table.c[column] for column in columns[name]]
        order = list(table.primary_key.columns)
        out[name] = [tuple(_plain(value) for value in row)
                     for row in connection.execute(table.select().with_only_columns(*selected).order_by(*order))]
    return out


def _value(table: str, column: str, type_: Any, number: int) -> Any:
    if isinstance(type_, DateTime):
        return WHEN.replace(minute=number)
    if isinstance(type_, Integer):
        return number
    if isinstance(type_, (String, Text)):
        return f"{table}.{column}.{number} \u00e9"  # non-ASCII survives the table copies too
    raise AssertionError(f"no sample value for {table}.{column} ({type_!r})")


def _plain(value: Any) -> Any:
    """Datetimes as naive UTC: SQLite gives them back naive, PostgreSQL aware."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def write_baseline_fixture(urls: dict[str, str]) -> None:
    """Regenerate the fixture from aa0c6a1's code: run with PYTHONPATH pointing at an export of that commit.

    ``git archive aa0c6a1 | tar -x -C /tmp/aa0c6a1`` then, with PYTHONPATH=/tmp/aa0c6a1, call this with an
    empty SQLite and an empty PostgreSQL URL; it runs that commit's ``create_all`` on each.
    """
    from sqlmodel import SQLModel

    import bridge.store  # noqa: F401  (aa0c6a1's, by PYTHONPATH)

    result = {"about": "schema produced by create_all at commit aa0c6a1 (before migrations); "
                       "revision 0001 must build exactly this"}
    for dialect, url in urls.items():
        engine = create_engine(url)
        with engine.begin() as connection:
            SQLModel.metadata.create_all(connection)
            result[dialect] = snapshot(connection)
        engine.dispose()
    BASELINE_FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE_FIXTURE.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
