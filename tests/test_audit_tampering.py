"""Tampering with the stored trail, every way at random: single-byte edits in any column, deleted,
inserted, reordered and truncated entries. `audit verify` catches each one; truncation and a chain
recomputed after an edit are caught against a head known from before (--expect-head)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import select

from bridge import audit
from bridge.audit_verify import verify_store
from bridge.cli import main
from bridge.store import AuditEntry, Store

COLUMNS = ("at", "kind", "subject", "data", "prev_hash", "hash")
ENTRIES = 8


def _trail(tmp_path: Path) -> tuple[Store, audit.Verification]:
    store = Store(f"sqlite:///{tmp_path / 'audit.db'}")
    store.create_schema()
    for number in range(ENTRIES):
        with store.transaction() as session:
            audit.append(store, session, "op.delivered", f"servicenow:INC{number:07d}",
                         {"op": "update", "fields": {"state": str(number % 7), "note": 'Ä ü "quoted"'}})
    head = verify_store(store)
    assert head.ok
    return store, head


def _set(store: Store, seq: int, column: str, value: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(text(f"UPDATE audit SET {column} = :value WHERE seq = :seq"), {"value": value, "seq": seq})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_edit_of_any_stored_column_is_caught(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    store, _ = _trail(tmp_path_factory.mktemp("edit"))
    seq = data.draw(st.integers(1, ENTRIES))
    column = data.draw(st.sampled_from(COLUMNS))
    with store.engine.connect() as connection:
        value = connection.execute(text(f"SELECT {column} FROM audit WHERE seq = :seq"), {"seq": seq}).scalar_one()
    position = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(lambda c: c != value[position]))
    _set(store, seq, column, value[:position] + replacement + value[position + 1:])
    result = verify_store(store)
    assert not result.ok and result.bad_seq is not None and result.bad_seq <= seq + 1
    store.dispose()


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_deleted_inserted_and_reordered_entries_are_caught(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    store, _ = _trail(tmp_path_factory.mktemp("shape"))
    how = data.draw(st.sampled_from(("delete", "insert", "swap")))
    seq = data.draw(st.integers(1, ENTRIES - 1))
    with store.transaction() as session:
        rows = {row.seq: row for row in session.exec(select(AuditEntry)).all()}  # type: ignore[attr-defined]
        if how == "delete":
            session.delete(rows[seq])
        elif how == "insert":  # a forged entry after `seq`, later ones moved up: chained to its predecessor
            for later in sorted((s for s in rows if s > seq), reverse=True):
                rows[later].seq = later + 1
                session.add(rows[later])
                session.flush()
            forged = audit._body(seq + 1, rows[seq].at, "op.delivered", "servicenow:INC9999999", {"op": "forged"})
            session.add(AuditEntry(seq=seq + 1, at=rows[seq].at, kind="op.delivered", subject="servicenow:INC9999999",
                                   data='{"op":"forged"}', prev_hash=rows[seq].hash,
                                   hash=audit.entry_hash(rows[seq].hash, forged)))
        else:  # two neighbours swap places
            first, second = rows[seq], rows[seq + 1]
            first.seq, second.seq = -1, seq
            session.add(first)
            session.flush()
            first.seq = seq + 1
            session.add_all([first, second])
    result = verify_store(store)
    assert not result.ok, how
    store.dispose()


def test_truncation_and_a_recomputed_chain_are_caught_against_a_known_head(tmp_path: Path) -> None:
    store, head = _trail(tmp_path)
    anchor = f"{head.head_seq}:{head.head_hash}"
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "audit.db"}"\n')
    verify = ["audit", "verify", "--config", str(config), "--json", "--expect-head", anchor]
    assert CliRunner().invoke(main, verify).exit_code == 0
    with store.engine.begin() as connection:  # cut the last two entries off: the rest is a valid chain
        connection.execute(text("DELETE FROM audit WHERE seq > :seq"), {"seq": ENTRIES - 2})
    assert verify_store(store).ok  # nothing inside the chain shows it ...
    result = CliRunner().invoke(main, verify)
    assert result.exit_code == 1 and "truncated" in result.output  # ... the known head does
    # Rewrite: edit entry 2 and recompute every later hash, as an insider with database access could.
    (tmp_path / "again").mkdir()
    store2, head2 = _trail(tmp_path / "again")
    with store2.transaction() as session:
        rows = sorted(session.exec(select(AuditEntry)).all(), key=lambda row: row.seq)  # type: ignore[attr-defined]
        prev = rows[0].hash
        for row in rows[1:]:
            if row.seq == 2:
                row.subject = "servicenow:INC0000666"
            row.prev_hash = prev
            row.hash = audit.entry_hash(prev, audit._body(row.seq, row.at, row.kind, row.subject, json.loads(row.data)))
            prev = row.hash
            session.add(row)
    assert verify_store(store2).ok
    rewritten = verify_store(store2, anchor=(head2.head_seq, head2.head_hash))
    assert not rewritten.ok and "rewritten" in rewritten.reason
    store.dispose()
    store2.dispose()
