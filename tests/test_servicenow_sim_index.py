"""The simulator's equality index: finds by correlation id or number answer exactly what a full scan does.

It exists so a benchmark with 20,000 tickets measures the bridge, not a simulator that scans every
ticket per find; these tests pin that it stays faithful when ids change, repeat or go away.
"""

from __future__ import annotations

from connectors.servicenow.sim_state import DeskState

USER = "itsm.bridge"


def state_with(*correlation_ids: str) -> tuple[DeskState, list[str]]:
    state = DeskState([USER])
    ids = [state.insert({"short_description": f"t{n}", "correlation_id": cid}, user=USER)["sys_id"]
           for n, cid in enumerate(correlation_ids)]
    return state, ids


def found(state: DeskState, query: str) -> list[str]:
    return [row["sys_id"] for row in state.query("incident", query)]


def test_duplicates_come_back_in_table_order_and_the_rest_of_the_query_still_applies() -> None:
    state, ids = state_with("pd:A", "pd:B", "pd:A", "pd:A")
    state.update(ids[2], {"state": "2"}, user=USER)

    assert found(state, "correlation_id=pd:A") == [ids[0], ids[2], ids[3]]
    assert found(state, "correlation_id=pd:A^state=2") == [ids[2]]
    assert found(state, "correlation_id=pd:A^ORDERBYDESCnumber") == [ids[3], ids[2], ids[0]]
    assert found(state, "correlation_id=pd:none") == []


def test_a_changed_or_deleted_ticket_leaves_its_old_bucket() -> None:
    state, ids = state_with("pd:A", "")
    state.update(ids[1], {"correlation_id": "pd:A"}, user=USER)  # a desk-raised ticket stamped later
    state.update(ids[0], {"correlation_id": "pd:Z"}, user=USER)

    assert found(state, "correlation_id=pd:A") == [ids[1]]
    assert found(state, "correlation_id=pd:Z") == [ids[0]]
    state.delete(ids[0])
    assert found(state, "correlation_id=pd:Z") == []


def test_lookup_by_number_and_or_groups_match_a_full_scan() -> None:
    state, ids = state_with("pd:A", "pd:B")
    number = state.get(ids[1])["number"]

    assert found(state, f"number={number}") == [ids[1]]
    assert found(state, "correlation_id=pd:A^ORcorrelation_id=pd:B") == ids  # not an index hit: scanned
    assert found(state, "correlation_idLIKEpd:") == ids
