"""Tools act with exactly the caller's rights: Jupyter auth, then the project role."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ecode_jupyter.pytest_plugin import ecode_token_for

from .conftest import McpConnect, error_of


async def test_viewer_reads_but_cannot_write(
    mcp_connect: McpConnect, make_project: Any, ecode_api: Any
) -> None:
    pid, ws = await make_project(user="alice")
    (ws / "README.md").write_text("hello\n")
    shared = await ecode_api(
        "PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"}
    )
    assert shared.status in (200, 201), shared.body
    async with mcp_connect("bob") as client:
        read = await client.call_tool("read_file", {"project": pid, "path": "README.md"})
        assert not read.is_error
        writes = [
            ("write_file", {"path": "x.txt", "content": "x"}),
            ("edit_file", {"path": "README.md", "old_text": "hello", "new_text": "bye"}),
            ("delete_file", {"path": "README.md"}),
            ("run_command", {"command": "touch pwned"}),
            ("install_packages", {"packages": ["rich"]}),
            ("execute_code", {"code": "open('pwned', 'w')"}),
            ("edit_notebook_cell", {"path": "n.ipynb", "index": 0, "source": "x"}),
            ("query_database", {"sql": "create table t(x)", "write": True}),
        ]
        for tool, args in writes:
            message = error_of(await client.call_tool(tool, {"project": pid, **args}))
            assert message.startswith("forbidden:"), (tool, message)
    assert (ws / "README.md").read_text() == "hello\n"
    assert not (ws / "pwned").exists() and not (ws / "x.txt").exists()


async def test_strangers_do_not_see_the_project(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, _ws = await make_project(user="alice")
    async with mcp_connect("carol") as client:
        for tool, args in (
            ("list_files", {}),
            ("read_file", {"path": "README.md"}),
            ("write_file", {"path": "x", "content": "x"}),
        ):
            message = error_of(await client.call_tool(tool, {"project": pid, **args}))
            # Not found, not forbidden: ids of other people's projects do not leak.
            assert message.startswith("not_found:"), (tool, message)


async def test_unauthenticated_requests_are_refused(mcp_url: str) -> None:
    async with httpx2.AsyncClient() as http:
        for headers in ({}, {"Authorization": "token wrong"}):
            response = await http.post(
                mcp_url,
                headers={**headers, "Accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            )
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "not_authenticated"


async def test_a_session_cannot_be_used_by_another_user(mcp_url: str, make_project: Any) -> None:
    pid, _ws = await make_project(user="alice")
    session_ids: list[str] = []

    async def remember(response: httpx2.Response) -> None:
        if "mcp-session-id" in response.headers:
            session_ids.append(response.headers["mcp-session-id"])

    headers = {"Authorization": f"token {ecode_token_for('alice')}"}
    async with (
        httpx2.AsyncClient(headers=headers, event_hooks={"response": [remember]}) as http,
        Client(streamable_http_client(mcp_url, http_client=http), mode="legacy") as client,
    ):
        assert not (await client.call_tool("list_files", {"project": pid})).is_error
        assert session_ids
        async with httpx2.AsyncClient() as thief:
            stolen = await thief.post(
                mcp_url,
                headers={
                    "Authorization": f"token {ecode_token_for('bob')}",
                    "Mcp-Session-Id": session_ids[-1],
                    "Accept": "application/json, text/event-stream",
                    "Content-Type": "application/json",
                    "Mcp-Protocol-Version": "2025-11-25",
                },
                json={
                    "jsonrpc": "2.0",
                    "id": 99,
                    "method": "tools/call",
                    "params": {"name": "list_files", "arguments": {"project": pid}},
                },
            )
        assert stolen.status_code == 404
