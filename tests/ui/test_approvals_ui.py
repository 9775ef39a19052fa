"""A run under a policy that asks about a command waits in the Lab feed, showing the exact
call, until someone answers there; "Always allow" lets it go on and adds the rule."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .lab import (
    OWNER,
    RUN_TIMEOUT_MS,
    Lab,
    create_via_rest,
    feed_status,
    open_lab,
    shot,
    show_sidebar,
)

pytestmark = pytest.mark.browser

ASK_TESTS = {"rules": [{"tool": "run_command", "match": "python -m pytest*", "action": "ask"}]}


def test_an_asked_command_waits_in_the_feed_until_answered(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        project = create_via_rest(api, {"name": "Guarded todo", "template": "flask-api"})
        put = api.put(f"api/ecode/projects/{project['id']}/policy", json=ASK_TESTS)
        assert put.status_code == 200, put.text
    open_lab(page, lab)
    panel = show_sidebar(page)
    panel.locator(".jp-EcodeProject", has_text="Guarded todo").locator("button").click()
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Guarded todo")
    panel.get_by_label("Ask the agent for a change").fill("a Flask todo API with tests")
    panel.get_by_role("button", name="Send").click()

    # The run stops at the tests and the feed shows the exact call with the three answers.
    box = panel.get_by_role("alert", name="The agent is waiting for your approval")
    expect(box).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(box).to_contain_text("The agent wants to run run_command")
    expect(box.locator(".jp-EcodeApproval-call")).to_contain_text("command: python -m pytest")
    expect(feed_status(panel)).to_have_text("Running")
    shot(page, "approval-waiting.png")

    box.get_by_role("button", name="Always allow").click()
    expect(feed_status(panel)).to_have_text("Completed", timeout=RUN_TIMEOUT_MS)
    expect(box).to_have_count(0)
    shot(page, "approval-answered.png")
    with lab.api() as api:
        runs = api.get(f"api/ecode/projects/{project['id']}/runs").json()["runs"]
        approvals = api.get(f"api/ecode/runs/{runs[0]['id']}/approvals").json()["approvals"]
        policy = api.get(f"api/ecode/projects/{project['id']}/policy").json()
    assert [(a["decision"], a["decided_by"]) for a in approvals] == [("always", OWNER)]
    assert policy["rules"][0]["action"] == "allow"
    assert policy["rules"][0]["match"].startswith("python -m pytest")
