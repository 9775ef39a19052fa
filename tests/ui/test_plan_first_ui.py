"""Plan first in a real lab and Chromium, with a model on the loopback (Anthropic's wire
format): the new project's plan waits in the feed, the person edits it there and approves,
and the same run builds what the edited plan says."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from ecode_jupyter.testing import (
    AnthropicLoopback,
    LoopbackRequest,
    ScriptedTurn,
    text_turn,
    tool_turn,
)

from .lab import RUN_TIMEOUT_MS, Lab, feed_status, open_lab, shot, show_sidebar

pytestmark = pytest.mark.browser

PLAN = "Plan:\n1. Write a test.\n2. Run it."
EDITED = "Plan:\n1. Write one test that checks 2 + 2.\n2. Run it."
TEST_FILE = "def test_sum():\n    assert 2 + 2 == 4\n"


def _respond(request: LoopbackRequest) -> ScriptedTurn:
    turns = sum(1 for m in request.json.get("messages") or [] if m.get("role") == "assistant")
    if turns == 0:
        return text_turn(PLAN)
    if turns == 1:
        return tool_turn("write_file", {"path": "tests/test_sum.py", "content": TEST_FILE})
    return text_turn("Done: one test.")


MODEL = AnthropicLoopback(_respond)
# The lab's server talks to it (read by the lab fixture when it starts the server).
LAB_ENV = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": MODEL.start()}


@pytest.fixture(scope="module", autouse=True)
def model() -> Iterator[AnthropicLoopback]:
    yield MODEL
    MODEL.stop()


def test_the_plan_is_edited_and_approved_in_the_feed(
    lab: Lab, page: Page, model: AnthropicLoopback
) -> None:
    open_lab(page, lab)
    panel = show_sidebar(page)
    panel.get_by_label("Describe the app you want").fill("a tested sum")
    panel.get_by_text("More options").click()
    panel.get_by_label("Name").fill("Planned sum")
    panel.get_by_label("Plan first").check()
    panel.get_by_role("button", name="Create project").click()
    # A model costs credits: the sidebar asks first.
    page.get_by_role("dialog").get_by_role("button", name="Go ahead").click()

    box = panel.get_by_role("alert", name="The agent is waiting for your approval")
    expect(box).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(box).to_contain_text("Approve the plan before anything is changed?")
    plan = box.get_by_label("The plan (edit it before approving, if you like)")
    expect(plan).to_have_value(PLAN)
    expect(box.get_by_role("button", name="Always allow")).to_have_count(0)
    plan.fill(EDITED)
    shot(page, "plan-first-editing.png")
    box.get_by_role("button", name="Approve").click()

    expect(feed_status(panel)).to_have_text("Completed", timeout=RUN_TIMEOUT_MS)
    shot(page, "plan-first-done.png")
    # The plan's turn had no tools; the next one was told to follow the edited plan.
    assert model.requests[0].tool_names() == []
    told = str(model.requests[1].json["messages"][-1])
    assert "as the user edited it" in told and "checks 2 + 2" in told
    expect(panel.locator(".jp-EcodeFeed-plan")).to_contain_text("Write one test that checks")
