"""``check_app``: the project's running app in a real browser, driven by a short script.

Headless Chromium (Playwright with Debian's ``chromium``; ``ECODE_CHROMIUM`` points elsewhere)
opens the preview on loopback, follows the steps, and answers what a user would have seen:
which steps held, a screenshot (an MCP image block, also saved in the workspace under
``.ecode/outputs/``), console errors, uncaught page errors and failed requests. The page may
reach the app's own origin and public hosts (a CDN, as a user's browser would; the app itself
shares the host's network anyway), but no other loopback, private or link-local address: those
requests are blocked and reported, so an app's page cannot use the browser to probe the
server's other ports or the local network.

Steps (each a small object; unknown fields are refused)::

    {"action": "visit", "path": "/"}                       # default when no steps are given
    {"action": "click", "selector": "#add"}                # CSS, or text=Add, role=button[name=Add]
    {"action": "fill", "selector": "input[name=title]", "value": "milk"}
    {"action": "expect_text", "text": "milk"}              # anywhere in the page (or in selector)
    {"action": "expect_status", "status": 200}             # of the last visit's answer

A check ``passed`` when every step held and the page threw no uncaught error.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urljoin, urlsplit

from mcp.server.mcpserver import Context
from mcp_types import ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from ecode_jupyter.exceptions import EcodeError, InvalidInput
from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS
from ecode_jupyter.workspace.writer import atomic_write_bytes

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

log = logging.getLogger(__name__)

OUTPUTS_DIR = ".ecode/outputs"
MAX_STEPS = 20
#: per step, and for the whole check (seconds)
STEP_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 60.0
# What one check reports at most of each kind of problem, and of each message.
MAX_PROBLEMS = 20
MAX_MESSAGE_CHARS = 500


class BrowserUnavailable(EcodeError):
    """Playwright or Chromium is missing on this server."""

    status = 503
    code = "browser_unavailable"


class Step(BaseModel):
    """One step of a browser workflow."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["visit", "click", "fill", "expect_text", "expect_status"]
    path: str | None = Field(default=None, description="visit: path on the app, e.g. / or /todos.")
    selector: str | None = Field(
        default=None, description="click/fill (and optionally expect_text): a Playwright selector."
    )
    value: str | None = Field(default=None, description="fill: the text to type.")
    text: str | None = Field(default=None, description="expect_text: text the page must show.")
    status: int | None = Field(
        default=None, description="expect_status: the last visit's HTTP status."
    )


@dataclass
class BrowserReport:
    """What one check saw; ``to_json`` is what the caller gets as text."""

    url: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    screenshot: bytes | None = None
    screenshot_path: str | None = None
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(step["ok"] for step in self.steps) and not self.page_errors

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "url": self.url,
            "steps": self.steps,
            "page_errors": self.page_errors,
            "console_errors": self.console_errors,
            "failed_requests": self.failed_requests,
            "blocked_requests": self.blocked_requests,
            "screenshot": self.screenshot_path,
            "duration_s": round(self.duration_s, 2),
        }


async def _is_public(url: str, cache: dict[str, bool]) -> bool:
    """Whether ``url`` names a host whose every address is a global (public) one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https", "ws", "wss") or not host:
        return False
    if host not in cache:
        if host == "localhost" or host.endswith(".localhost"):
            cache[host] = False
        else:
            try:
                cache[host] = ipaddress.ip_address(host).is_global
            except ValueError:  # a name: every address it resolves to must be public
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
                except OSError:
                    infos = []
                addresses = {str(info[4][0]) for info in infos}
                cache[host] = bool(addresses) and all(
                    ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses
                )
    return cache[host]


def _note(bucket: list[str], message: str) -> None:
    if len(bucket) < MAX_PROBLEMS:
        bucket.append(message[:MAX_MESSAGE_CHARS])


async def run_browser_check(base_url: str, steps: list[Step]) -> BrowserReport:
    """Open ``base_url`` (the app's root on loopback) in headless Chromium and follow ``steps``."""
    try:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright, expect
    except ImportError as exc:
        msg = "check_app needs Playwright: pip install 'ecode-jupyter[browser]'"
        raise BrowserUnavailable(msg) from exc
    if not CHROMIUM.exists():
        msg = f"check_app needs Chromium at {CHROMIUM} (apt-get install chromium; ECODE_CHROMIUM)"
        raise BrowserUnavailable(msg)
    report = BrowserReport(url=base_url)
    origin = urlsplit(base_url)._replace(path="", query="", fragment="").geturl()
    started = time.monotonic()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1024, "height": 720})

            public: dict[str, bool] = {}

            async def only_the_app(route: Any) -> None:
                url = route.request.url
                if (
                    url.startswith((origin + "/", "data:", "blob:"))
                    or url == origin
                    or await _is_public(url, public)
                ):
                    await route.continue_()
                else:
                    _note(report.blocked_requests, url)
                    await route.abort("blockedbyclient")

            await context.route("**/*", only_the_app)
            page = await context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_S * 1000)
            page.on(
                "console",
                lambda m: _note(report.console_errors, m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: _note(report.page_errors, str(e)))
            page.on(
                "requestfailed",
                lambda r: (
                    None
                    if r.url in report.blocked_requests
                    else _note(report.failed_requests, f"{r.method} {r.url}: {r.failure}")
                ),
            )
            page.on(
                "response",
                lambda r: (
                    _note(report.failed_requests, f"{r.request.method} {r.url}: {r.status}")
                    if r.status >= 400
                    else None
                ),
            )
            last_status: int | None = None
            for step in steps or [Step(action="visit", path="/")]:
                entry: dict[str, Any] = step.model_dump(exclude_none=True)
                try:
                    if step.action == "visit":
                        target = urljoin(base_url, (step.path or "/").lstrip("/"))
                        response = await page.goto(target, wait_until="load")
                        last_status = response.status if response is not None else None
                        entry["status"] = last_status
                        if last_status is not None and last_status >= 500:
                            problem = f"the page answered {last_status}"
                            raise AssertionError(problem)
                    elif step.action == "click":
                        await page.locator(_required(step.selector, "selector")).first.click()
                        # Let the click's handlers (and any request they start) run.
                        await page.wait_for_load_state("networkidle")
                    elif step.action == "fill":
                        value = _required(step.value, "value")
                        await page.locator(_required(step.selector, "selector")).first.fill(value)
                    elif step.action == "expect_text":
                        where = page.locator(step.selector or "body").first
                        await expect(where).to_contain_text(
                            _required(step.text, "text"), timeout=STEP_TIMEOUT_S * 1000
                        )
                    elif step.action == "expect_status":
                        wanted = step.status if step.status is not None else 200
                        if last_status != wanted:
                            problem = f"the status was {last_status}, not {wanted}"
                            raise AssertionError(problem)
                    entry["ok"] = True
                except (PlaywrightError, AssertionError) as exc:
                    entry["ok"] = False
                    entry["error"] = str(exc).split("\nCall log:")[0][:MAX_MESSAGE_CHARS]
                report.steps.append(entry)
                if not entry["ok"]:
                    break
            try:
                report.screenshot = await page.screenshot(type="png")
            except PlaywrightError:
                log.info("check_app: no screenshot of %s", base_url, exc_info=True)
        finally:
            await browser.close()
    report.duration_s = time.monotonic() - started
    return report


def _required(value: str | None, name: str) -> str:
    if value is None:
        msg = f"this step needs {name!r}"
        raise AssertionError(msg)
    return value


def register(layer: ToolLayer) -> None:
    @layer.mcp.tool(
        annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False),
        structured_output=False,
    )
    async def check_app(
        project: Annotated[str, Field(description="The project id.")],
        steps: Annotated[
            list[Step] | None,
            Field(
                description=f"The workflow, at most {MAX_STEPS} steps; default: visit /.",
                max_length=MAX_STEPS,
            ),
        ] = None,
        ctx: Context | None = None,
    ) -> list[TextContent | ImageContent]:
        """Open the project's running preview in a headless browser, follow the steps (visit,
        click, fill, expect_text, expect_status; each step waits up to 10 s, the check 60 s)
        and return whether they held (JSON: passed, steps, page_errors, console_errors,
        failed_requests), with a PNG screenshot of the page at the end. Starts the preview
        when it is not running. The app's own URLs and public hosts load; other local
        addresses are blocked."""
        proj, caller = await layer.open(ctx, project, write=True)
        if layer.preview is None:
            msg = "previews are not available in this server, so there is no app to check"
            raise InvalidInput(msg)
        status = await layer.preview.status(caller.user, proj.id)
        running = status.get("preview") if status.get("status") == "running" else None
        if not isinstance(running, dict) or not running.get("local_url"):
            # Not running: start it as start_preview would (a running one is never replaced).
            running = await layer.preview.start(caller.user, proj.id, None, False)
        base_url = str(running.get("local_url") or "")
        if not base_url:
            msg = "the preview has no local URL to open"
            raise InvalidInput(msg)
        await layer.audit(caller, proj, "check_app", {"steps": len(steps or [])})
        try:
            report = await asyncio.wait_for(
                run_browser_check(base_url, list(steps or [])), CHECK_TIMEOUT_S
            )
        except TimeoutError as exc:
            msg = f"the browser check took longer than {CHECK_TIMEOUT_S:g} s"
            raise InvalidInput(msg) from exc
        blocks: list[TextContent | ImageContent] = []
        if report.screenshot is not None:
            rel = f"{OUTPUTS_DIR}/check_app-{uuid.uuid4().hex[:12]}.png"
            await asyncio.to_thread(atomic_write_bytes, proj.workspace / rel, report.screenshot)
            report.screenshot_path = rel
            blocks.append(
                ImageContent(
                    type="image",
                    data=base64.b64encode(report.screenshot).decode(),
                    mime_type="image/png",
                )
            )
        blocks.insert(0, TextContent(type="text", text=json.dumps(report.to_json(), indent=1)))
        return blocks
