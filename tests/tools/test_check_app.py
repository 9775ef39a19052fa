"""check_app over MCP: a Flask page whose button throws is caught in a real browser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp_types import ImageContent

from ecode_jupyter.testing.browser import CHROMIUM

from .conftest import McpConnect, error_of, text_of

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM}: apt-get install chromium"
    ),
]

PAGE = """\
<!doctype html><title>Todos</title>
<input name="title"><button id="add">Add</button><ul id="list"></ul>
<img src="http://127.0.0.1:9/probe.png" alt="">
<script>
document.getElementById("add").onclick = () => {
  const title = document.querySelector("input[name=title]").value;
  %s
};
</script>
"""
BROKEN = "document.getElementByld('list').innerHTML += '<li>' + title + '</li>';"

APP = """\
from flask import Flask

app = Flask(__name__)
PAGE = %r


@app.get("/")
def index():
    return PAGE
"""

WORKFLOW = [
    {"action": "visit", "path": "/"},
    {"action": "expect_status", "status": 200},
    {"action": "fill", "selector": "input[name=title]", "value": "buy milk"},
    {"action": "click", "selector": "#add"},
    {"action": "expect_text", "selector": "#list", "text": "buy milk"},
]


async def test_check_app_catches_a_button_that_throws(
    mcp_connect: McpConnect, ecode_api: Any, make_project: Any
) -> None:
    pid, _ = await make_project("todos")
    async with mcp_connect("alice") as client:
        await client.call_tool(
            "write_file", {"project": pid, "path": "app.py", "content": APP % (PAGE % BROKEN)}
        )
        result = await client.call_tool("check_app", {"project": pid, "steps": WORKFLOW})
        assert not result.is_error, text_of(result)
        report = json.loads(text_of(result))
        assert report["passed"] is False
        # The click did nothing: the browser saw the script's error, the list stayed empty.
        assert any("getElementByld" in e for e in report["page_errors"]), report
        assert [s["ok"] for s in report["steps"]] == [True, True, True, True, False]
        images = [b for b in result.content if isinstance(b, ImageContent)]
        assert images and images[0].mime_type == "image/png"
        assert report["screenshot"].startswith(".ecode/outputs/")

        # The page may not make the browser reach another local port. (The fix, and the
        # same workflow passing, is tests/agent/test_browser_verification.py.)
        assert report["blocked_requests"] == ["http://127.0.0.1:9/probe.png"]

        # Unknown step fields are refused, not ignored.
        bad = await client.call_tool(
            "check_app", {"project": pid, "steps": [{"action": "visit", "url": "http://x/"}]}
        )
        assert bad.is_error
    async with mcp_connect("bob") as client:
        # A stranger cannot point the browser at someone else's app.
        assert error_of(await client.call_tool("check_app", {"project": pid})).startswith(
            "not_found:"
        )
    await ecode_api("DELETE", f"projects/{pid}/deployments")
