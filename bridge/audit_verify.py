"""Verifying a whole stored audit chain fast (`itsm-bridge audit verify`, `verify_store`).

`bridge.audit` keeps the trail: appending, the entry hash, `verify_entries` over entries already read.
This module is the fast whole-store verifier, kept apart because it is a different job: SQLite hands
over joined blocks of canonical bodies and a forked helper checks the second half of a long chain (what
took the `bench/audit_verify.py` ratio to raw SHA-256 from 0.18 to 0.47-0.6 with both cores free, per
the README).

Two ways to the same verdict. The exact way reads row by row and rebuilds each entry's canonical body
in Python; it names the first bad entry precisely, and it is the only way on PostgreSQL. On SQLite a
fast way goes first: one aggregate query per range of `_RANGE` seqs hands over every body already
spliced together, so Python only splits the blob and hashes (creating seven Python objects per row
costs more than the hashing). The fast way may only ever say "ok" where the exact way says ok too;
whenever any of its checks fails (or merely cannot vouch, e.g. a subject that needs JSON escaping) the
range is verified the exact way, which finds and names the problem or confirms the range.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge.audit import GENESIS, Verification, check_anchor
from bridge.store import AuditEntry, Store, dumps

_RANGE = 1000  # seqs per fast query: large enough to amortise a query, small enough to stay in cache
_PARALLEL_MIN = 20000  # entries below which a second process costs more than it saves

# Canonical JSON (`dumps`, ensure_ascii=False) writes a string as itself between quotes unless it holds
# one of these; with none of them, '"' + s + '"' is byte-identical to dumps(s).
_NEEDS_ESCAPE = bytes(range(0x20)) + b'"\\'
_PLAIN_BYTES = bytes(b for b in range(256) if b not in _NEEDS_ESCAPE)
_SEPARATOR = b"\x1f"  # between bodies: canonical JSON never holds a raw control character

# The columns are read as text (CAST) so both ways judge the same stored bytes: SQLite's printf and
# group_concat render any value as its text, and so does the exact way's CAST.
_EXACT_COLUMNS = ("seq, CAST(at AS TEXT), CAST(kind AS TEXT), CAST(subject AS TEXT), CAST(data AS TEXT), "
                  "CAST(prev_hash AS TEXT), CAST(hash AS TEXT)")

# One row per range. group_concat's order is not guaranteed (SQLite < 3.44 has no ORDER BY inside it),
# so nothing relies on it: the seqs come along in the same aggregation and must read 1,2,...,n. All
# aggregates of one query see the rows in the same (single) pass, so the k-th seq, prev_hash, hash and
# body belong to the same row. Each body is built as group_concat(X, Y) appends it, Y (the separator,
# evaluated per row) before X: Y = separator, prev_hash and the JSON up to the data, X = the data and the
# rest of the JSON. The first row gets no separator, so its head comes from the scalar subquery. printf
# renders NULL as '' and stops at a NUL character, and group_concat skips NULLs: `filled` rules out
# NULLs, and a NUL in prev_hash, at, kind or subject fails the link check or the `plain` check (which
# sees every byte of at/kind/subject, for Python to check they need no JSON escaping); data, joined with
# ||, keeps all its bytes.
_FAST_QUERY = f"""SELECT count(*),
  count(at) + count(kind) + count(subject) + count(data) + count(prev_hash) + count(hash),
  (SELECT CAST(printf('%s{{"at":"%s","data":', prev_hash, at) AS BLOB) FROM {AuditEntry.__tablename__}
   WHERE seq = ?1 + 1),
  CAST(group_concat(seq - ?1, ',') AS BLOB),
  CAST(group_concat(prev_hash, ',') AS BLOB),
  CAST(group_concat(hash, ',') AS BLOB),
  CAST(group_concat(at, '') || group_concat(kind, '') || group_concat(subject, '') AS BLOB),
  CAST(group_concat(data || printf(',"kind":"%s","seq":%d,"subject":"%s"}}', kind, seq, subject),
                    printf(char(31) || '%s{{"at":"%s","data":', prev_hash, at)) AS BLOB)
FROM {AuditEntry.__tablename__} WHERE seq > ?1 AND seq <= ?2"""


def _quoted(text: str) -> str:
    """`dumps` of a string, without the JSON encoder for the usual case (nothing to escape)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return dumps(text)


@dataclass
class _Progress:
    """How far the chain is verified: the next seq expected, the hash it must link to, and so on."""

    anchor_seq: int | None
    next_seq: int = 1
    prev_hash: str = GENESIS
    count: int = 0
    anchor_seen: str | None = None

    def fail(self, reason: str) -> Verification:
        return Verification(False, self.count, self.next_seq - 1, self.prev_hash, bad_seq=self.next_seq,
                            reason=reason)

    def done(self, anchor: tuple[int, str] | None) -> Verification:
        return check_anchor(Verification(True, self.count, self.next_seq - 1, self.prev_hash), anchor,
                            self.anchor_seen)

    def advance(self, entries: int, head: str, anchor_seen: str | None) -> None:
        self.next_seq += entries
        self.count += entries
        self.prev_hash = head
        if anchor_seen is not None:
            self.anchor_seen = anchor_seen


def _check_rows(rows: Iterable[tuple[Any, ...]], progress: _Progress) -> Verification | None:
    """The exact way: rebuild each row's canonical body and hash it; the first bad row is reported."""
    sha256 = hashlib.sha256
    expected_seq, prev_hash, count = progress.next_seq, progress.prev_hash, progress.count
    anchor_seq, anchor_seen = progress.anchor_seq, progress.anchor_seen
    failure = None
    for seq, at, kind, subject, data, stored_prev, stored_hash in rows:
        if seq != expected_seq:
            failure = f"entry {expected_seq} is missing (found {seq} next)"
            break
        if stored_prev != prev_hash:
            failure = "prev_hash does not match the previous entry (reordered or removed)"
            break
        try:
            body = f'{prev_hash}{{"at":{_quoted(at)},"data":{data},"kind":{_quoted(kind)},"seq":{seq},' \
                   f'"subject":{_quoted(subject)}}}'
        except AttributeError:  # NULL where text belongs
            body = None
        if body is None or sha256(body.encode("utf-8")).hexdigest() != stored_hash:
            failure = "content does not match its hash (altered)"
            break
        if seq == anchor_seq:
            anchor_seen = stored_hash
        prev_hash, expected_seq, count = stored_hash, expected_seq + 1, count + 1
    progress.next_seq, progress.prev_hash, progress.count = expected_seq, prev_hash, count
    progress.anchor_seen = anchor_seen
    return progress.fail(failure) if failure else None


@functools.lru_cache(maxsize=4)
def _offsets(count: int) -> bytes:
    return ",".join(map(str, range(1, count + 1))).encode()


_hexdigest = type(hashlib.sha256()).hexdigest


def _check_range(row: tuple[Any, ...], start: bytes | None) -> bytes | None:
    """The fast way over one `_FAST_QUERY` row: the comma-separated hashes if the range verifies, else None.

    `start` is the hash the range's first entry must link to (None: take its stored prev_hash; a caller
    joining ranges then checks that value). Why "ok" here means ok the exact way too:

    - seqs: the k-th aggregated seq minus the range start renders as k, so the rows, in the order all
      aggregates saw them, are exactly seq lo+1, lo+2, ... (only an integer renders like that);
    - bodies: no NULL (printf would print ''), no NUL in prev_hash/at/kind/subject (printf would stop
      there), at/kind/subject hold nothing JSON escapes, and the blob is valid UTF-8 (the exact way
      could not even read it otherwise), so each piece, the first with its head put in front, is byte
      for byte the exact way's body: its prev_hash, then the canonical JSON spliced around the data;
    - hashes: the sha256 of every piece, joined by commas, equals the stored hashes joined by commas
      (n of them, none NULL): so the stored side holds no other comma either, and each stored hash
      equals its computed one;
    - links: the stored prev_hashes read `start`, then every hash but the last.
    """
    count, filled, head, offsets, prevs, hashes, plain, bodies = row
    if not count or None in row or filled != 6 * count or offsets != _offsets(count):
        return None
    pieces = bodies.split(_SEPARATOR)
    if len(pieces) != count or plain.translate(None, _PLAIN_BYTES):
        return None
    if not (bodies.isascii() and head.isascii()):
        try:
            bodies.decode("utf-8")
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
    pieces[0] = head + pieces[0]
    computed = ",".join(map(_hexdigest, map(hashlib.sha256, pieces))).encode("ascii")
    if computed != hashes:
        return None
    if start is None:
        start = prevs[:64]
    if prevs != (start + b"," + computed)[:-65]:
        return None
    return computed


def _anchor_in(computed: bytes, lo: int, anchor_seq: int | None) -> str | None:
    index = (anchor_seq or 0) - lo - 1
    if anchor_seq is None or not 0 <= index < (len(computed) + 1) // 65:
        return None
    return computed[index * 65:index * 65 + 64].decode("ascii")


def _verify_ahead(cursor: Any, first: int, stop: int, anchor_seq: int | None) -> dict[str, Any]:
    """In the helper process: the fast way over full ranges `first`..`stop`-1 for as long as it vouches.

    Each range is linked to the one before; the first is linked to its own stored prev_hash, which is
    reported so the parent can hold it against the head it verified itself."""
    start: bytes | None = None
    result: dict[str, Any] = {"ranges": 0, "first_prev": None, "head": None, "anchor_seen": None}
    for number in range(first, stop):
        lo = number * _RANGE
        row = cursor.execute(_FAST_QUERY, (lo, lo + _RANGE)).fetchone()
        if row[0] != _RANGE:
            break
        computed = _check_range(row, start)
        if computed is None:
            break
        if start is None:
            result["first_prev"] = row[4][:64].decode("ascii")
        start = computed[-64:]
        result["ranges"] += 1
        result["head"] = start.decode("ascii")
        result["anchor_seen"] = _anchor_in(computed, lo, anchor_seq) or result["anchor_seen"]
    return result


class _Helper:
    """A forked process verifying the second half of the ranges while this one does the first.

    Every entry is checkable from its stored prev_hash alone, so a stretch of ranges can be verified
    independently and joined afterwards: the helper's first stored prev_hash must equal the head this
    process verified up to it. Anything the helper could not vouch for is verified here, in order, so
    results (first bad entry, counts, head) are those of a sequential run.
    """

    def __init__(self, store: Store, first: int, stop: int, anchor_seq: int | None) -> None:
        self.first = first
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:  # the helper: never returns into the caller's code
            status = 1
            try:
                os.close(read)
                store.engine.dispose(close=False)  # the parent's pool is not ours to use
                connection = store.engine.raw_connection()
                result = _verify_ahead(connection.cursor(), first, stop, anchor_seq)
                os.write(write, json.dumps(result).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        self.pid: int | None = pid
        self.read = read

    def adopt(self, progress: _Progress) -> int:
        """Wait for the helper; take over what it verified if it joins on. Returns the ranges taken."""
        chunks = []
        while chunk := os.read(self.read, 65536):
            chunks.append(chunk)
        self.close()
        try:
            result = json.loads(b"".join(chunks))
        except ValueError:  # the helper died: this process verifies its ranges itself
            return 0
        if (not result["ranges"] or progress.next_seq != self.first * _RANGE + 1
                or result["first_prev"] != progress.prev_hash):
            return 0
        progress.advance(result["ranges"] * _RANGE, result["head"], result["anchor_seen"])
        return int(result["ranges"])

    def close(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            os.close(self.read)
            self.pid = None


def _may_fork(store: Store) -> bool:
    """Worth it only with a second CPU to run on. Safe only with no other thread (which could hold a lock
    the child inherits), on Linux, for a database file, and with no connection checked out (SQLite then
    holds no lock this process would hand down)."""
    database = store.engine.url.database or ""
    pool = store.engine.pool
    return (sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) > 1
            and threading.active_count() == 1
            and database not in ("", ":memory:") and "mode=memory" not in str(store.engine.url)
            and callable(getattr(pool, "checkedout", None)) and pool.checkedout() == 0)  # type: ignore[attr-defined]


def _verify_ranges(store: Store, progress: _Progress, parallel: bool) -> Verification | None:
    """SQLite: verify range after range the fast way, a range the exact way when the fast way cannot
    vouch for it. Returns the first failure, or None once a range is short (the chain's end, or a gap
    the keyset pass then reports)."""
    table = AuditEntry.__tablename__
    helper = None
    if parallel:
        connection = store.engine.raw_connection()
        try:
            last = connection.cursor().execute(f"SELECT max(seq) FROM {table}").fetchone()[0]
        finally:
            connection.close()
        if isinstance(last, int) and last >= _PARALLEL_MIN and _may_fork(store):
            store.engine.dispose()  # the helper starts with no SQLite handle on the file
            ranges = (last + _RANGE - 1) // _RANGE
            try:
                helper = _Helper(store, ranges // 2, ranges, progress.anchor_seq)
            except OSError:  # no process to spare: all ranges here
                helper = None
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        exact = f"SELECT {_EXACT_COLUMNS} FROM {table} WHERE seq > ? AND seq <= ? ORDER BY seq"
        number = 0
        while True:
            if helper is not None and number == helper.first:
                number += helper.adopt(progress)
                helper = None
            lo = number * _RANGE
            row = cursor.execute(_FAST_QUERY, (lo, lo + _RANGE)).fetchone()
            computed = _check_range(row, progress.prev_hash.encode()) if progress.next_seq == lo + 1 else None
            if computed is not None:
                progress.advance(row[0], computed[-64:].decode("ascii"),
                                 _anchor_in(computed, lo, progress.anchor_seq))
            else:
                failure = _check_rows(cursor.execute(exact, (lo, lo + _RANGE)).fetchall(), progress)
                if failure is not None:
                    return failure
            if row[0] < _RANGE:
                return None
            number += 1
    finally:
        if helper is not None:
            helper.close()
        connection.close()


def verify_store(store: Store, *, batch: int = 20000, anchor: tuple[int, str] | None = None,
                 parallel: bool = True) -> Verification:
    """Recompute the chain straight from the stored rows, as fast as the database hands them over.

    The stored ``data`` is already canonical JSON, so each entry's canonical body is spliced from it
    instead of parsed and re-serialised (the bytes hashed are identical to `entry_hash`'s); a row whose
    data was edited into any other text, even equivalent JSON, fails its hash. On SQLite the fast way
    (see `_check_range`) goes first, split over two processes for long chains unless `parallel` is
    False; the rest, and everything on PostgreSQL, is read through the driver's own cursor in keyset
    batches: ORM row objects cost more than the hashing itself.
    """
    progress = _Progress(anchor[0] if anchor else None)
    if store.is_sqlite:
        failure = _verify_ranges(store, progress, parallel)
        if failure is not None:
            return failure
    mark = "?" if store.is_sqlite else "%s"
    query = (f"SELECT {_EXACT_COLUMNS} FROM {AuditEntry.__tablename__} "
             f"WHERE seq > {mark} ORDER BY seq LIMIT {mark}")
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        while True:
            cursor.execute(query, (progress.next_seq - 1, batch))
            rows = cursor.fetchall()
            if not rows:
                return progress.done(anchor)
            failure = _check_rows(rows, progress)
            if failure is not None:
                return failure
    finally:
        connection.close()
