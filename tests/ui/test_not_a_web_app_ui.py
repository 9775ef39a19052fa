"""Nothing that lies, in a real lab (issue 18): the Preview tab of a project that is not a web
app says how to run it (a script template's project shows its command and folder, with no
"Start preview" that could only fail), and asking an offline project for a change fails saying
the offline provider cannot make it, instead of "Completed" with nothing changed."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from .lab import (
    OWNER,
    RUN_TIMEOUT_MS,
    Lab,
    create_via_rest,
    feed_end,
    feed_status,
    open_lab,
    shot,
    show_sidebar,
)

pytestmark = pytest.mark.browser


def test_a_script_project_shows_how_to_run_it_instead_of_a_preview(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        project = create_via_rest(api, {"name": "Word counter", "template": "python-script"})

    open_lab(page, lab, url=f"{lab.lab_url}&ecode=@{OWNER}/{project['slug']}")
    view = page.locator(".jp-EcodeProjectView", has_text="Word counter")
    view.get_by_role("tab", name="Preview").click()
    howto = view.locator(".jp-EcodePreview-howto")
    expect(howto).to_contain_text("This project is a script, not a web app")
    expect(howto).to_contain_text("python main.py")
    expect(view.get_by_role("button", name="Start preview")).to_have_count(0)
    shot(page, "preview-not-a-web-app.png")
    # "Open main.py" opens the script in Lab's editor.
    howto.get_by_role("button", name="Open main.py").click()
    expect(page.locator(".jp-FileEditor")).to_be_visible()


def test_asking_an_offline_project_for_a_change_says_it_cannot(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        project = create_via_rest(
            api, {"name": "Counter", "template": "python-script", "prompt": "a word counter"}
        )
        run_id = project["run"]["id"]
        deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
        while api.get(f"api/ecode/runs/{run_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the first run did not complete"
            time.sleep(0.5)

    open_lab(page, lab, url=f"{lab.lab_url}&ecode=@{OWNER}/{project['slug']}")
    panel = show_sidebar(page)
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Counter")
    panel.get_by_label("Ask the agent for a change").fill("add a --json flag")
    panel.get_by_role("button", name="Send").click()
    # Not a green "Completed" with nothing done: failed, saying why.
    expect(feed_status(panel)).to_have_text("Failed", timeout=RUN_TIMEOUT_MS)
    expect(feed_end(panel)).to_contain_text("cannot change a project")
    expect(feed_end(panel)).to_contain_text("Nothing was changed")
    shot(page, "offline-follow-up-refused.png")
