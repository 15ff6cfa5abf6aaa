"""The audit trail: append-only and hash-chained, so altering, removing or reordering anything shows.

Each entry's hash is ``sha256(prev_hash || canonical JSON of {seq, at, kind, subject, data})``; the first
entry chains to 64 zeros. `verify_entries` recomputes the chain and names the first entry that does not
fit. The chain head (last seq and hash) is what exports carry, so an auditor holding an earlier head can
also tell that nothing was cut off the end.

Entries are appended inside the caller's transaction, so an audit entry exists exactly when the change
it describes was committed. Data is scrubbed of secret-looking keys before it is written.

Verifying the whole stored chain (`verify_store`, `itsm-bridge audit verify`) is `bridge.audit_verify`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from bridge.model import format_time, utcnow
from bridge.store import AuditEntry, Store, dumps

GENESIS = "0" * 64
_SECRET_KEYS = ("password", "token", "secret", "authorization", "api_key", "apikey")


def scrub(value: Any) -> Any:
    """Replace values of secret-looking keys with ``***`` at any depth (defence in depth)."""
    if isinstance(value, Mapping):
        return {key: "***" if any(word in str(key).lower() for word in _SECRET_KEYS) else scrub(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    return value


def entry_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + dumps(body)).encode("utf-8")).hexdigest()


def _body(seq: int, at: str, kind: str, subject: str, data: Any) -> dict[str, Any]:
    return {"seq": seq, "at": at, "kind": kind, "subject": subject, "data": data}


def append(store: Store, session: Session, kind: str, subject: str, data: Mapping[str, Any] | None = None) -> AuditEntry:
    """Append one entry in `session`'s transaction and return it (seq and hash filled in)."""
    # Row writes first, the chain's lock after: a transaction that holds the audit lock must not then
    # wait for a row another one holds while that one waits for the audit lock (a deadlock on PostgreSQL).
    session.flush()
    store.lock_audit(session)
    last = session.exec(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
    seq = (last.seq + 1) if last else 1
    prev_hash = last.hash if last else GENESIS
    at = format_time(utcnow()) or ""
    clean = scrub(dict(data or {}))
    digest = entry_hash(prev_hash, _body(seq, at, kind, subject, clean))
    entry = AuditEntry(seq=seq, at=at, kind=kind, subject=subject, data=dumps(clean),
                       prev_hash=prev_hash, hash=digest)
    session.add(entry)
    session.flush()
    return entry


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "at": entry.at, "kind": entry.kind, "subject": entry.subject,
            "data": json.loads(entry.data), "prev_hash": entry.prev_hash, "hash": entry.hash}


def iter_entries(store: Store, *, batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Every entry in sequence order, read in batches so memory stays flat."""
    after = 0
    while True:
        with Session(store.engine) as session:
            rows = session.exec(select(AuditEntry).where(AuditEntry.seq > after)
                                .order_by(AuditEntry.seq).limit(batch)).all()  # type: ignore[arg-type]
        if not rows:
            return
        for row in rows:
            yield entry_to_dict(row)
        after = rows[-1].seq


@dataclass(frozen=True)
class Verification:
    """Outcome of checking a chain: ok, how many entries, the head, and the first problem found."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    reason: str = ""


def verify_entries(entries: Iterable[Mapping[str, Any]], *, start_hash: str = GENESIS, start_seq: int = 1,
                   anchor: tuple[int, str] | None = None) -> Verification:
    """Recompute the chain; the first entry whose seq, link or hash is wrong is reported. With `anchor`
    (seq, hash) known from before, a cut-off end or a chain recomputed from some point on is reported too."""
    if anchor is not None:
        seen: dict[str, Any] = {}

        def watched() -> Iterator[Mapping[str, Any]]:
            for entry in entries:
                if entry.get("seq") == anchor[0]:
                    seen["hash"] = entry.get("hash")
                yield entry

        result = verify_entries(watched(), start_hash=start_hash, start_seq=start_seq)
        return check_anchor(result, anchor, seen.get("hash"))
    expected_seq = start_seq
    prev_hash = start_hash
    count = 0
    for entry in entries:
        seq = entry.get("seq")
        if seq != expected_seq:
            reason = (f"entry {expected_seq} is missing (found {seq} next)" if isinstance(seq, int) and seq > expected_seq
                      else f"entry out of order: expected seq {expected_seq}, found {seq}")
            return Verification(False, count, expected_seq - 1, prev_hash, bad_seq=expected_seq, reason=reason)
        if entry.get("prev_hash") != prev_hash:
            return Verification(False, count, seq - 1, prev_hash, bad_seq=seq,
                                reason="prev_hash does not match the previous entry (reordered or removed)")
        body = _body(seq, entry.get("at"), entry.get("kind"), entry.get("subject"), entry.get("data"))
        if entry_hash(prev_hash, body) != entry.get("hash"):
            return Verification(False, count, seq - 1, prev_hash, bad_seq=seq,
                                reason="content does not match its hash (altered)")
        prev_hash = entry["hash"]
        expected_seq += 1
        count += 1
    return Verification(True, count, expected_seq - 1, prev_hash)


def check_anchor(result: Verification, anchor: tuple[int, str] | None, seen: str | None) -> Verification:
    """Hold a verified chain against a head known from earlier (an export, an evidence bundle): entries
    cut off the end, or a chain recomputed from some point on, cannot match it."""
    if anchor is None or not result.ok:
        return result
    seq, expected = anchor
    if result.head_seq < seq:
        return Verification(False, result.entries, result.head_seq, result.head_hash, bad_seq=result.head_seq + 1,
                            reason=f"truncated: the chain ends at entry {result.head_seq} but entry {seq} was "
                                   "known before")
    if seen != expected:
        return Verification(False, result.entries, result.head_seq, result.head_hash, bad_seq=seq,
                            reason=f"entry {seq} does not have the hash known before (the chain was rewritten)")
    return result


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Entries from an exported file; a line that is not JSON is reported as a broken entry."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield {"seq": None, "_line": number}


def export_jsonl(store: Store, path: Path) -> Verification:
    """Write every entry as one JSON line (chain fields included) and return the verified head."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for entry in iter_entries(store):
            handle.write(dumps(entry) + "\n")
    return verify_entries(read_jsonl(path))
