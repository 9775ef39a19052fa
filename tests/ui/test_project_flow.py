"""From a prompt to a running, released app, in a real JupyterLab and headless Chromium.

No model key is configured, so the offline provider builds each project from a template
through the same tools and feed as a model would. Runs that must be caught mid-way get a test
file that waits for a gate file in the workspace, so "mid-run" is a state the test controls,
not a race it hopes to win.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from .lab import (
    OWNER,
    RUN_TIMEOUT_MS,
    Lab,
    create_via_rest,
    feed_end,
    feed_status,
    open_lab,
    run_palette_command,
    shot,
    show_sidebar,
)

pytestmark = pytest.mark.browser

PROMPT = "a Flask todo API with tests"
GATE_TEST = '''\
"""Holds the run in its verify step until the UI test writes .gate (at most two minutes)."""
import pathlib
import time


def test_gate():
    gate = pathlib.Path(__file__).resolve().parent.parent / ".gate"
    deadline = time.monotonic() + 120
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gate.exists()
'''


def feed_list(panel: Locator) -> Locator:
    return panel.locator(".jp-EcodeFeed-list")


def wait_for_completed(panel: Locator) -> None:
    expect(feed_status(panel)).to_have_text("Completed", timeout=RUN_TIMEOUT_MS)


def latest_run(lab: Lab, project_id: str) -> dict[str, Any]:
    with lab.api() as api:
        runs: list[dict[str, Any]] = api.get(f"api/ecode/projects/{project_id}/runs").json()["runs"]
    return runs[0]


def gated_project(lab: Lab, name: str) -> dict[str, Any]:
    """An empty project whose tests wait for a gate file."""
    with lab.api() as api:
        project = create_via_rest(api, {"name": name})
    tests = lab.workspace(project["id"]) / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "test_gate.py").write_text(GATE_TEST)
    return project


def ask(panel: Locator, text: str) -> None:
    """Start a run on the open project from the feed's box."""
    box = panel.get_by_label("Ask the agent for a change")
    box.fill(text)
    panel.get_by_role("button", name="Send").click()


def test_prompt_to_running_app_and_release(lab: Lab, page: Page) -> None:
    open_lab(page, lab)
    panel = show_sidebar(page)
    panel.get_by_label("Describe the app you want").fill(PROMPT)
    panel.get_by_text("More options").click()
    panel.get_by_label("Name").fill("Todo service")
    panel.get_by_label("Template").select_option("flask-api")
    panel.get_by_role("button", name="Create project").click()

    # The feed: live status, the offline notice, the plan, steps with their tool calls.
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Todo service")
    expect(panel.locator(".jp-EcodeFeed-offline")).to_contain_text(
        "No model configured — using offline templates"
    )
    expect(panel.get_by_text("Checking the project: python -m pytest -q")).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    shot(page, "flow-feed-running.png")
    wait_for_completed(panel)
    expect(panel.locator(".jp-EcodePlan")).to_have_attribute("aria-label", "Plan: 3 of 3 done")
    expect(feed_end(panel)).to_contain_text("Completed — the project is built; tests pass")
    expect(panel.locator(".jp-EcodeFeed-cost")).to_have_text("Cost so far: 0 credits")
    # The verify step's streamed pytest output, unfolded on request.
    verify = panel.locator('.jp-EcodeCall[data-call-id^="verify_"]')
    verify.get_by_role("button", name="Output").click()
    expect(verify.locator(".jp-EcodeCall-output")).to_contain_text("passed")
    shot(page, "flow-feed-completed.png")

    # Files: the workspace in Lab's file browser, the template's files in it.
    view = page.locator(".jp-EcodeProjectView", has_text="Todo service")
    expect(view.get_by_role("tab", name="Files")).to_have_attribute("aria-selected", "true")
    view.get_by_role("button", name="Show in file browser").click()
    listing = page.locator(".jp-FileBrowser .jp-DirListing-content")
    for name in ("app.py", "store.py", "tests", "requirements.txt"):
        expect(listing.locator(".jp-DirListing-item", has_text=name).first).to_be_visible()
    expect(page.locator(".jp-FileBrowser .jp-BreadCrumbs")).to_contain_text("ecode-projects")
    shot(page, "flow-files.png")

    # Preview: the agent started the app to check it (its start_preview call is in the
    # feed), and the Preview tab shows it in a sandboxed frame.
    expect(panel.locator('.jp-EcodeCall[data-tool="start_preview"]')).to_have_count(1)
    show_sidebar(page)
    view.get_by_role("tab", name="Preview").click()
    frame = view.locator("iframe.jp-EcodePreview-frame")
    expect(frame).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(frame).to_have_attribute("sandbox", "allow-scripts allow-forms allow-popups")
    expect(frame).to_have_attribute("title", "Preview of Todo service")
    app = page.frame_locator("iframe.jp-EcodePreview-frame").locator("body")
    expect(app).to_contain_text("/todos", timeout=RUN_TIMEOUT_MS)
    # "Open in a new tab" opens the address the frame shows (the app's keyed URL).
    page.evaluate("() => { window.open = (...args) => { window.__opened = args; return null; }; }")
    view.get_by_role("button", name="Open in a new tab").click()
    opened = page.evaluate("() => window.__opened")
    assert opened[0] == frame.get_attribute("src") and opened[1:] == ["_blank", "noopener"]
    assert opened[0].startswith(f"/ecode/apps/@{OWNER}/todo-service/~")
    view.get_by_role("button", name="Restart").click()
    expect(view.get_by_role("button", name="Restart")).to_be_enabled(timeout=RUN_TIMEOUT_MS)
    expect(app).to_contain_text("/todos", timeout=RUN_TIMEOUT_MS)
    view.get_by_role("button", name="Reload").click()
    expect(app).to_contain_text("/todos")
    shot(page, "flow-preview.png")

    # Deploy: a release goes live; its log streams; the export is there to read.
    view.get_by_role("tab", name="Deploy").click()
    view.get_by_role("button", name="Deploy a release").click()
    release = view.locator('.jp-EcodeReleases tr[data-release="1"]')
    expect(release).to_contain_text("live", timeout=RUN_TIMEOUT_MS)
    expect(view.get_by_role("link", name="Open the live app")).to_have_attribute(
        "href", f"/ecode/live/@{OWNER}/todo-service/"
    )
    expect(view.get_by_role("log")).to_contain_text("ready on port", timeout=RUN_TIMEOUT_MS)
    view.get_by_role("button", name="Show export files").click()
    expect(view.locator(".jp-EcodeExport summary", has_text="Dockerfile")).to_be_visible()
    shot(page, "flow-deploy.png")

    # A second release, then roll back to the first.
    view.get_by_role("button", name="Deploy a release").click()
    expect(view.locator('.jp-EcodeReleases tr[data-release="2"]')).to_contain_text(
        "live", timeout=RUN_TIMEOUT_MS
    )
    view.get_by_role("button", name="Roll back to release 1").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Go ahead").click()
    expect(release).to_contain_text("live", timeout=RUN_TIMEOUT_MS)
    expect(view.locator('.jp-EcodeReleases tr[data-release="2"]')).not_to_contain_text("live")

    # Features: the plan, done and tested, and the test result.
    view.get_by_role("tab", name="Features").click()
    features = view.get_by_role("tabpanel")
    expect(features.locator(".jp-EcodePlan .jp-EcodeBadge", has_text="tested")).to_have_count(3)
    expect(features.locator(".jp-EcodeTests")).to_contain_text("passing")
    expect(features.locator(".jp-EcodeTests")).to_contain_text("python -m pytest -q")
    expect(features.locator(".jp-EcodeQuote")).to_have_text(PROMPT)
    shot(page, "flow-features.png")


def test_reload_mid_run_resumes_the_feed(lab: Lab, page: Page) -> None:
    project = gated_project(lab, "Gated todo")
    open_lab(page, lab)
    panel = show_sidebar(page)
    panel.locator(".jp-EcodeProject", has_text="Gated todo").locator("button").click()
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Gated todo")
    ask(panel, PROMPT)

    # The run writes the template's files, then its tests wait on the gate.
    expect(panel.get_by_text("Checking the project: python -m pytest -q")).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    expect(feed_status(panel)).to_have_text("Running")
    assert latest_run(lab, project["id"])["status"] == "running"
    seen = int(feed_list(panel).get_attribute("data-last-seq") or 0)
    assert seen > 0
    shot(page, "reload-before.png")

    open_lab(page, lab, url=page.url)  # a reload
    panel = show_sidebar(page)
    # The restored project view makes it the sidebar's project; the feed replays from seq 1.
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Gated todo")
    expect(feed_status(panel)).to_have_text("Running")
    expect(panel.get_by_text("Checking the project: python -m pytest -q")).to_be_visible()
    expect(panel.locator(".jp-EcodePlan")).to_have_attribute("aria-label", "Plan: 2 of 3 done")
    replayed = int(feed_list(panel).get_attribute("data-last-seq") or 0)
    assert replayed >= seen
    assert latest_run(lab, project["id"])["status"] == "running"
    shot(page, "reload-after.png")

    # Live again: releasing the gate lets the run finish, and the feed sees it.
    (lab.workspace(project["id"]) / ".gate").write_text("go")
    wait_for_completed(panel)
    run = latest_run(lab, project["id"])
    assert run["status"] == "completed"
    expect(feed_list(panel)).to_have_attribute("data-last-seq", str(run["last_seq"]))
    live_rows = feed_list(panel).locator("article").first.get_attribute("aria-setsize")

    # Every event exactly once: a fresh replay of the finished run draws the same rows.
    open_lab(page, lab, url=page.url)  # a reload
    panel = show_sidebar(page)
    wait_for_completed(panel)
    expect(feed_list(panel)).to_have_attribute("data-last-seq", str(run["last_seq"]))
    expect(feed_list(panel).locator("article").first).to_have_attribute(
        "aria-setsize", live_rows or ""
    )

    # The files the agent wrote: listed with their diffs, marked in the file browser.
    view = page.locator(".jp-EcodeProjectView", has_text="Gated todo")
    view.get_by_role("tab", name="Files").click()
    changed = view.get_by_role("list", name="Files changed by the agent")
    expect(changed.locator("li")).to_have_count(7)
    app_py = changed.locator('li[data-path="app.py"]')
    expect(app_py).to_contain_text("new")
    app_py.get_by_role("button", name="Diff").click()
    expect(app_py.get_by_label("Diff of app.py")).to_contain_text("+++ b/app.py")
    view.get_by_role("button", name="Show in file browser").click()
    listing = page.locator(".jp-FileBrowser .jp-DirListing-content")
    marked_file = listing.locator(".jp-DirListing-item.jp-EcodeChangedFile-mark")
    marked_dir = listing.locator(".jp-DirListing-item.jp-EcodeChangedDir-mark")
    expect(marked_file.filter(has_text="app.py")).to_be_visible()
    expect(marked_dir.filter(has_text="tests")).to_be_visible()
    expect(listing.locator(".jp-DirListing-item", has_text="README.md")).to_have_class(
        re.compile(r"\bjp-EcodeChangedFile-mark\b")
    )
    shot(page, "reload-files-marked.png")
    # Opening a changed file from the Files tab opens it in an editor.
    show_sidebar(page)
    view.get_by_role("button", name="app.py", exact=True).click()
    expect(page.locator(".lm-TabBar-tab", has_text="app.py")).to_be_visible()


def test_cancel_a_running_run(lab: Lab, page: Page) -> None:
    project = gated_project(lab, "Cancelled todo")
    open_lab(page, lab)
    panel = show_sidebar(page)
    panel.locator(".jp-EcodeProject", has_text="Cancelled todo").locator("button").click()
    ask(panel, PROMPT)
    expect(panel.get_by_text("Checking the project: python -m pytest -q")).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    # From the palette, as a keyboard user would.
    run_palette_command(page, "E-Code: Cancel the running agent")
    expect(feed_status(panel)).to_have_text("Cancelled", timeout=RUN_TIMEOUT_MS)
    expect(feed_end(panel)).to_contain_text(
        "Cancelled. Continue the run to pick up where it stopped."
    )
    expect(panel.get_by_role("button", name="Continue run")).to_be_visible()
    assert latest_run(lab, project["id"])["status"] == "cancelled"
    shot(page, "cancelled.png")


def test_open_project_from_the_lab_url(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        create_via_rest(api, {"name": "By address"})
    open_lab(page, lab, url=f"{lab.lab_url}&ecode=@{OWNER}/by-address")
    panel = show_sidebar(page)
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("By address")
    expect(page.locator(".jp-EcodeProjectView", has_text="By address")).to_be_visible()
    # The parameter is dropped, so a reload does not reopen it over what came since.
    assert "ecode=" not in page.url

    # An address that leads nowhere says so.
    open_lab(page, lab, url=f"{lab.lab_url}&ecode=@{OWNER}/no-such-project")
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cannot open @tester/no-such-project")
    dialog.get_by_role("button").last.click()


def test_open_project_by_its_address(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        create_via_rest(api, {"name": "Addressed"})
        routed = api.get(f"ecode/@{OWNER}/addressed", follow_redirects=False)
    if routed.status_code == 404:
        pytest.skip(
            "/ecode/@owner/slug is not routed: add ecode_jupyter.handlers.open_project to "
            "EcodeApp's HANDLER_MODULES"
        )
    open_lab(page, lab)  # logs the browser in (the token in the URL sets the cookie)
    page.goto(f"{lab.base_url}ecode/@{OWNER}/addressed")
    # The address opens the project's view; then the sidebar shows its feed.
    expect(page.locator(".jp-EcodeProjectView", has_text="Addressed")).to_be_visible()
    for attempt in range(3):
        # Lab may bring its file browser forward while the view opens: ask again.
        try:
            panel = show_sidebar(page)
            break
        except AssertionError:
            if attempt == 2:
                raise
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Addressed")
