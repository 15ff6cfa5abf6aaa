"""Group commit: webhooks arriving while a group is written share the next transaction, and answer
after it; one that cannot be stored fails alone."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bridge.group_commit import GroupCommit
from tests.conftest import wait_until


def arrive_during_a_write(commits: GroupCommit[str, str], writes: list[list[str]], release: threading.Event,
                          submit: Callable[[str], None], names: tuple[str, ...]) -> None:
    """"first" is being written (until `release`) while `names` arrive and queue; then all finish."""
    leader = threading.Thread(target=submit, args=("first",))
    leader.start()
    wait_until(lambda: writes, message="the first write to start")
    others = [threading.Thread(target=submit, args=(name,)) for name in names]
    for thread in others:
        thread.start()
    wait_until(lambda: commits.queued == len(names), message=f"{len(names)} callers to wait")
    release.set()
    for thread in (leader, *others):
        thread.join(timeout=20)


def test_callers_that_wait_during_a_write_share_the_next_one() -> None:
    commits: GroupCommit[str, str] = GroupCommit()
    writes: list[list[str]] = []
    first_may_finish = threading.Event()

    def write(items: list[str]) -> list[str]:
        writes.append(items)
        if items == ["first"]:
            first_may_finish.wait(timeout=20)  # a commit in progress (the disk flush)
        return [f"stored {item}" for item in items]

    results: dict[str, str] = {}

    def submit(item: str) -> None:
        results[item] = commits.submit(item, write)

    arrive_during_a_write(commits, writes, first_may_finish, submit, ("a", "b", "c"))
    assert writes[0] == ["first"] and sorted(writes[1]) == ["a", "b", "c"] and len(writes) == 2
    assert results == {name: f"stored {name}" for name in ("first", "a", "b", "c")}


def test_an_item_that_cannot_be_written_fails_alone() -> None:
    commits: GroupCommit[str, str] = GroupCommit()
    release = threading.Event()
    errors: dict[str, BaseException] = {}
    results: dict[str, str] = {}
    writes: list[list[str]] = []

    def write(items: list[str]) -> list[str]:
        writes.append(items)
        if items == ["first"]:
            release.wait(timeout=20)
        if "bad" in items:
            raise ValueError("cannot store 'bad'")
        return [f"stored {item}" for item in items]

    def submit(item: str) -> None:
        try:
            results[item] = commits.submit(item, write)
        except ValueError as exc:
            errors[item] = exc

    arrive_during_a_write(commits, writes, release, submit, ("good", "bad", "fine"))
    assert results == {"first": "stored first", "good": "stored good", "fine": "stored fine"}
    assert list(errors) == ["bad"]


def test_a_lone_caller_writes_at_once_and_gets_its_error() -> None:
    commits: GroupCommit[str, str] = GroupCommit()
    assert commits.submit("x", lambda items: [item.upper() for item in items]) == "X"

    def broken(items: list[str]) -> list[str]:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        commits.submit("y", broken)
    assert commits.groups == 2
