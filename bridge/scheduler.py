"""Scheduled polls: the only module that knows apscheduler.

Each polling connection gets one interval job; a job never overlaps itself and missed runs coalesce,
so a slow desk cannot pile up polls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler


class PollScheduler:
    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(timezone=timezone.utc)

    def every(self, seconds: float, job: Callable[[], None], *, name: str) -> None:
        """Run `job` now and then every `seconds`, never two at once."""
        self._scheduler.add_job(job, "interval", seconds=seconds, id=name, name=name, max_instances=1,
                                coalesce=True, next_run_time=datetime.now(timezone.utc))

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling and wait for running polls to finish (their results are committed or not)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
