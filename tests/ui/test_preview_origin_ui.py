"""The Preview tab with the app gateway on a preview origin of its own (``apps.localhost``,
which browsers resolve to loopback): the lab frames the app with its own origin, so the app
has cookies and storage there, and still no way into the lab."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .lab import OWNER, RUN_TIMEOUT_MS, Lab, create_via_rest, free_port, open_lab, shot

pytestmark = pytest.mark.browser

GATEWAY_PORT = free_port()
PREVIEW_ORIGIN = f"http://apps.localhost:{GATEWAY_PORT}"
LAB_ECODE_CONFIG = {"preview_port": GATEWAY_PORT, "preview_origin": PREVIEW_ORIGIN}


def test_the_preview_tab_frames_an_app_on_its_own_origin(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        project = create_via_rest(api, {"name": "Framed", "template": "flask-api"})
        started = api.post(f"api/ecode/projects/{project['id']}/deployments", json={})
        assert started.status_code == 201, started.text
        dep = started.json()
    assert dep["url"].startswith(PREVIEW_ORIGIN + "/") and dep["own_origin"] is True

    open_lab(page, lab, url=f"{lab.lab_url}&ecode=@{OWNER}/framed")
    view = page.locator(".jp-EcodeProjectView", has_text="Framed")
    view.get_by_role("tab", name="Preview").click()
    frame = view.locator("iframe.jp-EcodePreview-frame")
    expect(frame).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(frame).to_have_attribute(
        "sandbox", "allow-scripts allow-forms allow-popups allow-same-origin"
    )
    expect(frame).to_have_attribute("src", dep["url"])
    body = page.frame_locator("iframe.jp-EcodePreview-frame").locator("body")
    expect(body).to_contain_text("/todos", timeout=RUN_TIMEOUT_MS)
    shot(page, "preview-own-origin.png")

    app = next(f for f in page.frames if f.url.startswith(PREVIEW_ORIGIN))
    assert app.evaluate("self.origin") == PREVIEW_ORIGIN
    # Its own cookie jar: none of the lab's cookies (the lab is signed in on 127.0.0.1).
    assert "_xsrf" not in app.evaluate("document.cookie")
    # The lab's page is another origin to it.
    assert (
        app.evaluate(
            "(() => { try { return parent.document.title } catch (e) { return e.name } })()"
        )
        == "SecurityError"
    )
