"""Fixtures for driving the tool layer over MCP (streamable HTTP) against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from ecode_jupyter.pytest_plugin import ApiCall, ecode_token_for
from ecode_jupyter.tools.server import ToolLayer

McpConnect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def mcp_url(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> str:
    # http_server_client is what makes pytest-jupyter's server listen on jp_http_port.
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/ecode/mcp"


@pytest.fixture
def mcp_connect(mcp_url: str) -> McpConnect:
    """``async with mcp_connect("alice") as client`` — the SDK client with a user's token."""

    @asynccontextmanager
    async def connect(user: str = "alice") -> AsyncIterator[Client]:
        headers = {"Authorization": f"token {ecode_token_for(user)}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            Client(streamable_http_client(mcp_url, http_client=http)) as client,
        ):
            yield client

    return connect


@pytest.fixture
def make_project(ecode_api: ApiCall, ecode_workspace_root: Path) -> Callable[..., Any]:
    """``await make_project("demo", user="alice")`` → (project id, workspace path)."""

    async def make(name: str = "demo", user: str = "alice") -> tuple[str, Path]:
        resp = await ecode_api("POST", "projects", user=user, body={"name": name})
        assert resp.status == 201, resp.body
        pid = str(resp.body["id"])
        return pid, ecode_workspace_root / pid

    return make


@pytest.fixture
def tool_layer(ecode_app: Any) -> ToolLayer:
    layer = ecode_app.ecode.extras["tools"]
    assert isinstance(layer, ToolLayer)
    return layer


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def error_of(result: CallToolResult) -> str:
    """The error text of a failed call (fails the test if the call succeeded)."""
    assert result.is_error, f"expected an error, got {result.structured_content or result}"
    return text_of(result)
