"""The floor every connector stands on: credentials checked, failures typed, secrets kept out of errors.

Run against each connector's own simulator over real loopback HTTP, with the bridge's own session.
Role-specific contracts live beside this module (sources: webhooks, poll, the way back; targets: the
ticket lifecycle; chat: messages and commands); the per-connector tests stay the place for details.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.errors import AuthError, PermanentError, TransientError
from connectors.base import marker
from tests.contract.gates import assert_no_secret, now
from tests.contract.harness import ChatHarness, Harness, SourceHarness, TargetHarness


def test_check_accepts_the_right_credentials(harness: Harness) -> None:
    result = harness.build().check()
    assert result.ok, f"{harness.slug}: check() failed with the right credentials: {result.message}"
    assert result.message
    assert_no_secret(harness, result.message, result.details, repr(harness.build()))


def test_check_refuses_wrong_credentials_without_showing_them(harness: Harness) -> None:
    connector = harness.build(**harness.wrong_credentials())
    try:
        result = connector.check()
    except AuthError as exc:  # allowed: the typed refusal instead of a result
        assert_no_secret(harness, exc)
        return
    assert not result.ok, f"{harness.slug}: check() said ok with wrong credentials: {result.message}"
    assert result.message
    assert_no_secret(harness, result.message, result.details)


def api_call(harness: Harness) -> Callable[[], object]:
    """One call that must reach the tool's API: a poll, or for chat (whose poll may be push-only) a post."""
    if isinstance(harness, ChatHarness) and harness.connector_class.is_chat:
        channel = harness.create_channel("contract-faults")
        connector = harness.build(attempts=1)
        return lambda: connector.add_note(channel, f"Checking in {marker('contract-faults')}")
    connector = harness.build(attempts=1)
    return lambda: connector.poll(None, now=now())


def test_server_errors_are_transient(faults: Harness) -> None:
    attempt = api_call(faults)
    faults.faults.configure(server_error_rate=1.0)
    before = faults.faults.injected["5xx"]
    with pytest.raises(TransientError) as caught:
        attempt()
    assert faults.faults.injected["5xx"] > before, "the simulator was never asked"
    assert caught.value.status in (500, 502, 503) and caught.value.connection == faults.name
    assert_no_secret(faults, caught.value)


def test_rate_limit_is_transient_and_carries_retry_after(faults: Harness) -> None:
    attempt = api_call(faults)
    faults.faults.configure(rate_limit_rate=1.0, retry_after=7)
    with pytest.raises(TransientError) as caught:
        attempt()
    assert caught.value.status == 429 and caught.value.retry_after == 7
    assert_no_secret(faults, caught.value)


def test_an_unknown_record_is_a_permanent_error(harness: Harness) -> None:
    connector = harness.build()
    calls = []
    if isinstance(harness, TargetHarness) and "target" in connector.roles:
        calls += [lambda: connector.get(harness.unknown_id),
                  lambda: connector.update(harness.unknown_id, {harness.title_field: "x"})]
    if isinstance(harness, SourceHarness) and "source" in connector.roles:
        if connector.is_chat:
            calls.append(lambda: connector.add_note(harness.unknown_id, f"hello {marker('contract-0')}"))
        else:
            calls.append(lambda: connector.transition(harness.unknown_id, "acknowledged"))
    assert calls, f"{harness.slug}: declares no role the suite knows"
    for attempt in calls:
        with pytest.raises(PermanentError) as caught:
            attempt()
        assert not isinstance(caught.value, AuthError), f"{harness.slug}: an unknown record is not an auth problem"
        assert harness.unknown_id in str(caught.value), f"{harness.slug}: the error should name the record"
        assert caught.value.connection == harness.name
        assert_no_secret(harness, caught.value)
