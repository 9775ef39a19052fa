"""The Node templates built from a prompt by the offline provider: npm install, their own tests
(`npm test`) run by the suite, a preview through the proxy and a clean page in a browser.

Each run installs the template's npm packages from the registry (its own npm cache lives in
the project's sandboxed home): skipped with the reason when the registry cannot be reached.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from ecode_jupyter.testing.browser import CHROMIUM

from .feed import events, of_type, wait_final


@functools.cache
def npm_registry_problem() -> str | None:
    """Why npm packages cannot be installed here, or None (asked once per test session)."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    try:
        subprocess.run([npm, "ping"], capture_output=True, timeout=20, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"the npm registry is unreachable ({type(exc).__name__})"
    return None


@pytest.fixture
def agent_config() -> dict[str, Any]:
    # npm install is the offline provider's step for a Node template: on here.
    return {"agent_offline_installs": True, "agent_max_wall_time_s": 280.0}


@pytest.fixture(autouse=True)
def _npm_registry() -> None:
    problem = npm_registry_problem()
    if problem is not None:
        pytest.skip(problem)


async def build(ecode_api: Any, prompt: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    made = await ecode_api("POST", "projects", body={"name": "app", "prompt": prompt})
    assert made.status == 201, made.body
    run = await wait_final(ecode_api, made.body["run"]["id"])
    return run, await events(ecode_api, run["id"])


async def through_proxy(jp_http_port: int, url: str, **request: Any) -> Any:
    full = url if url.startswith("http") else f"http://127.0.0.1:{jp_http_port}{url}"
    return await AsyncHTTPClient().fetch(full, raise_error=False, request_timeout=30, **request)


def verified(feed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in of_type(feed, "verify.result")]


@pytest.mark.browser
async def test_an_express_api_prompt_builds_tests_and_previews_the_template(
    ecode_api: Any, jp_http_port: int
) -> None:
    run, feed = await build(ecode_api, "an Express API for todos")
    assert run["status"] == "completed", (run, [e["data"] for e in feed][-4:])
    plan = of_type(feed, "plan")[0]["data"]["text"]
    assert "'express-api'" in plan and "no AI is used" in plan
    commands = [e["data"]["arguments"].get("command") for e in of_type(feed, "tool.call")]
    assert "npm install --no-audit --no-fund" in commands
    # The suite ran the project's own tests with npm, and they passed (node --test, 3 tests).
    [check] = verified(feed)
    assert (check["kind"], check["command"], check["passed"]) == ("npm", "CI=true npm test", True)
    assert "pass 3" in check["output_tail"]

    preview = run["summary"]["preview"]
    assert preview["status"] == "running"
    health = await through_proxy(jp_http_port, preview["url"] + "health")
    assert health.code == 200 and json.loads(health.body) == {"status": "ok"}
    created = await through_proxy(
        jp_http_port,
        preview["url"] + "todos",
        method="POST",
        body=json.dumps({"title": "ship it"}),
        headers={"Content-Type": "application/json"},
    )
    assert created.code == 201 and json.loads(created.body)["title"] == "ship it"
    await ecode_api("DELETE", f"projects/{run['project_id']}/deployments")


@pytest.mark.browser
async def test_a_react_dashboard_prompt_builds_tests_and_previews_the_template(
    ecode_api: Any, jp_http_port: int
) -> None:
    run, feed = await build(ecode_api, "a React dashboard of sales")
    assert run["status"] == "completed", (run, [e["data"] for e in feed][-4:])
    [check] = verified(feed)
    assert (check["kind"], check["passed"]) == ("npm", True)
    assert "5 passed" in check["output_tail"]  # vitest: data and SummaryCards

    preview = run["summary"]["preview"]
    page = await through_proxy(jp_http_port, preview["url"])
    assert page.code == 200 and b'<div id="root">' in page.body
    # The built page links its assets relatively, so they load below the proxy's prefix.
    script = page.body.decode().split('src="./', 1)[1].split('"', 1)[0]
    asset = await through_proxy(jp_http_port, preview["url"] + script)
    assert asset.code == 200 and b"chart" in asset.body.lower()
    if CHROMIUM.exists():
        # The suite opened the page in a browser and it rendered without errors.
        browser = [
            json.loads(e["data"]["output"].split("\n[image")[0])
            for e in of_type(feed, "tool.result")
            if e["data"]["name"] == "check_app"
        ]
        assert browser and browser[-1]["passed"] is True and not browser[-1]["console_errors"]
    await ecode_api("DELETE", f"projects/{run['project_id']}/deployments")
