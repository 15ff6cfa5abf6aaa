"""Property: under any interleaving of changes on PagerDuty and on both desks, the bridge goes quiet
(nothing it wrote comes back as new work) and all three systems end up telling the same story."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.daemon import sync_once
from bridge.runtime import Runtime
from bridge.store import DeadLetter, OutboxOp
from tests.e2e.test_two_way import AGENT, Desks, desks  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SN_STATE = {"triggered": {"1"}, "acknowledged": {"2"}, "resolved": {"6", "7"}}
JSM_STATUS = {"triggered": {"To Do"}, "acknowledged": {"In Progress"}, "resolved": {"Resolved", "Done"}}
SN_URGENCY = {"P1": "1", "P2": "1", "P3": "2", "P4": "3", "P5": "3", None: "2"}
JSM_PRIORITY = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low", "P5": "Lowest", None: "Medium"}

ACTIONS = st.one_of(
    st.sampled_from(["sync", "pd_ack", "pd_resolve", "pd_reopen", "pd_note", "sn_comment", "sn_resolve",
                     "jsm_comment", "jsm_resolve", "jsm_reopen"]).map(lambda name: (name, None)),
    st.tuples(st.just("pd_priority"), st.sampled_from(["P1", "P2", "P3", "P4", "P5"])),
    st.tuples(st.just("sn_urgency"), st.sampled_from(["1", "2", "3"])),
    st.tuples(st.just("jsm_priority"), st.sampled_from(["Highest", "High", "Medium", "Low", "Lowest"])),
)


@pytest.fixture
def world(desks: Desks) -> Iterator[tuple[Desks, Runtime]]:  # noqa: F811
    runtime = desks.runtime()
    yield desks, runtime
    runtime.store.dispose()


def act(sides: Desks, runtime: Runtime, incident: str, action: tuple[str, str | None], step: int) -> None:
    name, value = action
    pd, sn, jsm = sides.pd, sides.sn, sides.jsm
    status = pd.incident(incident)["status"]
    tickets, issues = sn.find_by_correlation(f"pagerduty:{incident}"), jsm.find_by_correlation(f"pagerduty:{incident}")
    ticket, issue = (tickets or [None])[0], (issues or [None])[0]
    jsm_status = issue["fields"]["status"]["name"] if issue else None
    if name == "sync":
        assert sync_once(runtime).dead_letters == 0
    elif name == "pd_ack" and status == "triggered":
        pd.acknowledge(incident, user="alice")
    elif name == "pd_resolve" and status != "resolved":
        pd.resolve(incident, user="alice")
    elif name == "pd_reopen" and status == "resolved":
        pd.reopen(incident, user="alice")
    elif name == "pd_note":
        pd.add_note(incident, f"responder step {step}", user="alice")
    elif name == "pd_priority":
        pd.set_priority(incident, value, user="alice")
    elif name == "sn_comment" and ticket:
        sn.desk_comment(ticket["sys_id"], f"desk step {step}", user="jane.doe")
    elif name == "sn_resolve" and ticket and ticket["state"] not in ("6", "7"):
        sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Workaround provided",
                                          "close_notes": f"desk step {step}"}, user="jane.doe")
    elif name == "sn_urgency" and ticket:
        sn.desk_update(ticket["sys_id"], {"urgency": value}, user="jane.doe")
    elif name == "jsm_comment" and issue:
        jsm.desk_comment(issue["key"], f"product step {step}", user=AGENT)
    elif name == "jsm_resolve" and jsm_status in ("To Do", "In Progress"):
        jsm.desk_transition(issue["key"], "Resolve", user=AGENT)
    elif name == "jsm_reopen" and jsm_status in ("Resolved", "Done"):
        jsm.desk_transition(issue["key"], "Reopen", user=AGENT)
    elif name == "jsm_priority" and issue:
        jsm.desk_update(issue["key"], {"priority": {"name": value}}, user=AGENT)


def settle_quietly(runtime: Runtime) -> None:
    for _ in range(10):
        before = runtime.store.count(OutboxOp)
        sync_once(runtime)
        if runtime.store.count(OutboxOp) == before:
            break
    else:
        raise AssertionError("the bridge never went quiet")
    queued = runtime.store.count(OutboxOp)
    for _ in range(2):  # two more full rounds: an echo would queue something here
        assert sync_once(runtime).ok
    assert runtime.store.count(OutboxOp) == queued, "the bridge's own writes came back as new work"


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(actions=st.lists(ACTIONS, min_size=3, max_size=12))
def test_any_interleaving_goes_quiet_and_converges(world: tuple[Desks, Runtime],
                                                   actions: list[tuple[str, str | None]]) -> None:
    sides, runtime = world
    incident = sides.pd.trigger("Search", "Property test", user="alice", priority="P3")
    sync_once(runtime)
    for step, action in enumerate(actions):
        act(sides, runtime, incident, action, step)
    settle_quietly(runtime)

    assert runtime.store.count(DeadLetter) == 0
    tickets = sides.sn.find_by_correlation(f"pagerduty:{incident}")
    issues = sides.jsm.find_by_correlation(f"pagerduty:{incident}")
    assert len(tickets) == 1 and len(issues) == 1
    pd_incident = sides.pd.incident(incident)
    status = pd_incident["status"]
    priority = (pd_incident.get("priority") or {}).get("name")
    assert tickets[0]["state"] in SN_STATE[status], (status, tickets[0]["state"], actions)
    assert issues[0]["fields"]["status"]["name"] in JSM_STATUS[status], (status, actions)
    assert tickets[0]["urgency"] == SN_URGENCY[priority], (priority, tickets[0]["urgency"], actions)
    assert issues[0]["fields"]["priority"]["name"] == JSM_PRIORITY[priority], (priority, actions)
    # Every desk comment reached the responders exactly once; no note was bounced back and forth.
    notes = [note["content"] for note in sides.pd.notes(incident)]
    for action_index, (name, _value) in enumerate(actions):
        if name in ("sn_comment", "jsm_comment"):
            text = f"{'desk' if name == 'sn_comment' else 'product'} step {action_index}"
            assert sum(text in note for note in notes) <= 1
