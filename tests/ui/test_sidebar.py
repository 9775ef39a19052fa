"""The E-Code sidebar in a real JupyterLab, driven by Debian's headless Chromium.

Each test starts `jupyter lab` as a subprocess — hermetic config, data and runtime folders, a
known token, the ecode server extension on the test database — and opens it in Chromium. The
lab extension is whatever is installed in this environment (`pip install -e .`, a wheel, or
`jupyter-builder develop --overwrite .`), exactly as a user would get it. Screenshots and the
server's log go to `test-output/ui/` under the repository root.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("ECODE_CHROMIUM", "/usr/lib/chromium/chromium"))
if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` (or set ECODE_CHROMIUM)",
        allow_module_level=True,
    )

# Debian's Chromium as root in a container; see docs in shared ENVIRONMENT.md, pitfall 9.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "ui"
OWNER = "tester"
PANEL_ID = "ecode-projects-panel"
# Generous because a cold lab page on a busy 2-core CI machine takes a few seconds.
STARTUP_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 30_000


@dataclass
class Lab:
    base_url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def lab_url(self) -> str:
        return f"{self.base_url}lab?token={self.token}"

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(lab: Lab) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with lab.api() as api:
        while time.monotonic() < deadline:
            if lab.process.poll() is not None:
                pytest.fail(f"jupyter lab exited early:\n{_log_tail(lab.log_path)}")
            try:
                if api.get("api/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"jupyter lab did not answer in time:\n{_log_tail(lab.log_path)}")
        reply = api.get("api/ecode/templates")
        assert reply.status_code == 200, (
            f"ecode server extension not loaded ({reply.status_code}):\n{_log_tail(lab.log_path)}"
        )


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path, ecode_database_url: str) -> Iterator[Lab]:
    """A real `jupyter lab` on a free port with its own config, data, runtime and root dirs."""
    dirs = {name: tmp_path / name for name in ("config", "data", "runtime", "root", "workspaces")}
    for path in dirs.values():
        path.mkdir()
    token = secrets.token_hex(16)
    config = {
        "ServerApp": {"jpserver_extensions": {"ecode_jupyter": True}},
        "IdentityProvider": {"token": token},
        "EcodeApp": {
            "database_url": ecode_database_url,
            "workspace_root": str(dirs["workspaces"]),
            "owner_name": OWNER,
        },
        # No news toast or update check: nothing to reach, and nothing over the panel.
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        },
    }
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps(config))
    # Nor the "get notified about news?" toast, which would sit over the screenshots.
    notification = dirs["config"] / "lab/user-settings/@jupyterlab/apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
    }
    for name in ("JUPYTER_TOKEN", "ECODE_DATABASE_URL", "ECODE_WORKSPACE_ROOT"):
        env.pop(name, None)
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={dirs['root']}",
    ]
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    log_path = OUTPUT_DIR / f"{request.node.name}-jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=dirs["root"]
        )
        lab = Lab(f"http://127.0.0.1:{port}/", token, process, log_path)
        try:
            _wait_until_ready(lab)
            yield lab
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def browser() -> Iterator[Browser]:
    # Function scope on purpose: Playwright's sync API leaves its loop marked as running in
    # this thread between calls, and pytest-jupyter's autouse per-test loop fixture would pick
    # that loop up and try to close it. Started after that fixture, stopped before it.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    # Uncaught exceptions in the page are bugs; keep them for the assertion and the report.
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    yield page
    context.close()
    (OUTPUT_DIR / f"{request.node.name}-console.log").write_text("\n".join(console + errors))
    assert not errors, f"uncaught errors in the page: {errors}"


def shot(page: Page, name: str) -> Path:
    path = OUTPUT_DIR / name
    page.screenshot(path=str(path))
    return path


def open_lab(page: Page, lab: Lab) -> Locator:
    """Load the lab and return the E-Code sidebar tab once the app is up."""
    page.goto(lab.lab_url)
    tab = page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{PANEL_ID}"]')
    expect(
        tab, "E-Code sidebar tab missing: is the lab extension built and installed?"
    ).to_be_visible(timeout=UI_TIMEOUT_MS * 2)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)
    # The layout is restored (and focus moved around) after the splash goes; let it settle.
    page.wait_for_load_state("networkidle")
    return tab


def run_palette_command(page: Page, label: str) -> None:
    """Run a command the way a keyboard user does: Ctrl+Shift+C, type, Enter."""
    search = page.locator(".jp-ModalCommandPalette .lm-CommandPalette-input")
    first_item = page.locator(".jp-ModalCommandPalette .lm-CommandPalette-item").first
    attempts = 3
    for attempt in range(1, attempts + 1):
        # From the page itself, not from a text field, as after a fresh load.
        page.evaluate("() => document.activeElement?.blur()")
        page.keyboard.press("Control+Shift+C")
        try:
            expect(search).to_be_visible(timeout=5_000)
            search.fill(label, timeout=5_000)
            expect(first_item).to_contain_text(label, timeout=5_000)
            search.press("Enter", timeout=5_000)
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


def project_names(api: httpx.Client) -> list[str]:
    reply = api.get("api/ecode/projects")
    assert reply.status_code == 200, reply.text
    return [p["name"] for p in reply.json()["projects"]]


def test_sidebar_lists_rest_projects_and_creates_one(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        templates = api.get("api/ecode/templates").json()["templates"]
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

        alpha = panel.locator(".jp-EcodeProject", has_text="REST alpha")
        expect(alpha).to_contain_text(f"@{OWNER}/rest-alpha")
        expect(alpha.locator(".jp-EcodeProject-template")).to_have_text(template["id"])
        expect(panel.locator(".jp-EcodeProject", has_text="REST beta")).to_contain_text(
            f"@{OWNER}/rest-beta"
        )
        expect(panel.get_by_role("heading", name="Your projects (2)")).to_be_visible()
        shot(page, "sidebar-projects.png")

        # The form: every field reachable by its label, templates from the server.
        name = panel.get_by_label("Name")
        template_select = panel.get_by_label("Template")
        prompt = panel.get_by_label("Prompt (optional)")
        expect(prompt).to_have_attribute("placeholder", "Describe the app you want…")
        expect(template_select.locator("option")).to_have_count(len(templates) + 1)
        name.fill("Browser made")
        template_select.select_option(template["id"])
        expect(panel.locator(".jp-EcodeField-help").first).to_have_text(template["description"])
        panel.get_by_role("button", name="Create project").click()

        expect(panel.get_by_role("status")).to_have_text(
            f"Created “Browser made” (@{OWNER}/browser-made)."
        )
        made = panel.locator(".jp-EcodeProject", has_text="Browser made")
        expect(made).to_contain_text(f"@{OWNER}/browser-made")
        expect(made.locator(".jp-EcodeProject-template")).to_have_text(template["id"])
        expect(name).to_have_value("")
        shot(page, "sidebar-created.png")
        listed = {p["name"]: p for p in api.get("api/ecode/projects").json()["projects"]}
        assert listed["Browser made"]["template"] == template["id"]
        assert listed["Browser made"]["owner"] == OWNER

        # A name the server refuses: its message is shown, the field marked, nothing created.
        name.fill("x" * 101)
        panel.get_by_role("button", name="Create project").click()
        alert = panel.get_by_role("alert")
        expect(alert).to_have_text("name is too long (at most 100 characters)")
        expect(name).to_have_attribute("aria-invalid", "true")
        expect(name).to_be_focused()
        shot(page, "sidebar-error.png")

        # An empty name is caught before any request.
        name.fill("   ")
        panel.get_by_role("button", name="Create project").click()
        expect(alert).to_have_text("Give the project a name.")
        assert sorted(project_names(api)) == ["Browser made", "REST alpha", "REST beta"]


def test_sidebar_keyboard_palette_and_dark_theme(lab: Lab, page: Page) -> None:
    with lab.api() as api:
        open_lab(page, lab)
        panel = page.locator(f"#{PANEL_ID}")

        # "E-Code: New project" opens the sidebar with the keyboard in the name field.
        run_palette_command(page, "E-Code: New project")
        expect(panel).to_be_visible()
        name = panel.get_by_label("Name")
        expect(name).to_be_focused()
        page.keyboard.type("Keyboard made")
        page.keyboard.press("Enter")
        expect(panel.locator(".jp-EcodeProject", has_text="Keyboard made")).to_be_visible()
        assert project_names(api) == ["Keyboard made"]

        # A project made elsewhere shows after "E-Code: Refresh projects".
        create_via_rest(api, {"name": "Made elsewhere"})
        run_palette_command(page, "E-Code: Refresh projects")
        expect(panel.locator(".jp-EcodeProject", has_text="Made elsewhere")).to_be_visible()
        shot(page, "sidebar-light.png")
        light = panel.evaluate("node => getComputedStyle(node).backgroundColor")

        # Dark theme: the panel follows the theme's variables.
        reply = api.put(
            "lab/api/settings/@jupyterlab/apputils-extension:themes",
            json={"raw": json.dumps({"theme": "JupyterLab Dark"})},
        )
        assert reply.status_code == 204, reply.text
        open_lab(page, lab)
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        run_palette_command(page, "E-Code: Open sidebar")
        expect(panel.locator(".jp-EcodeProject", has_text="Made elsewhere")).to_be_visible()
        dark = panel.evaluate("node => getComputedStyle(node).backgroundColor")
        assert dark != light
        shot(page, "sidebar-dark.png")
