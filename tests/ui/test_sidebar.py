"""The E-Code sidebar in a real JupyterLab: the projects list, the prompt box, the keyboard,
the palette and the dark theme."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from .lab import (
    OWNER,
    PANEL_ID,
    Lab,
    create_via_rest,
    open_lab,
    run_palette_command,
    shot,
)

pytestmark = pytest.mark.browser


def project_names(lab: Lab) -> list[str]:
    with lab.api() as api:
        reply = api.get("api/ecode/projects")
    assert reply.status_code == 200, reply.text
    return [p["name"] for p in reply.json()["projects"]]


def test_sidebar_lists_projects_and_creates_one(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        templates = api.get("api/ecode/templates").json()["templates"]
        prices = api.get("api/ecode/billing/prices").json()["models"]
        template = templates[0]
        create_via_rest(api, {"name": "REST alpha", "template": template["id"]})
        create_via_rest(api, {"name": "REST beta"})

    tab = open_lab(page, lab)
    expect(tab).to_have_attribute("title", "E-Code")
    tab.click()
    panel = page.locator(f"#{PANEL_ID}")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("aria-label", "E-Code projects")
    expect(panel.get_by_role("heading", name="E-Code", exact=True)).to_be_visible()
    # My credits, from billing/account (the default monthly allowance).
    expect(panel.locator(".jp-EcodeCredits")).to_have_text("5 credits")

    alpha = panel.locator(".jp-EcodeProject", has_text="REST alpha")
    expect(alpha).to_contain_text(f"@{OWNER}/rest-alpha")
    expect(alpha.locator(".jp-EcodeProject-template")).to_have_text(template["id"])
    expect(panel.get_by_role("heading", name="Your projects (2)")).to_be_visible()
    shot(page, "sidebar-projects.png")

    # The prompt box, and a model picker fed by the price list with what a run may cost.
    prompt = panel.get_by_label("Describe the app you want")
    expect(prompt).to_have_attribute("placeholder", "Describe the app you want…")
    model = panel.get_by_label("Model")
    expect(model.locator("option")).to_have_count(len(prices) + 1)
    model.select_option("claude-sonnet-4-5")
    expect(panel.locator(".jp-EcodeCost")).to_have_text(
        "≈ 1.35 credits for a typical run with claude-sonnet-4-5 · you have 5 credits."
    )
    model.select_option("offline")
    expect(panel.locator(".jp-EcodeCost")).to_have_text("Free — offline templates, no AI.")

    # An empty project: no prompt, a name and a template under "More options".
    panel.get_by_text("More options").click()
    name = panel.get_by_label("Name")
    template_select = panel.get_by_label("Template")
    expect(template_select.locator("option")).to_have_count(len(templates) + 1)
    name.fill("Browser made")
    template_select.select_option(template["id"])
    expect(panel.locator(".jp-EcodeField-help", has_text=template["description"])).to_be_visible()
    panel.get_by_role("button", name="Create project").click()

    # It opens: its view in the main area, its (empty) feed in the sidebar.
    view = page.locator(".jp-EcodeProjectView", has_text="Browser made")
    expect(view.get_by_role("tab", name="Files")).to_have_attribute("aria-selected", "true")
    made = panel.locator(".jp-EcodeProject", has_text="Browser made")
    expect(made).to_contain_text(f"@{OWNER}/browser-made")
    expect(made.locator("button")).to_have_attribute("aria-current", "true")
    expect(panel.locator(".jp-EcodeFeed")).to_contain_text("No runs yet.")
    shot(page, "sidebar-created.png")
    listed = {p["name"]: p for p in api_projects(lab)}
    assert listed["Browser made"]["template"] == template["id"]
    assert listed["Browser made"]["owner"] == OWNER

    # A name the server refuses: its message is shown, the field marked, nothing created.
    # (The form folded away when the feed opened; "More options" stays as it was.)
    panel.locator("summary", has_text="New app").click()
    name.fill("x" * 101)
    panel.get_by_role("button", name="Create project").click()
    alert = panel.locator(".jp-EcodeCreateForm").get_by_role("alert")
    expect(alert).to_have_text("name is too long (at most 100 characters)")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    shot(page, "sidebar-error.png")

    # Neither a prompt nor a name: caught before any request.
    name.fill("   ")
    panel.get_by_role("button", name="Create project").click()
    expect(alert).to_have_text("Describe the app you want (or give an empty project a name).")
    assert sorted(project_names(lab)) == ["Browser made", "REST alpha", "REST beta"]


def api_projects(lab: Lab) -> list[dict[str, object]]:
    with lab.api() as api:
        projects: list[dict[str, object]] = api.get("api/ecode/projects").json()["projects"]
    return projects


def test_sidebar_keyboard_palette_and_dark_theme(lab: Lab, page: Page) -> None:
    before = set(project_names(lab))
    open_lab(page, lab)
    panel = page.locator(f"#{PANEL_ID}")

    # "E-Code: New project" opens the sidebar with the keyboard in the prompt box.
    run_palette_command(page, "E-Code: New project")
    expect(panel).to_be_visible()
    prompt = panel.get_by_label("Describe the app you want")
    expect(prompt).to_be_focused()
    # A prompt alone names the project after itself; Ctrl+Enter creates it and starts a run.
    panel.get_by_label("Model").select_option("offline")
    prompt.focus()
    page.keyboard.type("a python script that counts words")
    page.keyboard.press("Control+Enter")
    made = panel.locator(".jp-EcodeProject", has_text="A python script that counts words")
    expect(made).to_be_visible()
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("A python script that counts words")
    assert set(project_names(lab)) - before == {"A python script that counts words"}

    # A project made elsewhere (the REST API here) shows by itself: the server puts project
    # changes on Jupyter's event bus and the sidebar follows it.
    with lab.api() as api:
        create_via_rest(api, {"name": "Made elsewhere"})
    expect(panel.locator(".jp-EcodeProject", has_text="Made elsewhere")).to_be_visible()
    # "E-Code: Refresh projects" still asks for the list at once.
    run_palette_command(page, "E-Code: Refresh projects")
    # The project list works from the keyboard: Tab to a project, Enter opens it.
    panel.locator(".jp-EcodeProject", has_text="Made elsewhere").locator("button").focus()
    page.keyboard.press("Enter")
    expect(panel.locator(".jp-EcodeFeed-title")).to_have_text("Made elsewhere")
    view = page.locator(".jp-EcodeProjectView", has_text="Made elsewhere")
    files_tab = view.get_by_role("tab", name="Files")
    files_tab.focus()
    page.keyboard.press("ArrowRight")
    expect(view.get_by_role("tab", name="Preview")).to_be_focused()
    expect(view.get_by_role("tab", name="Preview")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("End")
    expect(view.get_by_role("tab", name="Deploy")).to_have_attribute("aria-selected", "true")
    expect(view.get_by_role("tabpanel")).to_contain_text("No releases yet.")
    shot(page, "sidebar-light.png")
    light = panel.evaluate("node => getComputedStyle(node).backgroundColor")

    # Dark theme: the panel and the project view follow the theme's variables.
    with lab.api() as api:
        reply = api.put(
            "lab/api/settings/@jupyterlab/apputils-extension:themes",
            json={"raw": json.dumps({"theme": "JupyterLab Dark"})},
        )
    assert reply.status_code == 204, reply.text
    try:
        open_lab(page, lab)
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        run_palette_command(page, "E-Code: Open sidebar")
        expect(panel.locator(".jp-EcodeProject", has_text="Made elsewhere")).to_be_visible()
        dark = panel.evaluate("node => getComputedStyle(node).backgroundColor")
        assert dark != light
        shot(page, "sidebar-dark.png")
    finally:
        with lab.api() as api:
            api.put(
                "lab/api/settings/@jupyterlab/apputils-extension:themes",
                json={"raw": json.dumps({"theme": "JupyterLab Light"})},
            )
