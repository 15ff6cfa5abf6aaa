"""Group commit: callers that arrive together share one transaction (webhook ingest).

A webhook is answered only once its event is committed and flushed to disk, and on SQLite every
transaction takes the store's one write lock. Under a burst the senders queued for that lock one by one,
and every hand-over between threads cost a wake-up, a GIL switch and a disk flush: ingest latency grew
with the queue (bench/throughput.py). Here the first caller that finds no group being written leads: it
writes every caller waiting at that moment in one transaction, and all of them return after that one
commit; callers arriving meanwhile form the next group, led by one of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Waiting(Generic[T, R]):
    item: T
    result: R | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit(Generic[T, R]):
    """Share one `write` between the callers of `submit` that wait at the same time."""

    def __init__(self) -> None:
        self._turn = threading.Condition(threading.Lock())
        self._queue: list[_Waiting[T, R]] = []
        self._writing = False
        self.groups = 0  # groups written so far (read by tests and diagnostics)

    @property
    def queued(self) -> int:
        """Callers waiting for the next group."""
        with self._turn:
            return len(self._queue)

    def submit(self, item: T, write: Callable[[list[T]], list[R]]) -> R:
        """`write(items)` writes a group in one transaction and returns one result per item, in order.
        Returns this item's result once its group is committed, or raises what writing it raised."""
        waiting: _Waiting[T, R] = _Waiting(item)
        with self._turn:
            self._queue.append(waiting)
            while self._writing and not waiting.done:
                self._turn.wait()
            if not waiting.done:  # no group is being written, and this item is in none: lead the next
                self._writing = True
                group, self._queue = self._queue, []
        if not waiting.done:
            try:
                self._write(group, write)
            finally:
                with self._turn:
                    self._writing = False
                    self.groups += 1
                    self._turn.notify_all()
        if waiting.error is not None:
            raise waiting.error
        return waiting.result  # type: ignore[return-value]

    @staticmethod
    def _write(group: list[_Waiting[T, R]], write: Callable[[list[T]], list[R]]) -> None:
        """Write the group at once; if that fails, each item alone, so one bad item fails only itself."""
        try:
            for waiting, result in zip(group, write([waiting.item for waiting in group]), strict=True):
                waiting.result = result
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                for waiting in group:
                    try:
                        (waiting.result,) = write([waiting.item])
                    except Exception as alone:
                        waiting.error = alone
        finally:
            for waiting in group:
                if waiting.result is None and waiting.error is None:  # interrupted mid-write
                    waiting.error = RuntimeError("the group's write was interrupted; nothing of it is kept")
                waiting.done = True
