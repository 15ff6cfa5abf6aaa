"""The DORA deadline clock, as a pure function the daemon calls on a schedule.

For every major incident with a report still owed, `due_alerts` returns an alert when the deadline is
within ``deadline_lead_minutes`` ("due soon") and once it has passed ("overdue"). The daemon writes each
alert as a work note on the desk ticket and an audit entry, then remembers its `key` and passes the set
back as `already_sent`, so each alert goes out once. The key includes the deadline itself: when a new
intermediate report moves the final deadline, the new deadline gets its own alerts.

"Open" here means "a report is still owed", not the desk state: the final report is often due weeks
after the ticket is resolved, and that is exactly when a reminder helps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from compliance.calendar import fmt_local, human_delta, zone_of
from compliance.deadlines import dora_deadlines
from compliance.settings import ComplianceSettings
from compliance.timeline import Timeline

NAMES = {"initial": "initial notification", "intermediate": "intermediate report", "final": "final report"}


@dataclass(frozen=True)
class Alert:
    """One reminder for one report deadline of one incident."""

    key: str
    incident_id: str
    rule_id: str
    stage: str
    kind: Literal["due_soon", "overdue"]
    deadline: datetime
    message: str


def due_alerts(timelines: Iterable[Timeline], settings: ComplianceSettings, now: datetime,
               already_sent: Collection[str] = ()) -> list[Alert]:
    """Alerts to send now, earliest deadline first; none twice (keys in `already_sent` are skipped)."""
    lead = timedelta(minutes=settings.deadline_lead_minutes)
    zone = zone_of(settings.entity.member_state)
    alerts: list[Alert] = []
    for timeline in timelines:
        if timeline.state == "canceled":
            continue
        for deadline in dora_deadlines(timeline, settings):
            if deadline.submitted is not None or deadline.waived:
                continue
            due = deadline.due
            if now > due:
                kind: Literal["due_soon", "overdue"] = "overdue"
                text = (f"DORA {NAMES[deadline.stage]} for {timeline.id} is OVERDUE: it was due "
                        f"{fmt_local(due, zone)} ({deadline.basis}), {human_delta(now - due)} ago. Submit it and tell "
                        "the authority why it is late (RTS 2025/301 Art. 5(3)).")
            elif due - now <= lead:
                kind = "due_soon"
                text = (f"DORA {NAMES[deadline.stage]} for {timeline.id} is due {fmt_local(due, zone)} "
                        f"({deadline.basis}): {human_delta(due - now)} left.")
            else:
                continue
            key = f"{timeline.id}|{deadline.stage}|{kind}|{due.isoformat()}"
            if key in already_sent:
                continue
            alerts.append(Alert(key, timeline.id, deadline.rule_id, deadline.stage, kind, due, text))
    return sorted(alerts, key=lambda a: (a.deadline, a.incident_id))
