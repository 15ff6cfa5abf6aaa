"""How transactions meet the store: a webhook's goes before the worker's, the worker's skip the disk wait,
and one the database aborted as a deadlock victim runs again instead of failing its event."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bridge.store import Store, is_transient, retry_transient
from tests.conftest import wait_until


def _pragma_or_setting(store: Store) -> str:
    with store.transaction() as session:
        query = "PRAGMA synchronous" if store.is_sqlite else "SHOW synchronous_commit"
        return str(session.execute(text(query)).scalar())


def test_the_workers_commits_do_not_wait_for_the_disk_but_acknowledged_ones_do(store: Store) -> None:
    with store.background():
        background = _pragma_or_setting(store)
    acknowledged = _pragma_or_setting(store)
    if store.is_sqlite:
        assert (background, acknowledged) == ("1", "2")  # NORMAL, FULL
    else:
        assert (background, acknowledged) == ("off", "on")


@pytest.mark.parametrize(("deferred_for", "order"), [
    (None, ["holder", "webhook", "worker"]),  # the default: the worker has not waited long
    (0.0, ["holder", "worker", "webhook"]),  # the worker waited its longest: its turn, webhooks or not
])
def test_a_webhook_waiting_for_the_write_lock_goes_before_the_worker_until_the_worker_waited_too_long(
        store: Store, deferred_for: float | None, order: list[str]) -> None:
    """The worker waits for the lock first, the webhook later: the webhook writes first, so its sender
    waits for at most the one transaction in progress; but a worker deferred for `max_defer_seconds`
    goes next, so a storm of webhooks never stops delivery."""
    if store.write_gate is None:
        pytest.skip("the write gate orders SQLite's writers; PostgreSQL has row locks")
    gate = store.write_gate
    gate.max_defer_seconds = 60.0 if deferred_for is None else deferred_for
    with store.transaction() as session:
        session.execute(text("CREATE TABLE turn (id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT)"))
    release = threading.Event()

    def write(who: str) -> None:
        with store.transaction() as session:
            session.execute(text("INSERT INTO turn (who) VALUES (:who)"), {"who": who})

    def hold() -> None:
        with store.transaction() as session:
            session.execute(text("INSERT INTO turn (who) VALUES ('holder')"))
            release.wait(timeout=20)

    def worker() -> None:
        with store.background():
            write("worker")

    def webhook() -> None:
        with store.answering():
            write("webhook")

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(lambda: gate._owner is not None, message="the holder to take the lock")  # noqa: SLF001
    threads = [threading.Thread(target=worker)]
    threads[0].start()
    wait_until(lambda: gate.waiting == 1, message="the worker to wait")
    threads.append(threading.Thread(target=webhook))
    threads[1].start()
    wait_until(lambda: gate.waiting == 2, message="the webhook to wait")
    release.set()
    for thread in (holder, *threads):
        thread.join(timeout=20)
    with store.transaction() as session:
        assert [row[0] for row in session.execute(text("SELECT who FROM turn ORDER BY id"))] == order


def test_a_thread_may_open_a_transaction_inside_its_own(store: Store) -> None:
    """Re-entry: the gate does not make a thread wait for itself (SQLite then orders the two itself)."""
    if store.write_gate is None:
        pytest.skip("SQLite only")
    with store.transaction() as outer:
        outer.execute(text("SELECT 1"))
        assert store.write_gate._acquire(answering=False)  # noqa: SLF001  (the same thread: at once)
        store.write_gate._release()  # noqa: SLF001
    assert store.write_gate._owner is None  # noqa: SLF001


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def aborted(sqlstate: str) -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL answers with `sqlstate` (40P01: deadlock detected)."""
    return OperationalError("SELECT pg_advisory_xact_lock(7428190431)", None, _DriverError(sqlstate))


def test_a_transaction_aborted_as_a_deadlock_victim_runs_again() -> None:
    tries: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise aborted("40P01")
        return "committed"

    assert retry_transient(work) == "committed" and len(tries) == 3


def test_any_other_database_error_is_not_repeated() -> None:
    tries: list[int] = []

    def work() -> None:
        tries.append(1)
        raise aborted("23505")  # a unique violation: running it again would fail the same way

    with pytest.raises(OperationalError):
        retry_transient(work)
    assert len(tries) == 1 and not is_transient(aborted("23505")) and is_transient(aborted("40001"))
