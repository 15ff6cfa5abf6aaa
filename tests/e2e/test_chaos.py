"""bench/chaos.py, small: full lifecycles under injected faults while the daemon is SIGKILLed and restarted,
judged record by record; and the judge itself, shown catching a duplicate, a loss, a divergence and an
altered audit entry (so a clean verdict means something)."""

from __future__ import annotations

import importlib
import json
from types import ModuleType

import pytest
from sqlalchemy import text

from bridge.daemon import sync_once
from bridge.demo_scenario import DESK_AGENT, JSM_AGENT, Scenario, convergence_problems
from bridge.store import Store
from tests.conftest import DATABASE_URL, wait_until
from tests.e2e.conftest import QuietChaos

pytestmark = pytest.mark.e2e
CLEAN = "lost=0 duplicates=0 diverged=0 audit=ok"


def run_bench(chaos: ModuleType, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = chaos.main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_sqlite_daemon_killed_twice_under_faults_loses_and_duplicates_nothing(
        chaos: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run_bench(chaos, capsys, "--incidents", "6", "--kills", "2", "--seed", "11", "--timeout", "120")
    assert result["verdict"] == CLEAN, result["details"]
    assert code == 0
    figures = result["figures"]
    assert (figures["kills"], figures["restarts"], figures["replica_exit_codes"]) == (2, 2, [0])
    assert all(figures["faults_injected"][kind] > 0 for kind in ("5xx", "429", "reset")), figures["faults_injected"]
    assert figures["incidents"] == 6 and figures["dead_letters"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not DATABASE_URL, reason="replicas share a store on PostgreSQL: set ITSM_BRIDGE_TEST_DATABASE_URL")
def test_postgresql_two_replicas_one_killed_twice_lose_and_duplicate_nothing(
        chaos: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code, result = run_bench(chaos, capsys, "--incidents", "6", "--kills", "2", "--replicas", "2",
                                 "--database-url", str(DATABASE_URL), "--reset", "--seed", "5", "--timeout", "120")
    finally:
        store = Store(str(DATABASE_URL))
        store.drop_schema()
        store.dispose()
    assert result["verdict"] == CLEAN, result["details"]
    assert code == 0
    assert (result["figures"]["replicas"], result["figures"]["kills"]) == (2, 2)


def test_the_judge_counts_a_duplicate_note_a_lost_comment_a_diverged_state_and_a_bad_audit_entry(
        quiet_chaos: QuietChaos) -> None:
    judge = importlib.import_module("chaos_judge").judge
    world, runtime = quiet_chaos.world, quiet_chaos.runtime
    store = runtime.store
    incident = world.source.open(world.src, "Payments API", "Checkout errors", "alice", True)
    world.src.add_note(incident, "Rolled back the deploy", user="alice")
    scenario = Scenario(incidents=[incident], responder_notes={incident: ["Rolled back the deploy"]})
    wait_until(lambda: sync_once(runtime).ok and not convergence_problems(world, runtime, scenario),
               timeout=30, message="the incident on both desks")
    assert judge(world, scenario, store).line() == CLEAN

    ticket, issue = world.sn_tickets(incident)[0], world.jsm_issues(incident)[0]
    world.sn.desk_comment(ticket["sys_id"], "Rolled back the deploy", user=DESK_AGENT, work_note=True)
    world.jsm.desk_transition(issue["key"], "Resolve", user=JSM_AGENT)
    scenario.desk_comments[incident] = ["Customer confirms the fix"]  # said to be written, never was
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET data = replace(data, 'pagerduty', 'pagerdutY') WHERE seq = 2"))
    verdict = judge(world, scenario, store)
    assert verdict.line().startswith("lost=1 duplicates=1 diverged=1 audit=bad seq 2"), verdict.as_dict()
    copies = f"{incident}: responder note 'Rolled back the deploy' in {ticket['number']} journal: 2 copies"
    assert verdict.duplicates == [copies]
