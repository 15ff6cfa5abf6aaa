"""Checking what the bridge's own store holds: timelines, the audit chain and recorded assessments.

Shared by `compliance check`/`export` and the demo, so both judge the store the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from bridge.audit_verify import verify_store
from bridge.store import Store
from compliance.checker import check, collector_paused, in_period
from compliance.rules import Context, Finding
from compliance.settings import ComplianceSettings
from compliance.store import load_assessments, load_timelines
from compliance.timeline import Timeline


def check_store(store: Store, settings: ComplianceSettings, *, now: datetime,
                period: tuple[Any, Any] = (None, None),
                packs: Sequence[str] | None = None) -> tuple[list[Timeline], list[Finding], Context]:
    """The period's timelines, their findings, and the context (chain verification included)."""
    with collector_paused():  # reading 100,000 timelines is millions of new objects too (see `collector_paused`)
        everything = load_timelines(store)
        context = Context(settings=settings, now=now, audit_verification=verify_store(store),
                          all_timelines=everything, period=period, recurring_assessments=load_assessments(store))
        timelines = in_period(everything, *period)
        return timelines, check(timelines, settings, packs=packs, context=context), context
