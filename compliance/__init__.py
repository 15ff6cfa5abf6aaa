"""Compliance: rule packs (ITIL, DORA, ...), checker, evidence export (see issue 4)."""
