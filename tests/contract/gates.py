"""Role gates and checks shared by the contract test modules.

What a connector cannot do is read from the connector class (`roles`, `can_add_notes`, `is_chat`) and
turned into a skip that says why; there is no list of exceptions anywhere in the suite.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime

import pytest

from tests.contract.harness import ChatHarness, Harness, SourceHarness, TargetHarness


def now() -> datetime:
    return datetime.now(UTC)


def declared(harness: Harness) -> str:
    cls = harness.connector_class
    return (f"{cls.__name__} declares roles={sorted(cls.roles)}, can_add_notes={cls.can_add_notes}, "
            f"is_chat={cls.is_chat}")


def need_source(harness: Harness) -> SourceHarness:
    """Skip unless the connector is a source (chat tools are sources too)."""
    if "source" not in harness.connector_class.roles:
        pytest.skip(f"not a source: {declared(harness)}")
    assert isinstance(harness, SourceHarness), f"{harness.slug}: a source needs a SourceHarness"
    return harness


def need_oncall(harness: Harness) -> SourceHarness:
    """Skip unless the connector is a source with incident statuses (not a chat tool)."""
    source = need_source(harness)
    if harness.connector_class.is_chat:
        pytest.skip(f"chat has no incident status to trigger, acknowledge or resolve: {declared(harness)}")
    return source


def need_target(harness: Harness) -> TargetHarness:
    if "target" not in harness.connector_class.roles:
        pytest.skip(f"not a target: {declared(harness)}")
    assert isinstance(harness, TargetHarness), f"{harness.slug}: a target needs a TargetHarness"
    return harness


def need_chat(harness: Harness) -> ChatHarness:
    if not harness.connector_class.is_chat:
        pytest.skip(f"not a chat tool: {declared(harness)}")
    assert isinstance(harness, ChatHarness), f"{harness.slug}: a chat tool needs a ChatHarness"
    return harness


def need_notes(harness: Harness) -> None:
    if not harness.connector_class.can_add_notes:
        pytest.skip(f"the tool's API cannot write notes: {declared(harness)}")


def assert_no_secret(harness: Harness, *texts: object) -> None:
    """None of `texts` (messages, reprs, whole exception tracebacks) shows a credential or secret."""
    for text in texts:
        if isinstance(text, BaseException):
            text = "".join(traceback.format_exception(text))  # chained causes too: a log would print them
        for secret in harness.secrets():
            assert secret not in str(text), f"{harness.slug}: a secret leaks into {str(text)[:300]!r}"
