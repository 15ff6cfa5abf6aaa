"""Fixtures of the compliance tests (helpers live in compliance_helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance.settings import ComplianceSettings
from compliance_helpers import make_settings


@pytest.fixture
def settings() -> ComplianceSettings:
    return make_settings()


@pytest.fixture
def cstore(tmp_path: Path) -> Iterator[Any]:
    """A fresh store with the compliance table (dropped first on PostgreSQL, where tables outlive a run)."""
    import compliance.store  # noqa: F401 - registers incident_timeline in the shared metadata
    from bridge.store import Store

    url = os.environ.get("ITSM_BRIDGE_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'bridge.db'}"
    store = Store(url)
    if not store.is_sqlite:
        store.drop_schema()  # stale tables from an interrupted run
    store.create_schema()
    yield store
    if not store.is_sqlite:
        store.drop_schema()
    store.dispose()
