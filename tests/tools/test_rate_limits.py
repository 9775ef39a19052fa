"""The tool_calls rate limit: over MCP (HTTP 429 + a JSON-RPC error) and in-process alike."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ecode_jupyter.exceptions import RateLimited
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.pytest_plugin import ecode_token_for
from ecode_jupyter.ratelimit import RateLimiter
from ecode_jupyter.tools.http import RATE_LIMITED_RPC_CODE
from ecode_jupyter.tools.server import ToolLayer

from .conftest import McpConnect

# 30.25 s into an hour: refusals say Retry-After 3570 whenever the test runs.
FROZEN_NOW = 1_800_000_000 + 30.25
ALICE = EcodeUser("alice", "Alice", False, "127.0.0.1")


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    return {"EcodeApp": {"rate_limits": {"tool_calls": "2/hour"}}}


async def test_tool_calls_past_the_limit_are_refused_over_mcp_and_in_process(
    ecode_app: Any,
    tool_layer: ToolLayer,
    mcp_url: str,
    mcp_connect: McpConnect,
    make_project: Any,
) -> None:
    limiter = ecode_app.ecode.extras["limits"]
    assert isinstance(limiter, RateLimiter)
    limiter.clock = lambda: FROZEN_NOW  # no window ends during the test
    pid, _ = await make_project(user="alice")
    answers: list[httpx2.Response] = []

    async def keep(response: httpx2.Response) -> None:
        answers.append(response)

    headers = {"Authorization": f"token {ecode_token_for('alice')}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"response": [keep]}) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        # One call over MCP and one by the agent's path: both count.
        assert not (await client.call_tool("list_files", {"project": pid})).is_error
        await tool_layer.call("list_files", {"project": pid}, ALICE)

        with pytest.raises(MCPError) as refused:
            await client.call_tool("list_files", {"project": pid})
        assert refused.value.code == RATE_LIMITED_RPC_CODE
        assert refused.value.message.startswith(
            "rate_limited: too many tool calls: at most 2 per hour"
        )
        assert refused.value.data["details"]["retry_after"] == 3570
        answer = answers[-1]
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "3570"

        # The session goes on: what is not a tool call is not limited.
        assert "list_files" in {tool.name for tool in (await client.list_tools()).tools}

    with pytest.raises(RateLimited) as in_process:
        await tool_layer.call("list_files", {"project": pid}, ALICE)
    assert in_process.value.retry_after == 3570

    # Bob's calls count against Bob's limit.
    bob_pid, _ = await make_project("b", user="bob")
    async with mcp_connect("bob") as client:
        assert not (await client.call_tool("list_files", {"project": bob_pid})).is_error
