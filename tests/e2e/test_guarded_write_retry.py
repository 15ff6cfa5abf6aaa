"""A guarded desk write must survive a desk that fails now and then (found by bench/chaos.py).

Writes guarded by a read (last writer wins) run inside `RetryingSession.prompt()`, where a request is
tried once. When that covered the whole JSM update (read the status, comment, read the transitions,
transition: four single-try requests) and every failed attempt counted, the chaos bench's fault mix (30%
of requests answered 5xx, 429 or reset) left such an attempt about a quarter of a chance, and
`[sync] max_attempts` ran out for a few percent of those ops: dead-lettered, the desk never moved. Here
the desk fails every distinct request once (a flaky hop in front of it), with only two attempts allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from bridge.config import load_config
from bridge.daemon import sync_once
from bridge.runtime import Runtime
from bridge.status import queue_depths
from connectors.jsm.simulator import JsmSimulator
from connectors.pagerduty.simulator import PagerDutySimulator
from tests.conftest import database_url, fresh_store, wait_until

pytestmark = pytest.mark.e2e
JIRA_USER, JIRA_TOKEN, PD_TOKEN = "bridge@example.com", "guarded-jira-token", "guarded-pd-token"

CONFIG = """
[database]
url = "{db}"

[sync]
backoff_seconds = 0.05
max_backoff_seconds = 0.2
max_attempts = 2
http_max_wait_seconds = 0.2

[connections.pagerduty]
type = "pagerduty"
api_url = "{pd_url}"
token = "file:secrets/pd-token"
from_email = "bridge@example.com"

[connections.jsm]
type = "jsm"
url = "{jsm_url}"
email = "file:secrets/jira-email"
api_token = "file:secrets/jira-token"
project = "OPS"

[[routes]]
name = "pagerduty-to-jsm"
source = "pagerduty"
target = "jsm"
preset = "pagerduty-jsm"
"""


class FailsEachRequestOnce(HTTPAdapter):
    """The wire to a desk behind a flaky hop: each distinct request is answered 503 once, then goes through."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str | None, str | None, Any]] = set()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        key = (request.method, request.url, request.body)
        if key in self.seen:
            return super().send(request, **kwargs)
        self.seen.add(key)
        response = requests.Response()
        response.status_code, response.url, response.request = 503, request.url or "", request
        response.headers["Content-Type"] = "application/json"
        response._content = b'{"errorMessages":["Service Unavailable"],"errors":{}}'
        return response


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, PagerDutySimulator, JsmSimulator]]:
    fresh_store(tmp_path).dispose()
    pd = PagerDutySimulator(token=PD_TOKEN, rate_limit=100_000).start()
    jsm = JsmSimulator(users={JIRA_USER: JIRA_TOKEN}).start()
    (tmp_path / "secrets").mkdir()
    for name, value in (("pd-token", PD_TOKEN), ("jira-email", JIRA_USER), ("jira-token", JIRA_TOKEN)):
        (tmp_path / "secrets" / name).write_text(value)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(db=database_url(tmp_path), pd_url=pd.url, jsm_url=jsm.url))
    built = Runtime.build(load_config(path))
    built.connectors["jsm"].session.mount("http://", FailsEachRequestOnce())
    try:
        yield built, pd, jsm
    finally:
        built.store.dispose()
        pd.stop()
        jsm.stop()


def settled(runtime: Runtime) -> bool:
    sync_once(runtime)
    depths = queue_depths(runtime.store)
    return not (depths["outbox_pending"] or depths["inbox_pending"])


def test_a_status_change_reaches_a_desk_that_fails_each_request_once(
        runtime: tuple[Runtime, PagerDutySimulator, JsmSimulator]) -> None:
    bridge, pd, jsm = runtime
    incident = pd.trigger("Search", "Index lag", user="alice")
    wait_until(lambda: settled(bridge), timeout=30, message="the issue created")
    pd.acknowledge(incident, user="alice")
    pd.add_note(incident, "Replica 3 is 40 min behind", user="alice")
    wait_until(lambda: settled(bridge), timeout=30, message="the acknowledge delivered or dead-lettered")
    (issue,) = jsm.find_by_correlation(f"pagerduty:{incident}")
    comments = [comment["body"] for comment in jsm.comments(issue["key"])]
    assert queue_depths(bridge.store)["dead_letters"] == 0
    assert issue["fields"]["status"]["name"] == "In Progress"
    assert sum("Replica 3 is 40 min behind" in body for body in comments) == 1, comments
