"""start_preview / preview_status over MCP: the agent's way to check that the app runs."""

from __future__ import annotations

from typing import Any

from tornado.httpclient import AsyncHTTPClient

from .conftest import McpConnect, error_of


async def test_start_preview_serves_the_flask_template(
    mcp_connect: McpConnect, ecode_api: Any
) -> None:
    made = await ecode_api("POST", "projects", body={"name": "api", "template": "flask-api"})
    pid = made.body["id"]
    async with mcp_connect("alice") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"start_preview", "preview_status"} <= tools
        started = await client.call_tool("start_preview", {"project": pid})
        assert not started.is_error, started
        data = started.structured_content or {}
        assert data["status"] == "running"
        # The agent's commands reach the app on loopback; the app answers its health path.
        resp = await AsyncHTTPClient().fetch(data["local_url"].rstrip("/") + "/health")
        assert resp.code == 200
        status = await client.call_tool("preview_status", {"project": pid})
        assert (status.structured_content or {})["status"] == "running"
    async with mcp_connect("bob") as client:
        # A stranger cannot start or even see another user's preview.
        message = error_of(await client.call_tool("start_preview", {"project": pid}))
        assert message.startswith("not_found:")
    await ecode_api("DELETE", f"projects/{pid}/deployments")
