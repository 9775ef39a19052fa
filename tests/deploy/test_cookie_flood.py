"""An app that floods the browser's cookie jar cannot log its user out of Jupyter.

Regression test for issue 17 (4): an app route that set 200 cookies made Chromium evict
Jupyter's login and ``_xsrf`` cookies (Chromium keeps about 180 per host), and Jupyter's API
answered 403.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.deploy.proxy import MAX_SET_COOKIE_BYTES, MAX_SET_COOKIES
from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS

from .apps import COOKIE_FLOOD

Write = Callable[[Path, dict[str, str]], None]
# Ten visits of 200 new cookies each: 2,000 cookies offered, over ten times Chromium's limit.
VISITS = 10


async def _flood_preview(ecode_api: Any, write_files: Write, root: Path) -> dict[str, Any]:
    r = await ecode_api("POST", "projects", body={"name": "Cookie flood"})
    assert r.status == 201, r.body
    write_files(root / r.body["id"], {"flood.py": COOKIE_FLOOD})
    dep = await ecode_api(
        "POST", f"projects/{r.body['id']}/deployments", body={"command": "python flood.py"}
    )
    assert dep.status == 201 and dep.body["status"] == "running", dep.body
    return dict(dep.body)


async def test_an_answer_passes_few_small_low_priority_cookies(
    ecode_api: Any, app_fetch: Any, write_files: Write, ecode_workspace_root: Path
) -> None:
    dep = await _flood_preview(ecode_api, write_files, ecode_workspace_root)
    answer = await app_fetch(dep["url"])
    assert answer.code == 200, answer.text
    cookies = answer.headers.get_list("Set-Cookie")
    prefix = dep["url"].rstrip("/")
    assert len(cookies) == MAX_SET_COOKIES
    for cookie in cookies:
        assert len(cookie) <= MAX_SET_COOKIE_BYTES + 200
        # The first 20 of the app's 200 (its start-up check saw an answer of its own before).
        assert re.match(r"c\d+_1?\d=", cookie) and f"Path={prefix}/" in cookie
        assert cookie.endswith("; Priority=Low")
    assert not any(c.startswith(("big=", "_xsrf=", "username-")) for c in cookies)


@pytest.mark.browser
async def test_jupyter_login_survives_a_cookie_flood_in_chromium(
    ecode_api: Any,
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    playwright_api = pytest.importorskip("playwright.async_api")
    dep = await _flood_preview(ecode_api, write_files, ecode_workspace_root)
    lab = f"http://127.0.0.1:{jp_http_port}"
    token = jp_serverapp.identity_provider.token
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            # Signing in leaves Jupyter's login and _xsrf cookies in the browser.
            await page.goto(f"{lab}{jp_base_url}api/status?token={token}")
            await page.goto(f"{lab}{jp_base_url}tree")
            names = {c["name"] for c in await context.cookies()}
            login = next(n for n in names if n.startswith("username-"))
            assert "_xsrf" in names
            for _ in range(VISITS):
                visit = await page.goto(lab + dep["url"])
                assert visit is not None and visit.status == 200
            jar = {c["name"] for c in await context.cookies()}
            assert login in jar and "_xsrf" in jar
            # And the user is still signed in: a write to Jupyter's API with its XSRF token.
            await page.goto(f"{lab}{jp_base_url}tree")
            status = await page.evaluate(
                """async (api) => {
                    const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
                    const r = await fetch(api, {method: 'POST', headers: {
                        'X-XSRFToken': decodeURIComponent(xsrf.slice(6)),
                        'Content-Type': 'application/json'}, body: '{"type": "directory"}'});
                    return r.status;
                }""",
                f"{jp_base_url}api/contents",
            )
            assert status == 201
        finally:
            await browser.close()
