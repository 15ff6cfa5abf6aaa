"""The rule packs, by name. A pack is a list of rules; the checker runs the packs the config selects."""

from __future__ import annotations

from compliance.packs import audit, dora, dora_reporting, itil, nis2
from compliance.rules import Rule

PACKS: dict[str, list[Rule]] = {
    "itil": list(itil.RULES),
    "dora": [*dora.RULES[:3], *dora_reporting.RULES, *dora.RULES[3:]],
    "nis2": list(nis2.RULES),
    "audit": list(audit.RULES),
}


def rule_ids() -> list[str]:
    return [rule.rule_id for rules in PACKS.values() for rule in rules]
