"""`audit_verify.verify_store`'s fast way (SQLite: bodies spliced by one aggregate query per range,
halves of a long chain verified in two processes) says exactly what the exact row-by-row way says: the
same ok, the same first bad entry and reason, the same counts and head, whatever was done to the stored
rows. Ranges and thresholds are shrunk so that short chains span many ranges and a helper process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bridge import audit, audit_verify
from bridge.store import Store

ENTRIES = 30
# Strings canonical JSON has to escape (quotes, backslashes, control characters) and ones it keeps as
# they are (non-ASCII, DEL): all must verify, whichever way.
AWKWARD = ('op."quoted"', "back\\slash", "Ä ü ß → ✓", "tab\there", "line\nbreak", "unit\x1fsep", "del\x7f")


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """4 seqs per range and a helper process from 10 entries on; yields what each helper handed over."""
    adopted: list[int] = []

    class Helper(audit_verify._Helper):
        def adopt(self, progress: Any) -> int:
            adopted.append(super().adopt(progress))
            return adopted[-1]

    monkeypatch.setattr(audit_verify, "_RANGE", 4)
    monkeypatch.setattr(audit_verify, "_PARALLEL_MIN", 10)
    monkeypatch.setattr(audit_verify, "_Helper", Helper)
    yield adopted


def _fill(store: Store, count: int = ENTRIES, awkward: bool = False) -> None:
    with store.transaction() as session:
        for number in range(count):
            kind, subject = "op.delivered", f"servicenow:INC{number:07d}"
            if awkward and number % 8 == 1:  # seqs 2, 10, 18, 26: each awkward string at least once
                kind = AWKWARD[number // 8 * 2 % len(AWKWARD)]
                subject = f"jira:{AWKWARD[(number // 8 * 2 + 1) % len(AWKWARD)]}"
            audit.append(store, session, kind, subject, {"n": number, "note": 'Ä "q" \\ \u2028'})


def _sqlite(tmp_path: Path, name: str = "audit.db") -> Store:
    store = Store(f"sqlite:///{tmp_path / name}")
    store.create_schema()
    return store


def _exact(store: Store, anchor: tuple[int, str] | None = None) -> audit.Verification:
    """The reference: every range verified row by row in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit_verify, "_check_range", lambda row, start: None)
        return audit_verify.verify_store(store, anchor=anchor, parallel=False)


def _rows_checked_exactly(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seqs: list[int] = []
    check_rows = audit_verify._check_rows

    def spy(rows: Any, progress: Any) -> Any:
        rows = list(rows)
        seqs.extend(row[0] for row in rows)
        return check_rows(rows, progress)

    monkeypatch.setattr(audit_verify, "_check_rows", spy)
    return seqs


def test_entries_that_need_escaping_verify_and_an_altered_one_is_named(store: Store) -> None:
    """On PostgreSQL the exact way does it all; on SQLite the ranges holding such entries fall back to it."""
    _fill(store, 12, awkward=True)
    result = audit_verify.verify_store(store)
    assert result.ok and result.entries == 12 and result.head_seq == 12
    with store.engine.begin() as connection:  # entry 10: kind "Ä ü ß → ✓", subject "jira:tab\there"
        connection.execute(text("UPDATE audit SET subject = :subject WHERE seq = 10"), {"subject": "jira:tab\there!"})
    result = audit_verify.verify_store(store)
    assert not result.ok and result.bad_seq == 10 and "altered" in result.reason and result.head_seq == 9


def test_the_fast_way_vouches_for_plain_ranges_and_leaves_the_others_to_the_exact_way(
        tmp_path: Path, small_ranges: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _rows_checked_exactly(monkeypatch)
    plain = _sqlite(tmp_path, "plain.db")
    _fill(plain)
    fast = audit_verify.verify_store(plain, parallel=False)
    assert checked == []  # the last, short range too: the keyset pass after it finds nothing
    assert fast.ok and fast == _exact(plain)
    awkward = _sqlite(tmp_path, "awkward.db")
    _fill(awkward, awkward=True)
    with awkward.engine.begin() as connection:  # a NUL (only SQLite stores it), hashed canonically
        connection.execute(text("UPDATE audit SET kind = 'nul' || char(0) WHERE seq = 29"))
        _rehash(connection, 29)
    checked.clear()
    result = audit_verify.verify_store(awkward, parallel=False)
    # the ranges with seq 2, 10, 18, 26 and 29 in them: the others (5-8, 13-16, 21-24) went the fast way
    assert checked == [*range(1, 5), *range(9, 13), *range(17, 21), *range(25, 31)]
    assert result.ok and result.entries == ENTRIES and result == _exact(awkward)


def _rehash(connection: Any, seq: int) -> None:
    """Recompute every hash from `seq` on, canonically: what an insider with database access could do."""
    prev = connection.execute(text("SELECT prev_hash FROM audit WHERE seq = :seq"), {"seq": seq}).scalar_one()
    rows = connection.execute(text("SELECT * FROM audit WHERE seq >= :seq ORDER BY seq"), {"seq": seq}).mappings()
    for row in rows.all():
        body = audit._body(row["seq"], row["at"], row["kind"], row["subject"], json.loads(row["data"]))
        digest = audit.entry_hash(prev, body)
        connection.execute(text("UPDATE audit SET prev_hash = :prev, hash = :hash WHERE seq = :seq"),
                           {"prev": prev, "hash": digest, "seq": row["seq"]})
        prev = digest


def test_two_processes_give_the_same_results(tmp_path: Path, small_ranges: list[int]) -> None:
    store = _sqlite(tmp_path)
    _fill(store)
    head = audit_verify.verify_store(store)
    assert head.ok and head.entries == ENTRIES and small_ranges and small_ranges[-1] > 0
    assert head == _exact(store)
    wrong = (25, next(audit.iter_entries(store))["hash"])  # entry 1's hash: as if entry 25 was rewritten
    anchored = audit_verify.verify_store(store, anchor=wrong)
    assert not anchored.ok and "rewritten" in anchored.reason and anchored == _exact(store, anchor=wrong)
    with store.engine.begin() as connection:  # break the link right where the helper's half begins
        connection.execute(text("UPDATE audit SET prev_hash = :bad WHERE seq = 17"), {"bad": "f" * 64})
    small_ranges.clear()
    result = audit_verify.verify_store(store)
    assert small_ranges and not result.ok and result.bad_seq == 17 and result == _exact(store)
    store.dispose()


def test_a_helper_that_dies_leaves_its_ranges_to_this_process(tmp_path: Path, small_ranges: list[int],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = _sqlite(tmp_path)
    _fill(store)

    def crash(*args: Any) -> Any:
        raise RuntimeError("the helper process fails")

    monkeypatch.setattr(audit_verify, "_verify_ahead", crash)  # the forked helper runs this copy
    result = audit_verify.verify_store(store)
    assert small_ranges == [0] and result.ok and result == _exact(store)
    store.dispose()


def _naive_hash(prev_hash: str, row: Any) -> str:
    """What a forger would store: the body with at/kind/subject quoted without escaping."""
    body = (f'{prev_hash}{{"at":"{row["at"]}","data":{row["data"]},"kind":"{row["kind"]}","seq":{row["seq"]},'
            f'"subject":"{row["subject"]}"}}')
    return hashlib.sha256(body.encode()).hexdigest()


def _tamper(store: Store, data: st.DataObject) -> None:
    how = data.draw(st.sampled_from(("edit", "blob", "nul", "naive", "delete", "swap", "truncate", "none")))
    seq = data.draw(st.integers(1, ENTRIES))
    column = data.draw(st.sampled_from(("at", "kind", "subject", "data", "prev_hash", "hash")))
    with store.engine.begin() as connection:
        def run(sql: str, **values: Any) -> Any:
            return connection.execute(text(sql), values)

        if how == "edit":
            value = run(f"SELECT {column} FROM audit WHERE seq = :seq", seq=seq).scalar_one()
            position = data.draw(st.integers(0, len(value) - 1))
            char = data.draw(st.sampled_from(("\x00", '"', "\\", "\x1f", ",", "Ä", "0", "a", "}")) | st.characters())
            run(f"UPDATE audit SET {column} = :value WHERE seq = :seq",
                value=value[:position] + char + value[position + 1:], seq=seq)
        elif how == "blob":  # same bytes, stored as a BLOB
            run(f"UPDATE audit SET {column} = CAST({column} AS BLOB) WHERE seq = :seq", seq=seq)
        elif how == "nul":  # printf would stop at the NUL and hash the old body
            run("UPDATE audit SET data = data || char(0) || 'x' WHERE seq = :seq", seq=seq)
        elif how == "naive":  # quotes in the subject, and every hash from there recomputed naively
            run("UPDATE audit SET subject = 'a\"b' WHERE seq = :seq", seq=seq)
            prev = run("SELECT prev_hash FROM audit WHERE seq = :seq", seq=seq).scalar_one()
            for row in run("SELECT * FROM audit WHERE seq >= :seq ORDER BY seq", seq=seq).mappings().all():
                digest = _naive_hash(prev, row)
                run("UPDATE audit SET prev_hash = :prev, hash = :hash WHERE seq = :seq", prev=prev, hash=digest,
                    seq=row["seq"])
                prev = digest
        elif how == "delete":
            run("DELETE FROM audit WHERE seq = :seq", seq=seq)
        elif how == "swap" and seq < ENTRIES:
            run("UPDATE audit SET seq = -1 WHERE seq = :seq", seq=seq)
            run("UPDATE audit SET seq = :seq WHERE seq = :next", seq=seq, next=seq + 1)
            run("UPDATE audit SET seq = :next WHERE seq = -1", next=seq + 1)
        elif how == "truncate":
            run("DELETE FROM audit WHERE seq >= :seq", seq=seq)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whatever_was_done_to_the_rows_the_fast_way_agrees_with_the_exact_way(
        tmp_path_factory: pytest.TempPathFactory, small_ranges: list[int], data: st.DataObject) -> None:
    store = _sqlite(tmp_path_factory.mktemp("fast"))
    _fill(store, awkward=data.draw(st.booleans()))
    original = {entry["seq"]: entry["hash"] for entry in audit.iter_entries(store)}
    _tamper(store, data)
    anchor_seq = data.draw(st.none() | st.integers(1, ENTRIES))
    anchor = None if anchor_seq is None else (anchor_seq, original[anchor_seq])
    for parallel in (False, True):
        assert audit_verify.verify_store(store, anchor=anchor, parallel=parallel) == _exact(store, anchor)
    store.dispose()
