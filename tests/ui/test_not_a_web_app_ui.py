"""The Preview tab of a project that is not a web app says how to run it (issue 18): a script
template's project shows its command and folder, with no "Start preview" that could only fail."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .lab import OWNER, Lab, create_via_rest, open_lab, shot

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
