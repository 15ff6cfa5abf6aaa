"""Helpers for the compliance tests: settings, timelines built from a few fields, and running one rule.

A plain module (not a package): a tests/compliance/__init__.py would make pytest import this folder as
the package ``compliance`` and shadow the real one.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from compliance.rules import Context, Finding
from compliance.settings import ComplianceSettings, settings_from
from compliance.timeline import Timeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compliance"
SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "specs" / "dora-incident-report-IR-1.2.1.schema.json"


def at(value: str) -> datetime:
    """Parse an ISO time; tests always write the zone."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def make_settings(**entity: Any) -> ComplianceSettings:
    extra = entity.pop("settings", {})
    base = {"name": "Beispiel Zahlungsdienste GmbH", "lei": "5299000J2N45DDNE4Y28", "type": "payment_institution",
            "member_state": "DE", "currency": "EUR",
            "contact": {"name": "Erika Mustermann", "email": "office@beispiel.example", "phone": "+49 69 1234567"}}
    sla = {"1": {"response_minutes": 15, "resolution_minutes": 480},
           "2": {"response_minutes": 30, "resolution_minutes": 240}}
    return settings_from({"entity": {**base, **entity}, "sla": sla, **extra})


def major(**fields: Any) -> Timeline:
    """A major incident classified on a Tuesday morning; override what the test is about."""
    base: dict[str, Any] = {"id": "pagerduty:PT1", "title": "Payments down", "opened_at": "2026-03-10T09:00:00Z",
                            "detected_at": "2026-03-10T09:00:00Z", "classified_major_at": "2026-03-10T10:00:00Z",
                            "major": True}
    return Timeline.model_validate({**base, **fields})


def run(rule_id: str, timeline: Timeline | None, settings: ComplianceSettings, now: str | datetime,
        **context: Any) -> list[Finding]:
    from compliance.packs import PACKS

    rule = next(r for rules in PACKS.values() for r in rules if r.rule_id == rule_id)
    moment = at(now) if isinstance(now, str) else now
    ctx = Context(settings=settings, now=moment, all_timelines=context.pop("all_timelines", [timeline] if timeline
                                                                            else []), **context)
    return rule(timeline, ctx)


def one(rule_id: str, timeline: Timeline | None, settings: ComplianceSettings, now: str = "2027-01-01T00:00:00Z",
        **context: Any) -> Finding:
    findings = run(rule_id, timeline, settings, now, **context)
    assert len(findings) == 1, findings
    return findings[0]


