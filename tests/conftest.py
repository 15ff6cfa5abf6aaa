"""Shared fixtures. The store runs on SQLite by default and on PostgreSQL when
ITSM_BRIDGE_TEST_DATABASE_URL is set (CI sets it to the machine's PostgreSQL)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import text

from bridge.errors import TransientError
from bridge.store import Store

T = TypeVar("T")

DATABASE_URL = os.environ.get("ITSM_BRIDGE_TEST_DATABASE_URL")


def database_url(tmp_path: Path) -> str:
    return DATABASE_URL or f"sqlite:///{tmp_path / 'bridge.db'}"


def fresh_store(tmp_path: Path) -> Store:
    store = Store(database_url(tmp_path))
    if not store.is_sqlite:
        with store.engine.begin() as connection:  # stale tables from an interrupted run
            connection.execute(text("DROP TABLE IF EXISTS inbox, link, outbox, dead_letter, cursor, audit, incident_timeline, breaker, alembic_version CASCADE"))
    store.create_schema()
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = fresh_store(tmp_path)
    yield store
    if not store.is_sqlite:
        store.drop_schema()
    store.dispose()


def as_the_outbox(write: Callable[[], T], *, tries: int = 30) -> T:
    """Repeat a write the transport left to its caller (a POST or PATCH answered 5xx or reset), as the
    outbox does. The simulators fail a faulted request before acting on it, so repeating it acts once."""
    for attempt in range(1, tries + 1):
        try:
            return write()
        except TransientError:
            if attempt == tries:
                raise
    raise AssertionError("unreachable")


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Re-check `predicate` until it is truthy (condition polling, not a fixed sleep); fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
