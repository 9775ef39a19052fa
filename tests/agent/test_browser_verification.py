"""Verification opens a served app in a browser: a page that throws is sent back to the model
and the run completes only once it loads cleanly (through the real Anthropic SDK)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecode_jupyter.testing import text_turn, tool_turn
from ecode_jupyter.testing.browser import CHROMIUM

from .feed import events, of_type, wait_final
from .scripts import use_loopback

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM}: apt-get install chromium"
    ),
]

OLD = '    @app.get("/")\n    def index():\n'
# Browsers get a page; API clients (and the template's tests) still get JSON.
NEW = (
    '    @app.get("/")\n    def index():\n'
    '        if "text/html" in request.headers.get("Accept", ""):\n'
    '            return "<!doctype html><title>Todos</title><ul id=list></ul>'
    "<script>document.getElementByld('list').textContent = 'none yet'</script>\"\n"
)


async def test_a_page_that_throws_is_fixed_before_the_run_completes(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback(
        [
            tool_turn("edit_file", {"path": "app.py", "old_text": OLD, "new_text": NEW}),
            text_turn("The page is there."),
            tool_turn(
                "edit_file",
                {"path": "app.py", "old_text": "getElementByld", "new_text": "getElementById"},
            ),
            text_turn("Fixed the typo."),
        ]
    )
    use_loopback("anthropic", server, monkeypatch)
    project = await ecode_api("POST", "projects", body={"name": "todo", "template": "flask-api"})
    pid = project.body["id"]
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "add a page"})
    run = await wait_final(ecode_api, started.body["id"])
    feed = await events(ecode_api, run["id"])

    assert run["status"] == "completed", run
    checks = [e["data"] for e in of_type(feed, "tool.result") if e["data"]["name"] == "check_app"]
    reports = [json.loads(c["output"].split("\n[image")[0]) for c in checks]
    assert [r["passed"] for r in reports] == [False, True]
    assert "getElementByld" in reports[0]["page_errors"][0]
    assert reports[0]["screenshot"].endswith(".png")
    # The screenshot rides in the feed with its call, for the Lab feed to show.
    images = [c.get("image") for c in checks]
    assert all(i and i["mime_type"] == "image/png" and i["data"] for i in images)
    # What the model was told after its first "done": the browser's error, not "all good".
    told = json.dumps(server.requests[2].json["messages"][-1])
    assert "fails in a browser" in told and "getElementByld" in told
    await ecode_api("DELETE", f"projects/{pid}/deployments")
