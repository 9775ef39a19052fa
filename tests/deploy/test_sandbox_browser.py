"""In real Chromium: an app page cannot read the lab's cookies or call Jupyter's API, while
its own parts (a script, a fetch of its own data) load through the keyed URL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip(f"Chromium not found at {CHROMIUM}", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


PROBE_APP = '''
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<!doctype html><html><body><h1>probe</h1><script src='probe.js'></script></body></html>"
SCRIPT = b"""
const r = {script: true, origin: String(self.origin)};
try { r.cookie = document.cookie; } catch (e) { r.cookie = 'blocked:' + e.name; }
try { r.storage = String(localStorage.length); } catch (e) { r.storage = 'blocked:' + e.name; }
try { r.parent = parent.document.cookie; } catch (e) { r.parent = 'blocked:' + e.name; }
const jupyter = location.pathname.split('ecode/apps/')[0] + 'api/contents';
fetch(jupyter, {credentials: 'include'})
  .then(x => { r.api = 'read:' + x.status; })
  .catch(() => { r.api = 'blocked'; })
  .then(() => fetch('data.json'))
  .then(x => x.json()).then(d => { r.own = d.ok; })
  .catch(e => { r.own = 'failed:' + e; })
  .finally(() => { parent.postMessage(r, '*'); document.title = JSON.stringify(r); });
"""


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        body, kind = {"/": (PAGE, "text/html"), "/probe.js": (SCRIPT, "text/javascript"),
                      "/data.json": (json.dumps({"ok": True}).encode(), "application/json")
                      }.get(path, (b"missing", "text/plain"))
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
'''


# Run on a page: frame ``src`` (as the Preview tab does) and wait for the probe's report.
FRAME_AND_REPORT = """(src) => new Promise((resolve) => {
    window.addEventListener('message', (e) => resolve(e.data));
    const frame = document.createElement('iframe');
    frame.src = src;
    document.body.appendChild(frame);
    setTimeout(() => resolve({timeout: true}), 20000);
})"""


async def start_probe(
    ecode_api: Any, write_files: Callable[[Path, dict[str, str]], None], root: Path, name: str
) -> tuple[str, dict[str, Any]]:
    """A project running ``PROBE_APP`` as its preview: its id and deployment."""
    r = await ecode_api("POST", "projects", body={"name": name})
    pid = r.body["id"]
    write_files(root / pid, {"probe.py": PROBE_APP})
    dep = await ecode_api(
        "POST", f"projects/{pid}/deployments", body={"command": "python probe.py"}
    )
    assert dep.body["status"] == "running", dep.body
    return pid, dep.body


async def test_an_app_page_cannot_reach_the_lab(
    ecode_api: Any,
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
    write_files: Callable[[Path, dict[str, str]], None],
    ecode_workspace_root: Path,
) -> None:
    pid, dep = await start_probe(ecode_api, write_files, ecode_workspace_root, "Probe")
    origin = f"http://127.0.0.1:{jp_http_port}"
    token = jp_serverapp.identity_provider.token

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            # Signing in with the token leaves the lab's login cookie in the browser.
            await page.goto(f"{origin}{jp_base_url}api/status?token={token}")
            cookies = await page.context.cookies()
            assert any(c["name"].startswith("username-") for c in cookies)
            # Any Jupyter HTML page stands in for the lab (its 404 page has Jupyter's usual
            # CSP); it frames the preview, as the Preview tab does, and waits for its report.
            await page.goto(f"{origin}{jp_base_url}lab-stand-in")
            me = await page.evaluate(f"fetch('{jp_base_url}api/me').then(r => r.json())")
            # That browser user may open alice's (private) app: make them an editor.
            shared = await ecode_api(
                "PUT",
                f"projects/{pid}/members/{me['identity']['username']}",
                body={"role": "editor"},
            )
            assert shared.status == 200, shared.body
            result = await page.evaluate(FRAME_AND_REPORT, origin + dep["entry_url"])
            assert result.get("script") is True, result
            assert result["origin"] == "null"
            assert result["cookie"].startswith("blocked:") or result["cookie"] == ""
            assert result["storage"].startswith("blocked:")
            assert result["parent"].startswith("blocked:")
            assert result["api"] == "blocked"
            assert result["own"] is True  # its own data, fetched from the opaque origin

            # Opened on its own (new tab), the page is just as walled off.
            tab = await browser.new_page()
            await tab.context.add_cookies(cookies)
            await tab.goto(origin + dep["entry_url"])
            await tab.wait_for_function("document.title.startsWith('{')", timeout=20000)
            alone = json.loads(await tab.title())
            assert alone["origin"] == "null" and alone["api"] == "blocked"
            assert alone["own"] is True
        finally:
            await browser.close()
