"""The durable state: inbox, links, outbox, dead-letters, cursors and the audit trail, in one database.

SQLite (a file, WAL mode) is the embedded default; PostgreSQL by URL for production. Every state change
of the sync happens inside `Store.transaction()`, so an event is either fully processed (its ops queued,
its link updated, its audit entry written) or not at all, and a crash at any point loses nothing.

On SQLite each transaction starts with ``BEGIN IMMEDIATE``: writers queue for the lock up front instead
of failing half-way with "database is locked" when a read transaction tries to upgrade. Within one
process they queue on a Python lock first (`_WriteGate`): SQLite's own busy handler waits by sleeping
(1, 2, 5, 10 ... 100 ms), which under load left webhook ingest waiting hundreds of milliseconds for a
lock that had been free for most of that time.

Two marks change how a thread's transactions meet the store (`Store.answering`, `Store.background`): a
webhook's sender is waiting for its answer, so its transactions go first at the gate; the worker's
transactions record what can be derived again (an inbox event is processed again, a delivered op is
found by its marker), so their commit need not wait for the disk: WAL keeps them in order, a process
crash loses none of them, and the next durable commit (the next webhook's) flushes them too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Column, Index, Text, UniqueConstraint, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from bridge.model import utcnow

if TYPE_CHECKING:
    from bridge.migrate import UpgradeResult

log = logging.getLogger(__name__)


T = TypeVar("T")

#: PostgreSQL aborted one of two transactions that waited for each other (deadlock) or could not be
#: serialised: running the whole transaction again resolves it. Replicas meet this under load.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(exc: BaseException) -> bool:
    """A database error a retry of the whole transaction resolves (deadlock, serialisation failure)."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def retry_transient(work: Callable[[], T], *, tries: int = 5) -> T:
    """Run `work` (one whole transaction) again when the database aborted it as a deadlock victim.

    PostgreSQL breaks a deadlock by aborting one side; the other goes on. The aborted side rolled back
    completely, so running it again is safe, and it is not an error of the event or op it was about.
    """
    for attempt in range(1, tries + 1):
        try:
            return work()
        except DBAPIError as exc:
            if attempt == tries or not is_transient(exc):
                raise
            log.info("transaction aborted by the database (%s); running it again (try %d of %d)",
                     getattr(exc.orig, "sqlstate", "?"), attempt + 1, tries)
    raise AssertionError("unreachable")


def dumps(value: Any) -> str:
    """Canonical JSON for stored documents (sorted keys, compact, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class InboxEvent(SQLModel, table=True):
    """A change received (webhook or poll), stored before it is acknowledged; processed in order per record."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("connection", "event_id", name="uq_inbox_event"),
                      Index("ix_inbox_status_id", "status", "id"))

    id: int | None = Field(default=None, primary_key=True)
    connection: str
    event_id: str
    event_type: str
    record_key: str = Field(index=True, description="connection:record_id, the ordering key")
    change: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", description="pending | done | dead")
    received_at: datetime = Field(default_factory=utcnow)
    observed_at: datetime = Field(default_factory=utcnow,
                                  description="when the state it carries was read: a poll's start, a webhook's arrival")
    processed_at: datetime | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))


class Link(SQLModel, table=True):
    """One source incident paired with one desk ticket by one route, with what each side last showed."""

    __tablename__ = "link"
    __table_args__ = (UniqueConstraint("route", "source_connection", "source_id", name="uq_link_source"),
                      Index("ix_link_target", "target_connection", "target_id"))

    id: int | None = Field(default=None, primary_key=True)
    route: str
    source_connection: str
    source_id: str
    target_connection: str
    target_id: str | None = None
    target_number: str | None = None
    target_url: str | None = None
    correlation_id: str
    source_state: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    target_seen: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    target_written: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    seen_entries: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    pending_echo: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    target_written_at: datetime | None = Field(default=None, description="when the bridge last wrote the ticket")
    source_seen_at: datetime | None = Field(default=None, description="time of the newest source state processed")
    field_times: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # After the columns of the baseline: a migration adds it at the end (0003).
    target_answer: str | None = Field(default=None, sa_column=Column(Text, nullable=True),
                                      description="the ticket as the desk answered the last write (JSON), if it did")

    def load(self, attribute: str) -> Any:
        return json.loads(getattr(self, attribute))

    def save(self, attribute: str, value: Any) -> None:
        setattr(self, attribute, dumps(value))
        self.updated_at = utcnow()


class OutboxOp(SQLModel, table=True):
    """A write the bridge owes one side; delivered at least once, made idempotent by its key and marker."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    route: str
    link_id: int = Field(index=True)
    connection: str
    side: str = Field(description="target | source")
    op: str = Field(description="create | update | note | transition")
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", description="pending | done | dead")
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None


class DeadLetter(SQLModel, table=True):
    """Something that could not be processed or delivered, kept with its reason until replayed or discarded."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(description="webhook | inbox | outbox")
    ref_id: int | None = None
    connection: str
    route: str | None = None
    record_key: str | None = None
    error: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    resolution: str | None = None


class Cursor(SQLModel, table=True):
    """Where each poller resumes (per connection)."""

    __tablename__ = "cursor"

    name: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """One link of the hash chain: ``hash = sha256(prev_hash || canonical JSON of the entry)``."""

    __tablename__ = "audit"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: str
    kind: str = Field(index=True)
    subject: str
    data: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str
    hash: str


class BreakerRow(SQLModel, table=True):
    """A connection's circuit breaker as last written by a running bridge (`bridge.breakers`), so that
    `itsm-bridge status` in another process shows it and a restarted daemon does not hammer a down desk."""

    __tablename__ = "breaker"

    connection: str = Field(primary_key=True)
    state: str = Field(default="closed", description="closed | open | half-open")
    failures: int = Field(default=0, description="consecutive transient failures")
    opened_at: datetime | None = None
    reopens_at: datetime | None = Field(default=None, description="when the next probe may go")
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = Field(default_factory=utcnow)


def _sqlite_url(url: str, base_dir: Path | None) -> str:
    """Make a relative SQLite path relative to the config file's directory, not the working directory."""
    prefix = "sqlite:///"
    if base_dir is None or not url.startswith(prefix) or url == "sqlite:///:memory:":
        return url
    path = Path(url[len(prefix):])
    if path.is_absolute():
        return url
    return prefix + str((base_dir / path).resolve())


class Store:
    """The database behind the bridge. Build one per process; share it between threads."""

    def __init__(self, url: str, *, base_dir: Path | None = None) -> None:
        self.url = _sqlite_url(url, base_dir)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(self.url, connect_args={"check_same_thread": False,
                                                                        "timeout": 30})
            self.write_gate: _WriteGate | None = _tune_sqlite(self.engine)
        else:
            # Timestamps are stored as naive UTC: pin the session zone so PostgreSQL never shifts them.
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=10,
                                        connect_args={"options": "-c timezone=utc"})
            self.write_gate = None  # PostgreSQL's row locks and MVCC: no gate

    def create_schema(self) -> UpgradeResult:
        """Bring the schema to this release's head: the same as `upgrade` (every command calls this on start)."""
        return self.upgrade()

    def upgrade(self) -> UpgradeResult:
        """Create (empty), adopt (pre-migration) or migrate the schema to head; refuse a newer database.

        Raises `bridge.migrate.UnknownRevisionError` (a ConfigError: exit 2) when a newer release wrote it.
        """
        from bridge.migrate import upgrade

        return upgrade(self)

    def drop_schema(self) -> None:
        SQLModel.metadata.drop_all(self.engine)
        with self.engine.begin() as connection:  # the version table goes too, or the next start trusts it
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))

    def dispose(self) -> None:
        self.engine.dispose()

    def answering(self) -> AbstractContextManager[None]:
        """Transactions of this thread answer someone who waits (a webhook's sender): on SQLite they take
        the write lock before any other thread's that waits for it, unless that one has waited 50 ms
        already (`_WriteGate.max_defer_seconds`), so a webhook waits for at most one transaction of the
        worker's, not a queue of them, and a storm of webhooks never stops the worker."""
        return _marked("answering")

    def background(self) -> AbstractContextManager[None]:
        """Transactions of this thread record what can be derived again after a power cut (the worker's:
        processing an inbox event, recording a delivery found again by its marker): their commit does not
        wait for the disk (SQLite ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``). Every
        commit stays atomic and in order, and a process crash loses none of them: only a power cut may
        take the last few back, and then the work is simply done again. Inputs that are acknowledged
        (webhooks, CLI commands) stay fully durable."""
        return _marked("background")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One atomic unit of work; commits on success, rolls back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                if _marks.background and not self.is_sqlite:
                    session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def lock_audit(self, session: Session) -> None:
        """Serialise audit appends across processes (PostgreSQL advisory lock; SQLite's write lock suffices)."""
        if not self.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(7428190431)"))

    def insert_ignore(self, session: Session, model: type[SQLModel], values: dict[str, Any]) -> bool:
        """INSERT unless it violates a unique constraint; True when a row was written (de-duplication)."""
        dialect = sqlite if self.is_sqlite else postgresql
        key = next(iter(model.__table__.primary_key.columns))  # type: ignore[attr-defined]
        statement = dialect.insert(model).values(**values).on_conflict_do_nothing().returning(key)
        return session.execute(statement).first() is not None

    def get_cursor(self, name: str) -> str | None:
        with Session(self.engine) as session:
            row = session.get(Cursor, name)
            return row.value if row else None

    def set_cursor(self, session: Session, name: str, value: str) -> None:
        row = session.get(Cursor, name)
        if row is None:
            session.add(Cursor(name=name, value=value))
        else:
            row.value = value
            row.updated_at = utcnow()
            session.add(row)

    def count(self, model: type[SQLModel], **where: Any) -> int:
        from sqlalchemy import func

        with Session(self.engine) as session:
            statement = select(func.count()).select_from(model)
            for key, value in where.items():
                statement = statement.where(getattr(model, key) == value)
            return int(session.exec(statement).one())


def _tune_sqlite(engine: Engine) -> _WriteGate:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # synchronous=FULL: a webhook answered 2xx survives a power cut, not just a process crash.
        dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    gate = _WriteGate()
    event.listen(engine, "begin", gate.begin)
    event.listen(engine, "commit", gate.commit)
    event.listen(engine, "rollback", gate.rollback)
    return gate


class _Marks(threading.local):
    """Per thread: how its transactions meet the store (see `Store.answering` and `Store.background`)."""

    answering = False
    background = False


_marks = _Marks()


@contextmanager
def _marked(name: str) -> Iterator[None]:
    previous = getattr(_marks, name)
    setattr(_marks, name, True)
    try:
        yield
    finally:
        setattr(_marks, name, previous)


class _WriteGate:
    """Threads of one process take turns for SQLite's write lock on a Python lock, woken the moment it
    is free, instead of in SQLite's sleeping busy handler. Other processes (a CLI command next to the
    daemon) still meet at SQLite's lock, as before. A thread that answers someone (`Store.answering`)
    goes before the others that wait, but only for `max_defer_seconds`: then the other goes next, so a
    storm of webhooks slows the worker down and never stops it (their senders wait at most one worker
    transaction more). A thread may open a transaction while it holds the gate (re-entry).

    SQLAlchemy announces a commit or rollback *before* it runs it, so the gate ends the transaction
    itself (the driver's own call then finds nothing to do) and only then lets the next thread in. A
    thread that cannot get the gate in `busy_seconds` (a connection left in a transaction) goes on to
    SQLite's lock, exactly as without the gate: the gate can delay, never wedge, the daemon.
    """

    KEY = "itsm_bridge_write_gate"
    SYNC = "itsm_bridge_synchronous"

    def __init__(self, busy_seconds: float = 30.0, max_defer_seconds: float = 0.05) -> None:
        self._turn = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._answering_waiting = 0
        self._overdue = 0  # threads deferred for `max_defer_seconds` already: they go next
        self.max_defer_seconds = max_defer_seconds
        self.waiting = 0  # threads waiting for their turn now (read by tests and diagnostics)
        self._busy_seconds = busy_seconds

    def begin(self, connection: Any) -> None:
        held = self._acquire(answering=_marks.answering)
        if not held:
            log.warning("waited %.0f s for another thread's SQLite transaction; going on to SQLite's lock",
                        self._busy_seconds)
        try:
            synchronous = "NORMAL" if _marks.background else "FULL"
            if connection.info.get(self.SYNC) != synchronous:  # a pragma, outside any transaction
                connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
                connection.info[self.SYNC] = synchronous
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if held:
                self._release()
            raise
        connection.info[self.KEY] = held

    def commit(self, connection: Any) -> None:
        self._end(connection, "COMMIT")

    def rollback(self, connection: Any) -> None:
        self._end(connection, "ROLLBACK")

    def _end(self, connection: Any, statement: str) -> None:
        if self.KEY not in connection.info:
            return
        held = connection.info.pop(self.KEY)
        try:
            dbapi = connection.connection.dbapi_connection
            if dbapi is not None and dbapi.in_transaction:
                dbapi.execute(statement)
        finally:
            if held:
                self._release()

    def _acquire(self, *, answering: bool) -> bool:
        me = threading.get_ident()
        now = time.monotonic()
        deadline = now + self._busy_seconds
        overdue_at = None if answering else now + self.max_defer_seconds
        overdue = False
        with self._turn:
            if self._owner == me:
                self._depth += 1
                return True
            self._answering_waiting += answering
            self.waiting += 1
            try:
                while True:
                    if overdue_at is not None and not overdue and time.monotonic() >= overdue_at:
                        overdue = True  # deferred long enough: the next turn is this thread's
                        self._overdue += 1
                    if self._owner is None and (
                            (not answering and (overdue or not self._answering_waiting))
                            or (answering and not self._overdue)):
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    if overdue_at is not None and not overdue:
                        remaining = min(remaining, max(overdue_at - time.monotonic(), 0.0))
                    self._turn.wait(remaining)
                self._owner, self._depth = me, 1
                return True
            finally:
                self._answering_waiting -= answering
                self.waiting -= 1
                self._overdue -= overdue

    def _release(self) -> None:
        with self._turn:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._turn.notify_all()


# The compliance timeline table shares this metadata, so create_schema() creates it too.
import compliance.store  # noqa: E402,F401  (imported last: it builds on the tables above)
