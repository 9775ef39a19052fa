"""Helpers of the browser tests: the lab under test, and what its pages are made of."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "ui"
OWNER = "tester"
PANEL_ID = "ecode-projects-panel"
# Generous because a cold lab page on a busy 2-core CI machine takes a few seconds.
STARTUP_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 30_000
# An offline run writes a template and runs its tests: ~10 s here, more on a busy runner.
RUN_TIMEOUT_MS = 120_000


@dataclass
class Lab:
    base_url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    root: Path

    @property
    def lab_url(self) -> str:
        return f"{self.base_url}lab?token={self.token}"

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
        )

    def workspace(self, project_id: str) -> Path:
        return self.root / "ecode-projects" / project_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(lab: Lab) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with lab.api() as api:
        while time.monotonic() < deadline:
            if lab.process.poll() is not None:
                pytest.fail(f"jupyter lab exited early:\n{log_tail(lab.log_path)}")
            try:
                if api.get("api/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"jupyter lab did not answer in time:\n{log_tail(lab.log_path)}")
        reply = api.get("api/ecode/templates")
        assert reply.status_code == 200, (
            f"ecode server extension not loaded ({reply.status_code}):\n{log_tail(lab.log_path)}"
        )


def shot(page: Page, name: str) -> Path:
    path = OUTPUT_DIR / name
    page.screenshot(path=str(path))
    return path


def open_lab(page: Page, lab: Lab, url: str | None = None) -> Locator:
    """Load the lab (or `url`) and return the E-Code sidebar tab once the app is up."""
    page.goto(url or lab.lab_url)
    tab = page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{PANEL_ID}"]')
    expect(
        tab, "E-Code sidebar tab missing: is the lab extension built and installed?"
    ).to_be_visible(timeout=UI_TIMEOUT_MS * 2)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)
    # The layout is restored (and focus moved around) after the splash goes; let it settle.
    page.wait_for_load_state("networkidle")
    return tab


def show_sidebar(page: Page) -> Locator:
    """The E-Code sidebar, opened if it is not showing."""
    panel = page.locator(f"#{PANEL_ID}")
    if not panel.is_visible():
        page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{PANEL_ID}"]').click()
    expect(panel).to_be_visible()
    return panel


def run_palette_command(page: Page, label: str) -> None:
    """Run a command the way a keyboard user does: Ctrl+Shift+C, type, Enter."""
    search = page.locator(".jp-ModalCommandPalette .lm-CommandPalette-input")
    # Enter runs the palette's active item, which need not be the first one shown.
    active = page.locator(".jp-ModalCommandPalette .lm-CommandPalette-item.lm-mod-active")
    attempts = 3
    for attempt in range(1, attempts + 1):
        # From the page itself, not from a text field, as after a fresh load.
        page.evaluate("() => document.activeElement?.blur()")
        page.keyboard.press("Control+Shift+C")
        try:
            expect(search).to_be_visible(timeout=5_000)
            search.fill(label, timeout=5_000)
            expect(active).to_contain_text(label, timeout=5_000)
            expect(search).to_be_focused(timeout=5_000)
            search.press("Enter", timeout=5_000)
            # The palette closes when it runs the command.
            expect(search).to_be_hidden(timeout=5_000)
            return
        except (AssertionError, PlaywrightTimeoutError):
            # Lab may still be restoring its layout right after load; activating the launcher
            # takes focus, and the modal palette closes when it loses focus. Open it again.
            if attempt == attempts:
                raise


def create_via_rest(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    reply = api.post("api/ecode/projects", json=body)
    assert reply.status_code == 201, reply.text
    project: dict[str, Any] = reply.json()
    return project


def feed_status(panel: Locator) -> Locator:
    """The run status badge of the sidebar's feed."""
    return panel.locator(".jp-EcodeFeed-status .jp-EcodeRunStatus")


def feed_end(panel: Locator) -> Locator:
    """The feed's closing row, after scrolling the feed to its end as a reader would: the
    feed is virtualized, so a row far from the viewport is not in the page (a command
    palette or dialog taking focus can leave the feed scrolled off its end)."""
    feed = panel.get_by_role("feed", name="Agent activity")
    feed.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    return panel.locator(".jp-EcodeEnd")
