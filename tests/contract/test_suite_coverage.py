"""The contract suite covers every built-in connector: a new connector cannot skip it."""

from __future__ import annotations

from bridge.registry import BUILTIN
from tests.contract.harnesses import HARNESSES


def test_every_builtin_connector_has_a_harness() -> None:
    slugs = [harness.slug for harness in HARNESSES]
    assert len(slugs) == len(set(slugs)), f"a connector is listed twice in HARNESSES: {sorted(slugs)}"
    missing = set(BUILTIN) - set(slugs)
    unknown = set(slugs) - set(BUILTIN)
    assert not missing, (f"built-in connectors without a contract harness: {sorted(missing)} (add a harness "
                         "under tests/contract/tools/ and list it in tests/contract/harnesses.py)")
    assert not unknown, f"harnesses for types bridge.registry.BUILTIN does not know: {sorted(unknown)}"
    assert set(slugs) == set(BUILTIN)
