"""Server errors, shown as what to do next, in a real JupyterLab and headless Chromium.

This module's lab gives users no monthly credits and has an OpenAI key configured (against
a closed port: no call ever leaves the machine), so a run with a priced model fails at its
first credit reservation, before any model call.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .lab import RUN_TIMEOUT_MS, Lab, feed_end, feed_status, open_lab, shot, show_sidebar

pytestmark = pytest.mark.browser

LAB_ECODE_CONFIG = {"monthly_allowance": 0}
LAB_ENV = {"OPENAI_API_KEY": "sk-ecode-ui-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


def test_out_of_credits_says_ask_your_admin(lab: Lab, page: Page) -> None:
    open_lab(page, lab)
    panel = show_sidebar(page)
    expect(panel.locator(".jp-EcodeCredits")).to_have_text("0 credits")
    panel.get_by_label("Describe the app you want").fill("a Flask todo API")
    panel.get_by_label("Model").select_option("gpt-4.1")
    expect(panel.locator(".jp-EcodeCost")).to_contain_text("you have 0 credits")
    panel.get_by_role("button", name="Create project").click()

    # A priced model: the user is asked first (the "confirm costly runs" setting).
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Start a run with gpt-4.1?")
    expect(dialog).to_contain_text("A typical run costs about 0.84 credits. You have 0 credits.")
    dialog.get_by_role("button", name="Go ahead").click()

    expect(feed_status(panel)).to_have_text("Failed", timeout=RUN_TIMEOUT_MS)
    end = feed_end(panel)
    expect(end).to_contain_text("ask an admin for credits")
    expect(end.locator(".jp-EcodeEnd-advice")).to_have_text(
        "Out of credits — ask your admin for more, or continue with the free offline model."
    )
    # Not the offline provider: no "no model configured" banner.
    expect(panel.locator(".jp-EcodeFeed-offline")).to_have_count(0)
    expect(panel.get_by_role("button", name="Continue run")).to_be_visible()
    shot(page, "error-out-of-credits.png")


def test_cancelling_the_confirmation_starts_nothing(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        before = len(api.get("api/ecode/projects").json()["projects"])
    open_lab(page, lab)
    panel = show_sidebar(page)
    if not panel.get_by_label("Describe the app you want").is_visible():
        panel.locator("summary", has_text="New app").click()
    panel.get_by_label("Describe the app you want").fill("a Streamlit dashboard")
    panel.get_by_label("Model").select_option("gpt-4.1")
    panel.get_by_role("button", name="Create project").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Cancel").click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    # The prompt is kept for another try.
    expect(panel.get_by_label("Describe the app you want")).to_have_value("a Streamlit dashboard")
    with lab.api() as api:
        assert len(api.get("api/ecode/projects").json()["projects"]) == before
