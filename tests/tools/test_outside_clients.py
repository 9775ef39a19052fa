"""What an MCP client outside Jupyter needs: find its project, strict schemas, a proper 401."""

from __future__ import annotations

from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .conftest import McpConnect, error_of


async def test_list_and_resolve_projects_show_only_the_callers(
    mcp_connect: McpConnect, ecode_api: Any
) -> None:
    made = (await ecode_api("POST", "projects", body={"name": "Shop API"})).body
    handle = f"@{made['owner']}/{made['slug']}"
    async with mcp_connect("alice") as client:
        listed = (await client.call_tool("list_projects", {})).structured_content or {}
        mine = [p for p in listed["projects"] if p["id"] == made["id"]]
        assert mine and mine[0]["role"] == "owner" and mine[0]["name"] == "Shop API"
        found = await client.call_tool("resolve_project", {"ref": handle})
        assert (found.structured_content or {})["id"] == made["id"]
        # Without the @, as in "owner/slug", too; anything else is explained.
        plain = await client.call_tool("resolve_project", {"ref": handle[1:]})
        assert (plain.structured_content or {})["id"] == made["id"]
        bad = error_of(await client.call_tool("resolve_project", {"ref": "shop-api"}))
        assert bad.startswith("invalid_input:") and "@owner/slug" in bad
    async with mcp_connect("bob") as client:
        # Another user's project is neither listed nor found, and its id does not leak.
        listed = (await client.call_tool("list_projects", {})).structured_content or {}
        assert made["id"] not in {p["id"] for p in listed["projects"]}
        missing = error_of(await client.call_tool("resolve_project", {"ref": handle}))
        assert missing.startswith("not_found:") and made["id"] not in missing


async def test_unknown_arguments_are_refused_and_the_schemas_say_so(
    mcp_connect: McpConnect, make_project: Any
) -> None:
    pid, _ = await make_project()
    async with mcp_connect() as client:
        tools = (await client.list_tools()).tools
        assert all(t.input_schema.get("additionalProperties") is False for t in tools)
        wrote = await client.call_tool(
            "write_file", {"project": pid, "path": "a.txt", "content": "x", "overwrite": True}
        )
        # A misspelt or stale argument is an error naming it, not silently dropped, in the
        # suite's error shape and without the validation library's internals.
        message = error_of(wrote)
        assert message.startswith("invalid_input:") and "overwrite: unknown argument" in message
        assert "pydantic" not in message and "input_type" not in message
        typed = error_of(await client.call_tool("read_file", {"project": pid, "path": 3}))
        assert typed.startswith("invalid_input: read_file: path:"), typed
        ok = await client.call_tool("write_file", {"project": pid, "path": "a.txt", "content": "x"})
        assert not ok.is_error


async def test_a_wrong_token_is_a_401_that_says_how_to_authenticate(mcp_url: str) -> None:
    request = HTTPRequest(
        mcp_url,
        method="POST",
        body=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}',
        headers={"Authorization": "Bearer not-a-token", "Content-Type": "application/json"},
    )
    resp = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert resp.code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert b'"not_authenticated"' in resp.body and b"Traceback" not in resp.body
