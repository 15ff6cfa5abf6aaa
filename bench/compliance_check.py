"""How long `itsm-bridge compliance check` takes for N incidents with every pack.
(Named compliance_check.py: a bench/compliance.py would shadow the `compliance` package.)

    python bench/compliance_check.py --incidents 100000 [--json]

The incidents are the fixture timelines (major DORA incidents with reports, holiday deadlines, SLA
breaches, recurring incidents) copied N/6 times with fresh ids and shifted dates. Target (issue 6):
100,000 incidents in 30 s or less.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from compliance.checker import check, summarize
from compliance.rules import Context
from compliance.settings import settings_from
from compliance.timeline import read_jsonl

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "compliance" / "incidents.jsonl"
SETTINGS = {"packs": ["itil", "dora", "nis2", "audit"],
            "entity": {"name": "Bench GmbH", "lei": "5299000J2N45DDNE4Y28", "type": "payment_institution",
                       "member_state": "DE", "currency": "EUR", "nis2": "important"},
            "sla": {"1": {"response_minutes": 15, "resolution_minutes": 240},
                    "2": {"response_minutes": 30, "resolution_minutes": 480}}}


def incidents(count: int) -> list:
    base, errors = read_jsonl(FIXTURES)
    assert not errors, errors
    out = []
    for number in range(count):
        template = base[number % len(base)]
        out.append(template.model_copy(update={"id": f"{template.id}-{number}"}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = settings_from(SETTINGS)
    timelines = incidents(args.incidents)
    now = datetime(2027, 6, 30, tzinfo=timezone.utc)
    started = time.perf_counter()
    context = Context(settings=settings, now=now, all_timelines=timelines)
    findings = check(timelines, settings, context=context)
    seconds = time.perf_counter() - started
    counts = summarize(findings)
    figures = {"incidents": args.incidents, "findings": len(findings), "seconds": round(seconds, 2),
               "incidents_per_s": round(args.incidents / seconds), "fail": counts["fail"], "warn": counts["warn"],
               "projected_seconds_for_100000": round(seconds * 100000 / args.incidents, 1)}
    if args.json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
