"""In real Chromium, through the app gateway (``preview_port``): on ``127.0.0.1:{port}``, a
host name Jupyter is reached by too, an app page stays in the opaque sandbox; on a preview
origin with a host name of its own (``apps.localhost``, which browsers resolve to loopback)
it keeps its origin and storage, and still cannot see the lab's cookies or call its API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.deploy.gateway import AppGateway
from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS

from .conftest import running_gateway
from .test_sandbox_browser import FRAME_AND_REPORT, start_probe

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip(f"Chromium not found at {CHROMIUM}", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture(params=["127.0.0.1", "apps.localhost"])
def preview_host(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ecode_extra_config(preview_host: str, gateway_port: int) -> dict[str, Any]:
    config: dict[str, Any] = {"preview_port": gateway_port, "app_start_timeout_s": 30.0}
    if preview_host != "127.0.0.1":
        config["preview_origin"] = f"http://{preview_host}:{gateway_port}"
    return {"EcodeApp": config}


@pytest.fixture
def gateway(ecode_app: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Iterator[AppGateway]:
    with running_gateway(ecode_app, jp_asyncio_loop) as started:
        yield started


async def test_an_app_page_through_the_gateway(
    preview_host: str,
    gateway: AppGateway,
    ecode_api: Any,
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
    write_files: Callable[[Path, dict[str, str]], None],
    ecode_workspace_root: Path,
) -> None:
    _pid, dep = await start_probe(ecode_api, write_files, ecode_workspace_root, "Probe gateway")
    preview = f"http://{preview_host}:{gateway.port}"
    assert dep["url"].startswith(preview + "/")
    lab = f"http://127.0.0.1:{jp_http_port}"
    token = jp_serverapp.identity_provider.token

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            # Signing in leaves the lab's login and _xsrf cookies for 127.0.0.1 in the browser.
            await page.goto(f"{lab}{jp_base_url}api/status?token={token}")
            await page.goto(f"{lab}{jp_base_url}lab-stand-in")
            await page.evaluate("document.cookie = 'lab_marker=1; path=/'")
            # The lab frames the keyed URL, as the Preview tab does, and waits for the report.
            result = await page.evaluate(FRAME_AND_REPORT, dep["url"])
            assert result.get("script") is True, result
            assert result["own"] is True  # its own data, through the gateway
            assert result["parent"].startswith("blocked:")  # the lab's DOM
            if preview_host == "127.0.0.1":
                # Jupyter's host name: an opaque origin, no cookies or storage at all.
                assert result["origin"] == "null"
                assert result["api"] == "blocked"
                assert result["cookie"].startswith("blocked:") or result["cookie"] == ""
                assert result["storage"].startswith("blocked:")
            else:
                # A host name of its own: the page keeps its origin, and its cookie jar is
                # not the lab's.
                assert result["origin"] == preview
                assert result["api"] == "read:404"  # the gateway serves no Jupyter path
                assert "lab_marker" not in result["cookie"] and "_xsrf" not in result["cookie"]
                # Opened on its own (framed, a cross-site page gets no storage in a browser
                # that blocks third-party cookies), it has storage of its own too.
                tab = await browser.new_page()
                await tab.goto(dep["url"])
                await tab.wait_for_function("document.title.startsWith('{')", timeout=20000)
                alone = json.loads(await tab.title())
                assert alone["origin"] == preview and alone["storage"] == "0"
                assert "lab_marker" not in alone["cookie"] and alone["own"] is True
        finally:
            await browser.close()
