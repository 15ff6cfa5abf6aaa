"""Audit-trail integrity (AUD-1 chain intact and gap-free; AUD-4 signed evidence manifest).

Both rules judge results computed at the edges (`bridge.audit.verify_entries` over the store,
`compliance.evidence.verify_bundle` over a bundle directory) and passed in the `Context`, so the rules
stay pure. AUD-2 (signed checkpoints) and AUD-3 (Merkle proofs) are not implemented yet.
"""

from __future__ import annotations

from compliance.rules import Context, Finding, Verdict, period_rule


@period_rule("AUD-1", "Audit chain intact and gap-free")
def chain_intact(context: Context) -> list[Finding]:
    result = context.audit_verification
    if result is None:
        return [Finding("AUD-1", None, Verdict.NA, "The audit trail was not part of this check "
                        "(timelines came from a file).")]
    head = f"audit#{result.head_seq} sha256:{result.head_hash[:16]}"
    if result.ok:
        return [Finding("AUD-1", None, Verdict.PASS, f"The audit trail is intact: {result.entries} entries, each "
                        f"chained to the one before, no gaps; head {head}.", evidence=[head],
                        details={"entries": result.entries, "head_seq": result.head_seq,
                                 "head_hash": result.head_hash})]
    return [Finding("AUD-1", None, Verdict.FAIL, f"The audit trail is broken at entry {result.bad_seq}: "
                    f"{result.reason}. {result.entries} entries before it check out; last good {head}.",
                    evidence=[head], details={"bad_seq": result.bad_seq, "reason": result.reason})]


@period_rule("AUD-4", "Evidence bundle manifest signed and complete")
def manifest(context: Context) -> list[Finding]:
    result = context.bundle_verification
    if result is None:
        return [Finding("AUD-4", None, Verdict.NA, "No evidence bundle was verified in this check.")]
    if result.ok:
        return [Finding("AUD-4", None, Verdict.PASS, "The evidence bundle is complete and its signed manifest "
                        "matches every file.")]
    return [Finding("AUD-4", None, Verdict.FAIL, "The evidence bundle does not verify: " + "; ".join(result.messages))]


RULES = [chain_intact, manifest]
