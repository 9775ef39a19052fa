"""The Preview tab's address bar in a real lab (type a path, Enter, back), and the contrast of
the feed's offline notice and diff lines in the light and the dark theme, measured from the
colours the browser rendered (WCAG 2 relative luminance; AA asks 4.5:1 for text)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Locator, Page, expect

from .lab import (
    OWNER,
    PANEL_ID,
    RUN_TIMEOUT_MS,
    Lab,
    create_via_rest,
    feed_end,
    open_lab,
    run_palette_command,
    shot,
    show_sidebar,
)

pytestmark = pytest.mark.browser

AA_TEXT = 4.5

# The text's colour blended over the first opaque background behind it (a canvas turns any
# CSS colour, color-mix() included, into RGBA bytes), then WCAG's contrast ratio.
CONTRAST_JS = """
node => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const rgba = css => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, under) =>
    [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const layers = [];
  for (let el = node; el; el = el.parentElement) {
    const bg = rgba(getComputedStyle(el).backgroundColor);
    if (bg[3] > 0) layers.push(bg);
    if (bg[3] === 1) break;
  }
  let back = [255, 255, 255, 1];
  for (const layer of layers.reverse()) back = over(layer, back);
  const text = over(rgba(getComputedStyle(node).color), back);
  const lum = c => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [lum(text), lum(back)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
"""


def contrast(node: Locator) -> float:
    ratio: float = node.evaluate(CONTRAST_JS)
    return ratio


def set_theme(lab: Lab, theme: str) -> None:
    with lab.api() as api:
        reply = api.put(
            "lab/api/settings/@jupyterlab/apputils-extension:themes",
            json={"raw": json.dumps({"theme": theme})},
        )
    assert reply.status_code == 204, reply.text


def test_the_preview_address_bar_navigates_and_goes_back(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        project = create_via_rest(api, {"name": "Barred", "template": "flask-api"})
        started = api.post(f"api/ecode/projects/{project['id']}/deployments", json={})
        assert started.status_code == 201, started.text
        url = started.json()["url"]

    open_lab(page, lab, url=f"{lab.lab_url}&ecode=@{OWNER}/barred")
    view = page.locator(".jp-EcodeProjectView", has_text="Barred")
    view.get_by_role("tab", name="Preview").click()
    frame = view.locator("iframe.jp-EcodePreview-frame")
    expect(frame).to_have_attribute("src", url, timeout=RUN_TIMEOUT_MS)
    app = page.frame_locator("iframe.jp-EcodePreview-frame").locator("body")
    # The app's index lists its endpoints.
    expect(app).to_contain_text("GET /todos", timeout=RUN_TIMEOUT_MS)

    path = view.get_by_label("Path in the app")
    back = view.get_by_role("button", name="Back")
    expect(path).to_have_value("/")
    expect(back).to_be_disabled()
    expect(view.get_by_role("button", name="Reload")).to_be_enabled()
    expect(view.get_by_role("button", name="Open in a new tab")).to_be_enabled()

    path.fill("/health")
    path.press("Enter")
    expect(frame).to_have_attribute("src", url.rstrip("/") + "/health")
    expect(app).to_contain_text('"status"', timeout=RUN_TIMEOUT_MS)
    expect(app).not_to_contain_text("GET /todos")
    shot(page, "preview-address-bar.png")

    back.click()
    expect(frame).to_have_attribute("src", url)
    expect(path).to_have_value("/")
    expect(app).to_contain_text("GET /todos", timeout=RUN_TIMEOUT_MS)
    expect(back).to_be_disabled()


def check_feed_contrast(page: Page, theme: str) -> list[str]:
    """Contrast failures (text, ratio) of the offline notice and the diff lines now shown."""
    panel = page.locator(f"#{PANEL_ID}")
    notice = panel.locator(".jp-EcodeFeed-offline")
    expect(notice).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(feed_end(panel)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    chip = panel.locator(".jp-EcodeFileChip").first
    chip.scroll_into_view_if_needed()
    chip.click()
    diff = panel.locator(".jp-EcodeDiff").first
    expect(diff).to_be_visible()
    added = diff.locator(".jp-EcodeDiff-add").first
    expect(added).to_be_visible()
    # A first run only adds files; a removed line is drawn with the same rule the feed uses.
    diff.evaluate(
        "pre => { const s = document.createElement('span');"
        " s.className = 'jp-EcodeDiff-line jp-EcodeDiff-del'; s.textContent = '-gone';"
        " pre.appendChild(s); }"
    )
    removed = diff.locator(".jp-EcodeDiff-del").first
    diff.scroll_into_view_if_needed()
    shot(page, f"contrast-feed-{theme}.png")
    failures = []
    for name, node in (("offline notice", notice), ("added", added), ("removed", removed)):
        ratio = contrast(node)
        if ratio < AA_TEXT:
            failures.append(f"{theme} {name}: {ratio:.2f}:1")
    return failures


def test_offline_notice_and_diffs_reach_aa_in_both_themes(lab: Lab, page: Page) -> None:
    open_lab(page, lab)
    # A new project's prompt box (the sidebar may still show the last project opened).
    run_palette_command(page, "E-Code: New project")
    panel = show_sidebar(page)
    panel.get_by_label("Model").select_option("offline")
    panel.get_by_label("Describe the app you want").fill("a flask api for notes")
    panel.get_by_label("Describe the app you want").press("Control+Enter")
    failures = check_feed_contrast(page, "light")

    set_theme(lab, "JupyterLab Dark")
    try:
        open_lab(page, lab)
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        show_sidebar(page)
        panel.locator(".jp-EcodeProject", has_text="A flask api for notes").locator(
            "button"
        ).first.click()
        failures += check_feed_contrast(page, "dark")
    finally:
        set_theme(lab, "JupyterLab Light")
    assert failures == []
