"""alice builds a project from the E-Code sidebar of her own Lab on the hub, in headless Chromium.

She logs in at the hub with her password (DummyAuthenticator), lands in her Lab at
``/user/alice/lab``, and asks for "a greeting module" with the model the service offers: the
service's loopback Anthropic model (``model_turns`` in conftest), whose key only the service
holds. Her server forwards the sidebar's REST calls and relays the run's feed WebSocket (with
the browser's hub login cookie, not a token) to the service; the agent's tool calls write the
files in her server, where her Lab file browser shows them. Nothing the service holds may reach
her page.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, WebSocket, expect, sync_playwright

from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS

from .conftest import MODEL_KEY, Hub

pytestmark = [pytest.mark.hub, pytest.mark.browser]

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "hub"
PANEL_ID = "ecode-projects-panel"
PROMPT = "a greeting module"
# A cold Lab page behind the hub's proxy on a busy 2-core machine takes a few seconds.
UI_TIMEOUT_MS = 30_000
# Four model turns, two pytest runs in alice's server: ~10 s here, more on a busy runner.
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    # Function scope, as in tests/ui: Playwright's sync API leaves its loop marked as running
    # in this thread, which pytest-jupyter's per-test loop fixture would otherwise pick up.
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))

    def failed_response(response: Response) -> None:
        # The console says only "404"; which address it was helps whoever reads the log.
        if response.status >= 400:
            console.append(f"response: {response.status} {response.request.method} {response.url}")

    page.on("response", failed_response)
    yield page
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUTPUT_DIR / f"{request.node.name}-console.log").write_text("\n".join(console))
    context.close()


@contextlib.contextmanager
def screenshot_on_failure(page: Page, name: str, hub: Hub) -> Iterator[None]:
    """What the page looked like when the test gave up, and the hub's log, in test-output/."""
    try:
        yield
    except BaseException:
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(OUTPUT_DIR / f"{name}-failed.png"))
        (OUTPUT_DIR / f"{name}-hub.log").write_text(hub.log_tail(400))
        raise


def hub_login(page: Page, hub: Hub, user: str) -> None:
    """Log in at the hub's login page as a person does; the hub sends them to their server."""
    page.goto(f"{hub.url}hub/login")
    page.get_by_label("Username:").fill(user)
    page.get_by_label("Password:").fill("any password will do")
    page.get_by_role("button", name="Sign in").click()


def test_alice_builds_a_project_from_the_sidebar_of_her_lab_on_the_hub(
    hub: Hub, page: Page
) -> None:
    # What her server says the service would run a prompt with: the service's Anthropic
    # model (only the service has its key), never the offline templates.
    models = hub.ecode("GET", "agent/models", user="alice")
    assert models.status_code == 200, models.text
    default = models.json()["default"]
    assert default["provider"] == "anthropic", models.json()
    assert "anthropic" in models.json()["providers"]
    priced = {p["model"] for p in hub.ecode("GET", "billing/prices", user="alice").json()["models"]}
    assert default["model"] in priced, (default, sorted(priced))
    before = {p["id"] for p in hub.ecode("GET", "projects", user="alice").json()["projects"]}

    # The run feed's sockets, and what arrived on them: the feed must come live through
    # alice's server (which relays it from the service), not only from a REST catch-up.
    feed_sockets: dict[str, list[str]] = {}

    def on_socket(socket: WebSocket) -> None:
        if "/api/ecode/runs/" not in socket.url:
            return
        frames = feed_sockets.setdefault(socket.url, [])
        socket.on(
            "framereceived",
            lambda payload: frames.append(
                payload if isinstance(payload, str) else payload.decode(errors="replace")
            ),
        )

    page.on("websocket", on_socket)

    with screenshot_on_failure(page, "hub-sidebar-flow", hub):
        hub_login(page, hub, "alice")
        # The hub sends her to her running server, whose default URL is Lab; Lab itself then
        # logs her in with the hub's OAuth (a cookie, no token in the page's URLs).
        expect(page).to_have_url(
            re.compile(rf"^{re.escape(hub.url)}user/alice/lab"), timeout=UI_TIMEOUT_MS
        )
        tab = page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{PANEL_ID}"]')
        expect(tab, "E-Code sidebar tab missing in alice's Lab").to_be_visible(
            timeout=UI_TIMEOUT_MS * 2
        )
        expect(page.locator("#jupyterlab-splash")).to_have_count(0)
        page.wait_for_load_state("networkidle")

        panel = page.locator(f"#{PANEL_ID}")
        if not panel.is_visible():
            tab.click()
        expect(panel).to_be_visible()
        panel.get_by_label("Describe the app you want").fill(PROMPT)
        # The picker offers the service's default (an Anthropic model) and its price.
        picker = panel.get_by_label("Model")
        expect(picker.locator("option").first).to_have_text(f"Server default ({default['model']})")
        picker.select_option(default["model"])
        expect(panel.locator(".jp-EcodeCost")).to_contain_text(
            f"for a typical run with {default['model']}"
        )
        panel.get_by_role("button", name="Create project").click()
        # A priced model: the sidebar asks first.
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text(f"Start a run with {default['model']}?")
        dialog.get_by_role("button", name="Go ahead").click()

        # The feed reaches its end over the WebSocket her server relays from the service.
        # (Creating may first start the project's own server on the hub: seconds, not 5.)
        expect(panel.locator(".jp-EcodeFeed-title")).to_have_text(
            "A greeting module", timeout=RUN_TIMEOUT_MS
        )
        status = panel.locator(".jp-EcodeFeed-status .jp-EcodeRunStatus")
        expect(status).to_have_text("Completed", timeout=RUN_TIMEOUT_MS)
        # Not the offline provider: the model ran, in the service.
        expect(panel.locator(".jp-EcodeFeed-offline")).to_have_count(0)
        feed = panel.get_by_role("feed", name="Agent activity")
        feed.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        expect(panel.locator(".jp-EcodeEnd")).to_contain_text("Completed")
        page.screenshot(path=str(OUTPUT_DIR / "hub-feed-completed.png"))

        made = [
            p
            for p in hub.ecode("GET", "projects", user="alice").json()["projects"]
            if p["id"] not in before
        ]
        assert [p["name"] for p in made] == ["A greeting module"], made
        project_id = made[0]["id"]
        runs = hub.ecode("GET", f"projects/{project_id}/runs", user="alice").json()["runs"]
        assert [(r["provider"], r["status"]) for r in runs] == [("anthropic", "completed")]
        assert hub.model.requests, "the service never called the loopback model"
        # Live over the socket of her own server, authenticated by her login cookie (no
        # token in the address), with the run's last event among what it carried.
        ws_base = f"ws{hub.url[4:]}user/alice/api/ecode/runs/{runs[0]['id']}/events"
        relayed = {url: f for url, f in feed_sockets.items() if url.startswith(ws_base)}
        assert relayed, f"no feed socket to {ws_base}: {sorted(feed_sockets)}"
        assert not any("token=" in url for url in relayed), sorted(relayed)
        types = [json.loads(f).get("type") for frames in relayed.values() for f in frames]
        assert "run.completed" in types, types

        # The files are in alice's server, where her Lab's file browser shows them.
        view = page.locator(".jp-EcodeProjectView", has_text="A greeting module")
        view.get_by_role("tab", name="Files").click()
        view.get_by_role("button", name="Show in file browser").click()
        crumbs = page.locator(".jp-FileBrowser .jp-BreadCrumbs")
        expect(crumbs).to_contain_text("ecode-projects")
        expect(crumbs).to_contain_text(project_id)
        listing = page.locator(".jp-FileBrowser .jp-DirListing-content")
        for name in ("app.py", "tests"):
            expect(listing.locator(".jp-DirListing-item", has_text=name).first).to_be_visible()
        workspace = hub.workspace("alice", project_id)
        assert (workspace / "app.py").stat().st_uid == hub.homes["alice"].stat().st_uid
        page.screenshot(path=str(OUTPUT_DIR / "hub-files.png"))

        # Nothing the service holds is in her page: not in its HTML, not in the page config
        # Lab's code reads, not in what the sidebar fetched (the model list, the prices).
        html = page.evaluate("() => document.documentElement.outerHTML")
        page_config = page.evaluate(
            "() => document.getElementById('jupyter-config-data')?.textContent ?? ''"
        )
        assert json.loads(page_config)["baseUrl"] == "/user/alice/"
        fetched = page.evaluate(
            """async () => {
                const settings = JSON.parse(
                    document.getElementById('jupyter-config-data').textContent);
                const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
                const out = [];
                for (const path of ['agent/models', 'billing/prices', 'billing/account']) {
                    const reply = await fetch(settings.baseUrl + 'api/ecode/' + path,
                        {headers: {'X-XSRFToken': xsrf}});
                    out.push(reply.status + ' ' + await reply.text());
                }
                return out.join('\\n');
            }"""
        )
        assert fetched.count("200 ") == 3, fetched
        assert hub.secrets_key and hub.ecode_token  # non-empty, so "not in" means something
        for seen in (html, page_config, fetched):
            assert MODEL_KEY not in seen
            assert hub.secrets_key not in seen
            assert hub.ecode_token not in seen
            assert hub.service_token not in seen
            assert "sk-ant-" not in seen
