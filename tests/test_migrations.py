"""Schema migrations: old databases keep their rows, newer ones are refused, and code and migrations agree.

Runs on SQLite, and on PostgreSQL when ITSM_BRIDGE_TEST_DATABASE_URL is set (each test then works in
databases of its own on that server, see `migration_support.private_databases`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import text
from sqlmodel import SQLModel

from bridge import migrate
from bridge.cli import main
from bridge.migrate import (
    BASELINE,
    BASELINE_TABLES,
    alembic_config,
    head_revision,
    migration_options,
)
from bridge.store import Store
from tests.conftest import database_url, wait_until
from tests.migration_support import (
    BASELINE_FIXTURE,
    BROKEN_REVISION,
    private_databases,
    read_rows,
    seed_rows,
    snapshot,
)

HEAD = head_revision()
BASELINE_COLUMNS = {name: [column["name"] for column in table["columns"]]
                    for name, table in json.loads(BASELINE_FIXTURE.read_text(encoding="utf-8"))["sqlite"].items()}


@pytest.fixture
def new_database(tmp_path: Path) -> Iterator[Callable[[], str]]:
    with private_databases(database_url(tmp_path), tmp_path) as create:
        yield create


@pytest.fixture
def url(new_database: Callable[[], str]) -> str:
    return new_database()


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


def cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def migrate_to(url: str, revision: str) -> None:
    """Run the shipped migrations up to `revision` (not create_all), as an old release's upgrade would."""
    store = Store(url)
    try:
        with store.engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        store.dispose()


def pre_alembic_database(url: str) -> dict[str, object]:
    """A database as aa0c6a1 left it: the 0001 tables holding rows, and no alembic_version. Returns the rows."""
    migrate_to(url, BASELINE)
    store = Store(url)
    try:
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
            seed_rows(connection, BASELINE_TABLES)
    finally:
        store.dispose()
    return rows_of(url)


def rows_of(url: str) -> dict[str, object]:
    """Every row of the baseline tables, in the baseline's columns."""
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            return read_rows(connection, BASELINE_TABLES, BASELINE_COLUMNS)
    finally:
        store.dispose()


def database_revision(url: str) -> list[str]:
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            return list(MigrationContext.configure(connection).get_current_heads())
    finally:
        store.dispose()


def schema_of(url: str) -> dict[str, object]:
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            return snapshot(connection)
    finally:
        store.dispose()


# -- upgrading -----------------------------------------------------------------------------------------
def test_db_upgrade_adopts_a_pre_migration_database_keeping_every_row(tmp_path: Path, url: str) -> None:
    before = pre_alembic_database(url)
    config = write_config(tmp_path, url)

    result = cli("db", "upgrade", "--config", str(config))

    assert result.exit_code == 0, result.output
    assert "before migrations" in result.output and f"{BASELINE} (baseline)" in result.output
    assert f"to {HEAD} (head)" in result.output
    assert database_revision(url) == [HEAD]
    assert rows_of(url) == before and all(len(rows) == 2 for rows in before.values())  # type: ignore[arg-type]
    again = cli("db", "upgrade", "--config", str(config))
    assert again.exit_code == 0 and "nothing to do" in again.output and rows_of(url) == before
    # ... and the bridge reads them through its own models: the seeded dead-letter is listed.
    listed = cli("dead-letter", "list", "--all", "--json", "--config", str(config))
    assert listed.exit_code == 0, listed.output
    assert [letter["error"] for letter in json.loads(listed.output)] == ["dead_letter.error.1 \u00e9",
                                                                      "dead_letter.error.2 \u00e9"]


def test_db_upgrade_twice_is_a_no_op(tmp_path: Path, url: str) -> None:
    config = write_config(tmp_path, url)

    first = cli("db", "upgrade", "--config", str(config), "--json")
    schema = schema_of(url)
    second = cli("db", "upgrade", "--config", str(config))

    assert first.exit_code == 0 and json.loads(first.output) == {"action": "created", "from": None, "to": HEAD}
    assert second.exit_code == 0, second.output
    assert f"at revision {HEAD} (head); nothing to do" in second.output
    assert schema_of(url) == schema and database_revision(url) == [HEAD]


def test_a_database_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path, url: str) -> None:
    Store(url).create_schema()
    store = Store(url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.dispose()
    config = write_config(tmp_path, url)

    for command_line in (["db", "upgrade"], ["db", "current"], ["status"]):
        result = cli(*command_line, "--config", str(config))
        assert result.exit_code == 2, (command_line, result.output)
        message = " ".join(result.output.split())
        assert "revision 9999" in message and f"newest revision is {HEAD}" in message
        assert "upgrade itsm-bridge" in message
    report = cli("db", "current", "--json", "--config", str(config))
    assert report.exit_code == 2 and json.loads(report.output)["state"] == "newer"
    assert "revision 9999" in json.loads(report.output)["error"]
    assert database_revision(url) == ["9999"]


def test_partial_schema_without_version_table_is_refused(tmp_path: Path, url: str) -> None:
    pre_alembic_database(url)
    store = Store(url)
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE link"))
    store.dispose()

    result = cli("db", "upgrade", "--config", str(write_config(tmp_path, url)))

    assert result.exit_code == 2
    assert "not link" in " ".join(result.output.split())
    assert database_revision(url) == []


@pytest.fixture
def broken_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This release's migrations plus one that fails half-way; yields the broken revision's id."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    revision = f"{int(HEAD) + 1:04d}"
    (folder / "versions" / f"{revision}_broken.py").write_text(BROKEN_REVISION.format(revision=revision, down=HEAD))
    monkeypatch.setattr(migrate, "MIGRATIONS", folder)
    migrate.script_directory.cache_clear()
    migrate._known_revisions.cache_clear()
    yield revision
    monkeypatch.undo()
    migrate.script_directory.cache_clear()
    migrate._known_revisions.cache_clear()


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path, url: str, broken_release: str) -> None:
    before = pre_alembic_database(url)
    schema = schema_of(url)

    result = cli("db", "upgrade", "--config", str(write_config(tmp_path, url)))

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"to revision {broken_release} failed" in message and "no_such_table" in message
    assert "Nothing was changed" in message and "no alembic_version" in message
    assert schema_of(url) == schema and database_revision(url) == []  # not stamped, no half_done anywhere
    assert rows_of(url) == before


def test_tables_dropped_by_hand_are_created_again_despite_the_stale_version_row(url: str) -> None:
    """What tests/conftest.py's fresh_store does on PostgreSQL: drop the tables, keep alembic_version."""
    Store(url).create_schema()
    store = Store(url)
    with store.engine.begin() as connection:
        for table in BASELINE_TABLES:
            connection.execute(text(f"DROP TABLE {table}"))

    result = store.create_schema()

    assert (result.action, result.to_revision) == ("created", HEAD)
    assert set(schema_of(url)) == set(SQLModel.metadata.tables) and database_revision(url) == [HEAD]
    store.dispose()


def test_concurrent_starts_migrate_once(url: str) -> None:
    """Two processes' stores upgrade one pre-migration database at the same moment: one migrates, one waits."""
    pre_alembic_database(url)
    stores = [Store(url), Store(url)]
    barrier = threading.Barrier(2)
    results: list[object] = []

    def start(store: Store) -> None:
        barrier.wait()
        try:
            results.append(store.upgrade().action)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for store in stores:
        store.dispose()

    assert sorted(map(str, results)) == ["adopted", "current"]
    assert database_revision(url) == [HEAD]


def test_run_upgrades_on_start(tmp_path: Path, url: str) -> None:
    pre_alembic_database(url)
    config = write_config(tmp_path, url)
    process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config), "--port", "0"],
                               stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(lambda: any("listening" in line for line in lines) or process.poll() is not None,
                   timeout=60, message="the daemon to start")
        assert process.poll() is None, "".join(lines)
        assert any(f"upgraded it to {HEAD}" in line for line in lines), lines
        assert database_revision(url) == [HEAD]
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- reporting -----------------------------------------------------------------------------------------
def test_db_current_reports_each_state_with_its_exit_code(tmp_path: Path, new_database: Callable[[], str]) -> None:
    def current(url: str) -> tuple[int, dict[str, object]]:
        result = cli("db", "current", "--json", "--config", str(write_config(tmp_path, url)))
        return result.exit_code, json.loads(result.output)

    empty, old, behind, fresh = (new_database() for _ in range(4))
    pre_alembic_database(old)
    migrate_to(behind, BASELINE)
    Store(fresh).create_schema()

    code, report = current(empty)
    assert code == 1 and report["state"] == "empty" and report["revision"] is None
    code, report = current(old)
    assert code == 1 and report["state"] == "unversioned" and report["up_to_date"] is False
    code, report = current(behind)
    assert (code, report["state"], report["revision"]) == (1, "behind", BASELINE)
    assert [line.split(":")[0] for line in report["pending"]][-1] == HEAD  # type: ignore[union-attr]
    code, report = current(fresh)
    assert (code, report) == (0, {"state": "current", "revision": HEAD, "head": HEAD, "up_to_date": True,
                                  "pending": []})
    table = cli("db", "current", "--config", str(write_config(tmp_path, behind)))
    assert table.exit_code == 1 and "run `itsm-bridge db upgrade`" in table.output


def test_db_current_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing-yet.db"
    result = cli("db", "current", "--config", str(write_config(tmp_path, f"sqlite:///{path}")))
    assert result.exit_code == 1 and "no schema yet" in result.output
    assert not path.exists()


# -- code and migrations agree -------------------------------------------------------------------------
def test_migrations_build_exactly_what_the_tables_in_code_describe(url: str) -> None:
    migrate_to(url, "head")
    store = Store(url)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=migration_options(connection.dialect.name))
        differences = compare_metadata(context, SQLModel.metadata)
    store.dispose()
    assert not differences, (
        "the tables in bridge/store.py or compliance/store.py differ from what the migrations build: "
        f"{differences}. Add a revision: itsm-bridge db revision -m 'what changed', review it, rerun this test "
        "on SQLite and PostgreSQL")


def test_new_databases_get_the_same_schema_as_migrated_ones(new_database: Callable[[], str]) -> None:
    """create_all + stamp (new databases) and the migrations (old ones) must not drift apart."""
    created, migrated = new_database(), new_database()
    Store(created).create_schema()
    migrate_to(migrated, "head")
    assert schema_of(created) == schema_of(migrated)


def test_baseline_revision_is_the_schema_of_aa0c6a1(url: str) -> None:
    migrate_to(url, BASELINE)
    frozen = json.loads(BASELINE_FIXTURE.read_text(encoding="utf-8"))
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    assert schema_of(url) == frozen[dialect]
