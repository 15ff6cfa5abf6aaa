"""Poll leadership between replicas: one leader at a time on PostgreSQL, taken over when it goes away."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from bridge.leader import LEADER_LOCK_KEY, Leadership
from tests.conftest import DATABASE_URL


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sqlite_is_single_process_so_always_the_leader(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert Leadership(engine, is_sqlite=True).is_leader()


@pytest.mark.skipif(not DATABASE_URL, reason="leadership is a PostgreSQL advisory lock: set ITSM_BRIDGE_TEST_DATABASE_URL")
def test_one_replica_leads_and_another_takes_over_when_it_dies() -> None:
    clock = Clock()
    first_engine, second_engine = create_engine(DATABASE_URL), create_engine(DATABASE_URL)  # two processes' pools
    first = Leadership(first_engine, is_sqlite=False, retry_seconds=2, clock=clock)
    second = Leadership(second_engine, is_sqlite=False, retry_seconds=2, clock=clock)
    try:
        assert first.is_leader()
        assert not second.is_leader()
        clock.now += 3
        assert first.is_leader() and not second.is_leader()  # still one leader after re-checks
        # The leader's process dies: the server ends its session, which frees the lock. Termination is a
        # signal; the timeout argument (PostgreSQL 14+) waits until the backend has really exited.
        with second_engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' "
                               "AND objid = :low AND pid <> pg_backend_pid()"), {"low": LEADER_LOCK_KEY & 0xFFFFFFFF})
            admin.commit()
        assert not second.is_leader()  # asked within the retry interval: the cached answer
        clock.now += 3
        assert second.is_leader()
        assert not first.is_leader()  # the old leader notices it lost its connection
    finally:
        first.release()
        second.release()
        first_engine.dispose()
        second_engine.dispose()


@pytest.mark.skipif(not DATABASE_URL, reason="leadership is a PostgreSQL advisory lock: set ITSM_BRIDGE_TEST_DATABASE_URL")
def test_a_clean_stop_hands_leadership_over_at_the_next_ask() -> None:
    clock = Clock()
    engine = create_engine(DATABASE_URL)
    first = Leadership(engine, is_sqlite=False, clock=clock)
    second = Leadership(engine, is_sqlite=False, clock=clock)
    try:
        assert first.is_leader() and not second.is_leader()
        first.release()
        clock.now += 5
        assert second.is_leader()
    finally:
        first.release()
        second.release()
        engine.dispose()
