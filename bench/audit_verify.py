"""How fast `itsm-bridge audit verify` checks the chain, against raw hashlib SHA-256 over the same bytes.

    python bench/audit_verify.py --entries 100000 [--json]

Target (issue 6): verify >= 0.5 of raw hashlib. Prints a table, or one JSON object with --json.
On SQLite, long chains are verified by two processes when two CPUs are free
(`bridge.audit_verify.verify_store`), so the ratio depends on the CPUs free for it (`cpus` is how many it
may use; other work on the machine takes some): compare runs made under the same conditions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from bridge import audit
from bridge.audit_verify import verify_store
from bridge.store import Store, dumps


def fill(store: Store, entries: int, batch: int = 2000) -> None:
    done = 0
    while done < entries:
        with store.transaction() as session:
            for _ in range(min(batch, entries - done)):
                audit.append(store, session, "op.delivered", f"servicenow:INC{done:07d}",
                             {"op": "update", "fields": {"state": "2", "work_notes": "x" * 120}, "http_status": 200})
                done += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        store.create_schema()
        started = time.perf_counter()
        fill(store, args.entries)
        append_seconds = time.perf_counter() - started
        entries = list(audit.iter_entries(store))
        started = time.perf_counter()
        result = verify_store(store)  # what `itsm-bridge audit verify` runs, reading included
        verify_seconds = time.perf_counter() - started
        payload = [(entry["prev_hash"] + dumps({k: entry[k] for k in ("seq", "at", "kind", "subject", "data")})).encode()
                   for entry in entries]
        started = time.perf_counter()
        for chunk in payload:
            hashlib.sha256(chunk).hexdigest()
        raw_seconds = time.perf_counter() - started
        store.dispose()
    megabytes = sum(len(chunk) for chunk in payload) / 1e6
    figures = {
        "entries": args.entries, "chain_ok": result.ok,
        "append_entries_per_s": round(args.entries / append_seconds),
        "verify_entries_per_s": round(args.entries / verify_seconds),
        "verify_mb_per_s": round(megabytes / verify_seconds, 1),
        "raw_hashlib_mb_per_s": round(megabytes / raw_seconds, 1),
        "ratio_to_raw_hashlib": round(raw_seconds / verify_seconds, 3),
        "cpus": len(os.sched_getaffinity(0)),
    }
    if args.json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
