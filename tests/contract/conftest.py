"""Fixtures of the contract suite: one running simulator per connector and module.

The `harness` fixture is module-scoped and parametrized over every harness, so pytest runs all of one
connector's tests of a module against one simulator before starting the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.harness import Harness
from tests.contract.harnesses import HARNESSES


@pytest.fixture(scope="module", params=HARNESSES, ids=[h.slug for h in HARNESSES])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    running = request.param()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def faults(harness: Harness) -> Iterator[Harness]:
    """The harness, with its simulator's fault knobs back at zero after the test whatever happens."""
    try:
        yield harness
    finally:
        harness.reset_faults()
